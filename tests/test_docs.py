"""The API reference builds with ``mkdocs build --strict``, and a broken reference fails it.

The guide pages are README.md's sections (docs/hooks/readme.py) and the docstrings' Sphinx roles
are checked cross-references (docs/hooks/docstrings.py); the small builds below show that each
of those checks can fail.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HOOKS = ROOT / "docs" / "hooks"


def mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config),
         "--site-dir", str(site)],
        cwd=config.parent, capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})


def test_docs_build_strict(tmp_path):
    done = mkdocs_build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert done.returncode == 0, done.stderr[-4000:]
    assert "WARNING" not in done.stderr, done.stderr[-4000:]
    index = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    assert "Two commands" in index  # README's section, placed by the hook
    spectra = (tmp_path / "site" / "api" / "spectra" / "index.html").read_text(encoding="utf-8")
    assert 'id="resdyn.spectra.singular_values"' in spectra
    # a Sphinx role of a docstring became a link: :class:`SingularValues` in singular_values
    assert 'href="#resdyn.spectra.SingularValues"' in spectra


def tiny_project(root: Path, *, module: str, page: str, readme: str) -> Path:
    """A project of one module ``tinypkg`` documented with resdyn's hooks and extension."""
    (root / "src" / "tinypkg").mkdir(parents=True)
    (root / "src" / "tinypkg" / "__init__.py").write_text(textwrap.dedent(module))
    (root / "docs").mkdir()
    (root / "docs" / "index.md").write_text(textwrap.dedent(page))
    (root / "README.md").write_text(textwrap.dedent(readme))
    config = root / "mkdocs.yml"
    config.write_text(textwrap.dedent(f"""\
        site_name: tiny
        strict: true
        hooks:
          - {HOOKS / "readme.py"}
        plugins:
          - mkdocstrings:
              handlers:
                python:
                  paths: [src]
                  options:
                    docstring_style: google
                    extensions:
                      - {HOOKS / "docstrings.py"}:
                          root: tinypkg
        """))
    return config


GOOD_MODULE = '''\
    """A tiny package."""

    def helper() -> int:
        """Return one."""
        return 1

    def user() -> int:
        """Call :func:`helper`.

        Example:
            >>> user()
            1
        """
        return helper()
    '''
GOOD_PAGE = '''\
    {{ readme "tiny" }}

    ::: tinypkg
    '''
GOOD_README = "# tiny\n\nA tiny project.\n\n## Usage\n\nCall it.\n"


def test_tiny_project_builds_and_links(tmp_path):
    config = tiny_project(tmp_path, module=GOOD_MODULE, page=GOOD_PAGE, readme=GOOD_README)
    done = mkdocs_build(config, tmp_path / "site")
    assert done.returncode == 0, done.stderr[-4000:]
    html = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    assert 'href="#tinypkg.helper"' in html  # :func:`helper` is a link
    assert "A tiny project." in html and "Call it." in html  # the README's text


@pytest.mark.parametrize("case", ["renamed function", "missing object", "missing README section",
                                  "README section on no page"])
def test_broken_reference_fails_the_build(tmp_path, case):
    module, page, readme = GOOD_MODULE, GOOD_PAGE, GOOD_README
    if case == "renamed function":
        module = module.replace("def helper", "def helper2").replace("return helper()",
                                                                    "return helper2()")
        expected = ":func:`helper` in the docstring of tinypkg.user names nothing"
    elif case == "missing object":
        page = page + "\n::: tinypkg.gone\n"
        expected = "tinypkg.gone"
    elif case == "missing README section":
        page = page.replace('"tiny"', '"Tiny"')
        expected = "README section 'Tiny' is not a heading"
    else:
        page = page.replace('{{ readme "tiny" }}', '{{ readme "tiny" own }}')
        expected = "README.md headings on no page of docs/: 'Usage'"
    config = tiny_project(tmp_path, module=module, page=page, readme=readme)
    done = mkdocs_build(config, tmp_path / "site")
    assert done.returncode != 0
    assert expected in done.stderr, done.stderr[-4000:]
