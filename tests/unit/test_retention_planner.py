"""Tests for :mod:`regcopy.retention.planner`: the pure keep/delete planner and creation times.

Planner properties: a deleted digest never carries a staying tag and is never referenced by a
staying index, protected tags always stay, a cap is never exceeded, and deletions run parents first.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from retention_cases import NOW, REPO, day, rule

from regcopy.retention import (
    PruneRule,
    RepositoryPlan,
    parse_created,
    plan_deletions,
    plan_repository,
    planner,
)

# ============================================================================================ times


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


def test_timezones_compare() -> None:
    plus2 = timezone(timedelta(hours=2))
    assert parse_created("2024-01-01T02:00:00+02:00") == datetime(2024, 1, 1, 2, tzinfo=plus2)


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

