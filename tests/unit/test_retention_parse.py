"""Tests for :mod:`regcopy.retention.parse`: prune plans, durations and the ``prune:`` section of a sync plan.

Parser errors must be ConfigErrors naming the file, the rule and the key; property tests feed it
arbitrary YAML-able data.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from retention_cases import REPO, doc, scope

from regcopy.errors import ConfigError
from regcopy.filters import RepoFilter
from regcopy.retention import (
    PrunePlan,
    PruneRule,
    load_prune,
    parse_duration,
    parse_prune,
)
from regcopy.retention import parse as retention_parse
from regcopy.settings import Overrides

# ============================================================================================ durations


@pytest.mark.parametrize(("text", "expected"), [
    ("30d", timedelta(days=30)), ("12h", timedelta(hours=12)), ("2w", timedelta(weeks=2)),
    ("90m", timedelta(minutes=90)), ("45s", timedelta(seconds=45)), ("1w3d", timedelta(days=10)),
])
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "30", "d", "30x", "-1d", "1.5d", "0d", "0h0m", " 3d", "3D", "9999999999d"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


# ============================================================================================ parser


def test_a_whole_plan() -> None:
    plan = parse_prune({
        "version": 1,
        "registries": {"reg.example:5000": {"tls": "http"}},
        "prune": [
            {"name": "app", "repository": "reg.example:5000/team/app", "keep_latest": 5,
             "protect": ["latest", "release-.*"], "older_than": "30d", "cap": 10},
            {"namespace": "reg.example:5000/team/", "keep_latest": 2, "order": "created",
             "repos": {"deny": ["team/legacy-.*"]}},
            {"namespace": "Index.Docker.IO", "older_than": "2w"},
        ],
    }, "p.yaml")
    assert plan.path == "p.yaml"
    assert plan.registries == {"reg.example:5000": Overrides({"scheme": "http"})}
    app, team, hub = plan.rules
    protect = (re.compile("latest", re.ASCII), re.compile("release-.*", re.ASCII))
    assert app == PruneRule("app", scope(REPO), "repository", 5, "semver", protect, timedelta(days=30), 10)
    assert team == PruneRule("prune[1]", scope("reg.example:5000/team", "namespace"), "namespace", 2, "created",
                             repos=RepoFilter(deny=("team/legacy-.*",)))
    assert hub == PruneRule("prune[2]", scope("docker.io", "namespace"), "namespace", older_than=timedelta(weeks=2))


def test_a_sync_plan_with_a_prune_section(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(
        "sync:\n  - {source: quay.io/org/app, target: reg.example:5000/team/app}\n"
        "defaults: {platforms: [linux/amd64]}\n"
        "prune:\n  - {repository: reg.example:5000/team/app, keep_latest: 3, protect: [latest]}\n"
    )
    plan = load_prune(path)
    assert [str(r.scope) for r in plan.rules] == [REPO] and plan.path == str(path)


def test_rule_for_picks_the_most_specific_rule() -> None:
    plan = parse_prune(doc(
        {"name": "all", "namespace": "reg.example:5000", "older_than": "1w"},
        {"name": "team", "namespace": "reg.example:5000/team", "older_than": "2w", "repos": {"deny": ["team/skip"]}},
        {"name": "app", "repository": REPO, "keep_latest": 1},
    ))
    def rule_for(text: str) -> Any:
        return plan.rule_for(scope(text))

    assert rule_for(REPO).name == "app"
    assert rule_for("reg.example:5000/team/other").name == "team"
    assert rule_for("reg.example:5000/team/skip").name == "all"
    assert rule_for("reg.example:5000/teamster/x").name == "all"
    assert rule_for("other.example/team/app") is None
    assert rule_for("reg.example:5000/team") is not None and rule_for("reg.example:5000/team").name == "all"


# document, rule (entry), key, words in the message
INVALID: list[tuple[object, str | None, str | None, str]] = [
    (None, None, None, "empty"),
    ([], None, None, "mapping"),
    ({"sync": []}, None, "prune", "missing required key 'prune'"),
    ({"prune": []}, None, "prune", "at least one"),
    ({"prune": {}}, None, "prune", "must be a list"),
    ({"prune": [{"repository": REPO, "keep_latest": 1}], "version": 2}, None, "version", "only 1"),
    ({"prune": [{"repository": REPO, "keep_latest": 1}], "extra": 1}, None, "extra", "unknown key"),
    (doc({"repository": REPO, "keep_latest": 1, "keep_lastest": 2}), "prune[0]", "prune[0].keep_lastest",
     "did you mean 'keep_latest'"),
    (doc("nope"), "prune[0]", "prune[0]", "must be a mapping"),
    (doc({"keep_latest": 1}), "prune[0]", "prune[0]", "exactly one of 'repository' or 'namespace'"),
    (doc({"repository": REPO, "namespace": "reg.example:5000", "keep_latest": 1}), "prune[0]", "prune[0]",
     "exactly one"),
    (doc({"repository": REPO}), "prune[0]", "prune[0]", "keep_latest or older_than"),
    (doc({"repository": REPO + ":v1", "keep_latest": 1}), "prune[0]", "prune[0].repository", "tag"),
    (doc({"repository": "reg.example:5000", "keep_latest": 1}), "prune[0]", "prune[0].repository", "host"),
    (doc({"repository": 5, "keep_latest": 1}), "prune[0]", "prune[0].repository", "must be a string"),
    (doc({"namespace": "team", "keep_latest": 1}), "prune[0]", "prune[0].namespace", "registry host"),
    (doc({"repository": REPO, "keep_latest": 1, "repos": {"allow": ["x"]}}), "prune[0]", "prune[0].repos",
     "need a namespace"),
    (doc({"namespace": "reg.example:5000", "keep_latest": 1, "repos": {"allow": ["("]}}), "prune[0]",
     "prune[0].repos.allow[0]", "invalid regular expression"),
    (doc({"repository": REPO, "keep_latest": 0}), "prune[0]", "prune[0].keep_latest", "positive integer"),
    (doc({"repository": REPO, "keep_latest": "3"}), "prune[0]", "prune[0].keep_latest", "positive integer"),
    (doc({"repository": REPO, "keep_latest": True}), "prune[0]", "prune[0].keep_latest", "positive integer"),
    (doc({"repository": REPO, "keep_latest": 1, "order": "date"}), "prune[0]", "prune[0].order",
     "semver or created"),
    (doc({"repository": REPO, "older_than": "1d", "order": "created"}), "prune[0]", "prune[0].order",
     "give keep_latest too"),
    (doc({"repository": REPO, "older_than": 30}), "prune[0]", "prune[0].older_than", "duration"),
    (doc({"repository": REPO, "older_than": "30 days"}), "prune[0]", "prune[0].older_than", "duration"),
    (doc({"repository": REPO, "older_than": "0d"}), "prune[0]", "prune[0].older_than", "zero"),
    (doc({"repository": REPO, "keep_latest": 1, "protect": "latest"}), "prune[0]", "prune[0].protect",
     "must be a list"),
    (doc({"repository": REPO, "keep_latest": 1, "protect": ["[a"]}), "prune[0]", "prune[0].protect[0]",
     "invalid regular expression"),
    (doc({"repository": REPO, "keep_latest": 1, "cap": 0}), "prune[0]", "prune[0].cap", "positive integer"),
    (doc({"name": "a", "repository": REPO, "keep_latest": 1},
         {"name": "a", "repository": REPO + "2", "keep_latest": 1}), "a", "prune[1].name", "duplicate rule name"),
    (doc({"name": "a", "repository": REPO, "keep_latest": 1}, {"repository": REPO, "older_than": "1d"}),
     "prune[1]", "prune[1].repository", "already has a rule (a)"),
    (doc({"name": " ", "repository": REPO, "keep_latest": 1}), "prune[0]", "prune[0].name", "blank"),
    (doc({"name": "app", "repository": REPO, "keep_latest": -1}), "app", "prune[0].keep_latest", "positive"),
    (doc(registries={"reg.example:5000": {"tls": "maybe"}}), "reg.example:5000", "registries[reg.example:5000].tls",
     "must be one of"),
]


@pytest.mark.parametrize(("data", "entry", "key", "says"), INVALID)
def test_invalid_plans(data: object, entry: str | None, key: str | None, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_prune(data, "p.yaml")
    assert (info.value.path, info.value.entry, info.value.key) == ("p.yaml", entry, key)
    assert says in str(info.value) and str(info.value).startswith("p.yaml")


def test_local_stores_are_not_prunable() -> None:
    with pytest.raises(ConfigError, match="registr"):
        parse_prune(doc({"repository": "oci:/tmp/layout", "keep_latest": 1}))


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_prune(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("prune: [\n")
    with pytest.raises(ConfigError, match="YAML syntax error at line"):
        load_prune(bad)


_LEAVES = st.none() | st.booleans() | st.integers(-3, 12) | st.floats(allow_nan=True) | st.text(max_size=8) | \
    st.sampled_from(["30d", "2w", "0d", "semver", "created", REPO, "reg.example:5000", "latest", "v.*", "(", "oci:/x"])
_KEYS = st.sampled_from(
    [*retention_parse._TOP_KEYS, *retention_parse._RULE_KEYS, "sync", "tls", "allow", "deny", "x"]
) | st.text(max_size=5)
_DATA = st.recursive(
    _LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS | st.integers(0, 3) | st.none(), inner,
                                                                max_size=5),
    max_leaves=25,
)


def _near_rule() -> st.SearchStrategy[dict[str, Any]]:
    values = _LEAVES | st.lists(_LEAVES, max_size=3) | st.dictionaries(st.sampled_from(["allow", "deny", "x"]),
                                                                          st.lists(_LEAVES, max_size=2), max_size=2)
    return st.dictionaries(st.sampled_from([*retention_parse._RULE_KEYS, "x"]), values, max_size=7)


def _only_config_errors(fn: Callable[[], object]) -> None:
    try:
        result = fn()
    except ConfigError as exc:
        assert str(exc)
    else:
        assert isinstance(result, PrunePlan) and result.rules


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_DATA)
def test_the_parser_only_raises_config_errors(data: object) -> None:
    _only_config_errors(lambda: parse_prune(data, "p.yaml"))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_near_rule(), max_size=3), _LEAVES | st.dictionaries(_LEAVES.filter(lambda v: isinstance(v, str)),
                                                                      st.dictionaries(_KEYS, _LEAVES), max_size=2))
def test_near_valid_plans_only_raise_config_errors(rules: list[dict[str, Any]], registries: object) -> None:
    _only_config_errors(lambda: parse_prune({"prune": rules, "registries": registries}))

