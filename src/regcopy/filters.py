"""Tag and repository filters of plans, compiled once and applied to registry listings.

This module owns the filter values (:class:`TagFilter`, :class:`RepoFilter`) and what they
select: anchored regex matching, the semver constraint of skopeo's ``images-by-semver``,
``latest`` N, and :func:`unanchored` for skopeo's ``images-by-tag-regex``. Everything is
validated when compiled (:class:`ConfigError` naming the key, e.g. ``tags.allow[1]``); applying
a compiled filter never raises. Pure values, no I/O.

Regexes are Python :mod:`re` patterns compiled with :data:`re.ASCII`, so ``\\d``, ``\\w`` and
``\\s`` are ASCII classes as in Go's RE2; they are matched against the whole name
(:meth:`re.Pattern.fullmatch`).

Versions and constraints are :mod:`regcopy.semver`'s.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from regcopy.digest import Digest
from regcopy.errors import ConfigError, InvalidReference
from regcopy.semver import (
    Constraint,
    ConstraintError,
    bounded_repr,
    highest_first,
    parse_constraint,
    parse_version,
)

__all__ = (
    "RepoFilter",
    "RepoMatcher",
    "TagFilter",
    "TagMatcher",
    "compile_repo_filter",
    "compile_tag_filter",
    "unanchored",
)

# Docker's tag grammar (as regcopy.reference checks it).
_TAG: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_LEADING_FLAGS: Final = re.compile(r"\(\?[aiLmsux]+\)")


# --- filter values -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TagFilter:
    """Which tags of a repository to mirror. Every regex is anchored (full match) unless it came
    from skopeo's ``images-by-tag-regex``, which the parser rewrites to keep skopeo's unanchored meaning.

    Order of application: ``exact`` tags and ``digests`` are always taken (no listing needed when
    they are all there is); listed tags must match an ``allow`` regex (if any), no ``deny`` regex,
    and the ``semver`` constraint (if any; non-semver tags then drop out); finally ``latest`` keeps
    the N highest semver versions of what is left.
    """

    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    semver: str | None = None
    latest: int | None = None
    exact: tuple[str, ...] = ()
    digests: tuple[str, ...] = ()

    @property
    def needs_listing(self) -> bool:
        """Whether the source's tags must be listed (anything beyond exact tags and digests)."""
        return bool(self.allow or self.deny or self.semver or self.latest is not None) or not (
            self.exact or self.digests
        )


@dataclass(frozen=True, slots=True)
class RepoFilter:
    """Which repositories of a namespace or registry to mirror (anchored regexes)."""

    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()



# --- regexes ---------------------------------------------------------------------------------


def unanchored(regex: str) -> str:
    """An anchored (full-match) regex equivalent to ``regex`` searched anywhere in a string.

    skopeo's ``images-by-tag-regex`` uses Go's ``MatchString`` (match anywhere), while every
    regex of a :class:`TagFilter` must match the whole tag. For any string ``s``,
    ``re.fullmatch(unanchored(r), s)`` matches exactly when ``re.search(r, s)`` does: the regex
    becomes ``(?s:.*)(?:r)(?s:.*)``, where the wrappers match newlines too without changing what
    ``.`` means inside ``r``, and ``r``'s leading global flags such as ``(?i)`` move to the front
    (Python accepts them only there). No capturing group is added, so backreferences still hold.

    An invalid ``regex`` is returned unchanged: wrapping can turn some invalid patterns into
    valid ones (``a)b(``), and unchanged it fails in :func:`compile_tag_filter` with its own text.
    """
    try:
        re.compile(regex)
    except (re.error, ValueError, OverflowError, RecursionError):
        return regex
    end = 0
    while (m := _LEADING_FLAGS.match(regex, end)) is not None:
        end = m.end()
    flags, body = regex[:end], regex[end:]
    # Under (?x) a trailing comment in the body would swallow the closing parenthesis.
    close = "\n)" if "x" in flags else ")"
    return f"{flags}(?s:.*)(?:{body}{close}(?s:.*)"


def _patterns(
    patterns: Sequence[str], key: str, entry: str | None, path: str | None
) -> tuple[re.Pattern[str], ...]:
    compiled = []
    for i, pattern in enumerate(patterns):
        where = f"{key}[{i}]"
        if not isinstance(pattern, str):
            raise ConfigError(f"a regular expression must be a string, not {bounded_repr(pattern)}", path=path,
                              entry=entry, key=where)
        try:
            compiled.append(re.compile(pattern, re.ASCII))
        except (re.error, ValueError, OverflowError, RecursionError) as exc:
            raise ConfigError(f"invalid regular expression {bounded_repr(pattern)}: {exc}", path=path, entry=entry,
                              key=where) from None
    return tuple(compiled)


def _any_match(patterns: tuple[re.Pattern[str], ...], text: str) -> bool:
    return any(p.fullmatch(text) is not None for p in patterns)


# --- tags ------------------------------------------------------------------------------------


class TagMatcher:
    """A validated :class:`TagFilter`, ready to pick tags out of a listing.

    Build it with :func:`compile_tag_filter`.

    :ivar filter: the filter it was compiled from
    :ivar exact: the exact tags, deduplicated, in the filter's order
    :ivar digests: the filter's digests, validated and deduplicated, in the filter's order
    """

    __slots__ = ("_allow", "_deny", "_exact", "_semver", "digests", "exact", "filter")

    def __init__(
        self,
        f: TagFilter,
        allow: tuple[re.Pattern[str], ...],
        deny: tuple[re.Pattern[str], ...],
        semver: Constraint | None,
        digests: tuple[Digest, ...],
    ) -> None:
        self.filter = f
        self.exact = tuple(dict.fromkeys(f.exact))
        self.digests = digests
        self._exact = frozenset(self.exact)
        self._allow = allow
        self._deny = deny
        self._semver = semver

    @property
    def needs_listing(self) -> bool:
        """Whether the source's tags must be listed (:attr:`TagFilter.needs_listing`)."""
        return self.filter.needs_listing

    def select(self, tags: Iterable[str]) -> list[str]:
        """The tags to mirror out of ``tags``, sorted in plain string order, without duplicates.

        ``tags`` is the source's listing. Exact tags are taken when the listing has them, whatever
        the other filters say, and do not count towards ``latest``; an exact tag missing from the
        listing is left out (compare with :attr:`exact` to report it). When the filter
        :attr:`needs_listing`, the other listed tags are taken if they fullmatch an ``allow``
        regex (any; none given = all), no ``deny`` regex, and the ``semver`` constraint (non-semver
        tags then drop out); then ``latest`` N keeps the N tags of highest version among them
        (non-semver tags drop out there too). Equal versions spelled differently (``1.2``,
        ``1.2.0``, ``v1.2.0``) are ranked by the most explicit spelling: more components first,
        then without ``v``, then the shorter tag, then string order. When no listing is needed
        (exact tags and digests only), only exact tags are taken, so the caller may pass
        :attr:`exact` itself instead of listing. Never raises.
        """
        listed = set(tags)
        chosen = listed & self._exact
        if self.filter.needs_listing:
            chosen.update(self._filtered(listed))
        return sorted(chosen)

    def _filtered(self, listed: set[str]) -> Iterable[str]:
        passing = [
            t for t in listed if (not self._allow or _any_match(self._allow, t)) and not _any_match(self._deny, t)
        ]
        latest = self.filter.latest
        if self._semver is None and latest is None:
            return passing
        versioned = [(t, v) for t in passing if (v := parse_version(t)) is not None]
        if self._semver is not None:
            constraint = self._semver
            versioned = [(t, v) for t, v in versioned if constraint.check(v)]
        if latest is not None:
            highest_first(versioned)
            versioned = versioned[:latest]
        return (t for t, _ in versioned)


def compile_tag_filter(f: TagFilter, *, entry: str | None = None, path: str | None = None) -> TagMatcher:
    """Validate ``f`` once and compile it (semantics in :meth:`TagMatcher.select`).

    :param entry: the plan entry, for error messages (``sync[2]``)
    :param path: the plan file, for error messages
    :raises ConfigError: an invalid regex (key ``tags.allow[i]`` / ``tags.deny[i]``), semver
        constraint (``tags.semver``), ``latest`` (``tags.latest``: a positive integer), exact tag
        (``tags.exact[i]``) or digest (``tags.digests[i]``)
    """
    allow = _patterns(f.allow, "tags.allow", entry, path)
    deny = _patterns(f.deny, "tags.deny", entry, path)
    constraint = None
    if f.semver is not None:
        try:
            if not isinstance(f.semver, str):
                raise ConstraintError("must be a string")
            constraint = parse_constraint(f.semver)
        except ConstraintError as exc:
            raise ConfigError(f"invalid semver constraint {bounded_repr(f.semver)}: {exc}", path=path, entry=entry,
                              key="tags.semver") from None
    if f.latest is not None and (isinstance(f.latest, bool) or not isinstance(f.latest, int) or f.latest < 1):
        raise ConfigError(f"latest must be a positive integer, not {bounded_repr(f.latest)}", path=path, entry=entry,
                          key="tags.latest")
    for i, tag in enumerate(f.exact):
        if not isinstance(tag, str) or not _TAG.fullmatch(tag):
            raise ConfigError(f"invalid tag {bounded_repr(tag)}", path=path, entry=entry, key=f"tags.exact[{i}]")
    digests: dict[Digest, None] = {}
    for i, text in enumerate(f.digests):
        try:
            digests[Digest.parse(text)] = None
        except InvalidReference as exc:
            raise ConfigError(exc.reason, path=path, entry=entry, key=f"tags.digests[{i}]") from None
    return TagMatcher(f, allow, deny, constraint, tuple(digests))


# --- repositories ----------------------------------------------------------------------------


class RepoMatcher:
    """A validated :class:`RepoFilter`; build it with :func:`compile_repo_filter`."""

    __slots__ = ("_allow", "_deny", "filter")

    def __init__(self, f: RepoFilter, allow: tuple[re.Pattern[str], ...], deny: tuple[re.Pattern[str], ...]) -> None:
        self.filter = f
        self._allow = allow
        self._deny = deny

    def matches(self, repo: str) -> bool:
        """Whether ``repo`` (a path such as ``team/app``) fullmatches an ``allow`` regex (any; none
        given = all) and no ``deny`` regex."""
        return (not self._allow or _any_match(self._allow, repo)) and not _any_match(self._deny, repo)


def compile_repo_filter(f: RepoFilter, *, entry: str | None = None, path: str | None = None) -> RepoMatcher:
    """Validate and compile ``f``.

    :raises ConfigError: an invalid regex (key ``repos.allow[i]`` / ``repos.deny[i]``)
    """
    return RepoMatcher(f, _patterns(f.allow, "repos.allow", entry, path), _patterns(f.deny, "repos.deny", entry, path))
