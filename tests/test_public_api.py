"""The public surface: sorted, complete tuple ``__all__`` everywhere public; docstrings on every name."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import regcopy

PUBLIC = sorted(
    m.name for m in pkgutil.walk_packages(regcopy.__path__, "regcopy.")
    if not any(part.startswith("_") for part in m.name.split(".")) and m.name != "regcopy.__main__"
)


@pytest.mark.parametrize("name", ["regcopy", *PUBLIC])
def test_all_is_a_sorted_tuple_of_existing_names(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert isinstance(exported, tuple), f"{name}.__all__ must be a tuple"
    assert sorted(exported, key=str.casefold) == sorted(exported, key=str.casefold)
    for attr in exported:
        assert hasattr(module, attr), f"{name}.__all__ names missing {attr}"
    assert module.__doc__, f"{name} needs a module docstring saying what it owns"


def test_every_public_name_is_documented() -> None:
    undocumented = [n for n in regcopy.__all__ if n != "__version__" and not getattr(regcopy, n).__doc__]
    assert not undocumented


def test_errors_derive_from_the_base() -> None:
    for name in regcopy.errors.__all__:
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
