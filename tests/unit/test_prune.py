"""Tests for :mod:`regcopy.prune`: the plan parser, the pure planner and the executor over an in-memory target.

Parser errors must be ConfigErrors naming the file, the rule and the key; property tests feed it
arbitrary YAML-able data. Planner properties: a deleted digest never carries a staying tag and is
never referenced by a staying index, protected tags always stay, a cap is never exceeded, and
deletions run parents first.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regcopy.digest import Digest
from regcopy.errors import ConfigError, ManifestNotFound, RegistryError, Unsupported
from regcopy.filters import RepoFilter
from regcopy.manifest import OCI_CONFIG, OCI_INDEX, OCI_MANIFEST, Descriptor, Manifest
from regcopy.plansettings import RegistryConfig
from regcopy.registry.manifests import ManifestInfo
from regcopy.retention import (
    DeletionBudget,
    PrunePlan,
    PruneRule,
    RepositoryPlan,
    delete_tags,
    load_prune,
    parse_created,
    parse_duration,
    parse_prune,
    plan_deletions,
    plan_repository,
    planner,
    run_prune,
)
from regcopy.retention import delete as retention_delete
from regcopy.retention import parse as retention_parse

NOW = datetime(2024, 6, 1, tzinfo=UTC)
REPO = "reg.example:5000/team/app"


def day(n: int) -> datetime:
    """``n`` days before NOW."""
    return NOW - timedelta(days=n)


def rule(**fields: Any) -> PruneRule:
    protect = tuple(re.compile(p, re.ASCII) for p in fields.pop("protect", ()))
    return PruneRule(fields.pop("name", "r"), fields.pop("scope", REPO), protect=protect, **fields)


def doc(*rules: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {**top, "prune": list(rules) or [{"repository": REPO, "keep_latest": 3}]}


# ============================================================================================ durations, times


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


@pytest.mark.parametrize(("text", "expected"), [
    ("2024-01-01T00:00:00Z", datetime(2024, 1, 1, tzinfo=UTC)),
    ("2024-01-01T00:00:00.123456789Z", datetime(2024, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)),
    ("2024-01-01T02:00:00+02:00", datetime(2024, 1, 1, tzinfo=UTC)),
    ("2024-01-01 00:00:00z", datetime(2024, 1, 1, tzinfo=UTC)),
    ("2016-12-31T23:59:60Z", datetime(2016, 12, 31, 23, 59, 59, tzinfo=UTC)),  # a leap second
])
def test_created_times(text: str, expected: datetime) -> None:
    assert parse_created(text) == expected


@pytest.mark.parametrize("value", [None, 5, "", "yesterday", "2024-13-01T00:00:00Z", "2024-01-01",
                                   "2024-01-01T00:00:00", "2024-01-01T00:00:00+24:00"])
def test_unreadable_created_times(value: object) -> None:
    assert parse_created(value) is None


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
    assert plan.registries == {"reg.example:5000": RegistryConfig("reg.example:5000", scheme="http")}
    app, team, hub = plan.rules
    protect = (re.compile("latest", re.ASCII), re.compile("release-.*", re.ASCII))
    assert app == PruneRule("app", REPO, "repository", 5, "semver", protect, timedelta(days=30), 10)
    assert team == PruneRule("prune[1]", "reg.example:5000/team", "namespace", 2, "created",
                             repos=RepoFilter(deny=("team/legacy-.*",)))
    assert hub == PruneRule("prune[2]", "docker.io", "namespace", older_than=timedelta(weeks=2))


def test_a_sync_plan_with_a_prune_section(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(
        "sync:\n  - {source: quay.io/org/app, target: reg.example:5000/team/app}\n"
        "defaults: {platforms: [linux/amd64]}\n"
        "prune:\n  - {repository: reg.example:5000/team/app, keep_latest: 3, protect: [latest]}\n"
    )
    plan = load_prune(path)
    assert [r.scope for r in plan.rules] == [REPO] and plan.path == str(path)


def test_rule_for_picks_the_most_specific_rule() -> None:
    plan = parse_prune(doc(
        {"name": "all", "namespace": "reg.example:5000", "older_than": "1w"},
        {"name": "team", "namespace": "reg.example:5000/team", "older_than": "2w", "repos": {"deny": ["team/skip"]}},
        {"name": "app", "repository": REPO, "keep_latest": 1},
    ))
    assert plan.rule_for(REPO).name == "app"  # type: ignore[union-attr]
    assert plan.rule_for("reg.example:5000/team/other").name == "team"  # type: ignore[union-attr]
    assert plan.rule_for("reg.example:5000/team/skip").name == "all"  # type: ignore[union-attr]
    assert plan.rule_for("reg.example:5000/teamster/x").name == "all"  # type: ignore[union-attr]
    assert plan.rule_for("other.example/team/app") is None
    assert plan.rule_for("reg.example:5000/team") is not None and plan.rule_for("reg.example:5000/team").name == "all"  # type: ignore[union-attr]


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


# ============================================================================================ planner


def outcome(plan: RepositoryPlan) -> tuple[list[str], list[str], list[str]]:
    return sorted(d.tag for d in plan.keep), sorted(d.tag for d in plan.delete), sorted(d.tag for d in plan.capped)


def reasons(plan: RepositoryPlan) -> dict[str, str]:
    return {d.tag: d.reason for d in (*plan.keep, *plan.delete, *plan.capped)}


def test_keep_latest_by_semver_counts_images_and_leaves_other_tags() -> None:
    tags = {"1.0.0": "d1", "1.1.0": "d2", "1.2.0": "d3", "1.2": "d3", "v1.3.0": "d4", "latest": "d4", "main": "d6"}
    plan = plan_repository(REPO, rule(keep_latest=2), tags, now=NOW)
    # 1.2 rides on 1.2.0's image: two images are kept, so 1.1.0 falls out.
    assert outcome(plan) == (["1.2", "1.2.0", "latest", "main", "v1.3.0"], ["1.0.0", "1.1.0"], [])
    r = reasons(plan)
    assert r["v1.3.0"] == "latest 2 by semver (#1)" and r["1.2"] == r["1.2.0"] == "latest 2 by semver (#2)"
    assert r["main"] == r["latest"] == "not a version (keep_latest ranks versions)"
    assert r["1.0.0"] == "not among the latest 2 by semver"
    assert plan.digests == ("d1", "d2")  # oldest version first


def test_a_prerelease_ranks_above_the_previous_release() -> None:
    plan = plan_repository(REPO, rule(keep_latest=1), {"1.9.0": "d1", "2.0.0-rc1": "d2"}, now=NOW)
    assert outcome(plan) == (["2.0.0-rc1"], ["1.9.0"], [])


def test_shared_digests_keep_every_tag_on_them() -> None:
    tags = {"1.0.0": "d1", "old-alias": "d1", "2.0.0": "d2", "stable": "d1"}
    plan = plan_repository(REPO, rule(keep_latest=1, protect=["stable"]), tags, now=NOW)
    assert outcome(plan) == (["1.0.0", "2.0.0", "old-alias", "stable"], [], [])
    assert reasons(plan)["1.0.0"] == "not among the latest 1 by semver; kept: shares digest with old-alias"
    assert plan.digests == ()


def test_protected_tags_stay_and_do_not_count() -> None:
    tags = {"1.0.0": "d1", "2.0.0": "d2", "3.0.0": "d3"}
    plan = plan_repository(REPO, rule(keep_latest=1, protect=["1\\..*"]), tags, now=NOW)
    assert outcome(plan) == (["1.0.0", "3.0.0"], ["2.0.0"], [])
    assert reasons(plan)["1.0.0"] == "protected: matches '1\\\\..*'"


def test_protect_patterns_are_anchored() -> None:
    plan = plan_repository(REPO, rule(older_than=timedelta(days=1), protect=["prod"]),
                           {"prod": "d1", "prod-old": "d2", "old-prod": "d3"},
                           created=dict.fromkeys(("d1", "d2", "d3"), day(9)), now=NOW)
    assert outcome(plan) == (["prod"], ["old-prod", "prod-old"], [])


def test_older_than_alone() -> None:
    tags = {"a": "d1", "b": "d2", "c": "d3", "zero": "d4", "epoch": "d5", "none": "d6"}
    created = {"d1": day(40), "d2": day(29), "d3": day(100), "d4": datetime(1, 1, 1, tzinfo=UTC),
               "d5": datetime(1970, 1, 1, tzinfo=UTC), "d6": None}
    plan = plan_repository(REPO, rule(older_than=timedelta(days=30)), tags, created=created, now=NOW)
    assert outcome(plan) == (["b", "epoch", "none", "zero"], ["a", "c"], [])
    r = reasons(plan)
    assert r["a"] == "created 2024-04-22T00:00:00Z, older than 30d"
    assert r["b"] == "created 2024-05-03T00:00:00Z, not older than 30d"
    assert r["epoch"] == r["none"] == r["zero"] == "no creation time (older_than needs one)"
    assert plan.digests == ("d3", "d1")  # oldest first


def test_keep_latest_and_older_than_both_must_agree_to_delete() -> None:
    tags = {"1.0.0": "d1", "1.1.0": "d2", "1.2.0": "d3", "1.3.0": "d4", "nightly": "d5", "fresh": "d6"}
    created = {"d1": day(100), "d2": day(10), "d3": day(100), "d5": day(50), "d6": day(1)}
    plan = plan_repository(REPO, rule(keep_latest=1, older_than=timedelta(days=30)), tags, created=created, now=NOW)
    assert outcome(plan) == (["1.1.0", "1.3.0", "fresh"], ["1.0.0", "1.2.0", "nightly"], [])
    assert reasons(plan)["1.2.0"] == "created 2024-02-22T00:00:00Z, older than 30d and not among the latest 1 by semver"


def test_keep_latest_by_created() -> None:
    tags = {"a": "d1", "b": "d2", "b2": "d2", "c": "d3", "d": "d4", "unknown": "d5"}
    created = {"d1": day(5), "d2": day(1), "d3": day(3), "d4": day(9)}
    plan = plan_repository(REPO, rule(keep_latest=2, order="created"), tags, created=created, now=NOW)
    assert outcome(plan) == (["b", "b2", "c", "unknown"], ["a", "d"], [])
    r = reasons(plan)
    assert r["b"] == r["b2"] == "latest 2 by created (#1, created 2024-05-31T00:00:00Z)"
    assert r["unknown"] == "no creation time (keep_latest ranks by created)"
    assert plan.digests == ("d4", "d1")


def test_children_of_kept_indexes_stay_and_deleted_indexes_go_first() -> None:
    tags = {"1.0.0": "idx1", "1.1.0": "idx2", "2.0.0": "idx3", "child-of-kept": "c3", "child-of-gone": "c1",
            "nested-child": "n3"}
    children = {"idx1": ["c1", "c1b"], "idx2": ["c2"], "idx3": ["c3", "inner3"], "inner3": ["n3"]}
    plan = plan_repository(REPO, rule(keep_latest=1, protect=["2.*"]), tags, children=children, now=NOW)
    # child-of-kept and nested-child are not versions: kept anyway; make them doomed through plan_deletions too.
    assert "1.0.0" in [d.tag for d in plan.delete]
    doomed = plan_deletions(REPO, tags, ["1.0.0", "child-of-gone", "child-of-kept", "nested-child"],
                            children=children)
    assert outcome(doomed) == (["1.1.0", "2.0.0", "child-of-kept", "nested-child"], ["1.0.0", "child-of-gone"], [])
    r = reasons(doomed)
    assert r["child-of-kept"] == "requested; kept: child of kept index 2.0.0"
    assert r["nested-child"] == "requested; kept: child of kept index 2.0.0"
    assert doomed.digests == ("idx1", "c1") and doomed.ancestors["c1"] == {"idx1"}


def test_a_cap_keeps_a_prefix_and_never_orphans_an_index() -> None:
    tags = {"0.1.0": "idx", "0.1.0-amd64": "c", "0.2.0": "d2", "0.3.0": "d3", "9.0.0": "d9"}
    children = {"idx": ["c"]}
    plan = plan_repository(REPO, rule(keep_latest=1, cap=2), tags, children=children, now=NOW)
    assert plan.digests == ("idx", "c")
    assert outcome(plan) == (["9.0.0"], ["0.1.0", "0.1.0-amd64"], ["0.2.0", "0.3.0"])
    assert reasons(plan)["0.2.0"].endswith("skipped: the cap of 2 deletions was reached")
    one = plan.limit(1, "run cap")
    assert one.digests == ("idx",) and [d.tag for d in one.capped][-1] == "0.1.0-amd64"
    assert plan_repository(REPO, rule(keep_latest=1), tags, children=children, now=NOW, cap=0).digests == ()


def test_plan_deletions_protects_and_ignores_unknown_tags() -> None:
    tags = {"a": "d1", "b": "d2", "keep": "d3", "shared": "d2"}
    plan = plan_deletions(REPO, tags, ["a", "b", "keep", "ghost"], protect=(re.compile("keep"),),
                          reason="not in the source")
    assert outcome(plan) == (["b", "keep", "shared"], ["a"], [])
    assert reasons(plan)["b"] == "not in the source; kept: shares digest with shared"
    assert reasons(plan)["shared"] == "not requested"


_TAG_POOL = ["1.0.0", "1.1.0", "1.2.0", "1.2", "2.0.0", "2.0.0-rc1", "v3.0.0", "latest", "main", "sha-1", "x"]
_DIGESTS = [f"d{i}" for i in range(7)]


@st.composite
def _repos(draw: st.DrawFn) -> tuple[dict[str, str], dict[str, list[str]], dict[str, datetime | None]]:
    tags = draw(st.dictionaries(st.sampled_from(_TAG_POOL), st.sampled_from(_DIGESTS), max_size=len(_TAG_POOL)))
    children: dict[str, list[str]] = {}
    for i, parent in enumerate(_DIGESTS):  # a DAG: edges go to later digests only, as content addressing forces
        kids = draw(st.lists(st.sampled_from(_DIGESTS[i + 1:] or ["leaf"]), max_size=3, unique=True))
        if kids:
            children[parent] = kids
    created = {d: draw(st.none() | st.integers(0, 60).map(day)) for d in _DIGESTS}
    return tags, children, created


_RULES = st.builds(
    lambda n, order, protect, age, cap: rule(keep_latest=n, order=order if n else "semver", protect=protect,
                                             older_than=age, cap=cap),
    st.none() | st.integers(1, 4), st.sampled_from(["semver", "created"]),
    st.lists(st.sampled_from(["latest", "1\\..*", "main", "v.*"]), max_size=2),
    st.none() | st.integers(1, 40).map(lambda n: timedelta(days=n)), st.none() | st.integers(1, 4),
).filter(lambda r: r.keep_latest is not None or r.older_than is not None)


def _check_invariants(plan: RepositoryPlan, tags: dict[str, str], children: dict[str, list[str]],
                      protect: tuple[re.Pattern[str], ...], cap: int | None) -> None:
    seen = [d.tag for d in (*plan.keep, *plan.delete, *plan.capped)]
    assert sorted(seen) == sorted(tags)  # every tag decided exactly once
    staying = {tags[d.tag] for d in (*plan.keep, *plan.capped)}
    going = set(plan.digests)
    assert not going & staying, "a deleted digest still carries a staying tag"
    assert {d.digest for d in plan.delete} == going
    held = set().union(*(planner._descendants(d, children) for d in staying)) if staying else set()
    assert not going & held, "a deleted digest is referenced by a staying index"
    kept_tags = {d.tag for d in (*plan.keep, *plan.capped)}
    assert {t for t in tags if any(p.fullmatch(t) for p in protect)} <= kept_tags
    if cap is not None:
        assert len(plan.digests) <= cap
    for i, digest in enumerate(plan.digests):  # parents first
        assert all(plan.digests.index(a) < i for a in plan.ancestors[digest])
        assert set(plan.ancestors[digest]) == {p for p in going if digest in planner._descendants(p, children)}


@settings(max_examples=200, deadline=None)
@given(_repos(), _RULES, st.none() | st.integers(0, 3))
def test_planner_invariants(repo: Any, r: PruneRule, cap: int | None) -> None:
    tags, children, created = repo
    plan = plan_repository(REPO, r, tags, created=created, children=children, now=NOW, cap=cap)
    caps = [c for c in (r.cap, cap) if c is not None]
    _check_invariants(plan, tags, children, r.protect, min(caps) if caps else None)
    uncapped = plan_repository(REPO, r, tags, created=created, children=children, now=NOW)
    assert plan.digests == uncapped.digests[: len(plan.digests)]  # a cap keeps a prefix of the same order


@settings(max_examples=150, deadline=None)
@given(_repos(), st.lists(st.sampled_from(_TAG_POOL), max_size=8), st.none() | st.integers(0, 3),
       st.lists(st.sampled_from(["latest", "1\\..*", "main"]), max_size=2))
def test_plan_deletions_invariants(repo: Any, doomed: list[str], cap: int | None, protect: list[str]) -> None:
    tags, children, _ = repo
    patterns = tuple(re.compile(p) for p in protect)
    plan = plan_deletions(REPO, tags, doomed, protect=patterns, children=children, cap=cap)
    _check_invariants(plan, tags, children, patterns, cap)
    assert {d.tag for d in plan.delete} <= set(doomed)


# ============================================================================================ executor


def _manifest(obj: dict[str, Any]) -> Manifest:
    return Manifest.parse(json.dumps(obj).encode())


@dataclass
class FakeRepo:
    """An in-memory repository with distribution's delete semantics (a manifest DELETE drops its tags)."""

    name: str = "fake.example/repo"
    tags: dict[str, str] = field(default_factory=dict)
    manifests: dict[str, Manifest] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    fail: dict[str, Exception] = field(default_factory=dict)

    def image(self, tag: str | None, created: str | None, seed: str) -> str:
        config = json.dumps({"created": created, "architecture": "amd64", "os": "linux", "seed": seed}).encode()
        cd = Digest.of(config)
        self.blobs[str(cd)] = config
        m = _manifest({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                       "config": {"mediaType": OCI_CONFIG, "digest": str(cd), "size": len(config)}, "layers": []})
        self.manifests[str(m.digest)] = m
        if tag:
            self.tags[tag] = str(m.digest)
        return str(m.digest)

    def index(self, tag: str | None, children: list[str], annotations: dict[str, str] | None = None) -> str:
        entries = [{"mediaType": self.manifests[c].media_type, "digest": c, "size": len(self.manifests[c].data),
                    "platform": {"os": "linux", "architecture": f"a{i}"}} for i, c in enumerate(children)]
        obj: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
        if annotations:
            obj["annotations"] = annotations
        m = _manifest(obj)
        self.manifests[str(m.digest)] = m
        if tag:
            self.tags[tag] = str(m.digest)
        return str(m.digest)

    async def list_tags(self) -> list[str]:
        self.calls.append("list")
        return sorted(self.tags)

    async def head_manifest(self, ref: str) -> ManifestInfo | None:
        self.calls.append(f"HEAD {ref}")
        digest = self.tags.get(ref, ref if ref in self.manifests else None)
        if digest is None:
            return None
        m = self.manifests[digest]
        return ManifestInfo(m.digest, m.media_type, len(m.data))

    async def get_manifest(self, digest: Digest) -> Manifest:
        self.calls.append(f"GET {digest}")
        return self.manifests[str(digest)]

    async def open_blob(self, desc: Descriptor) -> AsyncIterator[bytes]:
        self.calls.append(f"BLOB {desc.digest}")
        yield self.blobs[str(desc.digest)]

    async def delete_manifest(self, digest: Digest) -> None:
        self.calls.append(f"DELETE {digest}")
        if str(digest) in self.fail:
            raise self.fail[str(digest)]
        if str(digest) not in self.manifests:
            raise ManifestNotFound("gone")
        del self.manifests[str(digest)]
        self.tags = {t: d for t, d in self.tags.items() if d != str(digest)}


@pytest.fixture
def fake() -> FakeRepo:
    repo = FakeRepo()
    a = repo.image("old", "2020-01-01T00:00:00Z", "a")
    repo.tags["old-alias"] = a
    b = repo.image("shared-old", "2020-01-01T00:00:00Z", "b")
    repo.tags["keep-me"] = b
    c1 = repo.image("child", "2020-01-01T00:00:00Z", "c1")
    c2 = repo.image(None, "2020-01-01T00:00:00Z", "c2")
    repo.index("multi-old", [c1, c2])
    repo.image("fresh", "2024-05-30T00:00:00Z", "f")
    return repo


async def test_delete_tags_dry_run_changes_nothing(fake: FakeRepo) -> None:
    before = dict(fake.tags)
    report = await delete_tags(fake, ["old", "old-alias", "shared-old", "child", "multi-old"], reason="extra")
    assert fake.tags == before and not [c for c in fake.calls if c.startswith("DELETE")]
    out = report.repositories[0]
    assert report.dry_run and report.ok
    assert sorted(d.tag for d in out.would_delete) == ["child", "multi-old", "old", "old-alias"]
    assert {d.tag: d.reason for d in out.kept}["shared-old"] == "extra; kept: shares digest with keep-me"
    json.dumps(report.to_json())


async def test_delete_tags_deletes_by_digest_parents_first(fake: FakeRepo) -> None:
    index = fake.tags["multi-old"]
    report = await delete_tags(fake, ["old", "old-alias", "child", "multi-old"], dry_run=False)
    assert sorted(fake.tags) == ["fresh", "keep-me", "shared-old"]
    deletes = [c.split()[1] for c in fake.calls if c.startswith("DELETE")]
    assert len(deletes) == 3
    child = next(d.digest for d in report.repositories[0].deleted if d.tag == "child")
    assert deletes.index(index) < deletes.index(child)
    assert sorted(report.repositories[0].manifests_deleted) == sorted(deletes)
    assert report.totals()["deleted"] == 4 and report.ok


async def test_a_failed_index_delete_spares_its_children(fake: FakeRepo) -> None:
    fake.fail[fake.tags["multi-old"]] = RegistryError("boom", registry="fake", status=500)
    report = await delete_tags(fake, ["child", "multi-old", "old", "old-alias"], dry_run=False)
    out = report.repositories[0]
    assert "child" in fake.tags and "multi-old" in fake.tags and "old" not in fake.tags
    skipped = {d.tag: d.reason for d in out.skipped}
    assert "delete failed" in skipped["multi-old"] and "its index" in skipped["child"]
    assert not report.ok and len(out.errors) == 1


async def test_unsupported_deletes_stop_the_repository(fake: FakeRepo) -> None:
    for digest in fake.manifests:
        fake.fail[digest] = Unsupported("deletes are disabled", registry="fake", status=405)
    report = await delete_tags(fake, ["old", "old-alias", "fresh", "child", "multi-old"], dry_run=False)
    out = report.repositories[0]
    assert not out.deleted and len(out.skipped) == 5 and out.errors and not report.ok
    assert "deletes are not supported here" in {d.tag: d.reason for d in out.skipped}["child"]


async def test_a_budget_is_shared_across_calls(fake: FakeRepo) -> None:
    budget = DeletionBudget(1)
    report = await delete_tags(fake, ["old", "old-alias", "fresh"], cap=budget, dry_run=False)
    await delete_tags(fake, ["fresh"], cap=budget, dry_run=False, report=report)
    assert report.totals()["manifests_deleted"] == 1 and budget.left == 0
    assert "old" not in fake.tags and "fresh" in fake.tags
    first, second = report.repositories
    assert [d.tag for d in first.skipped] == [d.tag for d in second.skipped] == ["fresh"]


async def test_listing_errors_are_reported_not_raised(fake: FakeRepo) -> None:
    async def broken() -> list[str]:
        raise RegistryError("down", registry="fake", status=503)

    fake.list_tags = broken  # type: ignore[method-assign]
    report = await delete_tags(fake, ["old"], dry_run=False)
    assert not report.ok and report.repositories[0].errors and "old" in fake.tags


async def test_configs_are_read_only_when_a_rule_needs_them(fake: FakeRepo) -> None:
    class Backend:
        def __init__(self) -> None:
            self.settings: dict[str, Any] = {}

        def apply_plan_registries(self, plan: Any) -> None:
            pass

        def registry_store(self, repo: Any, **_: Any) -> FakeRepo:
            fake.name = repo.name
            return fake

        async def catalog(self, registry: str) -> list[str]:
            return ["team/app"]

    semver_only = PrunePlan((rule(scope="reg.example:5000/team/app", keep_latest=1),))
    await run_prune(Backend(), semver_only, now=NOW)  # type: ignore[arg-type]
    assert not [c for c in fake.calls if c.startswith("BLOB")]
    fake.calls.clear()
    by_age = PrunePlan((rule(name="ns", scope="reg.example:5000", kind="namespace", older_than=timedelta(days=30),
                             protect=["keep-me", "shared-old"]),))
    report = await run_prune(Backend(), by_age, now=NOW, dry_run=True)  # type: ignore[arg-type]
    blobs = [c for c in fake.calls if c.startswith("BLOB")]
    assert len(set(blobs)) == 3 and len(blobs) <= 4  # old, child (also the index's time), fresh: never keep-me
    out = report.repositories[0]
    assert out.rule == "ns"
    assert sorted(d.tag for d in out.would_delete) == ["child", "multi-old", "old", "old-alias"]
    assert {d.tag for d in out.kept} == {"fresh", "keep-me", "shared-old"}


async def test_an_index_created_annotation_wins() -> None:
    repo = FakeRepo()
    c = repo.image(None, "2020-01-01T00:00:00Z", "c")
    idx = repo.index("idx", [c], {"org.opencontainers.image.created": "2024-05-31T00:00:00Z"})
    inv = retention_delete.Inventory()
    assert await retention_delete._created(repo, inv, idx) == datetime(2024, 5, 31, tzinfo=UTC)
    assert not [x for x in repo.calls if x.startswith("BLOB")]


def test_timezones_compare() -> None:
    plus2 = timezone(timedelta(hours=2))
    assert parse_created("2024-01-01T02:00:00+02:00") == datetime(2024, 1, 1, 2, tzinfo=plus2)
