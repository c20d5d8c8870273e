"""Credentials never reach a run: what nnlab writes to MLflow (params, tags, the run's name, text
artifacts such as config.yaml, overrides.txt and error.txt, and its own messages) passes through
here. The userinfo of any URI (`http://bob:<password>@host`) and the value of any key that looks
secret (password, token, secret, key, credential, auth, ...) become `***`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

HIDDEN = "***"
# A key is secret-looking when one of its words (split at _ - and case changes) is one of
# these, or ends with one (apikey, accesstoken, passwd).
SECRET_WORDS = ("password", "passwd", "pwd", "pass", "secret", "token", "key", "credential",
                "credentials", "auth", "apikey")
USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/?#@\s'\"]+)@")
PAIR = re.compile(r"(?P<key>[A-Za-z_+][\w.+-]*)(?P<sep>[ \t]*[:=][ \t]*)"
                  r"(?P<value>\"[^\"\n]*\"|'[^'\n]*'|[^\s,}\]]+)")


def secret_key(key: str) -> bool:
    """Whether a (dotted) config key names a secret by its last part."""
    last = key.rsplit(".", 1)[-1].lstrip("+~")
    words = re.split(r"[^a-z0-9]+", re.sub(r"([a-z])([A-Z])", r"\1_\2", last).lower())
    return any(word in SECRET_WORDS or word.endswith(("password", "passwd", "token", "secret",
                                                      "apikey"))
               for word in words if word)


def redact_text(text: str) -> str:
    """`text` with every URI's userinfo and every secret-looking `key: value` / `key=value`
    value hidden."""
    text = USERINFO.sub(lambda m: f"{m['scheme']}{HIDDEN}@", text)

    def pair(m: re.Match[str]) -> str:
        if m["value"].startswith("//") or not secret_key(m["key"]):
            return m.group(0)
        hidden = f"'{HIDDEN}'" if ":" in m["sep"] else HIDDEN  # a bare * starts a YAML alias
        return f"{m['key']}{m['sep']}{hidden}"

    return PAIR.sub(pair, text)


def redact_value(key: str, value: Any) -> str:
    """A param's or tag's value as logged: hidden when its key looks secret."""
    return HIDDEN if secret_key(key) else redact_text(str(value))


def redact_items(items: Mapping[str, Any]) -> dict[str, str]:
    return {key: redact_value(key, value) for key, value in items.items()}
