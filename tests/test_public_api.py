"""The public surface: a sorted, complete tuple ``__all__`` in every public module; docstrings on every name.

*Public module*: every module of the package whose dotted name has no component starting with ``_``
(``regcopy.__main__`` aside). *Sorted*: in the order of ruff's RUF022 (isort-style: SCREAMING_CASE
names, then CamelCase ones, then the rest, each group in natural order), which ruff also enforces.
*Complete*: every public name the module itself binds at its top level (``def``, ``class``,
assignment, annotated assignment, also inside a top-level ``if``/``try``) is in ``__all__``, except a
module's logger (bound to ``logging.getLogger(...)``) and type variables (``TypeVar(...)``,
``ParamSpec(...)``): they are the module's machinery, not its API. A name the module only imports may
be listed (a re-export) but need not be.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

import regcopy

PUBLIC = sorted(
    m.name for m in pkgutil.walk_packages(regcopy.__path__, "regcopy.")
    if not any(part.startswith("_") for part in m.name.split(".")) and m.name != "regcopy.__main__"
)
_MACHINERY = {"getLogger", "TypeVar", "ParamSpec", "TypeVarTuple"}


def ruf022_key(name: str) -> tuple[int, list[int | str]]:
    """RUF022's isort-style order: constants, then classes, then the rest; natural order within each."""
    if len(name) > 1 and name.upper() == name and any(c.isalpha() for c in name):
        group = 0
    elif name[:1].isupper():
        group = 1
    else:
        group = 2
    return group, [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _bound(body: Iterable[ast.stmt]) -> Iterator[tuple[str, ast.expr | None]]:
    """Names bound at the top level of ``body``, with the value bound (None for def and class)."""
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            yield node.name, None
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                yield from ((n.id, node.value) for n in ast.walk(target) if isinstance(n, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            yield node.target.id, node.value
        elif isinstance(node, ast.If | ast.Try):
            yield from _bound([*node.body, *node.orelse, *getattr(node, "finalbody", [])])
            for handler in getattr(node, "handlers", []):
                yield from _bound(handler.body)


def _machinery(value: ast.expr | None) -> bool:
    if not isinstance(value, ast.Call):
        return False
    func = value.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    return name in _MACHINERY


def missing_from_all(source: str, exported: Iterable[str]) -> list[str]:
    """Public names ``source`` binds at its top level that ``exported`` leaves out (see the module doc)."""
    names = {name for name, value in _bound(ast.parse(source).body)
             if not name.startswith("_") and not _machinery(value)}
    return sorted(names - set(exported))


@pytest.mark.parametrize("name", ["regcopy", *PUBLIC])
def test_all_is_a_sorted_complete_tuple_of_existing_names(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert isinstance(exported, tuple), f"{name}.__all__ must be a tuple"
    assert list(exported) == sorted(exported, key=ruf022_key), f"{name}.__all__ is not in RUF022 order"
    assert len(set(exported)) == len(exported), f"{name}.__all__ lists a name twice"
    for attr in exported:
        assert hasattr(module, attr), f"{name}.__all__ names missing {attr}"
    assert module.__file__ is not None
    missing = missing_from_all(Path(module.__file__).read_text(), exported)
    assert not missing, f"{name} defines public names its __all__ leaves out: {missing}"
    assert module.__doc__, f"{name} needs a module docstring saying what it owns"


def test_the_order_is_ruff_s() -> None:
    ordered = ["SCHEME_MODES", "USER_AGENT", "V2", "X509", "PingResult", "Reply", "Z", "a_B", "ab", "read2", "read10"]
    shuffled = [ordered[i] for i in (5, 0, 10, 3, 8, 1, 9, 2, 7, 4, 6)]
    assert sorted(shuffled, key=ruf022_key) == ordered
    assert sorted(["b", "A"], key=ruf022_key) == ["A", "b"]


def test_completeness_sees_what_a_module_binds() -> None:
    source = """
import logging
from typing import TypeVar
from os import path
log = logging.getLogger(__name__)
T = TypeVar("T")
LIMIT: int = 3
Alias = dict[str, int]
_private = 1
a, (b, c) = 1, (2, 3)
def public(): pass
class Thing: pass
if True:
    def maybe(): pass
try:
    import json
    FAST = True
except ImportError:
    FAST = False
"""
    assert missing_from_all(source, ["public"]) == ["Alias", "FAST", "LIMIT", "Thing", "a", "b", "c", "maybe"]
    assert missing_from_all(source, ["Alias", "FAST", "LIMIT", "Thing", "a", "b", "c", "maybe", "public"]) == []


def test_every_public_name_is_documented() -> None:
    undocumented = [n for n in regcopy.__all__ if n != "__version__" and not getattr(regcopy, n).__doc__]
    assert not undocumented


def test_errors_derive_from_the_base() -> None:
    # Every class regcopy.errors exports is an error; its one function is the redaction all their texts use.
    classes = [name for name in regcopy.errors.__all__ if isinstance(getattr(regcopy.errors, name), type)]
    assert set(regcopy.errors.__all__) - set(classes) == {"redact"}
    for name in classes:
        assert issubclass(getattr(regcopy.errors, name), regcopy.RegcopyError)
    assert issubclass(regcopy.NotFound, LookupError)
    assert issubclass(regcopy.RegistryTimeout, TimeoutError)
    assert issubclass(regcopy.InvalidReference, ValueError)


def test_prune_is_public() -> None:
    # `regcopy prune` and sync's delete_extra build on these; the planner and targets live in regcopy.retention.
    for name in ("PrunePlan", "PruneReport", "PruneRule", "delete_tags", "load_prune", "run_prune"):
        assert name in regcopy.__all__
    assert regcopy.run_prune is regcopy.retention.run_prune


def test_ecr_provider_is_public_and_boto3_stays_optional() -> None:
    # boto3 is the optional `regcopy[ecr]` extra: importing regcopy (and its ECR provider) must not need it.
    import subprocess
    import sys

    code = "import sys, regcopy; assert regcopy.EcrCredentials; assert 'boto3' not in sys.modules, 'boto3'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert regcopy.EcrCredentials is regcopy.ecr.EcrCredentials
