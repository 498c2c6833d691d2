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
    "regcopy.locations": ("aiohttp", "regcopy.registry", "regcopy.client", "regcopy.engine"),
    "regcopy.stores.mirrored": ("aiohttp", "regcopy.registry", "regcopy.client"),
    "regcopy.progress": ("aiohttp", "regcopy.registry", "regcopy.client", "regcopy.engine"),
    "regcopy.singleflight": ("aiohttp", "regcopy."),
    "regcopy.referrer": ("aiohttp", "regcopy.registry", "regcopy.stores", "regcopy.engine", "regcopy.client"),
    "regcopy.artifacts": ("aiohttp", "regcopy.registry", "regcopy.stores.registry", "regcopy.sync", "regcopy.client",
                          "regcopy.cli"),
    "regcopy.fanout": ("aiohttp", "regcopy.registry", "regcopy.stores.registry", "regcopy.sync", "regcopy.client",
                       "regcopy.cli"),
    "regcopy.stores.referrers": ("aiohttp", "regcopy.engine", "regcopy.sync", "regcopy.client"),
    "regcopy.registry.referrers": ("regcopy.stores", "regcopy.engine", "regcopy.sync", "regcopy.client"),
    "regcopy.ledger": ("aiohttp", "regcopy.registry", "regcopy.stores.registry", "regcopy.engine", "regcopy.sync",
                       "regcopy.client"),
}
# Values: the settings type and its resolution see no credentials store, transport, store or run.
RULES["regcopy.settings"] = ("aiohttp", "regcopy.registry", "regcopy.credentials", "regcopy.stores",
                             "regcopy.engine", "regcopy.sync", "regcopy.retention", "regcopy.context", "regcopy.client")
# A run's context sits under the client (which owns the session): never the client, never aiohttp.
RULES["regcopy.context"] = ("aiohttp", "regcopy.client")
# Sync reaches registries only through its backend: no transport, no client, no run context.
_SYNC_BAD = ("aiohttp", "regcopy.registry", "regcopy.stores.registry", "regcopy.client", "regcopy.context")
RULES.update({f"regcopy.sync.{m}": _SYNC_BAD for m in ("model", "plan", "skopeo", "discover", "report", "scheduler")})
# The command line's flags become overrides: settings values, never a transport.
RULES["regcopy._flags"] = ("aiohttp", "regcopy.registry", "regcopy.client", "regcopy.context")
# Retention sits below sync and above the store contract: never a client, sync or HTTP (docs/architecture.md).
_RETENTION_BAD = ("aiohttp", "regcopy.registry", "regcopy.stores.registry", "regcopy.client", "regcopy.sync")
RULES.update({f"regcopy.retention{m}": _RETENTION_BAD for m in ("", ".model", ".parse", ".planner", ".delete", ".run")})
# The plan toolkit every parser shares: below sync and retention.
_TOOLKIT_BAD = ("aiohttp", "regcopy.client", "regcopy.sync", "regcopy.retention", "regcopy.engine")
RULES.update({f"regcopy.{m}": _TOOLKIT_BAD for m in ("planfile", "planaddress", "plansettings", "filters", "semver")})


def test_the_rules_see_every_module() -> None:
    assert "regcopy.engine" in MODULES and "regcopy.registry.transport" in MODULES
    assert all(prefix in MODULES for prefix in RULES), sorted(set(RULES) - set(MODULES))


def test_sync_imports_retention_at_the_top() -> None:
    # delete_extra reuses retention's deletion core; a lazy or TYPE_CHECKING import would hide a cycle.
    tree = ast.parse((SRC / "sync" / "scheduler.py").read_text())
    top = {n.module for n in tree.body if isinstance(n, ast.ImportFrom)}
    assert "regcopy.retention" in top
    assert not any(isinstance(n, ast.If) for n in tree.body), "no TYPE_CHECKING block"


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
