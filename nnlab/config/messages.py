"""One paragraph for any config error, nnlab's own or Hydra's: key, bad value, valid choices.

Kept free of heavy imports: `--help` and a config error return before torch is loaded.
"""

from __future__ import annotations

import re

from nnlab.config.checks import did_you_mean
from nnlab.config.schema import GROUPS, TOP_LEVEL
from nnlab.errors import NnlabError


def _closest(word: str, options: list[str]) -> str:
    return did_you_mean(word, options)


def _hydra_message(err: BaseException) -> str | None:
    """Hydra's composition and override errors, reworded: key, bad value, valid choices."""
    import yaml
    from hydra.errors import (
        ConfigCompositionException,
        MissingConfigException,
        OverrideParseException,
        SearchPathException,
    )
    from omegaconf.errors import OmegaConfBaseException

    text = str(err).strip()
    first = text.splitlines()[0] if text else type(err).__name__
    if isinstance(err, ValueError) and text.startswith("Only one of --run, --multirun"):
        return (f"{text}: these flags pick what Hydra does, one at a time. To see a sweep's "
                "config, drop -m and give one value per key (python -m nnlab experiment=<name> "
                "--cfg job), or add --info to see the search path.")
    if isinstance(err, SearchPathException):
        found = re.search(r"directory '([^']*)' not found", text)
        folder = found.group(1) if found else text
        return (f"--config-dir {folder} is invalid: there is no such folder. Give the folder that "
                "holds your own configs (e.g. --config-dir my_conf with my_conf/experiment/"
                "<name>.yaml), relative to where you run nnlab or absolute.")
    if isinstance(err, yaml.YAMLError):
        return _yaml_message(err)
    if isinstance(err, MissingConfigException):
        found = re.search(r"Could not find '([^']+)'", text)
        if found and "/" in found.group(1):
            group, _, option = found.group(1).rpartition("/")
            options = sorted(err.options or [])
            if not options:
                listed = re.findall(r"^\t(\S+)$", text, flags=re.M)
                options = sorted(listed)
            if options:
                return (f"{group}={option} is invalid: there is no such option in the "
                        f"'{group}' group.{_closest(option, options)} Valid: {options}.")
            return (f"{group}={option} is invalid: there is no config group '{group}'. "
                    "`python -m nnlab --help` lists the groups and their options.")
        return f"{first} `python -m nnlab --help` lists the groups and their options."
    if isinstance(err, OverrideParseException):
        bad = err.override
        why = err.message.splitlines()[0].strip()
        hint = (" A value with spaces or brackets must be quoted: write the override in single "
                "quotes for the shell and the value in double quotes for Hydra, e.g. "
                "'mlflow.experiment_name=\"my study\"' or 'model.hidden=[64,32]'.")
        return f"'{bad}' is not a valid override ({why}).{hint}"
    if isinstance(err, ConfigCompositionException):
        cause = err.__cause__
        key = re.search(r"Could not override '([^']+)'", text)
        if key and cause is not None and "not in struct" in str(cause):
            name = key.group(1)
            return (f"{name} is invalid: there is no key '{name}' to set.{_top_hint(name)} "
                    f"To add a new key on purpose, write +{name}=<value>.")
        append = re.search(r"Could not append to config. An item is already at '([^']+)'", text)
        if append:
            return (f"+{append.group(1)} is invalid: the key already exists; set it without "
                    f"the '+': {append.group(1)}=<value>.")
        merging = re.search(r"Error merging override (\S+?)=(.*)$", first)
        if merging and isinstance(cause, OmegaConfBaseException):
            what = str(cause).splitlines()[0]
            return f"{merging.group(1)}={merging.group(2)} is invalid: {what}."
        if isinstance(cause, OmegaConfBaseException):
            return f"{first} {_omegaconf_message(cause)}"
        return text.replace("\n", " ")
    if isinstance(err, OmegaConfBaseException):
        return _omegaconf_message(err)
    return None


def _yaml_message(err: BaseException) -> str:
    """A config file that is not valid YAML: which file, where, and what the parser expected."""
    # where an unclosed construct began, else where the parser stopped
    mark = getattr(err, "context_mark", None) or getattr(err, "problem_mark", None)
    where = f"{mark.name}, line {mark.line + 1}, column {mark.column + 1}" if mark else \
        "a config file"
    problem = " ".join(str(getattr(err, "problem", None) or err).split())
    context = getattr(err, "context", None)
    return (f"{where} is not valid YAML: {problem}" + (f" ({context})" if context else "") +
            ". Fix that file's syntax (quote values with ':' or brackets; close every '[' "
            "and '{').")


def _top_hint(dotted: str) -> str:
    head = dotted.split(".")[0]
    if head in TOP_LEVEL:
        return ""
    return _closest(head, [*TOP_LEVEL, *GROUPS])


def _omegaconf_message(err: BaseException) -> str:
    key = getattr(err, "full_key", None)
    lines = [line for line in str(err).splitlines() if line.strip()]
    what = lines[0] if lines else type(err).__name__
    return f"{key}: {what}." if key else f"{what}."


def config_error_message(err: BaseException) -> str | None:
    """One paragraph for an error that a config caused, or None for any other error."""
    if isinstance(err, NnlabError):
        return " ".join(str(err).split())
    message = _hydra_message(err)
    return " ".join(message.split()) if message else None
