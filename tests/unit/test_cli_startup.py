"""What the command line imports before it does anything: ``regcopy --version``, ``regcopy --help``
and every ``regcopy VERB --help`` load none of aiohttp, rich, yaml, boto3, dramatiq, redis (nor anyio),
and a verb's help loads that verb's module and no other verb's.

Structural, not timed: each case runs in a fresh interpreter and reports ``sys.modules``. Start-up
time itself is measured by benchmarks/bench_startup.py (docs/benchmarks.md).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from regcopy.cli import ALIASES, COMMANDS

HEAVY = ("aiohttp", "rich", "yaml", "boto3", "botocore", "dramatiq", "redis", "anyio", "multidict", "yarl")

_PROBE = """
import json, sys
from regcopy.cli import cli
try:
    cli(sys.argv[1:], prog_name="regcopy")
except SystemExit as exc:
    code = exc.code
else:
    code = 0
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""


def _loaded(*args: str) -> tuple[int, set[str], str]:
    """Run the CLI with ``args`` in a fresh interpreter: exit code, the modules it had loaded, stdout."""
    done = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, timeout=60)
    report = json.loads(done.stderr.strip().splitlines()[-1])
    return report["code"], set(report["modules"]), done.stdout


def _heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY)


def _verb_modules(modules: set[str]) -> set[str]:
    return {m for m in modules if m.startswith("regcopy.cli.") and not m.startswith("regcopy.cli._")}


def test_version_loads_nothing_heavy_and_no_verb() -> None:
    code, modules, out = _loaded("--version")
    assert code == 0 and out.startswith("regcopy, version ")
    assert _heavy(modules) == []
    assert _verb_modules(modules) == set()
    assert not {"regcopy.client", "regcopy.engine", "regcopy.sync"} & modules


def test_help_lists_every_verb_and_loads_nothing_heavy() -> None:
    code, modules, out = _loaded("--help")
    assert code == 0
    listed = {line.split()[0] for line in out.split("Commands:")[1].splitlines() if line.strip()}
    assert listed == set(COMMANDS)  # aliases are not listed twice
    assert _heavy(modules) == []


@pytest.mark.parametrize("verb", sorted({*COMMANDS, *ALIASES}))
def test_verb_help_loads_nothing_heavy_and_only_its_own_module(verb: str) -> None:
    code, modules, out = _loaded(verb, "--help")
    assert code == 0 and f"Usage: regcopy {verb} " in out
    assert _heavy(modules) == []
    own = COMMANDS[ALIASES.get(verb, verb)].split(":")[0]
    assert own in modules
    # A verb module may build on another's options (copy on referrers', sync on scale's), never on more.
    assert len(_verb_modules(modules) - {own}) <= 1


def test_a_subcommand_help_loads_nothing_heavy() -> None:
    code, modules, out = _loaded("report", "merge", "--help")
    assert code == 0 and "Usage: regcopy report merge" in out
    assert _heavy(modules) == []


def test_an_unknown_verb_is_a_usage_error() -> None:
    code, modules, _ = _loaded("frobnicate")
    assert code == 2
    assert _heavy(modules) == []


def test_a_verb_loads_what_it_needs_when_it_runs() -> None:
    # The other side of laziness: running a verb does import the client (here: it fails to parse a
    # reference after loading it, before any network).
    code, modules, _ = _loaded("digest", "UPPER/Case:tag")
    assert code == 2
    assert "regcopy.client" in modules and "aiohttp" in modules
