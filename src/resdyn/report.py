"""A self-contained HTML page of a study: its summary (markdown) and its figures, embedded."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Mapping
from pathlib import Path

STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;
vertical-align:top;font-size:14px}th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee}
.yes{color:#1e8449;font-weight:600}.no{color:#b03a2e;font-weight:600}figure{margin:2em 0}"""


def _inline(text: str) -> str:
    text = html.escape(text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", text)


def _cell(text: str) -> str:
    t = text.strip()
    return f'<span class="{t}">{t}</span>' if t in ("yes", "no") else _inline(t)


def markdown_to_html(md: str) -> str:
    """The small markdown subset summary.md uses: headings, paragraphs and pipe tables."""
    out, table = [], []

    def flush() -> None:
        if not table:
            return
        rows = [r for r in table if not re.fullmatch(r"\|?[\s|:-]+\|?", r)]
        cells = [[c.replace("\\|", "|").strip() for c in re.split(r"(?<!\\)\|", r.strip()[1:-1])]
                 for r in rows]
        out.append("<table><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in cells[0]) + "</tr>")
        out.extend("<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in r) + "</tr>" for r in cells[1:])
        out.append("</table>")
        table.clear()

    for line in md.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush()
        if m := re.match(r"(#+) (.*)", line):
            level = len(m.group(1))
            out.append(f"<h{level}>{_inline(m.group(2))}</h{level}>")
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
    flush()
    return "\n".join(out)


def write_report(path: str | Path, title: str, summary_md: str,
                 figures: Mapping[str, tuple[Path, str]]) -> Path:
    """Write ``path`` (HTML) with the summary and every figure embedded as PNG data.

    ``figures``: name -> (PNG path, caption).
    """
    body = [markdown_to_html(summary_md)]
    for name, (fig, caption) in figures.items():
        data = base64.b64encode(Path(fig).read_bytes()).decode()
        body.append(f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{data}">'
                    f"<figcaption><b>{html.escape(name)}</b>: {html.escape(caption)}"
                    "</figcaption></figure>")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>")
    Path(path).write_text(page, encoding="utf-8")
    return Path(path)
