"""Tag and repository filters: regexes, the Masterminds semver dialect, latest N, exact tags,
digests, validation errors and unanchored()."""

from __future__ import annotations

import random
import re

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from regcopy.digest import Digest
from regcopy.errors import ConfigError
from regcopy.filters import RepoFilter, TagFilter, compile_repo_filter, compile_tag_filter, unanchored

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


def select(f: TagFilter, tags: list[str]) -> list[str]:
    return compile_tag_filter(f).select(tags)


def satisfies(constraint: str, tag: str) -> bool:
    return select(TagFilter(semver=constraint), [tag]) == [tag]


# --- which tags are versions -----------------------------------------------------------------

# ">=0.0.0-0" is the lowest version there is and admits prereleases: it keeps exactly the semver tags.
EVERY_VERSION = ">=0.0.0-0"


@pytest.mark.parametrize(
    "tag",
    [
        "1", "1.2", "1.2.3", "v1.2.3", "v1", "01.02.03", "3.12-alpine", "1.2.3-rc.1", "1.2.3-alpine3.18",
        "1.2.3+build.5", "1.2.3-rc.1+build.01", "1.0.0-0", "1.0.0--", "18446744073709551615", "0.0.0",
    ],
)
def test_tags_that_are_versions(tag: str) -> None:
    assert satisfies(EVERY_VERSION, tag)


@pytest.mark.parametrize(
    "tag",
    [
        "", "v", "latest", "stable", "sha-abc", "V1.2", "1.2.3.4", "3.13.0rc1", "1.2.3-01", "1.2.3-", "1.2.3+",
        "1..2", ".1", "1.", "18446744073709551616", "1.2.99999999999999999999999", "\u0661.\u0662", "1_000",
        "vv1", "1.2.3-a..b", " 1.2", "1.2 ", "1.2.3-a_b", "x", "1.x", "*",
    ],
)
def test_tags_that_are_not_versions(tag: str) -> None:
    assert not satisfies(EVERY_VERSION, tag)


ASCENDING = [
    "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11",
    "1.0.0-rc.1", "1.0.0", "1.0.1", "1.1", "v1.9.0", "1.10.0", "2", "2.0.1-0", "2.0.1", "18446744073709551615",
]


@pytest.mark.parametrize("n", range(1, len(ASCENDING) + 1))
def test_latest_follows_semver_precedence(n: int) -> None:
    shuffled = ASCENDING[:]
    random.Random(n).shuffle(shuffled)
    assert select(TagFilter(latest=n), shuffled) == sorted(ASCENDING[-n:])


def test_prerelease_numbers_beyond_uint64_compare_as_text() -> None:
    # Masterminds parses identifiers with ParseUint: a too-large number is alphanumeric, above any number.
    big = "1.0.0-18446744073709551616"
    assert select(TagFilter(latest=1), [big, "1.0.0-18446744073709551615"]) == [big]
    assert select(TagFilter(latest=1), [big, "1.0.0-a"]) == ["1.0.0-a"]


# --- the constraint language -----------------------------------------------------------------

CHECKS = [
    # = and bare versions; partial and wildcard versions are ranges
    ("=2.0.0", "2.0.0", True), ("=2.0.0", "2.0.1", False), ("2.0.0", "v2.0.0", True), ("=2.0", "2.0.7", True),
    ("=2.0", "2.1.0", False), ("2", "2.9.9", True), ("2", "3.0.0", False), ("v2.1", "2.1.4", True),
    ("2.1.x", "2.1.4", True), ("2.1.*", "2.2.0", False), ("2.x", "2.5.0", True), ("2.X.x", "3.0.0", False),
    ("*", "4.5.6", True), ("x", "0.0.0", True), ("*", "1.2.3-alpha", False), ("*-0", "1.2.3-alpha", True),
    ("1.x.3", "1.9.0", True), ("=1.2.3+meta", "1.2.3", True), ("3.12", "3.12", True), ("3.12", "3.12-alpine", False),
    # !=
    ("!=4.1.0", "4.1.0", False), ("!=4.1.0", "4.1.1", True), ("!=4.1", "4.1.9", False), ("!=4.1", "4.2.0", True),
    ("!=4.x", "4.1.0", False), ("!=4.x", "5.0.0", True), ("!=4.1-alpha", "4.1.0", True),
    ("!=4.1-alpha", "4.1.0-alpha", False), ("!=4.1", "5.1.0-alpha.1", False),
    # > and >=
    (">1.1", "1.1.0", False), (">1.1", "1.1.9", False), (">1.1", "1.2.0", True), (">11", "11.9.9", False),
    (">11", "12.0.0", True), (">1.2.3", "1.2.4", True), (">1.2.3", "1.2.3", False), (">0", "0.0.1-alpha", False),
    (">0.0.0-0", "0.0.0-alpha", True), (">1.2.3-alpha.1", "1.3.3-alpha.2", True), (">=1.1", "1.1.0", True),
    (">=1.1", "1.0.9", False), (">=11", "11.1.2", True), (">=1.1", "4.1.0-beta", False), ("=>1.1", "1.1.0", True),
    (">= v1.2.3", "1.2.3", True), (">=3.08", "3.8", True),
    # < and <=
    ("<1.1", "1.0.9", True), ("<1.1", "1.1.0", False), ("<1.x", "0.9.9", True), ("<1.x", "1.0.0", False),
    ("<11", "11.1.0", False), ("<0-z", "0.0.0-alpha", True), ("<0", "0.0.0-alpha", False),
    ("<=1.1", "1.1.9", True), ("<=1.1", "1.2.0", False), ("<=11", "11.9.9", True), ("<=11", "12.0.0", False),
    ("<=1.x", "1.9.0", True), ("<=2.x", "3.0.0", False), ("<=1.2.3", "1.2.4", False), ("=<1.2.3", "1.2.3", True),
    ("<=1.1", "0.1.0-alpha", False), ("<=1.1-a", "0.1.0-alpha", True),
    # ~ (patch-level)
    ("~1.2.3", "1.2.9", True), ("~1.2.3", "1.2.2", False), ("~1.2.3", "1.3.0", False), ("~1.2", "1.2.0", True),
    ("~1.2", "1.3.0", False), ("~1", "1.9.0", True), ("~1", "2.0.0", False), ("~1.x", "1.3.5", True),
    ("~>1.2", "1.2.7", True), ("~*", "2.1.1", True), ("~0.0.0", "1.2.3", True), ("~0", "0.9.0", True),
    ("~0", "1.0.0", False), ("~1.1", "1.1.1-alpha", False), ("~1.1-alpha", "1.1.1-beta", True),
    ("~1.2.3-beta.2", "1.2.4-beta.2", True), ("~1.2.3-beta.2", "1.3.0-beta.2", False),
    # ^ (minor-level; 0.x narrows it)
    ("^1.2.3", "1.8.9", True), ("^1.2.3", "2.0.0", False), ("^1.2.3", "1.2.2", False), ("^1.2", "1.2.0", True),
    ("^1", "1.9.9", True), ("^1.x", "1.1.1", True), ("^1.x", "2.0.0", False), ("^0.2.3", "0.2.9", True),
    ("^0.2.3", "0.3.0", False), ("^0.2.3", "0.2.2", False), ("^0.2", "0.2.5", True), ("^0.2", "0.3.0", False),
    ("^0.0.3", "0.0.3", True), ("^0.0.3", "0.0.4", False), ("^0.0", "0.0.7", True), ("^0.0", "0.1.0", False),
    ("^0", "0.9.0", True), ("^0", "1.0.0", False), ("^0.0.0", "1.2.3", False), ("^1.2.0", "1.2.1-alpha.1", False),
    ("^1.2.0-alpha.0", "1.2.1-alpha.1", True), ("^1.2.0-alpha.2", "1.2.0-alpha.1", False),
    ("^0.2.3-beta.2", "0.2.4-beta.2", True), ("^0.2.3-beta.2", "0.3.4-beta.2", False),
    # bare wildcards after these operators keep Masterminds' code behaviour
    ("^*", "0.0.0", True), ("^*", "1.2.3", False), (">*", "0.0.0", False), (">*", "0.0.1", True),
    ("<=*", "0.0.9", True), ("<=*", "0.1.0", False), ("!=*", "0.0.0", False), ("!=*", "3.0.0", True),
    (">=*", "9.9.9", True), ("<*", "0.0.0", False),
    # AND: whitespace or commas
    (">1.1, <2", "1.1.1", False), (">1.1, <2", "1.2.1", True), (">1.1 <2", "1.2.1", True),
    (">1.1    <3", "4.3.2", False), (">=1.1 <2 !=1.2.3", "1.2.3", False), (">= 1.1 ,  < 2", "1.5.0", True),
    (">= 1.1\t<2", "1.5.0", True), (" >=1.1 ", "1.5.0", True),
    # OR
    (">=1.1, <2, !=1.2.3 || > 3", "4.1.2", True), (">=1.1 <2 !=1.2.3 || > 3", "3.1.2", False),
    (">=1.1 <2 || >=3", "3.0.0", True), ("1.2 || 1.4", "1.3.0", False), ("1.2||1.4", "1.4.2", True),
    # prereleases: admitted per alternative, when one of its comparisons has a prerelease
    (">=1.0.0-0 <2", "1.5.0-rc.1", True), (">=1.0.0 <2", "1.5.0-rc.1", False),
    (">=1.0.0-0 <2 || >=3", "3.1.0-rc.1", False), (">=1.0.0 || >=3.0.0-0", "3.1.0-rc.1", True),
    (">=1.0.0-0 <2", "2.0.0-rc.1", True),
    # hyphen ranges: >= A, <= B
    ("1.2 - 1.4.5", "1.2.0", True), ("1.2 - 1.4.5", "1.4.5", True), ("1.2 - 1.4.5", "1.4.6", False),
    ("1.2 - 1.4.5", "1.1.9", False), ("1.2 - 1.4", "1.4.9", True), ("1.2 - 1.4", "1.5.0", False),
    ("1.5.0 - 4.5", "3.7.0", True), ("3 - 4 || >= 6", "6.0.0", True), ("3.12 - 3.13", "3.13.9", True),
    ("1.0.0 - 2.0.0 <=1.5.0", "1.7.0", False), ("1.0.0 - 2.0.0, <=1.5.0", "1.2.0", True),
    ("1.2 - 1.4", "1.3.0-rc1", False), ("1.2.0-0 - 1.4", "1.3.0-rc1", True),
    ("1.1-3", "1.1.0-3", True), ("1.1-3", "4.3.2", False),  # no spaces: a prerelease, not a range
    # v prefixes on both sides
    ("v1.2.3", "1.2.3", True), ("1.2.3", "v1.2.3", True), ("~v1.2", "v1.2.9", True), ("vx", "v7.0.0", True),
]


@pytest.mark.parametrize(("constraint", "tag", "expected"), CHECKS)
def test_constraint(constraint: str, tag: str, expected: bool) -> None:
    assert satisfies(constraint, tag) is expected


@pytest.mark.parametrize(
    "constraint",
    [
        "", "   ", ">", ">=", "foo", ">= bar", "BAR >= 1.2.3", "1.2.3.4", "12.3.4.1234", "12.3.34~ 1.2.3", ">>1",
        "> = 1", "!1", "<>1", "=<=1", "1 -2", "1- 2", ">=1 - 2", "~1 - 2", "=1 - 2", "1 - >=2", "1 - ", " - 1",
        "1 - 2 - 3", "1,", ",1", "1,,2", ">1<2", "1x", "x1", "**", "1.**", "1||", "||1", "1 || || 2", "1|2",
        "1.2.3-01", "1.2.3-a..b", "1.2.3+", "1.2.", "V1.2", "18446744073709551616", "1.18446744073709551616",
        "v", "1.2.3-beta_1", "1.2 ; 2", ">=1.0\u00a0<2", "1" * 513, ">=1 " * 200,
    ],
)
def test_invalid_constraint(constraint: str) -> None:
    with pytest.raises(ConfigError) as info:
        compile_tag_filter(TagFilter(semver=constraint), entry="sync[3]", path="plan.yaml")
    assert (info.value.key, info.value.entry, info.value.path) == ("tags.semver", "sync[3]", "plan.yaml")
    assert str(info.value).startswith("plan.yaml: sync[3]: tags.semver: invalid semver constraint")


def test_constraint_components_after_a_wildcard_may_be_large() -> None:
    # Masterminds never parses them; the numbers before the wildcard must still fit in 64 bits.
    assert satisfies("1.x.99999999999999999999999", "1.4.0")


# --- TagFilter combinations ------------------------------------------------------------------

LISTING = [
    "latest", "stable", "edge", "sha-abc123", "1.0.0", "1.1.0", "1.2.0", "v1.2.0", "1.2", "1.3.0-rc.1",
    "2.0.0", "2.1-alpine", "3.12-alpine", "3.12", "3.12.1", "v3.13.0", "3.14", "nightly-2024",
]


@pytest.mark.parametrize(
    ("f", "expected"),
    [
        (TagFilter(), sorted(LISTING)),
        (TagFilter(allow=(r"1\..*",)), ["1.0.0", "1.1.0", "1.2", "1.2.0", "1.3.0-rc.1"]),
        (TagFilter(allow=(r"1\.",)), []),  # anchored: a prefix is not enough
        (TagFilter(allow=(r"v.*", "latest")), ["latest", "v1.2.0", "v3.13.0"]),
        (TagFilter(deny=(r".*-.*", "latest|stable|edge")),
         ["1.0.0", "1.1.0", "1.2", "1.2.0", "2.0.0", "3.12", "3.12.1", "3.14", "v1.2.0", "v3.13.0"]),
        (TagFilter(allow=(r"3\..*",), deny=(r".*alpine",)), ["3.12", "3.12.1", "3.14"]),
        (TagFilter(allow=(r"\d.*",), deny=(r"\d.*",)), []),
        (TagFilter(semver=">=1.1 <2"), ["1.1.0", "1.2", "1.2.0", "v1.2.0"]),
        (TagFilter(semver="*"),
         ["1.0.0", "1.1.0", "1.2", "1.2.0", "2.0.0", "3.12", "3.12.1", "3.14", "v1.2.0", "v3.13.0"]),
        (TagFilter(semver=">=3.12-0"), ["3.12", "3.12-alpine", "3.12.1", "3.14", "v3.13.0"]),
        (TagFilter(semver="~3.12 || ^1.2"), ["1.2", "1.2.0", "3.12", "3.12.1", "v1.2.0"]),
        (TagFilter(semver=">=1", deny=(r"v.*",)),
         ["1.0.0", "1.1.0", "1.2", "1.2.0", "2.0.0", "3.12", "3.12.1", "3.14"]),
        (TagFilter(latest=2), ["3.14", "v3.13.0"]),
        (TagFilter(latest=3, semver="<3"), ["1.2.0", "2.0.0", "v1.2.0"]),
        (TagFilter(latest=4, allow=(r"1\..*",)), ["1.1.0", "1.2", "1.2.0", "1.3.0-rc.1"]),
        (TagFilter(latest=100, semver=">=3"), ["3.12", "3.12.1", "3.14", "v3.13.0"]),
        (TagFilter(latest=50), sorted(t for t in LISTING if t[0].isdigit() or t.startswith("v"))),
        (TagFilter(exact=("latest", "missing")), ["latest"]),
        (TagFilter(exact=("latest",), digests=(D1,)), ["latest"]),
        (TagFilter(digests=(D1,)), []),
        (TagFilter(exact=("latest", "edge", "gone"), semver="~3.12"), ["3.12", "3.12.1", "edge", "latest"]),
        (TagFilter(exact=("1.0.0",), allow=(r"1\..*",), deny=(r"1\..*",)), ["1.0.0"]),  # exact beats deny
        (TagFilter(exact=("1.0.0", "1.1.0"), latest=1), ["1.0.0", "1.1.0", "3.14"]),  # exact not counted in latest
        (TagFilter(exact=("stable",), allow=("edge",), deny=("stable",)), ["edge", "stable"]),
    ],
)
def test_tag_filter(f: TagFilter, expected: list[str]) -> None:
    shuffled = LISTING[:]
    random.Random(7).shuffle(shuffled)
    assert select(f, shuffled) == expected


def test_latest_ties_prefer_the_most_explicit_spelling() -> None:
    tags = ["1.2", "v1.2", "v1.2.0", "1.2.0", "01.2.0", "1.2.00", "1.1.9", "nope"]
    order = ["1.2.0", "01.2.0", "1.2.00", "v1.2.0", "1.2", "v1.2", "1.1.9"]
    for n in range(1, len(order) + 1):
        for seed in range(3):
            shuffled = tags[:]
            random.Random(seed).shuffle(shuffled)
            assert select(TagFilter(latest=n), shuffled) == sorted(order[:n])


def test_latest_drops_non_semver_tags() -> None:
    assert select(TagFilter(latest=5), ["latest", "stable", "sha-1", "main"]) == []
    assert select(TagFilter(latest=5, allow=(".*",)), ["latest", "2", "edge"]) == ["2"]


def test_duplicates_in_the_listing_are_selected_once() -> None:
    assert select(TagFilter(), ["b", "a", "b", "a"]) == ["a", "b"]
    assert select(TagFilter(exact=("a", "a")), ["a", "a"]) == ["a"]


def test_exact_only_filters_take_no_listed_tags() -> None:
    m = compile_tag_filter(TagFilter(exact=("v1", "v2", "v1"), digests=(D2, D1, D2)))
    assert not m.needs_listing
    assert m.exact == ("v1", "v2")
    # A caller that lists anyway gets only the exact tags present...
    assert m.select(["v0", "v1", "latest"]) == ["v1"]
    # ... and one that does not list may pass the exact tags themselves.
    assert m.select(m.exact) == ["v1", "v2"]
    assert m.digests == (Digest.parse(D2), Digest.parse(D1))


def test_matcher_exposes_its_filter() -> None:
    f = TagFilter(semver="^1")
    m = compile_tag_filter(f)
    assert m.filter is f and m.needs_listing and m.digests == () and m.exact == ()


# --- validation errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("f", "key"),
    [
        (TagFilter(allow=("ok", "(")), "tags.allow[1]"),
        (TagFilter(allow=("[a-",)), "tags.allow[0]"),
        (TagFilter(deny=("fine", "x", "*")), "tags.deny[2]"),
        (TagFilter(deny=("a{99999999999}",)), "tags.deny[0]"),
        (TagFilter(allow=("(?u)a",)), "tags.allow[0]"),  # Unicode mode clashes with the ASCII classes
        (TagFilter(allow=("a(?i)b",)), "tags.allow[0]"),
        (TagFilter(allow=("(" * 3000 + ")" * 3000,)), "tags.allow[0]"),
        (TagFilter(semver="~>"), "tags.semver"),
        (TagFilter(latest=0), "tags.latest"),
        (TagFilter(latest=-3), "tags.latest"),
        (TagFilter(latest=True), "tags.latest"),
        (TagFilter(exact=("ok", "-bad")), "tags.exact[1]"),
        (TagFilter(exact=("",)), "tags.exact[0]"),
        (TagFilter(exact=("a" * 129,)), "tags.exact[0]"),
        (TagFilter(digests=(D1, "sha256:abc")), "tags.digests[1]"),
        (TagFilter(digests=("md5:" + "0" * 32,)), "tags.digests[0]"),
    ],
)
def test_invalid_tag_filter(f: TagFilter, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        compile_tag_filter(f, entry="mirror-app", path="/etc/plan.yaml")
    assert (info.value.key, info.value.entry, info.value.path) == (key, "mirror-app", "/etc/plan.yaml")


def test_invalid_regex_message_quotes_the_pattern() -> None:
    with pytest.raises(ConfigError, match=r"tags\.allow\[0\]: invalid regular expression '\('"):
        compile_tag_filter(TagFilter(allow=("(",)))


def test_regexes_use_ascii_classes() -> None:
    assert select(TagFilter(allow=(r"\d+",)), ["12", "\u0661\u0662"]) == ["12"]


# --- RepoFilter ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("f", "repo", "expected"),
    [
        (RepoFilter(), "anything/at/all", True),
        (RepoFilter(allow=("team[0-3]/.*",)), "team1/svc", True),
        (RepoFilter(allow=("team[0-3]/.*",)), "team4/svc", False),
        (RepoFilter(allow=("team",)), "team/svc", False),  # anchored
        (RepoFilter(allow=("team",)), "myteam", False),
        (RepoFilter(allow=("a/.*", "b/.*")), "b/x", True),
        (RepoFilter(deny=(".*-tmp",)), "app-tmp", False),
        (RepoFilter(deny=(".*-tmp",)), "app-tmp/real", True),
        (RepoFilter(allow=("team[0-3]/.*",), deny=("team2/.*",)), "team2/svc", False),
        (RepoFilter(allow=("team[0-3]/.*",), deny=("team2/.*",)), "team3/svc", True),
        (RepoFilter(allow=("(?i)APPS/.*",)), "apps/web", True),
    ],
)
def test_repo_filter(f: RepoFilter, repo: str, expected: bool) -> None:
    assert compile_repo_filter(f).matches(repo) is expected


@pytest.mark.parametrize(
    ("f", "key"), [(RepoFilter(allow=("ok", "[")), "repos.allow[1]"), (RepoFilter(deny=("?",)), "repos.deny[0]")]
)
def test_invalid_repo_filter(f: RepoFilter, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        compile_repo_filter(f, entry="sync[0]", path="p.yaml")
    assert (info.value.key, info.value.entry, info.value.path) == (key, "sync[0]", "p.yaml")


# --- unanchored ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("regex", "tag", "expected"),
    [
        (r"1\.13", "v1.13.2", True),
        (r"1\.13", "1.12", False),
        (r"^1\.13\.[12]-alpine-perl$", "1.13.1-alpine-perl", True),
        (r"^1\.13\.[12]-alpine-perl$", "x1.13.1-alpine-perl", False),
        (r"alpine$", "3.12-alpine", True),
        (r"(?i)ALPINE", "3.12-alpine", True),
        (r"(?i)(?m)^b$", "a\nB\nc", True),
        (r"(a)\1", "xaay", True),  # backreferences keep their numbers
        (r"(a)\1", "xay", False),
        (r"(?x) a b  # comment", "zabz", True),
        (r"", "anything", True),
        (r"a|b", "zzbzz", True),
        (r"\bx", "a x", True),
    ],
)
def test_unanchored(regex: str, tag: str, expected: bool) -> None:
    assert (re.fullmatch(unanchored(regex), tag) is not None) is expected
    assert (re.search(regex, tag) is not None) is expected


def test_unanchored_keeps_invalid_regexes_invalid() -> None:
    assert unanchored("a)b(") == "a)b("  # wrapped, it would compile
    with pytest.raises(ConfigError) as info:
        compile_tag_filter(TagFilter(allow=(unanchored("a)b("),)))
    assert info.value.key == "tags.allow[0]"


def test_unanchored_patterns_in_a_tag_filter() -> None:
    f = TagFilter(allow=(unanchored(r"^1\.2"), unanchored("alpine")))
    assert select(f, ["1.2.3", "v1.2.3", "3.12-alpine", "latest", "alpine3"]) == ["1.2.3", "3.12-alpine", "alpine3"]


_ATOMS = st.sampled_from(["a", "b", "A", ".", "^", "$", r"\n", "[ab]", "[^a]", r"\b", r"\B", r"\A", r"\Z", ""])
_REGEXES = st.recursive(
    _ATOMS,
    lambda inner: st.one_of(
        st.tuples(inner, inner).map("".join),
        st.tuples(inner, inner).map("|".join),
        inner.map(lambda r: f"({r})"),
        inner.map(lambda r: f"(?=({r}))"),
        st.tuples(inner, st.sampled_from(["*", "+", "?", "*?", "+?", "{1,2}"])).map(lambda t: f"(?:{t[0]}){t[1]}"),
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(
    flags=st.sampled_from(["", "(?i)", "(?m)", "(?s)", "(?im)", "(?x)", "(?i)(?s)"]),
    body=_REGEXES,
    strings=st.lists(st.text(alphabet="abAB\n", max_size=6), min_size=1, max_size=5),
)
def test_unanchored_is_search(flags: str, body: str, strings: list[str]) -> None:
    regex = flags + body
    try:
        re.compile(regex)
    except re.error:
        assume(False)
    anchored = re.compile(unanchored(regex))
    for s in strings:
        assert (re.search(regex, s) is not None) == (anchored.fullmatch(s) is not None), (regex, s)


# --- select on arbitrary listings ------------------------------------------------------------

_MATCHERS = [
    compile_tag_filter(f)
    for f in (
        TagFilter(),
        TagFilter(latest=2),
        TagFilter(semver=">=1.0 <3 || ^0.2", latest=3, allow=(r"v?\d.*",), deny=(r".*-rc.*",)),
        TagFilter(exact=("1.0.0", "latest"), semver="~1.2"),
        TagFilter(exact=("x",)),
        TagFilter(semver=">=0.0.0-0", latest=1),
        TagFilter(semver="!=1.x", deny=("",)),
    )
]

_VERSIONISH = st.builds(
    lambda v, nums, pre: v + ".".join(nums) + pre,
    st.sampled_from(["", "v", "V"]),
    st.lists(st.sampled_from(["0", "1", "2", "01", "10", "18446744073709551616"]), min_size=1, max_size=4),
    st.sampled_from(["", "-rc.1", "-alpine", "-01", "+b", "-"]),
)


@settings(max_examples=200, deadline=None)
@given(index=st.integers(0, len(_MATCHERS) - 1), tags=st.lists(st.one_of(_VERSIONISH, st.text(max_size=12))))
def test_select_is_deterministic_and_a_subset(index: int, tags: list[str]) -> None:
    matcher = _MATCHERS[index]
    result = matcher.select(tags)
    assert set(result) <= set(tags)
    assert result == sorted(set(result))
    assert matcher.select(reversed(tags)) == result
    shuffled = tags[:]
    random.Random(len(tags)).shuffle(shuffled)
    assert matcher.select(iter(shuffled)) == result
