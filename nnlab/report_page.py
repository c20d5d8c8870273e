"""A study report as one self-contained HTML page: report.md rendered by Python-Markdown, each
figure it links embedded as a data URI, so the page opens alone (from MLflow's artifacts, a
mail, a browser) with its tables, verdicts and figures."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

STYLE = """body{font:15px/1.45 system-ui,sans-serif;max-width:72em;margin:2em auto;padding:0 1em}
table{border-collapse:collapse;margin:1em 0;font-size:13px}th,td{border:1px solid #ccc;
padding:.25em .6em;text-align:right}th:first-child,td:first-child{text-align:left}
img{max-width:100%}code{background:#f4f4f4}"""


def inline_images(body: str, folder: Path) -> str:
    """Every <img src="NAME.png"> of a file in `folder` becomes a data URI."""

    def embed(found: re.Match) -> str:
        path = folder / html.unescape(found.group(2))
        if not path.is_file():
            return found.group(0)
        data = base64.b64encode(path.read_bytes()).decode()
        return f'{found.group(1)}data:image/png;base64,{data}"'

    return re.sub(r'(<img[^>]*\ssrc=")([^":]+\.png)"', embed, body)


def write_page(markdown_path: Path) -> Path:
    """Write report.html beside `markdown_path` (report.md); return its path."""
    import markdown

    text = markdown_path.read_text()
    title = text.splitlines()[0].lstrip("# ") if text else "nnlab report"
    body = inline_images(markdown.markdown(text, extensions=["tables"]), markdown_path.parent)
    page = markdown_path.with_suffix(".html")
    page.write_text(f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
                    f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
                    f"<body>\n{body}\n</body></html>\n")
    return page
