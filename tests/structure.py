"""Static checks of a package's structure, used by tests/test_layering.py and tests/test_structure.py.

The checker reads source files with :mod:`ast` and never imports them. It owns:

* the import graph: every ``import`` statement of every module, each marked *top* (runs when the
  module is imported, class bodies and ``try`` blocks included), *lazy* (inside a function) or
  *type* (under ``if TYPE_CHECKING:``);
* the layers table (:func:`parse_layers`): which layer each module is in, which layers and which
  outside libraries each layer may import;
* the rules: no import of a layer the importer's layer may not import, no library outside the layers
  that list it, no private import outside its own subpackage, no import cycle (every kind of import
  counts), module and function sizes;
* citations: references to documents that are not in the repository.

Definitions (docs/architecture.md#rules-the-tree-keeps says the same):

* A module's *package directory* is the package it lives in: ``regcopy.registry`` for
  ``regcopy/registry/transport.py`` and for ``regcopy/registry/__init__.py`` alike.
* Its *own subpackage* is that package directory when it is a subpackage (below the top-level
  package). A module directly in the top-level package has none: the top-level directory holds every
  layer, so a name private there would be private to nothing.
* A *private import* is ``import a._b``, ``from a import _b`` or ``from a._b import c`` (any
  component after the top-level package starting with one underscore; dunders are not private) where
  the private module, or the module defining the private name, is not in the importer's own subpackage.
* An *edge* of the import graph goes to the module an import names: ``from a.b import c`` is an edge
  to ``a.b.c`` when that is a module of the package, else to ``a.b`` (``c`` is a name defined there).
  The parent packages Python runs first are not edges: a package ``__init__`` that re-exports its
  children would otherwise close a cycle with every child.
* A function's length runs from its ``def`` line to its last line (decorators excluded, docstring
  and nested functions included).
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Kind = Literal["top", "lazy", "type"]

# Libraries any layer may use: the async runtime and its file I/O.
EVERYWHERE = frozenset({"anyio", "aiofiles"})


@dataclass(frozen=True)
class Import:
    """One import statement's view of one imported module or name."""

    importer: str  # dotted name of the importing module
    target: str  # the dotted module imported (one of the package, or an outside one such as ``aiohttp``)
    name: str | None  # the name imported from ``target`` when it is not a module
    line: int
    kind: Kind

    def __str__(self) -> str:
        what = f"{self.target}.{self.name}" if self.name else self.target
        return f"{self.importer}:{self.line} imports {what} ({self.kind})"


@dataclass(frozen=True)
class Module:
    """One source file of the package."""

    name: str  # dotted: ``regcopy.registry`` for ``regcopy/registry/__init__.py``
    path: Path
    is_package: bool

    @property
    def directory(self) -> str:
        """The package this module lives in (itself for a package ``__init__``)."""
        return self.name if self.is_package else self.name.rpartition(".")[0]


# --- modules and imports ---------------------------------------------------------------------------


def modules(root: Path) -> dict[str, Module]:
    """Every ``.py`` file below ``root`` (a package directory), by dotted name."""
    out: dict[str, Module] = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        out[name] = Module(name, path, is_package)
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _statements(body: Iterable[ast.stmt], kind: Kind) -> Iterator[tuple[ast.stmt, Kind]]:
    """Every statement, nested ones included, with the kind an import there has."""
    for node in body:
        yield node, kind
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield from _statements(node.body, "type" if kind == "type" else "lazy")
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _statements(node.body, "type")
            yield from _statements(node.orelse, kind)
        else:  # class bodies, if/else, try/except/finally, with, for, while, match: same kind
            for field in ("body", "orelse", "finalbody", "handlers", "cases"):
                for child in getattr(node, field, ()):
                    if isinstance(child, ast.ExceptHandler | ast.match_case):
                        yield from _statements(child.body, kind)
                    elif isinstance(child, ast.stmt):
                        yield from _statements([child], kind)


def _absolute(module: Module, level: int, name: str | None) -> str:
    if level == 0:
        return name or ""
    base = module.directory.split(".")
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


def imports_of(module: Module, known: Mapping[str, Module]) -> list[Import]:
    """Every import in one module, resolved against the package's modules ``known``."""
    tree = ast.parse(module.path.read_text(), filename=str(module.path))
    out: list[Import] = []
    for node, kind in _statements(tree.body, "top"):
        if isinstance(node, ast.Import):
            out.extend(Import(module.name, a.name, None, node.lineno, kind) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(module, node.level, node.module)
            for alias in node.names:
                child = f"{source}.{alias.name}"
                if child in known:
                    out.append(Import(module.name, child, None, node.lineno, kind))
                else:
                    out.append(Import(module.name, source, alias.name, node.lineno, kind))
    return out


def import_graph(root: Path) -> tuple[dict[str, Module], dict[str, list[Import]]]:
    """The package's modules and, for each, its imports."""
    known = modules(root)
    return known, {name: imports_of(m, known) for name, m in known.items()}


def internal(imports: Iterable[Import], known: Mapping[str, Module]) -> Iterator[Import]:
    """The imports of modules of the package (outside libraries left out)."""
    return (i for i in imports if i.target in known)


# --- layers ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layers:
    """A layers table: each module's layer, and what each layer may import."""

    order: tuple[str, ...]  # as the table lists them, top first
    of_module: dict[str, str]  # dotted module -> layer
    may_import: dict[str, frozenset[str]]  # layer -> layers it may import (itself included)
    libraries: dict[str, frozenset[str]]  # layer -> outside libraries it may import (besides EVERYWHERE)


_CODE = re.compile(r"`([^`]+)`")


def parse_layers(markdown: str, package: str, heading: str = "## Layers") -> Layers:
    """Read the first table after ``heading``, columns ``layer | modules | may import | libraries | ...``.

    Modules are paths relative to the package directory in backticks (``registry/transport.py``,
    ``sync/__init__.py``); "may import" names layers and "libraries" names outside packages, in
    backticks (anything else in those cells, such as "—", means none). A layer may always import
    its own modules.

    :raises ValueError: no such table, a layer or module listed twice, an unknown layer named
    """
    rows = _table_after(markdown, heading)
    header, body = rows[0], rows[2:]
    col = {name: header.index(name) for name in ("layer", "modules", "may import", "libraries")}
    order: list[str] = []
    of_module: dict[str, str] = {}
    may: dict[str, frozenset[str]] = {}
    libraries: dict[str, frozenset[str]] = {}
    for row in body:
        layer = row[col["layer"]]
        if layer in may:
            raise ValueError(f"layer {layer!r} appears twice")
        order.append(layer)
        may[layer] = frozenset([layer, *_CODE.findall(row[col["may import"]])])
        libraries[layer] = frozenset(_CODE.findall(row[col["libraries"]]))
        for path in _CODE.findall(row[col["modules"]]):
            name = _dotted(package, path)
            if name in of_module:
                raise ValueError(f"{path} is in layers {of_module[name]!r} and {layer!r}")
            of_module[name] = layer
    unknown = {lay for allowed in may.values() for lay in allowed} - set(may)
    if unknown:
        raise ValueError(f"'may import' names unknown layers {sorted(unknown)}")
    return Layers(tuple(order), of_module, may, libraries)


def _table_after(markdown: str, heading: str) -> list[list[str]]:
    lines = markdown.splitlines()
    if heading not in lines:
        raise ValueError(f"no {heading!r} heading")
    rows: list[list[str]] = []
    for line in lines[lines.index(heading) + 1 :]:
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif rows:
            break
    if len(rows) < 3:
        raise ValueError(f"no table after {heading!r}")
    return rows


def _dotted(package: str, path: str) -> str:
    parts = [package, *path.removesuffix(".py").split("/")]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def unassigned(layers: Layers, known: Iterable[str]) -> list[str]:
    """Modules of the package that no layer lists."""
    return sorted(set(known) - set(layers.of_module))


def stale(layers: Layers, known: Iterable[str]) -> list[str]:
    """Modules a layer lists that do not exist."""
    return sorted(set(layers.of_module) - set(known))


def upward_allowances(layers: Layers) -> list[str]:
    """Layers allowed to import a layer listed above them in the table (the table itself points up)."""
    rank = {layer: i for i, layer in enumerate(layers.order)}
    return [f"{layer!r} may import {other!r}, listed above it" for layer in layers.order
            for other in sorted(layers.may_import[layer]) if rank[other] < rank[layer]]


def layer_violations(layers: Layers, graph: Mapping[str, list[Import]], known: Mapping[str, Module]) -> list[str]:
    """Every import (of any kind) of a module whose layer the importer's layer may not import."""
    out = []
    for name, imports in graph.items():
        mine = layers.of_module.get(name)
        for imp in internal(imports, known):
            theirs = layers.of_module.get(imp.target)
            if mine is not None and theirs is not None and theirs not in layers.may_import[mine]:
                out.append(f"{imp}: layer {mine!r} may not import layer {theirs!r}")
    return out


def library_violations(layers: Layers, graph: Mapping[str, list[Import]], package: str) -> list[str]:
    """Every import of an outside library (not the standard library, not ``EVERYWHERE``) by a module
    whose layer does not list it."""
    out = []
    for name, imports in graph.items():
        mine = layers.of_module.get(name)
        for imp in imports:
            top = imp.target.split(".")[0]
            if not top or top in (package, "__future__") or top in sys.stdlib_module_names or top in EVERYWHERE:
                continue
            if mine is not None and top not in layers.libraries[mine]:
                out.append(f"{imp}: layer {mine!r} may not use {top}")
    return out


# --- private imports -------------------------------------------------------------------------------


def _private(part: str) -> bool:
    return part.startswith("_") and not part.startswith("__")


def _holder(imp: Import, known: Mapping[str, Module]) -> str | None:
    """The package directory of the private module or name ``imp`` reaches for; None if nothing private."""
    parts = imp.target.split(".")
    for i, part in enumerate(parts[1:], start=1):
        if _private(part):
            return ".".join(parts[:i])
    if imp.name is not None and _private(imp.name):
        module = known.get(imp.target)
        return module.directory if module is not None else imp.target.rpartition(".")[0]
    return None


def private_imports(graph: Mapping[str, list[Import]], known: Mapping[str, Module], package: str) -> list[str]:
    """Imports of a private module or name from outside the importer's own subpackage."""
    out = []
    for name, imports in graph.items():
        directory = known[name].directory
        own = directory if directory != package else None
        for imp in imports:
            if imp.target != package and not imp.target.startswith(package + "."):
                continue
            holder = _holder(imp, known)
            if holder is not None and holder != own:
                out.append(f"{imp}: private outside its own subpackage")
    return out


# --- cycles ----------------------------------------------------------------------------------------


def cycles(graph: Mapping[str, list[Import]], known: Mapping[str, Module]) -> list[list[str]]:
    """Strongly connected components of more than one module; every kind of import is an edge."""
    edges = {name: sorted({i.target for i in internal(imps, known) if i.target != name})
             for name, imps in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm; a package is small enough for recursion
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(out)


def cycle_edges(component: Iterable[str], graph: Mapping[str, list[Import]]) -> list[str]:
    """The imports that hold one cycle together, for a failure message."""
    members = set(component)
    return [str(i) for m in sorted(members) for i in graph[m] if i.target in members and i.target != m]


# --- sizes -----------------------------------------------------------------------------------------


def line_count(path: Path) -> int:
    """Lines of a source file."""
    return len(path.read_text().splitlines())


def long_functions(known: Mapping[str, Module], limit: int) -> list[tuple[str, int]]:
    """Functions and methods longer than ``limit`` lines, as ``("module:line name", length)``."""
    out = []
    for name, module in known.items():
        for node in ast.walk(ast.parse(module.path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > limit:
                    out.append((f"{name}:{node.lineno} {node.name}", length))
    return sorted(out)


# --- citations -------------------------------------------------------------------------------------

# Documents that lived beside the project but are not part of it, and issue numbers. Spelled in
# pieces so that this file does not cite them itself.
_OUTSIDE = ("PROTO" + "COL", "ARCHI" + "TECTURE", "ANC" + "HORS")
FOREIGN_CITATIONS = (
    re.compile(r"\b(?:" + "|".join(_OUTSIDE) + r")(?:\.md)?[\s#*>]*\u00a7"),  # "X §2.1", across a line break too
    re.compile(r"\b(?:" + "|".join(_OUTSIDE) + r")\.md"),
    re.compile(r"\.\./shared\b|\bshared/(?:design|seeds|hooks)\b"),  # the documents beside the project
    re.compile(r"\bissues?[\s#*>]*#\s*\d+", re.IGNORECASE),  # an issue number, in any case
    re.compile(r"\bIS" + r"SUE\b"),
)
# Files a citation could hide in.
TEXT_SUFFIXES = frozenset({".py", ".md", ".sh", ".toml", ".yaml", ".yml", ".txt", ".cfg", ".ini"})


def text_files(root: Path, paths: Iterable[str]) -> Iterator[Path]:
    """The text files under ``root`` named by ``paths`` (files or directories, missing ones skipped)."""
    for rel in paths:
        path = root / rel
        if path.is_file():
            yield path
        elif path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES)


def foreign_citations(files: Iterable[Path], root: Path) -> list[str]:
    """Every citation of a document outside the repository or of an issue number, as ``file:line: text``."""
    out = []
    for path in files:
        text = path.read_text(errors="replace")
        seen: set[int] = set()
        for pattern in FOREIGN_CITATIONS:
            for match in pattern.finditer(text):
                if match.start() not in seen:
                    seen.add(match.start())
                    line = text.count("\n", 0, match.start()) + 1
                    out.append(f"{path.relative_to(root)}:{line}: {match.group(0)!r}")
    return sorted(out)


_DOC_LINK = re.compile(r"docs/([\w.-]+\.md)#([\w-]+)")
_MD_LINK = re.compile(r"\]\((?:\./)?([\w.-]+\.md)?#([\w-]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    """The anchors of every heading of a Markdown document, and of its explicit ``<a id>`` targets."""
    found = {slug(line.lstrip("#")) for line in markdown.splitlines() if re.match(r"#{1,6} ", line)}
    return found | set(re.findall(r'<a id="([\w-]+)"', markdown))


def broken_anchors(files: Iterable[Path], root: Path, docs: Path) -> list[str]:
    """Citations ``docs/<file>.md#<anchor>`` (anywhere) and links ``(<file>.md#<anchor>)``/``(#<anchor>)`` (in docs/)
    whose document or heading does not exist."""
    cache: dict[str, set[str] | None] = {}

    def has(doc: str, anchor: str) -> bool:
        if doc not in cache:
            path = docs / doc
            cache[doc] = anchors(path.read_text()) if path.is_file() else None
        found = cache[doc]
        return found is not None and anchor in found

    out = []
    for path in files:
        text = path.read_text(errors="replace")
        cited = [(m.start(), m.group(1), m.group(2)) for m in _DOC_LINK.finditer(text)]
        if path.parent == docs:
            cited += [(m.start(), m.group(1) or path.name, m.group(2)) for m in _MD_LINK.finditer(text)]
        for start, doc, anchor in cited:
            if not has(doc, anchor):
                line = text.count("\n", 0, start) + 1
                out.append(f"{path.relative_to(root)}:{line}: docs/{doc}#{anchor}")
    return sorted(out)
