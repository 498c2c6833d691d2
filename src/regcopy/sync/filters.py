"""Tag and repository filters of a sync plan, compiled once and applied to registry listings.

This module owns what a :class:`~regcopy.sync.model.TagFilter` and a
:class:`~regcopy.sync.model.RepoFilter` select: anchored regex matching, the semver constraint
language of skopeo's ``images-by-semver``, ``latest`` N, and :func:`unanchored` for skopeo's
``images-by-tag-regex``. Everything is validated when compiled (:class:`ConfigError` naming the
key, e.g. ``tags.allow[1]``); applying a compiled filter never raises. Pure values, no I/O.

Regexes are Python :mod:`re` patterns compiled with :data:`re.ASCII`, so ``\\d``, ``\\w`` and
``\\s`` are ASCII classes as in Go's RE2; they are matched against the whole name
(:meth:`re.Pattern.fullmatch`).

Semver follows Masterminds/semver v3 (``NewVersion`` / ``NewConstraint`` / ``Check``), which
skopeo uses, written out here as a small linear-time parser rather than a dependency: no Python
library has this dialect (npm ranges lack ``!=``, treat partial ``>`` bounds and prereleases
differently).

* A tag is a version when it reads ``[v]MAJOR[.MINOR[.PATCH]][-PRE][+BUILD]``: ASCII digits
  (leading zeros allowed, at most 2^64-1), missing parts are 0 (``3.12`` is 3.12.0), ``PRE`` and
  ``BUILD`` are dot-separated ``[0-9A-Za-z-]`` identifiers (numeric ``PRE`` identifiers without
  leading zeros). So ``3.12-alpine`` is 3.12.0 with prerelease ``alpine`` and drops out of plain
  ranges; ``latest``, ``stable``, ``sha-abc``, ``V1.2``, ``1.2.3.4`` and ``3.13.0rc1`` are not
  versions. Order is semver precedence (build ignored; a release above its prereleases).
* A constraint is alternatives separated by ``||``; an alternative is comparisons separated by
  whitespace or a comma, all of which must hold. A comparison is an operator (``=``, the default,
  ``!=``, ``>``, ``<``, ``>=``/``=>``, ``<=``/``=<``, ``~``/``~>``, ``^``) and a version that may
  be partial or use ``x``/``X``/``*`` wildcards from some component on (``1``, ``1.x``,
  ``1.2.*``, ``*``); ``A - B`` (spaces required, bare versions) means ``>=A <=B``.
* ``1.2``, ``=1.2``, ``1.2.x``: any 1.2.z. ``~1.2.3``: >=1.2.3 <1.3.0; ``~1``: any 1.y.z.
  ``^1.2.3``: >=1.2.3 <2.0.0; ``^0.2.3``: >=0.2.3 <0.3.0; ``^0.0.3``: only 0.0.3.
  ``>1.2``: >=1.3.0 and ``<=1.2``: <1.3.0 (a partial bound of ``>`` or ``<=`` covers its whole
  range); ``<1.2`` and ``>=1.2`` compare with 1.2.0.
* A prerelease tag satisfies an alternative only if a comparison of that alternative itself has a
  prerelease (``>=1.0.0-0``); precedence then applies across versions, not only within one
  patch as npm does.
* Bare wildcards after ``^ > <= !=`` keep Masterminds' code behaviour rather than its comments:
  ``^*`` is only 0.0.0, ``>*`` everything but 0.0.0, ``<=*`` 0.0.z, ``!=*`` everything but 0.0.0.
* Stricter than Masterminds, as errors rather than odd readings: version components other than
  digits or a lone wildcard (``1x``), and constraints longer than 512 characters.
"""

from __future__ import annotations

import re
import reprlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from regcopy.digest import Digest
from regcopy.errors import ConfigError, InvalidReference
from regcopy.sync.model import RepoFilter, TagFilter

__all__ = ("RepoMatcher", "TagMatcher", "compile_repo_filter", "compile_tag_filter", "unanchored")

_U64_MAX: Final = 2**64 - 1
_DIGITS: Final = re.compile(r"[0-9]+")  # not \d: Python's \d also takes non-ASCII digits
_IDENTIFIER: Final = re.compile(r"[0-9A-Za-z-]+")
_COMPONENT: Final = re.compile(r"[0-9]+|[xX*]")
_WILDCARDS: Final = frozenset("xX*")
# Docker's tag grammar (as regcopy.reference checks it).
_TAG: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_MAX_CONSTRAINT: Final = 512  # Masterminds' MaxConstraintLen
_OPERATORS: Final = {
    "=": "=", "!=": "!=", ">": ">", "<": "<", ">=": ">=", "=>": ">=", "<=": "<=", "=<": "<=",
    "~": "~", "~>": "~", "^": "^",
}
_OPERATOR_CHARS: Final = frozenset("=!<>~^")
_VERSION_CHARS: Final = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.*+-")
_SPACE: Final = frozenset(" \t\n\f\r")  # Go's \s, which Masterminds' grammar is written in
_LEADING_FLAGS: Final = re.compile(r"\(\?[aiLmsux]+\)")

_PreKey = tuple[tuple[int, int, str], ...]
_VersionKey = tuple[int, int, int, int, _PreKey]

_REPR: Final = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 60


def _shown(value: object) -> str:
    """A repr for messages, bounded: a plan's constraint or pattern may be megabytes long."""
    if isinstance(value, int) and value.bit_length() > 200:
        return "a huge integer"  # repr() of a huge int costs quadratic time, past 4300 digits it fails
    return _REPR.repr(value)


# --- versions --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Version:
    """A parsed version; ``parts`` counts the components the text spelled out (for tie-breaks)."""

    major: int
    minor: int
    patch: int
    pre: tuple[str, ...]
    parts: int
    key: _VersionKey = field(init=False, repr=False, compare=False)
    """A sort key in semver precedence order."""

    def __post_init__(self) -> None:
        # Numeric identifiers sort below alphanumeric ones; a shorter identifier list that is a
        # prefix of a longer one sorts first, which tuple comparison gives for free. Masterminds
        # treats a number beyond uint64 as alphanumeric, hence _number rather than isdigit().
        pre = tuple((0, n, "") if (n := _number(p)) is not None else (1, 0, p) for p in self.pre)
        object.__setattr__(self, "key", (self.major, self.minor, self.patch, 0 if self.pre else 1, pre))


def _cmp(a: _Version, b: _Version) -> int:
    ka, kb = a.key, b.key
    return (ka > kb) - (ka < kb)


def _number(text: str) -> int | None:
    """``text`` as an unsigned 64-bit number like Go's ``ParseUint``, else None."""
    # The length check keeps int() away from huge digit strings before the range check.
    if len(text) > 20 or not _DIGITS.fullmatch(text):
        return None
    value = int(text)
    return value if value <= _U64_MAX else None


def _identifiers(text: str, *, prerelease: bool) -> tuple[str, ...] | None:
    parts = tuple(text.split("."))
    for part in parts:
        if not _IDENTIFIER.fullmatch(part):
            return None
        if prerelease and len(part) > 1 and part[0] == "0" and _DIGITS.fullmatch(part):
            return None
    return parts


def _split(text: str) -> tuple[list[str], tuple[str, ...]] | None:
    """Components and prerelease of ``[v]X[.Y[.Z]][-PRE][+BUILD]``; components unchecked."""
    body = text[1:] if text.startswith("v") else text
    # BUILD may contain '-' and PRE may not contain '+', so '+' is split off first; the
    # components contain neither, so the first '-' starts PRE.
    body, plus, build = body.partition("+")
    if plus and _identifiers(build, prerelease=False) is None:
        return None
    core, dash, pre_text = body.partition("-")
    pre: tuple[str, ...] = ()
    if dash:
        parsed = _identifiers(pre_text, prerelease=True)
        if parsed is None:
            return None
        pre = parsed
    components = core.split(".")
    if len(components) > 3:
        return None
    return components, pre


def _parse_version(tag: str) -> _Version | None:
    """The version a tag names (Masterminds ``NewVersion``), or None when it is not one."""
    split = _split(tag)
    if split is None:
        return None
    components, pre = split
    numbers: list[int] = []
    for component in components:
        number = _number(component)
        if number is None:
            return None
        numbers.append(number)
    numbers.extend([0] * (3 - len(numbers)))
    return _Version(numbers[0], numbers[1], numbers[2], pre, len(components))


# --- constraints -----------------------------------------------------------------------------


class _Invalid(Exception):
    """A constraint does not parse; turned into a ConfigError by compile_tag_filter."""


@dataclass(frozen=True, slots=True)
class _Comparison:
    """One comparison; the ``*dirty`` flags say where a partial or wildcard bound stopped."""

    op: str
    bound: _Version
    dirty: bool = False
    minor_dirty: bool = False
    patch_dirty: bool = False

    def check(self, v: _Version, include_pre: bool) -> bool:
        if v.pre and not include_pre:
            return False
        c = self.bound
        if self.op == "=":
            return self._tilde(v) if self.dirty else _cmp(v, c) == 0
        if self.op == "~":
            return self._tilde(v)
        if self.op == "<":
            return _cmp(v, c) < 0
        if self.op == ">=":
            return _cmp(v, c) >= 0
        if self.op == ">":
            if not self.dirty:
                return _cmp(v, c) > 0
            if v.major != c.major:
                return v.major > c.major
            if self.minor_dirty:
                return False
            if self.patch_dirty:
                return v.minor > c.minor
            return _cmp(v, c) > 0
        if self.op == "<=":
            if not self.dirty:
                return _cmp(v, c) <= 0
            if v.major > c.major:
                return False
            return not (v.major == c.major and v.minor > c.minor and not self.minor_dirty)
        if self.op == "!=":
            return self._not_equal(v)
        return self._caret(v)

    def _tilde(self, v: _Version) -> bool:
        c = self.bound
        if _cmp(v, c) < 0:
            return False
        if (c.major, c.minor, c.patch) == (0, 0, 0) and not self.minor_dirty and not self.patch_dirty:
            return True  # ~0.0.0 and ~* take everything from 0.0.0 on
        if v.major != c.major:
            return False
        return v.minor == c.minor or self.minor_dirty

    def _not_equal(self, v: _Version) -> bool:
        # The branch order is Masterminds' constraintNotEqual, quirks included (see module doc).
        c = self.bound
        if self.dirty:
            if c.major != v.major:
                return True
            if c.minor != v.minor and not self.minor_dirty:
                return True
            if self.minor_dirty:
                return False
            if c.patch != v.patch and not self.patch_dirty:
                return True
            if self.patch_dirty:
                return v.pre != c.pre
        return _cmp(v, c) != 0

    def _caret(self, v: _Version) -> bool:
        c = self.bound
        if _cmp(v, c) < 0:
            return False
        if c.major > 0 or self.minor_dirty:
            return v.major == c.major
        if v.major > 0:
            return False
        if c.minor > 0 or self.patch_dirty:
            return v.minor == c.minor
        if v.minor > 0:
            return False
        return v.patch == c.patch


def _comparison(op: str, text: str) -> _Comparison:
    split = _split(text)
    if split is None or not all(_COMPONENT.fullmatch(c) for c in split[0]):
        raise _Invalid(f"{_shown(text)} is not a version")
    components, pre = split
    # The first wildcard or missing component decides the range; components after a wildcard
    # are ignored, as Masterminds does (1.x.3 is 1.x).
    wild = next((i for i, c in enumerate(components) if c in _WILDCARDS), len(components))
    numbers: list[int] = []
    for component in components[:wild]:
        number = _number(component)
        if number is None:
            raise _Invalid(f"{_shown(text)}: {_shown(component)} is too large")
        numbers.append(number)
    numbers.extend([0] * (3 - len(numbers)))
    bound = _Version(numbers[0], numbers[1], numbers[2], pre, len(components))
    return _Comparison(_OPERATORS[op], bound, dirty=wild < 3, minor_dirty=wild == 1, patch_dirty=wild == 2)


@dataclass(frozen=True, slots=True)
class _Constraint:
    """Alternatives, each a conjunction of comparisons and whether it admits prereleases."""

    alternatives: tuple[tuple[tuple[_Comparison, ...], bool], ...]

    def check(self, v: _Version) -> bool:
        return any(all(c.check(v, pre) for c in group) for group, pre in self.alternatives)


def _run(text: str, start: int, chars: frozenset[str]) -> int:
    end = start + 1
    while end < len(text) and text[end] in chars:
        end += 1
    return end


def _tokens(text: str) -> list[tuple[str, str, bool]]:
    """(kind, text, after_space) for the operators, versions and commas of one alternative."""
    tokens: list[tuple[str, str, bool]] = []
    i, spaced = 0, False
    while i < len(text):
        ch = text[i]
        if ch in _SPACE:
            spaced, i = True, i + 1
            continue
        if ch == ",":
            kind, end = ",", i + 1
        elif ch in _OPERATOR_CHARS:
            kind, end = "op", _run(text, i, _OPERATOR_CHARS)
        elif ch in _VERSION_CHARS:
            # A lone "-" also lands here: the hyphen of a range.
            kind, end = "version", _run(text, i, _VERSION_CHARS)
        else:
            raise _Invalid(f"unexpected character {ch!r}")
        tokens.append((kind, text[i:end], spaced))
        spaced, i = False, end
    return tokens


def _alternative(text: str) -> tuple[_Comparison, ...]:
    """One ``||`` alternative: ``[op] version`` or ``A - B``, separated by whitespace or a comma."""
    tokens = _tokens(text)
    if not tokens:
        raise _Invalid("empty constraint")
    out: list[_Comparison] = []
    i = 0
    while True:
        kind, word, _ = tokens[i]
        op, bare = "=", kind != "op"
        if kind == "op":
            if word not in _OPERATORS:
                raise _Invalid(f"unknown operator {_shown(word)}")
            op, i = word, i + 1
            if i == len(tokens):
                raise _Invalid(f"{_shown(word)} needs a version")
            kind, word, _ = tokens[i]
        if kind != "version" or word == "-":
            raise _Invalid(f"expected a version, found {_shown(word)}")
        i += 1
        if i < len(tokens) and tokens[i][:2] == ("version", "-"):
            # A hyphen range: Masterminds only recognises it with spaces around the '-' and bare
            # versions on both sides, and rewrites it to >= A, <= B.
            nxt = tokens[i + 1] if i + 1 < len(tokens) else None
            if not bare:
                raise _Invalid("a hyphen range takes bare versions")
            if not tokens[i][2] or nxt is None or nxt[0] != "version" or not nxt[2] or nxt[1] == "-":
                raise _Invalid("a hyphen range is 'A - B' with spaces around '-'")
            out += [_comparison(">=", word), _comparison("<=", nxt[1])]
            i += 2
        else:
            out.append(_comparison(op, word))
        if i == len(tokens):
            return tuple(out)
        if tokens[i][0] == ",":
            i += 1
            if i == len(tokens):
                raise _Invalid("trailing comma")
        elif not tokens[i][2]:
            raise _Invalid(f"missing space or comma before {_shown(tokens[i][1])}")


def _parse_constraint(text: str) -> _Constraint:
    if len(text) > _MAX_CONSTRAINT:
        raise _Invalid(f"longer than {_MAX_CONSTRAINT} characters")
    alternatives = []
    for part in text.split("||"):
        group = _alternative(part)
        alternatives.append((group, any(c.bound.pre for c in group)))
    return _Constraint(tuple(alternatives))


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
            raise ConfigError(f"a regular expression must be a string, not {_shown(pattern)}", path=path, entry=entry,
                              key=where)
        try:
            compiled.append(re.compile(pattern, re.ASCII))
        except (re.error, ValueError, OverflowError, RecursionError) as exc:
            raise ConfigError(f"invalid regular expression {_shown(pattern)}: {exc}", path=path, entry=entry,
                              key=where) from None
    return tuple(compiled)


def _any_match(patterns: tuple[re.Pattern[str], ...], text: str) -> bool:
    return any(p.fullmatch(text) is not None for p in patterns)


# --- tags ------------------------------------------------------------------------------------


def _tie_break(item: tuple[str, _Version]) -> tuple[int, bool, int, str]:
    tag, version = item
    return (-version.parts, tag.startswith("v"), len(tag), tag)


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
        semver: _Constraint | None,
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
        versioned = [(t, v) for t in passing if (v := _parse_version(t)) is not None]
        if self._semver is not None:
            constraint = self._semver
            versioned = [(t, v) for t, v in versioned if constraint.check(v)]
        if latest is not None:
            # Two stable sorts: tie-breaks ascending, then version descending.
            versioned.sort(key=_tie_break)
            versioned.sort(key=lambda item: item[1].key, reverse=True)
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
                raise _Invalid("must be a string")
            constraint = _parse_constraint(f.semver)
        except _Invalid as exc:
            raise ConfigError(f"invalid semver constraint {_shown(f.semver)}: {exc}", path=path, entry=entry,
                              key="tags.semver") from None
    if f.latest is not None and (isinstance(f.latest, bool) or not isinstance(f.latest, int) or f.latest < 1):
        raise ConfigError(f"latest must be a positive integer, not {_shown(f.latest)}", path=path, entry=entry,
                          key="tags.latest")
    for i, tag in enumerate(f.exact):
        if not isinstance(tag, str) or not _TAG.fullmatch(tag):
            raise ConfigError(f"invalid tag {_shown(tag)}", path=path, entry=entry, key=f"tags.exact[{i}]")
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
