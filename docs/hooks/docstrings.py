"""Griffe extension: resdyn's docstrings as mkdocstrings renders them, sources unchanged.

``Example:`` sections (Google style, as Napoleon reads them) are read as griffe's ``Examples:``,
so their doctests render as code.

resdyn's docstrings name other objects with Sphinx roles (``:func:`units```,
``:class:`~resdyn.operators.LinearOperator```, ``:mod:`.spectrum```, ``:data:``, ``:meth:``,
``:attr:``). Once the package is loaded, every role in every docstring of the package (rendered
or not) is resolved the way Python would find the name from where the docstring is:

- ``resdyn.a.b``: an absolute path;
- ``.name``, ``..name``: relative to the docstring's package, as in a relative import;
- ``name`` or ``name.attr``: the first name looked up in the object's scope, then its parents'
  (members and imports), the rest followed as attributes.

A role that resolves becomes a link to the object where the reference renders it, and plain code
where it renders nowhere (a private helper). A role that does not resolve (a renamed function, a
typo) is logged as a warning, so ``mkdocs build --strict`` fails and names the file and line.
Names outside resdyn (``torch.Tensor``) are left as code.
"""

from __future__ import annotations

import html
import importlib.util
import re
from typing import Any

from griffe import Alias, Extension, GriffeLoader, Module, Object, logger

EXAMPLE = re.compile(r"^(?P<indent>[ \t]*)Example:[ \t]*$", re.MULTILINE)
ROLE = re.compile(r":(?P<role>func|class|mod|data|meth|attr|obj|exc):`(?P<target>[^`]+)`")


def _walk(obj: Object):
    yield obj
    for member in obj.members.values():
        if not isinstance(member, Alias):
            yield from _walk(member)


class SphinxRoles(Extension):
    """Rewrite ``:role:`target``` into autorefs cross-references, and fail on broken ones."""

    def __init__(self, root: str = "resdyn") -> None:
        self.root = root

    def on_package(self, *, pkg: Module, loader: GriffeLoader, **kwargs: Any) -> None:
        if pkg.name != self.root:
            return
        for obj in _walk(pkg):
            docstring = obj.docstring
            if docstring is None or ":" not in docstring.value:
                continue
            text = ROLE.sub(lambda m, o=obj: self._replace(m, o, loader), docstring.value)
            docstring.value = EXAMPLE.sub(r"\g<indent>Examples:", text)

    def _replace(self, match: re.Match, obj: Object, loader: GriffeLoader) -> str:
        role, written = match["role"], match["target"].strip()
        target = written.lstrip("~")
        shown = target.rsplit(".", 1)[-1] if written.startswith("~") else target.lstrip(".")
        if role in ("func", "meth"):
            shown += "()"
        code = f"<code>{html.escape(shown)}</code>"
        path = self._resolve(target, obj, loader)
        if path is None:
            docstring = obj.docstring
            line = (docstring.lineno or 0) + docstring.value.count("\n", 0, match.start())
            logger.warning(
                f"{obj.relative_filepath}:{line}: {match[0]} in the docstring of {obj.path} "
                "names nothing in the package (renamed or removed?)"
            )
            return code
        if not self._ours(path):
            return code
        return f'<autoref identifier="{html.escape(path)}" optional>{code}</autoref>'

    def _ours(self, path: str) -> bool:
        return path == self.root or path.startswith(self.root + ".")

    def _resolve(self, target: str, obj: Object, loader: GriffeLoader) -> str | None:
        """The full path of what ``target`` names from ``obj``'s docstring; None: nothing.

        A name outside the package (``torch.Tensor``, or an import of it) is returned as written
        and not checked."""
        if target.startswith("."):
            module = obj if obj.is_module else obj.module
            scope = module if module.is_init_module else module.parent
            rest = target[1:]
            while rest.startswith(".") and scope is not None:
                scope, rest = scope.parent, rest[1:]
            if scope is None:
                return None
            path = f"{scope.path}.{rest}"
        elif self._ours(target):
            path = target
        else:
            first, _, rest = target.partition(".")
            try:
                path = obj.resolve(first)
            except Exception:  # griffe's NameResolutionError and alias errors alike
                return target if rest and importlib.util.find_spec(first) is not None else None
            if rest:
                path = f"{path}.{rest}"
            if not self._ours(path):
                return path
        return self._final(path, loader)

    def _final(self, path: str, loader: GriffeLoader) -> str | None:
        """The path of the object itself, following re-exports; None where nothing is there."""
        for _ in range(10):
            try:
                found = loader.modules_collection.get_member(path)
            except (KeyError, ValueError):
                # a member of a re-exported object: follow the alias of its parent
                head, _, last = path.rpartition(".")
                if not head or head == path:
                    return None
                parent = self._final(head, loader)
                if parent is None or parent == head:
                    return None
                path = f"{parent}.{last}"
                continue
            if isinstance(found, Alias):
                path = found.target_path
                continue
            return found.path
        return None
