"""One self-contained HTML page of any output folder: one study's run folder or a folder of them.

Per study: its summary (claims with their numbers, notes), its figures with captions, its tables
(sortable; long ones shortened to their first rows, the whole table is in its Parquet file), the
configuration (model, data, seeds, executor, versions, device) and timings. Figures are embedded
as PNG data and the sorting script is inline: the page needs no server and no other file.
"""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from .runs.folder import IDENTITY_FILE
from .summary import VERDICTS, Summary

#: Rows of a table shown in the page; longer tables show this many and say where the rest is.
ROWS_SHOWN = 40

STYLE = """body{font-family:system-ui,sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;
color:#222}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;
vertical-align:top;font-size:14px}th{background:#f3f3f3}th.sort{cursor:pointer}
img{max-width:100%;border:1px solid #eee}.yes{color:#1e8449;font-weight:600}
.no{color:#b03a2e;font-weight:600}
.undecided{color:#9a6700;background:#fff4d6;font-weight:600;padding:0 3px}
.not-judged{color:#777}figure{margin:2em 0}figcaption{font-size:14px;color:#444}
section{border-top:3px solid #ddd;margin-top:3em}details{margin:.5em 0}.num{text-align:right;
font-variant-numeric:tabular-nums}.scroll{overflow-x:auto}code{background:#f6f6f6}"""

# click a column heading to sort its table (numbers as numbers), again to reverse
SORT_SCRIPT = """document.querySelectorAll('th.sort').forEach(function(th){th.onclick=function(){
var t=th.closest('table'),i=Array.prototype.indexOf.call(th.parentNode.children,th),
rows=Array.prototype.slice.call(t.querySelectorAll('tr')).slice(1),up=th.dataset.up!=='1';
th.dataset.up=up?'1':'0';rows.sort(function(a,b){var x=a.children[i].textContent,
y=b.children[i].textContent,nx=parseFloat(x),ny=parseFloat(y);var c=(isNaN(nx)||isNaN(ny))?
x.localeCompare(y):nx-ny;return up?c:-c;});rows.forEach(function(r){t.appendChild(r);});};});"""


def _inline(text: str) -> str:
    text = html.escape(text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", text)


VERDICT_WORDS = ("yes", "no", "undecided", "not judged")


def _cell(text: str) -> str:
    """A table cell's text; a verdict word in its colour (held, not held, undecided apart)."""
    t = text.strip()
    return (f'<span class="{t.replace(" ", "-")}">{t}</span>' if t in VERDICT_WORDS
            else _inline(t))


def markdown_to_html(md: str, shift: int = 0) -> str:
    """The small markdown subset summary.md uses: headings (moved ``shift`` levels down),
    paragraphs and pipe tables."""
    out: list[str] = []
    table: list[str] = []

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
            level = min(6, len(m.group(1)) + shift)
            out.append(f"<h{level}>{_inline(m.group(2))}</h{level}>")
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
    flush()
    return "\n".join(out)


def run_folders(root: str | Path) -> list[Path]:
    """The study run folders in ``root`` (itself, or any folder below it), in path order.

    A run folder is one whose ``run.json`` names the study it holds.
    """
    root = Path(root)
    found = []
    for ident in sorted([root / IDENTITY_FILE, *root.rglob(f"*/{IDENTITY_FILE}")]):
        if ident.is_file() and isinstance(_read_json(ident).get("study"), str):
            found.append(ident.parent)
    return found


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def render(root: str | Path) -> str:
    """The HTML page of every run folder under ``root``, from the files each run wrote: its
    ``summary.json`` (claims, notes, figure captions, table order; a run without one, unfinished
    or of an older version, shows its ``summary.md`` and every PNG and Parquet file it holds).

    Raises:
        ValueError: ``root`` holds no study run.
    """
    root = Path(root)
    folders = run_folders(root)
    if not folders:
        raise ValueError(f"{root} holds no resdyn study run (no {IDENTITY_FILE} naming a study "
                         "in it or below it)")
    if len(folders) == 1:
        title, body = run_title(folders[0]), [_section(folders[0], root, 0)]
    else:
        title = f"resdyn report: {root.resolve().name}"
        body = [f"<h1>{html.escape(title)}</h1>", _contents(folders, root),
                _side_by_side(folders, root)]
        body += [_section(f, root, 1) for f in folders]
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{STYLE}</style></head><body>{''.join(body)}"
            f"<script>{SORT_SCRIPT}</script></body></html>")


def write_report(root: str | Path, path: str | Path | None = None) -> Path:
    """Write the page of :func:`render` to ``path`` (default ``root/report.html``).

    Raises:
        ValueError: ``path`` is an existing folder (checked before anything is written).
    """
    path = Path(root) / "report.html" if path is None else Path(path)
    if path.is_dir():
        raise ValueError(f"the report's --out {path} is a folder; give the page's file name, "
                         f"e.g. --out {path / 'report.html'}")
    from .runs.store import atomic_write

    page = render(root)
    atomic_write(path, lambda tmp: tmp.write_text(page, encoding="utf-8"))
    return path


def run_title(folder: Path) -> str:
    """A run's heading (its summary's title, or the first line of an older summary.md), or the
    folder's name."""
    summary = Summary.read(folder)
    if summary is not None:
        return summary.title
    md = folder / "summary.md"
    first = md.read_text(encoding="utf-8").splitlines()[0] if md.is_file() else ""
    return first.lstrip("# ").strip() or folder.name


def _anchor(folder: Path, root: Path) -> str:
    rel = folder.relative_to(root).as_posix()
    return "run-" + re.sub(r"[^A-Za-z0-9_-]", "-", rel if rel != "." else folder.name)


def _contents(folders: list[Path], root: Path) -> str:
    rows = []
    for f in folders:
        summary = Summary.read(f)
        claims = summary.claims if summary is not None else []
        counts = dict.fromkeys(VERDICT_WORDS, 0)
        for c in claims:
            counts[c["verdict"]] = counts.get(c["verdict"], 0) + 1
        seconds = _read_json(f / "config.json").get("last_run", {}).get("seconds")
        rows.append(f"<tr><td><a href='#{_anchor(f, root)}'>{_inline(run_title(f))}</a></td>"
                    f"<td>{html.escape(f.relative_to(root).as_posix())}</td>"
                    f"<td class='num'>{counts['yes']}</td><td class='num'>{counts['no']}</td>"
                    f"<td class='num'>{counts['undecided']}</td>"
                    f"<td class='num'>{counts['not judged']}</td>"
                    f"<td class='num'>{'' if seconds is None else f'{seconds:.0f}'}</td></tr>")
    return ("<table><tr><th>study</th><th>folder</th><th>claims held</th><th>not held</th>"
            "<th>undecided</th><th>not judged</th><th>last run (s)</th></tr>" + "".join(rows)
            + "</table>")


def side_by_side(folders: list[Path]) -> list[tuple[str, list[Path]]]:
    """(study, its runs) for every study run on more than one model in ``folders`` (e.g. the
    demo's ResNet and ViT), runs in path order."""
    groups: dict[str, list[Path]] = {}
    for f in folders:
        ident = _read_json(f / IDENTITY_FILE)
        if isinstance(ident.get("model"), dict) and Summary.read(f) is not None:
            groups.setdefault(ident["study"], []).append(f)
    return [(study, fs) for study, fs in groups.items()
            if len({_read_json(f / IDENTITY_FILE)["model"].get("name") for f in fs}) > 1]


def _claims(folder: Path) -> list[dict]:
    summary = Summary.read(folder)
    return list(summary.claims) if summary is not None else []


def _side_by_side(folders: list[Path], root: Path) -> str:
    """Per study run on several models: each claim's verdict and evidence, one column per model."""
    out = []
    for study, fs in side_by_side(folders):
        models = [str(_read_json(f / IDENTITY_FILE)["model"].get("name")) for f in fs]
        verdicts = [{c["claim"]: c for c in (_claims(f))} for f in fs]
        claims = list(dict.fromkeys(c for v in verdicts for c in v))
        head = "".join(f"<th><a href='#{_anchor(f, root)}'>{html.escape(m)}</a></th>"
                       for f, m in zip(fs, models, strict=True))
        rows = "".join(
            f"<tr><td>{_inline(c)}</td>" + "".join(
                (f"<td>{_cell(v[c]['verdict'])}{_numbers(v[c])}: {_inline(v[c]['evidence'])}"
                 "</td>" if c in v else "<td>—</td>") for v in verdicts) + "</tr>"
            for c in claims)
        out.append(f"<h3>{html.escape(study)}</h3><table><tr><th>claim</th>{head}</tr>{rows}"
                   "</table>")
    if not out:
        return ""
    return ("<h2>Side by side</h2><p>The studies run on more than one model, each claim as "
            "measured on each (the evidence is the model's own numbers; each number with its "
            "95 % interval against its threshold).</p><p>" + _inline(VERDICTS) + "</p>"
            + "".join(out))


def _numbers(claim: dict) -> str:
    """A claim's numbers with their intervals, on a line of their own ('' for none)."""
    text = claim.get("numbers") or ""
    return f"<br><small><b>{_inline(text)}</b></small>" if text else ""


def _section(folder: Path, root: Path, shift: int) -> str:
    summary = Summary.read(folder)
    if summary is not None:
        captions, tables = summary.figures, summary.tables
        intro = _summary_html(summary, shift)
    else:  # unfinished, or of an older version: what the folder holds
        captions = {p.stem: "" for p in sorted(folder.glob("*.png"))}
        tables = [p.stem for p in sorted(folder.glob("*.parquet")) if p.stem != "errors"]
        md = folder / "summary.md"
        intro = (markdown_to_html(md.read_text(encoding="utf-8"), shift) if md.is_file() else
                 f"<h{1 + shift}>{html.escape(folder.name)}</h{1 + shift}><p>This run has not "
                 "finished: no summary yet.</p>")
    parts = [f"<section id='{_anchor(folder, root)}'>", intro]
    h = f"h{2 + shift}"
    figures = [(n, c) for n, c in captions.items() if (folder / f"{n}.png").is_file()]
    if figures:
        parts.append(f"<{h}>Figures</{h}>")
    for name, caption in figures:
        data = base64.b64encode((folder / f"{name}.png").read_bytes()).decode()
        parts.append(f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{data}">'
                     f"<figcaption><b>{html.escape(name)}</b>"
                     f"{': ' + html.escape(caption) if caption else ''}</figcaption></figure>")
    tables = [t for t in [*tables, "errors"] if (folder / f"{t}.parquet").is_file()]
    if tables:
        parts.append(f"<{h}>Tables</{h}>")
    for name in tables:
        parts.append(_table(folder / f"{name}.parquet", open_=name == "errors" or len(tables) < 3))
    parts.append(f"<{h}>Configuration</{h}>")
    parts.append(_configuration(_read_json(folder / IDENTITY_FILE),
                                _read_json(folder / "config.json"), folder))
    parts.append("</section>")
    return "\n".join(parts)


def _summary_html(s: Summary, shift: int) -> str:
    """A run's summary as HTML, from its data (the study's notes are its own markdown)."""
    h1, h2 = f"h{1 + shift}", f"h{2 + shift}"
    out = [f"<{h1}>{_inline(s.title)}</{h1}>", f"<p>{_inline(s.run)}</p>"]
    out += [f"<p>{_inline(line)}</p>" for line in s.store_lines()]
    if s.failure:
        out.append(f"<p>{_inline(s.failure)}</p>")
        if s.errors:
            out.append("<table><tr><th>task</th><th>error</th></tr>" + "".join(
                f"<tr><td>{_inline(t)}</td><td>{_inline(e)}</td></tr>" for t, e in s.errors)
                + "</table>")
        return "\n".join(out)
    if s.claims:
        out.append(f"<{h2}>Claims</{h2}>")
        out.append("<table><tr><th>claim</th><th>holds here</th><th>number [95 % interval] vs "
                   "its threshold</th><th>evidence</th></tr>" + "".join(
                       f"<tr><td>{_inline(c['claim'])}</td><td>{_cell(c['verdict'])}</td>"
                       f"<td>{_inline(c.get('numbers') or '—')}</td>"
                       f"<td>{_inline(c['evidence'])}</td></tr>" for c in s.claims) + "</table>")
        out.append(f"<p><small>{_inline(VERDICTS)}</small></p>")
    if s.notes:
        out.append(markdown_to_html(s.notes, shift))
    return "\n".join(out)


def _table(path: Path, open_: bool) -> str:
    """A Parquet table as a sortable HTML table (its first ROWS_SHOWN rows), in a <details>."""
    try:
        t = pd.read_parquet(path)
    except (OSError, ValueError) as e:
        return f"<p>{html.escape(path.name)}: cannot be read ({html.escape(str(e))})</p>"
    shown = t.head(ROWS_SHOWN)
    note = (f"{len(t)} rows × {t.shape[1]} columns" + (f", the first {ROWS_SHOWN} shown; all in "
                                                         if len(t) > ROWS_SHOWN else "; in ")
            + f"<code>{html.escape(path.name)}</code>")
    head = "".join(f"<th class='sort'>{html.escape(str(c))}</th>" for c in shown.columns)
    rows = []
    for row in shown.itertuples(index=False):
        cells = []
        for v in row:
            text, numeric = _format(v)
            cells.append(f"<td class='num'>{text}</td>" if numeric else f"<td>{text}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (f"<details{' open' if open_ else ''}><summary><b>{html.escape(path.stem)}</b> "
            f"({note})</summary><div class='scroll'><table><tr>{head}</tr>{''.join(rows)}"
            "</table></div></details>")


def _format(v) -> tuple[str, bool]:
    if isinstance(v, bool | np.bool_):
        return str(bool(v)), False
    if isinstance(v, int | np.integer):
        return str(int(v)), True
    if isinstance(v, float | np.floating):
        return ("NaN" if np.isnan(v) else f"{float(v):.4g}"), True
    if isinstance(v, np.ndarray | list | tuple):
        items = ", ".join(f"{x:.3g}" if isinstance(x, float | np.floating) else str(x)
                          for x in list(v)[:4])
        return html.escape(f"[{items}{', …' if len(v) > 4 else ''}] ({len(v)})"), False
    text = str(v)
    return html.escape(text if len(text) <= 160 else text[:157] + "…"), False


def _configuration(ident: dict, info: dict, folder: Path) -> str:
    """Study, model, data, config, executor, versions, device and timings as a key/value table."""
    rows = [("study", ident.get("study")), ("folder", str(folder))]
    model = ident.get("model") or {}
    if model.get("name"):
        rows.append(("model", f"{model['name']} (sha256 {str(model.get('sha256'))[:12]}…)"))
    data = ident.get("data") or {}
    if data:
        rows.append(("data", f"{data.get('name')} ({data.get('split')} split, sha256 "
                             f"{str(data.get('sha256'))[:12]}…)"))
    for key, value in (ident.get("config") or {}).items():
        rows.append((f"config: {key}", _short(value)))
    for key in ("executor", "device", "versions", "last_run"):
        if key in info:
            rows.append((key, _short(info[key])))
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
                   for k, v in rows)
    return f"<table>{body}</table>"


def _short(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {_short(v)}" for k, v in value.items())
    if isinstance(value, list) and len(value) > 8:
        return f"{', '.join(map(str, value[:8]))}, … ({len(value)})"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)
