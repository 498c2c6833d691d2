"""The layers of docs/architecture.md#layers, read from its table, hold for every module of src/regcopy.

The table is the one allow-list: which layer each module is in, which layers and outside libraries each
layer may import (go-containerregistry's depcheck_test.go in spirit). Imports inside functions and
under ``TYPE_CHECKING`` count like the others.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from structure import (
    import_graph,
    internal,
    layer_violations,
    library_violations,
    parse_layers,
    stale,
    unassigned,
    upward_allowances,
)

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "regcopy"
LAYERS = parse_layers((ROOT / "docs" / "architecture.md").read_text(), "regcopy")
KNOWN, GRAPH = import_graph(SRC)


def test_every_module_is_in_a_layer() -> None:
    assert len(KNOWN) > 50
    assert not unassigned(LAYERS, KNOWN), "add these modules to the layers table of docs/architecture.md"


def test_the_table_lists_only_modules_that_exist() -> None:
    assert not stale(LAYERS, KNOWN)


def test_the_table_only_points_down() -> None:
    assert LAYERS.order[0] == "cli" and LAYERS.order[-1] == "errors"
    assert LAYERS.may_import["errors"] == frozenset({"errors"})
    assert not upward_allowances(LAYERS)


@pytest.mark.parametrize("module", sorted(KNOWN))
def test_layering(module: str) -> None:
    imports = {module: GRAPH[module]}
    upward = layer_violations(LAYERS, imports, KNOWN)
    assert not upward, "\n".join(upward)
    libraries = library_violations(LAYERS, imports, "regcopy")
    assert not libraries, "\n".join(libraries)


def test_nothing_imports_the_cli() -> None:
    users = {i.importer for imps in GRAPH.values() for i in internal(imps, KNOWN) if i.target == "regcopy.cli"}
    assert users == {"regcopy.__main__"}


def test_the_engine_sees_stores_only_through_the_contract() -> None:
    targets = {i.target for i in internal(GRAPH["regcopy.engine"], KNOWN)}
    assert "regcopy.stores.base" in targets
    assert not {t for t in targets if t.startswith("regcopy.stores.") and t != "regcopy.stores.base"}
    assert not {t for t in targets if t.startswith(("regcopy.registry", "regcopy.sync", "regcopy.client"))}


def test_sync_imports_retention_at_the_top() -> None:
    # delete_extra reuses retention's deletion core; a lazy or TYPE_CHECKING import would hide a cycle.
    tree = ast.parse((SRC / "sync" / "scheduler.py").read_text())
    top = {n.module for n in tree.body if isinstance(n, ast.ImportFrom)}
    assert "regcopy.retention" in top
    assert not any(isinstance(n, ast.If) for n in tree.body), "no TYPE_CHECKING block"
_ENGINES = ("dramatiq", "redis")
# The scale-out modules that must work without the regcopy[scale] extra: the CLI imports them (or their
# callers) for every command, and shard selection and report merging need no queue.
_ENGINE_FREE = ("regcopy.scale", "regcopy.scale.units", "regcopy.scale.report_merge", "regcopy.scale.static")


@pytest.mark.parametrize("module", sorted(KNOWN))
def test_optional_engines_stay_in_scale(module: str) -> None:
    # dramatiq and redis are the regcopy[scale] extra: the core library never imports them, and the
    # CLI reaches them only through regcopy.scale's lazy imports (so `regcopy --help` needs neither).
    engines = sorted({i.target for i in GRAPH[module] if i.target.split(".")[0] in _ENGINES})
    allowed = module.startswith("regcopy.scale.") and module not in _ENGINE_FREE
    assert not engines or allowed, f"{module} imports {engines}"
