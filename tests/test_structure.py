"""The rules of docs/architecture.md#rules-the-tree-keeps on the real tree, and the checker
(tests/structure.py) failing on each violation planted in a temporary package.

Tree rules: no private import outside its own subpackage, no import cycle (lazy and type-only imports
included), no module over 600 lines, no more functions over 40 lines than recorded, no citation of a
document outside the repository or of an issue number, no cited anchor that does not exist.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from structure import (
    broken_anchors,
    cycle_edges,
    cycles,
    foreign_citations,
    import_graph,
    layer_violations,
    library_violations,
    line_count,
    long_functions,
    parse_layers,
    private_imports,
    text_files,
    unassigned,
)

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "regcopy"
KNOWN, GRAPH = import_graph(SRC)

MAX_MODULE_LINES = 600
FUNCTION_LIMIT = 40
# Functions over FUNCTION_LIMIT lines today. Lower it when you shorten one; never raise it.
LONG_FUNCTION_CEILING = 4
SELF_CONTAINED = ("src", "tests", "docs", "examples", "benchmarks", "scripts", "README.md")


# --- the tree --------------------------------------------------------------------------------------


def test_no_private_import_outside_its_own_subpackage() -> None:
    found = private_imports(GRAPH, KNOWN, "regcopy")
    assert not found, "\n".join(found)


def test_no_import_cycle_lazy_or_type_only_included() -> None:
    found = cycles(GRAPH, KNOWN)
    assert not found, "\n".join(e for c in found for e in cycle_edges(c, GRAPH))


def test_no_module_over_600_lines() -> None:
    sizes = {name: line_count(m.path) for name, m in KNOWN.items()}
    over = {name: n for name, n in sizes.items() if n > MAX_MODULE_LINES}
    assert not over
    assert sum(n <= 400 for n in sizes.values()) > len(sizes) / 2, "most modules stay under 400 lines"


def test_long_functions_never_grow_in_number() -> None:
    found = long_functions(KNOWN, FUNCTION_LIMIT)
    assert len(found) <= LONG_FUNCTION_CEILING, "\n".join(f"{where}: {n} lines" for where, n in found)


def test_the_project_cites_nothing_outside_it() -> None:
    found = foreign_citations(text_files(ROOT, SELF_CONTAINED), ROOT)
    assert not found, "\n".join(found)


def test_cited_doc_anchors_exist() -> None:
    files = list(text_files(ROOT, SELF_CONTAINED))
    assert any(p.name == "protocol.md" for p in files)
    found = broken_anchors(files, ROOT, ROOT / "docs")
    assert not found, "\n".join(found)


# --- the checker, on planted violations ------------------------------------------------------------

TABLE = """\
## Layers

| layer | modules | may import | libraries | owns |
|---|---|---|---|---|
| top | `top.py`, `user.py` | `low` | `click` | the top |
| low | `__init__.py`, `low.py`, `sub/__init__.py`, `sub/_hidden.py`, `sub/peer.py` | — | — | the bottom |
"""


def _package(root: Path, files: dict[str, str]) -> Path:
    """A package ``pkg`` under ``root`` with these modules (paths relative to it) and sources."""
    pkg = root / "pkg"
    for rel, source in {"__init__.py": "", "sub/__init__.py": "", **files}.items():
        path = pkg / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    return pkg


CLEAN = {
    "top.py": "import click\nfrom pkg import low\nfrom pkg.sub import peer\n",
    "user.py": "from pkg.top import *\n",
    "low.py": "import os\nimport anyio\n\nVALUE = 1\n",
    "sub/_hidden.py": "SECRET = 1\n",
    "sub/peer.py": "from pkg.sub._hidden import SECRET\nfrom . import _hidden\nfrom ._hidden import SECRET as S\n",
}


def _check(tmp_path: Path, files: dict[str, str]) -> dict[str, list[str]]:
    pkg = _package(tmp_path, {**CLEAN, **files})
    known, graph = import_graph(pkg)
    layers = parse_layers(TABLE, "pkg")
    return {
        "unassigned": unassigned(layers, known),
        "upward": layer_violations(layers, graph, known),
        "libraries": library_violations(layers, graph, "pkg"),
        "private": private_imports(graph, known, "pkg"),
        "cycles": [" ".join(c) for c in cycles(graph, known)],
    }


def test_checker_passes_a_clean_package(tmp_path: Path) -> None:
    # Private names within sub/ (absolute and relative imports alike) are allowed; nothing else is found.
    assert _check(tmp_path, {}) == {"unassigned": [], "upward": [], "libraries": [], "private": [], "cycles": []}


@pytest.mark.parametrize("source", [
    "from pkg import top\n",
    "from pkg.top import thing\n",
    "import pkg.top\n",
    "def f():\n    from pkg import top\n",
    "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.top import thing\n",
])
def test_checker_fails_an_upward_import(tmp_path: Path, source: str) -> None:
    found = _check(tmp_path, {"low.py": source})
    assert len(found["upward"]) == 1
    assert "pkg.low:" in found["upward"][0] and "layer 'low' may not import layer 'top'" in found["upward"][0]


def test_checker_fails_a_module_missing_from_the_table(tmp_path: Path) -> None:
    assert _check(tmp_path, {"stray.py": ""})["unassigned"] == ["pkg.stray"]


def test_checker_fails_a_library_outside_its_layers(tmp_path: Path) -> None:
    found = _check(tmp_path, {"low.py": "def f():\n    import click.core\n"})["libraries"]
    assert len(found) == 1 and "layer 'low' may not use click" in found[0]


@pytest.mark.parametrize(("rel", "source"), [
    ("top.py", "from pkg.sub._hidden import SECRET\n"),  # a name of a private module of a subpackage
    ("top.py", "from pkg.sub import _hidden\n"),  # the private module itself
    ("top.py", "import pkg.sub._hidden\n"),
    ("top.py", "def f():\n    from pkg.sub._hidden import SECRET\n"),  # lazily
    ("top.py", "from pkg.low import _private_name\n"),  # top level: no one's subpackage
    ("low.py", "from pkg.sub.peer import _private_name\n"),  # the package above sub/ is not sub/
])
def test_checker_fails_a_private_import(tmp_path: Path, rel: str, source: str) -> None:
    found = _check(tmp_path, {rel: source})["private"]
    assert len(found) == 1 and "private outside its own subpackage" in found[0]


def test_checker_fails_a_lazy_cycle(tmp_path: Path) -> None:
    found = _check(tmp_path, {"low.py": "def later():\n    from pkg import user\n"})
    assert found["cycles"] == ["pkg.low pkg.top pkg.user"]


def test_checker_fails_a_type_checking_cycle(tmp_path: Path) -> None:
    source = "from __future__ import annotations\nimport typing\nif typing.TYPE_CHECKING:\n    from pkg.top import T\n"
    found = _check(tmp_path, {"low.py": source})
    assert found["cycles"] == ["pkg.low pkg.top"]
    pkg_graph = import_graph(tmp_path / "pkg")[1]
    assert any("(type)" in edge for edge in cycle_edges(["pkg.low", "pkg.top"], pkg_graph))


def test_checker_measures_functions(tmp_path: Path) -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(39))
    method = "".join(f"        y{i} = {i}\n" for i in range(39))
    source = f"def short():\n{body}\n\nclass C:\n    async def long(self):\n{method}"
    pkg = _package(tmp_path, {"f.py": source})
    known, _ = import_graph(pkg)
    assert long_functions(known, 40) == []  # 40 lines each: not over
    (pkg / "f.py").write_text(f"{source}        pass\n")
    assert long_functions(known, 40) == [("pkg.f:44 long", 41)]


def test_checker_fails_foreign_citations(tmp_path: Path) -> None:
    outside = "PROTO" + "COL"
    planted = {
        "a.py": f"# see {outside} \u00a72.1\n",
        "b.md": f"as {outside}\n    # \u00a74 says\n",  # split over a line break
        "c.py": "'''fixed by " + "IS" + "SUE #6 item 2'''\n",
        "d.md": "long runs (" + "iss" + "ue #8)\n",
        "e.md": "[design](../" + "sha" + "red/design/X.md)\n",
        "f.py": "# Buildkit's rule; see ../" + "sha" + "red/seeds\n",
        "fine.py": "# distribution spec, Pushing blobs; docs/protocol.md#upload-sessions; distribution#3141\n",
    }
    for name, text in planted.items():
        (tmp_path / name).write_text(text)
    found = foreign_citations(text_files(tmp_path, list(planted)), tmp_path)
    assert sorted(line.split(":")[0] for line in found) == ["a.py", "b.md", "c.py", "d.md", "e.md", "f.py"]


def test_checker_fails_a_broken_anchor(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "p.md").write_text("# P\n\n## Upload sessions\n\n### `Range: 0-0`\n\nsee [below](#upload-sessions)"
                               " and [gone](#nowhere)\n")
    d = "docs/"  # spelled apart, so that this file cites no missing anchor itself
    (tmp_path / "m.py").write_text(f"# {d}p.md#upload-sessions {d}p.md#range-0-0 {d}p.md#gone {d}q.md#x\n")
    found = broken_anchors(text_files(tmp_path, ["docs", "m.py"]), tmp_path, docs)
    assert found == [f"{d}p.md:7: {d}p.md#nowhere", f"m.py:1: {d}p.md#gone", f"m.py:1: {d}q.md#x"]
