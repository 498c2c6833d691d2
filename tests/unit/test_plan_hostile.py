"""Hostile plan files: alias bombs, oversize files, huge numbers, bad tagged values, deep nesting.

Every plan front end (:func:`load_plan`, :func:`from_skopeo_yaml`, :func:`load_prune`, and the CLI on
top of them) must turn such a file into a :class:`ConfigError` quickly and with little memory: a
clear one-line error and exit 2, never a traceback, a hang or gigabytes. Property tests feed random
YAML text and random plan-shaped documents with YAML's every feature (anchors, aliases, merge keys,
tags, timestamps, binary, huge numbers) through the real parsers. Time bounds here are hang guards
(generous), not performance assertions.
"""

from __future__ import annotations

import json
import logging
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regcopy import planfile, plansettings
from regcopy.cli import cli
from regcopy.errors import ConfigError
from regcopy.filters import TagFilter, compile_tag_filter
from regcopy.retention import PrunePlan, load_prune, parse_prune
from regcopy.sync import plan as sync_plan
from regcopy.sync import skopeo as sync_skopeo
from regcopy.sync.journal import SyncJournal
from regcopy.sync.model import SyncPlan
from regcopy.sync.plan import load_plan, parse_plan
from regcopy.sync.skopeo import from_skopeo_yaml

HANG_GUARD = 5.0  # seconds; the bombs below took 60-90 s before the loader bounded them
CLI_GUARD = 20.0  # seconds for a whole `python -m regcopy` run (interpreter start and imports included)
RSS_LIMIT_KB = 200 * 1024  # the version bomb peaked at 3 GB


def laughs(width: int = 10, depth: int = 9, prefix: str = "l") -> str:
    """A billion-laughs value in flow style, anchors inline: ``&l8 [&l7 [... ], *l7, ...]`` (width**depth)."""
    text = f"&{prefix}0 [" + ", ".join(["lol"] * width) + "]"
    for i in range(1, depth):
        text = f"&{prefix}{i} [" + ", ".join([text] + [f"*{prefix}{i - 1}"] * (width - 1)) + "]"
    return text


def merges(width: int = 10, depth: int = 9) -> str:
    """The same bomb through ``<<`` merge keys: each level merges the one below ``width`` times."""
    text = "&m0 {" + ", ".join(f"k{j}: 1" for j in range(width)) + "}"
    for i in range(1, depth):
        text = f"&m{i} {{<<: [" + ", ".join([text] + [f"*m{i - 1}"] * (width - 1)) + "]}"
    return text


@dataclass(frozen=True)
class Front:
    """One plan front end: how to load a file, and the CLI arguments that read the same file."""

    name: str
    load: Callable[[Path], object]
    argv: Callable[[Path], list[str]]


SYNC = Front("sync", load_plan, lambda p: ["sync", str(p)])
SKOPEO = Front(
    "skopeo",
    lambda p: from_skopeo_yaml(p, "reg.io/m", scoped=False, all_platforms=True),
    lambda p: ["sync", "--src", "yaml", "--dest", "docker", "--all", str(p), "reg.io/m"],
)
PRUNE = Front("prune", load_prune, lambda p: ["prune", str(p)])
FRONTS = (SYNC, SKOPEO, PRUNE)

BOMBS: list[tuple[Front, str, str]] = [
    (SYNC, "version", f"version: {laughs()}\nsync: []\n"),
    (SYNC, "nested list", f"sync:\n  - {{source: q.io/a/b, target: reg.io/a/b, tags: {{allow: [x, {laughs()}]}}}}\n"),
    (SYNC, "mapping key", f"sync:\n  - ? {laughs()}\n    : x\n"),
    (SYNC, "merge keys", f"sync:\n  - {merges()}\n"),
    (SYNC, "registries", f"registries:\n  reg.io: {{mirrors: {laughs()}}}\nsync: []\n"),
    (SKOPEO, "images", f"quay.io:\n  images:\n    app: {laughs()}\n"),
    (SKOPEO, "registry key", f"? {laughs()}\n: {{images: {{a/b: []}}}}\n"),
    (PRUNE, "protect", f"prune:\n  - {{repository: reg.io/a/b, keep_latest: 1, protect: {laughs()}}}\n"),
    (PRUNE, "version", f"version: {laughs()}\nprune: []\n"),
]


@pytest.fixture
def write(tmp_path: Path) -> Callable[..., Path]:
    def _write(text: str | bytes, name: str = "plan.yaml") -> Path:
        path = tmp_path / name
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        return path

    return _write


def refused(front: Front, path: Path) -> tuple[ConfigError, float]:
    """The error ``front`` raises for ``path`` and the seconds it took."""
    start = time.monotonic()
    with pytest.raises(ConfigError) as info:
        front.load(path)
    return info.value, time.monotonic() - start


def run_cli(args: list[str]) -> tuple[subprocess.CompletedProcess[str], float, int]:
    """``python -m regcopy ARGS`` run by a fresh interpreter that reports the child's wall time and peak RSS
    (KiB): RUSAGE_CHILDREN of this pytest process would also count every earlier child."""
    probe = (
        "import json, resource, subprocess, sys, time\n"
        "t = time.monotonic()\n"
        "p = subprocess.run([sys.executable, '-m', 'regcopy', *sys.argv[1:]], capture_output=True, text=True,"
        " timeout=120)\n"
        "print(json.dumps([p.returncode, p.stdout, p.stderr, time.monotonic() - t,"
        " resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss]))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=180,
                         check=True)
    code, stdout, stderr, seconds, rss = json.loads(out.stdout)
    return subprocess.CompletedProcess(args, code, stdout, stderr), seconds, rss


def assert_usage_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    """Exit 2 with one line on stderr naming the problem, nothing on stdout, no traceback."""
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("regcopy: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]


# ------------------------------------------------------------------------------------------- alias bombs


@pytest.mark.parametrize(("front", "where", "text"), BOMBS, ids=[f"{f.name}-{w}" for f, w, _ in BOMBS])
def test_alias_bombs_are_refused_quickly(write: Callable[..., Path], front: Front, where: str, text: str) -> None:
    path = write(text)
    exc, seconds = refused(front, path)
    assert "aliases expand the document to more than 200000 nodes" in str(exc)
    assert exc.path == str(path) and "line " in str(exc) and "column" in str(exc)
    assert seconds < HANG_GUARD
    assert len(str(exc)) < 300


@pytest.mark.parametrize(
    ("front", "text"),
    [(SYNC, BOMBS[0][2]), (SKOPEO, BOMBS[5][2]), (PRUNE, BOMBS[7][2])],
    ids=["sync-version", "skopeo-images", "prune-protect"],
)
def test_alias_bombs_through_the_cli_exit_2_with_little_memory(
    write: Callable[..., Path], front: Front, text: str
) -> None:
    result, seconds, rss_kb = run_cli(front.argv(write(text)))
    assert_usage_error(result, "aliases expand the document", "the limit for a plan")
    assert seconds < CLI_GUARD
    assert rss_kb < RSS_LIMIT_KB, f"peak RSS {rss_kb} KiB"


def test_a_recursive_alias_is_refused(write: Callable[..., Path]) -> None:
    for text in ("version: &a [*a]\nsync: []\n", "sync:\n  - &e {source: *e}\n"):
        exc, _ = refused(SYNC, write(text))
        assert "recursive" in str(exc)


def test_aliases_of_a_real_plan_still_work(write: Callable[..., Path]) -> None:
    """Anchors for shared settings (300 entries x 23 nodes) stay far below the bound."""
    allow = ", ".join(f"'v{i}\\..*'" for i in range(20))
    lines = [f"defaults: {{tags: &tags {{allow: [{allow}]}}}}", "sync:"]
    lines += [f"  - {{source: quay.io/org/app{i}, target: reg.io/m/app{i}, tags: *tags}}" for i in range(300)]
    plan = load_plan(write("\n".join(lines) + "\n"))
    assert len(plan.entries) == 300
    assert all(len(e.tags.allow) == 20 and e.tags.allow[0] == "v0\\..*" for e in plan.entries)
    merged = write("sync:\n  - &base {source: quay.io/org/a, target: reg.io/m/a, platforms: [linux/amd64]}\n"
                   "  - {<<: *base, source: quay.io/org/b, target: reg.io/m/b}\n", "merge.yaml")
    assert [e.platforms for e in load_plan(merged).entries] == [("linux/amd64",), ("linux/amd64",)]


def test_the_node_bound_is_exact(write: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> None:
    # {sync: [a, a, a]}: the mapping, its key, the list and three items, two of them aliases.
    path = write("sync: [&a a, *a, *a]\n")
    monkeypatch.setattr(planfile, "_MAX_NODES", 6)
    assert "must be a mapping" in str(refused(SYNC, path)[0])  # loaded; the entries are wrong
    monkeypatch.setattr(planfile, "_MAX_NODES", 5)
    assert "aliases expand the document to more than 5 nodes" in str(refused(SYNC, path)[0])
    monkeypatch.setattr(planfile, "_MAX_NODES", 3)
    assert "the document has more than 3 nodes" in str(refused(SYNC, path)[0])


def test_millions_of_small_nodes_are_refused_with_little_memory(write: Callable[..., Path]) -> None:
    """A 4 MiB flow list of two million scalars took 91 s and 1.4 GB before the node bound."""
    size = planfile._MAX_PLAN_BYTES
    path = write("sync: [" + "a," * ((size - 10) // 2) + "a]\n")
    assert path.stat().st_size <= size
    result, seconds, rss_kb = run_cli(["sync", str(path)])
    assert_usage_error(result, "the document has more than 200000 nodes")
    assert seconds < 60
    assert rss_kb < 300 * 1024, f"peak RSS {rss_kb} KiB"


# ------------------------------------------------------------------------------------------ file size


@pytest.mark.parametrize("front", FRONTS, ids=[f.name for f in FRONTS])
def test_an_oversize_plan_is_refused_before_parsing(write: Callable[..., Path], front: Front) -> None:
    path = write(b"# " + b"x" * planfile._MAX_PLAN_BYTES + b"\nsync: []\n")
    exc, seconds = refused(front, path)
    assert str(exc) == f"{path}: the file is larger than 4 MiB, the limit for a plan"
    assert seconds < HANG_GUARD


def test_the_size_bound_is_exact(write: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> None:
    text = "sync: [{source: quay.io/org/app, target: reg.io/m/app}]\n"
    path = write(text)
    monkeypatch.setattr(planfile, "_MAX_PLAN_BYTES", len(text))
    assert len(load_plan(path).entries) == 1
    monkeypatch.setattr(planfile, "_MAX_PLAN_BYTES", len(text) - 1)
    assert "larger than" in str(refused(SYNC, path)[0])


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_an_endless_file_is_refused() -> None:
    exc, seconds = refused(SYNC, Path("/dev/zero"))
    assert "larger than 4 MiB" in str(exc) and seconds < HANG_GUARD


def test_the_cli_refuses_an_oversize_plan(write: Callable[..., Path]) -> None:
    path = write(b"sync: []\n" + b"#" * planfile._MAX_PLAN_BYTES)
    result, _, _ = run_cli(["sync", str(path)])
    assert_usage_error(result, "larger than 4 MiB")


# ------------------------------------------------------------------------------------ numbers and values

HUGE = "9" * 5000


@pytest.mark.parametrize(
    ("front", "text"),
    [
        (SYNC, f"version: {HUGE}\nsync: []\n"),
        (SYNC, f"sync: [{{source: quay.io/a/b, target: reg.io/a/b, tags: {{latest: {HUGE}}}}}]\n"),
        (SYNC, f"registries: {{reg.io: {{requests_per_second: {HUGE}.5}}}}\nsync: []\n"),
        (SYNC, "version: 0x" + "f" * 5000 + "\n"),
        (SYNC, "version: " + ":".join(["59"] * 2000) + "\n"),  # YAML 1.1 base 60
        (SKOPEO, f"quay.io: {{images: {{a/b: [!!int {HUGE}]}}}}\n"),
        (PRUNE, f"prune: [{{repository: reg.io/a/b, keep_latest: {HUGE}}}]\n"),
    ],
)
def test_huge_numbers_are_refused_with_their_position(write: Callable[..., Path], front: Front, text: str) -> None:
    exc, seconds = refused(front, write(text))
    assert "plan refused at line" in str(exc) and "(the limit is 1000)" in str(exc)
    assert seconds < HANG_GUARD


@pytest.mark.parametrize("front", FRONTS, ids=[f.name for f in FRONTS])
def test_a_5000_digit_integer_exits_2_through_the_cli(write: Callable[..., Path], front: Front) -> None:
    """It raised ValueError (int's 4300-digit limit) out of yaml.load: exit 1 and a traceback."""
    text = {"sync": f"version: {HUGE}\nsync: []\n", "prune": f"version: {HUGE}\nprune: []\n",
            "skopeo": f"quay.io: {{images: {{a/b: [!!int {HUGE}]}}}}\n"}[front.name]
    path = write(text)
    result, _, _ = run_cli(front.argv(path))
    assert_usage_error(result, str(path), "a number of 5000 characters")


SECRET = "S3cr3t-Pa55"


@pytest.mark.parametrize(
    ("value", "tag"),
    [
        ("!!int abc", "!!int"), ("!!int ''", "!!int"), ("!!float x", "!!float"), ("!!bool maybe", "!!bool"),
        ("!!timestamp x", "!!timestamp"), ("2001-02-30", "!!timestamp"), ("2001-02-03 04:05:06 +99:00", "!!timestamp"),
        ("!!float " + ":".join(["59"] * 300), "!!float"),  # 60**299 overflows a float
    ],
)
def test_values_yaml_cannot_build_are_yaml_errors(write: Callable[..., Path], value: str, tag: str) -> None:
    """They escaped as ValueError, KeyError, AttributeError, IndexError or OverflowError."""
    for front, text in ((SYNC, f"version: {value}\n"), (PRUNE, f"prune: [{value}]\n"),
                        (SKOPEO, f"quay.io: {{images: {{a/b: [{value}]}}}}\n")):
        if front is SKOPEO and not value.startswith("!!"):
            continue  # skopeo's loader keeps untagged scalars as text
        exc = refused(front, write(text))[0]
        assert "YAML error at line 1, column" in str(exc) and f"not a valid {tag}" in str(exc), str(exc)


def test_a_bad_tagged_value_never_quotes_the_value(write: Callable[..., Path]) -> None:
    text = f"registries:\n  reg.io:\n    credentials: {{username: u, password: !!int {SECRET}}}\nsync: []\n"
    exc = refused(SYNC, write(text))[0]
    assert "line 3" in str(exc) and SECRET not in str(exc)


# ------------------------------------------------------------------------------------------- nesting


@pytest.mark.parametrize("front", FRONTS, ids=[f.name for f in FRONTS])
@pytest.mark.parametrize("opening", ["[", "{a: "])
def test_deep_nesting_is_a_config_error(write: Callable[..., Path], front: Front, opening: str) -> None:
    closing = "]" if opening == "[" else "}"
    path = write("quay.io: " + opening * 3000 + closing * 3000 + "\n")
    exc, seconds = refused(front, path)
    assert str(exc) == f"{path}: YAML nested too deeply" and seconds < HANG_GUARD


def test_deep_nesting_exits_2_through_the_cli(write: Callable[..., Path]) -> None:
    result, _, _ = run_cli(["sync", str(write("sync: " + "[" * 5000 + "]" * 5000 + "\n"))])
    assert_usage_error(result, "YAML nested too deeply")


# ----------------------------------------------------------------------------- bounded error messages

LONG = "x" * 1_000_000


@pytest.mark.parametrize(
    "doc",
    [
        {"version": LONG, "sync": []},
        {"version": [[[["deep"] * 1000] * 1000] * 1000], "sync": []},  # shared lists: a billion leaves
        {"version": -(10**5000), "sync": []},
        {LONG: 1},
        {"sync": [{"source": "quay.io/a/b", "target": "reg.io/a/b", LONG: 1}]},
        {"sync": [{"name": LONG, "source": "quay.io/a/b", "target": "reg.io/a/b"}] * 2},
        {"sync": [{"source": "quay.io/a/b", "target": "reg.io/a/b", "tags": {"latest": -(10**5000)}}]},
        {"sync": [{"source": "quay.io/a/b", "target": "reg.io/a/b", "tags": {"allow": ["(" + LONG]}}]},
        {"sync": [{"source": "quay.io/" + "a" * 500_000 + "-", "target": "reg.io/a/b"}]},
        {"registries": {"reg.io": {"requests_per_second": -(10**5000)}}, "sync": []},
        {"registries": {"reg.io": {"requests_per_second": 10**5000}}, "sync": []},  # OverflowError in isfinite()
        {"registries": {"reg.io": {"credentials": {"helper": "h", "refresh_after": 10**400}}}, "sync": []},
        {"sync": [{"source": "quay.io/a/b", "target": "reg.io/a/b", "type": LONG}]},
    ],
    ids=["long-version", "shared-lists", "huge-int", "long-key", "long-entry-key", "long-name", "huge-latest",
         "long-regex", "long-source", "negative-huge-rps", "huge-rps", "huge-refresh", "long-type"],
)
def test_errors_quote_plan_values_briefly(doc: dict[object, object]) -> None:
    start = time.monotonic()
    with pytest.raises(ConfigError) as info:
        parse_plan(doc, path="p.yaml")
    assert len(str(info.value)) < 1200 and time.monotonic() - start < HANG_GUARD


@pytest.mark.parametrize(
    "rule",
    [{"older_than": "9" * 100_000 + "d"}, {"name": LONG, "keep_latest": 1}, {"keep_latest": -(10**5000)},
     {"keep_latest": 1, "protect": ["(" + LONG]}, {"keep_latest": 1, "order": LONG}],
    ids=["long-duration", "long-name", "huge-keep", "long-protect", "long-order"],
)
def test_prune_errors_quote_values_briefly(rule: dict[str, object]) -> None:
    rules = [{"repository": "reg.io/a/b", **rule}, {"repository": "reg.io/a/c", **rule}]
    with pytest.raises(ConfigError) as info:
        parse_prune({"prune": rules}, "p.yaml")
    assert len(str(info.value)) < 1200


@pytest.mark.parametrize(
    "tags",
    [TagFilter(semver=">=1.0 " + "x" * 100_000), TagFilter(allow=("(" * 100_000,)), TagFilter(latest=-(10**5000)),
     TagFilter(exact=("-" + LONG,))],
)
def test_filter_errors_quote_values_briefly(tags: TagFilter) -> None:
    with pytest.raises(ConfigError) as info:
        compile_tag_filter(tags, entry="e", path="p.yaml")
    assert len(str(info.value)) < 1200


# ---------------------------------------------------------------------------------------------- journal


@pytest.mark.parametrize(
    "header",
    ['{"journal": "regcopy-sync", "version": ' + HUGE + "}", "[" * 100_000 + "]" * 100_000,
     '{"journal": "regcopy-sync", "version": "' + LONG + '"}'],
    ids=["huge-int", "deep", "long-version"],
)
def test_a_hostile_journal_header_is_a_config_error(tmp_path: Path, header: str) -> None:
    path = tmp_path / "run.state"
    path.write_text(header + "\n")
    with pytest.raises(ConfigError) as info:
        SyncJournal.open(path)
    assert len(str(info.value)) < len(str(path)) + 200
    assert path.read_text() == header + "\n"  # refused, never overwritten


def test_hostile_journal_records_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "run.state"
    image = {"source": "quay.io/a/b:v1", "target": "reg.io/a/b:v1", "source_digest": None, "target_digest": None}
    lines = [json.dumps({"journal": "regcopy-sync", "version": 1}), "[" * 100_000 + "]" * 100_000,
             '{"image": {"source": "a", "target": ' + HUGE + "}}", json.dumps({"image": image})]
    path.write_text("\n".join(lines) + "\n")
    with SyncJournal.open(path) as journal:
        assert journal.resumed and journal.finished("quay.io/a/b:v1", "reg.io/a/b:v1") == image
        assert journal.finished("a", HUGE) is None


# ------------------------------------------------------------------------------------------- properties


@dataclass(frozen=True)
class Seq:
    items: tuple[object, ...]


@dataclass(frozen=True)
class Map:
    pairs: tuple[tuple[object, object], ...]


_WELL_FORMED = st.sampled_from([
    # plan words
    "quay.io/org/app", "reg.io/m/app", "reg.io:5000", "quay.io", "linux/amd64", "v1", "'1.10'", "1.10", "https",
    "insecure", "namespace", "registry", "repository", "oci:/tmp/x", "12h", "30d", "'>=1.2'", "'(?i)a'", "'['",
    "sha256:" + "0" * 64, "docker.io", "busybox", "semver", "created", "a/b", "'*'", "1", "5",
    # YAML's implicit types
    "null", "~", "''", "true", "yes", "on", "0x1F", "0o17", "017", "1_000", "1:30", "-1", "0", "1e400", ".inf",
    "-.nan", "2001-12-14", "2001-12-14t21:59:43.10-05:00", "!!binary aGVsbG8=", "!!str 1", "!!set {a, b}",
    "!!omap [{a: 1}]", "!!pairs [{a: 1}, {a: 2}]", "!<tag:yaml.org,2002:int> 5",
])
_ILL_FORMED = st.sampled_from([
    "2001-02-30", "2001-12-14 21:59:43 +99:00", "1999-13-01", HUGE, "0x" + "f" * 2000, "1." + "0" * 1200,
    "'" + "x" * 3000 + "'", "!!binary '@@'", "!!int x", "!!int ''", "!!float x", "!!bool x", "!!null x",
    "!!timestamp x", "!!omap [a]", "!!python/name:os.system", "!custom x", "!!merge x", "!!value x",
])
# One leaf in eight is ill-formed, so that most documents also reach the plan's validation.
_LEAVES = st.integers(0, 7).flatmap(
    lambda n: _ILL_FORMED if n == 3 else (  # not 0: hypothesis favours it
        _WELL_FORMED
        | st.integers(-(2**70), 2**70).map(str)
        | st.floats().map(repr)
        | st.text(max_size=12).map(json.dumps)  # a double-quoted YAML scalar with JSON's escapes
    )
)
_PLAN_KEYS = st.sampled_from(sorted({
    *sync_plan._TOP_KEYS, *sync_plan._ENTRY_KEYS, *sync_plan._TAG_KEYS, *plansettings._REGISTRY_KEYS,
    *plansettings._CREDENTIAL_KEYS, *sync_skopeo._SKOPEO_KEYS, *sync_skopeo._SKOPEO_CREDENTIAL_KEYS, "repository",
    "namespace", "keep_latest", "older_than",
    "order", "protect", "cap", "<<", "quay.io", "reg.io:5000", "a/b",
}))


def _tree(keys: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.recursive(
        _LEAVES,
        lambda inner: (
            st.lists(inner, max_size=4).map(lambda xs: Seq(tuple(xs)))
            | st.lists(st.tuples(keys | inner, inner), max_size=5).map(lambda ps: Map(tuple(ps)))
        ),
        max_leaves=30,
    )


def _near(shape: dict[str, st.SearchStrategy[object]], required: tuple[str, ...] = ()) -> st.SearchStrategy[object]:
    """A mapping with the given keys (optional unless ``required``) plus a stray random pair now and then."""
    pairs = [
        st.tuples(st.just(k), v).map(lambda p: (p,)) | (st.nothing() if k in required else st.just(()))
        for k, v in shape.items()
    ]
    stray = st.just(()) | st.tuples(st.sampled_from(["x", "<<"]) | _LEAVES, _tree(_PLAN_KEYS)).map(lambda p: (p,))
    return st.tuples(*pairs, stray).map(lambda groups: Map(tuple(p for g in groups for p in g)))


_ANY = _tree(_PLAN_KEYS)
_REPO = st.sampled_from(["quay.io/org/app", "reg.io/m/app", "reg.io:5000/a/b", "quay.io/org", "reg.io", "oci:/tmp/x"])
_WORDS = st.lists(st.sampled_from(["v1", "'v.*'", "'^1\\.'", "latest", "linux/amd64", "linux/arm64/v8"]) | _LEAVES,
                  max_size=3).map(lambda xs: Seq(tuple(xs)))
_FILTER = _near({"allow": _WORDS, "deny": _WORDS, "semver": st.just("'>=1.2'") | _LEAVES, "latest": _LEAVES,
                 "exact": _WORDS, "digests": _WORDS})
_ENTRY = _near({"name": _LEAVES, "source": _REPO | _ANY, "target": _REPO | _ANY, "type": _LEAVES, "tags": _FILTER,
                "platforms": _WORDS, "repos": _FILTER, "delete_extra": _LEAVES | _FILTER},
               required=("source", "target"))
_RULE = _near({"name": _LEAVES, "repository": _REPO | _ANY, "namespace": _REPO | _ANY, "keep_latest": _LEAVES,
               "older_than": st.just("30d") | _LEAVES, "order": _LEAVES, "protect": _WORDS, "cap": _LEAVES,
               "repos": _FILTER})
_REGISTRIES = st.lists(
    st.tuples(_REPO | _LEAVES, _near({"tls": _LEAVES, "max_concurrency": _LEAVES, "requests_per_second": _LEAVES,
                                      "mirrors": _WORDS, "credentials": _ANY})),
    max_size=2,
).map(lambda ps: Map(tuple(ps)))
_VERSION = st.just("1") | _LEAVES
_PLAN_DOCS = _near({"version": _VERSION, "registries": _REGISTRIES, "defaults": _near({"tags": _FILTER}),
                    "sync": st.lists(_ENTRY, max_size=3).map(lambda xs: Seq(tuple(xs)))}, required=("sync",))
_PRUNE_DOCS = _near({"version": _VERSION, "registries": _REGISTRIES,
                     "prune": st.lists(_RULE, max_size=3).map(lambda xs: Seq(tuple(xs)))}, required=("prune",))
_IMAGES = st.lists(st.tuples(st.sampled_from(["a/b", "app", "org/app"]) | _LEAVES, _WORDS | _LEAVES), max_size=2)
_SKOPEO_DOCS = st.lists(
    st.tuples(
        _REPO | _LEAVES,
        _near({"images": _IMAGES.map(lambda ps: Map(tuple(ps))), "images-by-tag-regex": _ANY,
               "images-by-semver": _ANY, "tls-verify": _LEAVES, "credentials": _ANY, "cert-dir": _LEAVES}),
    ),
    max_size=3,
).map(lambda ps: Map(tuple(ps)))


class _Emitter:
    """Writes a document tree as flow-style YAML, putting anchors on random nodes and, in place of others,
    aliases: to an earlier anchor, to one still open (a recursive structure) or to none (undefined).

    Driven by a seeded ``random.Random``: hypothesis' own randoms mostly answer 0, an anchor everywhere.
    """

    def __init__(self, rnd: random.Random) -> None:
        self.rnd = rnd
        self.done: list[str] = []
        self.open: list[str] = []

    def emit(self, node: object, *, key: bool = False) -> str:
        roll = self.rnd.random()
        if key:
            roll = 0.2 + roll * 0.8 if roll > 0.02 else roll  # an alias for a key mostly duplicates one
        if roll < 0.08 and self.done:
            return "*" + self.rnd.choice(self.done)
        if 0.08 <= roll < 0.085 and self.open:
            return "*" + self.rnd.choice(self.open)
        if 0.085 <= roll < 0.087:
            return "*undefined"
        if roll > 0.2:
            return self._body(node)
        anchor = f"a{len(self.done) + len(self.open)}"
        self.open.append(anchor)
        text = self._body(node)
        self.done.append(self.open.pop())
        return f"&{anchor} {text}"

    def _body(self, node: object) -> str:
        if isinstance(node, Seq):
            return "[" + ", ".join(self.emit(x) for x in node.items) + "]"
        if isinstance(node, Map):
            # '? ' makes any node a key, collections included; ' : ' stays valid after an alias key.
            return "{" + ", ".join(f"? {self.emit(k, key=True)} : {self.emit(v)}" for k, v in node.pairs) + "}"
        return str(node)


def _accepts(front: Front, path: Path) -> None:
    """Only a ConfigError with a bounded message, or a plan, may come out; and quickly."""
    start = time.monotonic()
    try:
        result = front.load(path)
    except ConfigError as exc:
        assert str(exc) and len(str(exc)) < 1500, str(exc)[:3000]
    else:
        assert isinstance(result, SyncPlan | PrunePlan)
    assert time.monotonic() - start < HANG_GUARD


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("hostile") / "plan.yaml"


_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(doc=_PLAN_DOCS, seed=st.integers(0, 2**32))
def test_random_plan_documents_give_plans_or_config_errors(scratch: Path, doc: object, seed: int) -> None:
    scratch.write_text(_Emitter(random.Random(seed)).emit(doc) + "\n")
    _accepts(SYNC, scratch)
    _accepts(PRUNE, scratch)


@_SETTINGS
@given(doc=_PRUNE_DOCS, seed=st.integers(0, 2**32))
def test_random_prune_documents_give_plans_or_config_errors(scratch: Path, doc: object, seed: int) -> None:
    scratch.write_text(_Emitter(random.Random(seed)).emit(doc) + "\n")
    _accepts(PRUNE, scratch)


@_SETTINGS
@given(doc=_SKOPEO_DOCS, seed=st.integers(0, 2**32))
def test_random_skopeo_documents_give_plans_or_config_errors(scratch: Path, doc: object, seed: int) -> None:
    scratch.write_text(_Emitter(random.Random(seed)).emit(doc) + "\n")
    _accepts(SKOPEO, scratch)


_VALID_PLAN = """\
version: 1
registries:
  reg.io:
    tls: https
    credentials: {username: u, password: p}
defaults:
  tags: &t {allow: ['v.*'], latest: 3}
sync:
  - name: app
    source: quay.io/org/app
    target: reg.io/m/app
    tags: *t
    platforms: [linux/amd64]
  - {<<: {type: namespace}, source: quay.io/org, target: reg.io/m, repos: {deny: [tmp]}}
prune:
  - {repository: reg.io/m/app, keep_latest: 5, protect: ['^v1$'], older_than: 30d}
"""
_SNIPPETS = st.sampled_from([
    "&x ", "*x", "*t", "<<: ", "!!int ", "!!binary ", "!!timestamp ", "? ", ": ", "- ", "[", "]", "{", "}", ",",
    "'", '"', "#", "\n", "\t", "  ", "|\n", ">-\n", "%YAML 1.1\n", "---\n", "...\n", "\\", "\x00", "\ufeff",
    HUGE, "2001-02-30", "1e999", "~", "!!python/object:os.system ",
]) | st.text(max_size=4)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 6), _SNIPPETS), min_size=1, max_size=6))
def test_mutated_plans_give_plans_or_config_errors(scratch: Path, edits: list[tuple[float, int, str]]) -> None:
    text = _VALID_PLAN
    for where, cut, snippet in edits:
        at = int(where * len(text))
        text = text[:at] + snippet + text[at + cut :]
    scratch.write_text(text, encoding="utf-8", errors="surrogatepass")
    for front in FRONTS:
        _accepts(front, scratch)


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=200) | st.text(alphabet="[]{}:,&*!?-|>'\"#%@ \n\tab01.~<", max_size=80).map(str.encode))
def test_random_yaml_bytes_give_plans_or_config_errors(scratch: Path, raw: bytes) -> None:
    scratch.write_bytes(raw)
    for front in FRONTS:
        _accepts(front, scratch)


@pytest.fixture(scope="module")
def cli_logging() -> Iterator[None]:
    """The CLI points the regcopy logger at CliRunner's stderr, which is closed after each run: restore it."""
    logger = logging.getLogger("regcopy")
    handlers, level = list(logger.handlers), logger.level
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=_PLAN_DOCS, seed=st.integers(0, 2**32))
def test_the_cli_turns_every_plan_error_into_exit_2(
    scratch: Path, cli_logging: None, doc: object, seed: int
) -> None:
    """Invalid documents only (a valid plan would start a sync): the CLI prints the very ConfigError, one line."""
    scratch.write_text(_Emitter(random.Random(seed)).emit(doc) + "\n")
    for front in (SYNC, PRUNE):
        try:
            front.load(scratch)
        except ConfigError as exc:
            result = CliRunner().invoke(cli, front.argv(scratch))
            assert result.exit_code == 2, (result.output, result.exception)
            # Lone surrogates (a YAML "\ud800" escape) reach stderr backslash-escaped, as on a real terminal.
            assert result.stderr == f"regcopy: {exc}\n".encode(errors="backslashreplace").decode()
            assert result.stdout == ""
