"""Import rules of docs/architecture.md: the engine never sees aiohttp or the registry package, only
registry/ imports aiohttp, nothing imports the CLI (ggcr depcheck_test.go in spirit)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "regcopy"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{alias.name}" for alias in node.names)
    return out


def _module(path: Path) -> str:
    return ".".join(path.relative_to(SRC.parent).with_suffix("").parts).removesuffix(".__init__")


MODULES = {_module(p): _imports(p) for p in sorted(SRC.rglob("*.py"))}

# module prefix -> forbidden import prefixes
RULES = {
    "regcopy.engine": ("aiohttp", "regcopy.registry", "regcopy.stores.registry", "regcopy.client", "regcopy.cli"),
    "regcopy.stores.base": ("aiohttp", "regcopy.registry", "regcopy.client"),
    "regcopy.errors": ("regcopy.",),
    "regcopy.digest": ("aiohttp", "regcopy.manifest", "regcopy.registry", "regcopy.client"),
    "regcopy.reference": ("aiohttp", "regcopy.registry", "regcopy.client"),
    "regcopy.manifest": ("aiohttp", "regcopy.registry", "regcopy.client"),
    "regcopy.credentials": ("aiohttp", "regcopy.registry", "regcopy.client"),
    "regcopy.ecr": ("aiohttp", "regcopy.registry", "regcopy.client", "boto3", "botocore"),  # boto3: lazily
    "regcopy.sync.journal": ("aiohttp", "regcopy.registry", "regcopy.client", "regcopy.engine"),
    "regcopy.sync.endpoints": ("aiohttp", "regcopy.registry", "regcopy.client", "regcopy.engine"),
    "regcopy.stores.mirrored": ("aiohttp", "regcopy.registry", "regcopy.client"),
    "regcopy.progress": ("aiohttp", "regcopy.registry", "regcopy.client", "regcopy.engine"),
    "regcopy.singleflight": ("aiohttp", "regcopy."),
    "regcopy.ledger": ("aiohttp", "regcopy.registry", "regcopy.stores.registry", "regcopy.engine", "regcopy.sync",
                       "regcopy.client"),
}


def test_the_rules_see_every_module() -> None:
    assert "regcopy.engine" in MODULES and "regcopy.registry.transport" in MODULES


@pytest.mark.parametrize("module", sorted(MODULES))
def test_layering(module: str) -> None:
    imports = MODULES[module]
    forbidden = [f for prefix, bad in RULES.items() if module == prefix for f in bad]
    hits = sorted(i for i in imports for f in forbidden if i == f.rstrip(".") or i.startswith(f.rstrip(".") + "."))
    assert not hits, f"{module} must not import {hits}"
    if module != "regcopy.cli" and module != "regcopy.__main__":
        assert not any(i == "regcopy.cli" or i.startswith("regcopy.cli.") for i in imports), f"{module} imports the CLI"
    if not module.startswith(("regcopy.registry", "regcopy.client")):
        assert not any(i == "aiohttp" or i.startswith("aiohttp.") for i in imports), f"{module} uses aiohttp"
