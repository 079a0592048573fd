"""MkDocs hook: README.md is the one source of the guide pages.

A page in docs/ places a section of the README with a line of its own::

    {{ readme "Command line" own level=1 }}

- the quoted name is a heading of README.md (any level): the section is that heading and
  everything under it, up to the next heading of the same or a higher level;
- ``own`` keeps only the section's own text, up to its first sub-heading;
- ``level=N`` sets the level of the section's heading (its sub-headings move alike; default 1).

The build fails (a warning, and ``mkdocs build --strict``) when a named section is not in the
README, and when a heading of the README is on no page, so the guide and the README never drift.
"""

from __future__ import annotations

import logging
import re
import shlex
from pathlib import Path

log = logging.getLogger("mkdocs.hooks.readme")

DIRECTIVE = re.compile(r"^\{\{\s*readme\s+(?P<args>.*?)\s*\}\}\s*$", re.MULTILINE)
HEADING = re.compile(r"^(?P<hashes>#{1,6})\s+(?P<title>.+?)\s*#*\s*$")

_placed: set[str] = set()
_headings: list[str] = []


def _sections(text: str) -> list[tuple[int, str, int]]:
    """(level, title, line index) of every heading outside fenced code."""
    found, fence = [], None
    for i, line in enumerate(text.splitlines()):
        stripped = line.lstrip()
        if stripped.startswith(("```", "~~~")):
            marker = stripped[:3]
            fence = None if fence == marker else (fence or marker)
            continue
        if fence is None and (m := HEADING.match(line)):
            found.append((len(m["hashes"]), m["title"], i))
    return found


def _readme(config) -> str:
    return (Path(config.config_file_path).parent / "README.md").read_text(encoding="utf-8")


def on_pre_build(config) -> None:
    _placed.clear()
    _headings[:] = [title for _, title, _ in _sections(_readme(config))]


def _extract(text: str, name: str, own: bool, level: int, page: str) -> str:
    lines = text.splitlines()
    heads = _sections(text)
    matches = [k for k, (_, title, _) in enumerate(heads) if title == name]
    if len(matches) != 1:
        what = "is not a heading" if not matches else "is more than one heading"
        log.warning(f"{page}: README section {name!r} {what} of README.md; its headings: "
                    + ", ".join(repr(t) for _, t, _ in heads))
        return ""
    k = matches[0]
    start_level, _, start = heads[k]
    end = len(lines)
    for lvl, _, i in heads[k + 1:]:
        if own or lvl <= start_level:
            end = i
            break
    shift = level - start_level
    out = []
    inside = {i for _, _, i in heads if start <= i < end}
    for i in range(start, end):
        line = lines[i]
        if i in inside:
            m = HEADING.match(line)
            new = min(6, max(1, len(m["hashes"]) + shift))
            _placed.add(m["title"])
            line = "#" * new + " " + m["title"]
        out.append(line)
    return "\n".join(out).rstrip() + "\n"


def on_page_markdown(markdown: str, page, config, files) -> str:
    if "readme" not in markdown:
        return markdown
    text = _readme(config)

    def replace(match: re.Match) -> str:
        args = shlex.split(match["args"])
        name, own, level = args[0], "own" in args[1:], 1
        for arg in args[1:]:
            if arg.startswith("level="):
                level = int(arg.split("=", 1)[1])
            elif arg != "own":
                log.warning(f"{page.file.src_uri}: unknown option {arg!r} of the readme directive")
        return _extract(text, name, own, level, page.file.src_uri)

    return DIRECTIVE.sub(replace, markdown)


def on_env(env, config, files):
    missing = [title for title in _headings if title not in _placed]
    if missing:
        log.warning("README.md headings on no page of docs/: " + ", ".join(map(repr, missing))
                    + ' (place each with a line {{ readme "HEADING" }} on a page)')
    return env
