"""Masterminds-compatible semantic versions of tags and constraints on them (skopeo's ``images-by-semver``).

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

Owns :func:`parse_version`, :func:`parse_constraint` and the ranking of tags by version that sync's
``latest`` and retention's ``keep_latest`` share (:func:`rank_versions`, :func:`highest_first`).
Pure functions, no I/O.
"""

from __future__ import annotations

import re
import reprlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

__all__ = (
    "Constraint",
    "ConstraintError",
    "Version",
    "bounded_repr",
    "highest_first",
    "parse_constraint",
    "parse_version",
    "rank_versions",
)

_U64_MAX: Final = 2**64 - 1
_DIGITS: Final = re.compile(r"[0-9]+")  # not \d: Python's \d also takes non-ASCII digits
_IDENTIFIER: Final = re.compile(r"[0-9A-Za-z-]+")
_COMPONENT: Final = re.compile(r"[0-9]+|[xX*]")
_WILDCARDS: Final = frozenset("xX*")
_MAX_CONSTRAINT: Final = 512  # Masterminds' MaxConstraintLen
_OPERATORS: Final = {
    "=": "=", "!=": "!=", ">": ">", "<": "<", ">=": ">=", "=>": ">=", "<=": "<=", "=<": "<=",
    "~": "~", "~>": "~", "^": "^",
}
_OPERATOR_CHARS: Final = frozenset("=!<>~^")
_VERSION_CHARS: Final = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.*+-")
_SPACE: Final = frozenset(" \t\n\f\r")  # Go's \s, which Masterminds' grammar is written in
_PreKey = tuple[tuple[int, int, str], ...]
_VersionKey = tuple[int, int, int, int, _PreKey]

_REPR: Final = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 60


def bounded_repr(value: object) -> str:
    """A repr for messages, bounded: a plan's constraint or pattern may be megabytes long.

    The plan toolkit's lowest module holds it, so the filters' messages use the same one.
    """
    if isinstance(value, int) and value.bit_length() > 200:
        return "a huge integer"  # repr() of a huge int costs quadratic time, past 4300 digits it fails
    return _REPR.repr(value)


# --- versions --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Version:
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


def _cmp(a: Version, b: Version) -> int:
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


def parse_version(tag: str) -> Version | None:
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
    return Version(numbers[0], numbers[1], numbers[2], pre, len(components))


# --- constraints -----------------------------------------------------------------------------


class ConstraintError(Exception):
    """A constraint does not parse (:func:`regcopy.filters.compile_tag_filter` makes it a ConfigError)."""


@dataclass(frozen=True, slots=True)
class _Comparison:
    """One comparison; the ``*dirty`` flags say where a partial or wildcard bound stopped."""

    op: str
    bound: Version
    dirty: bool = False
    minor_dirty: bool = False
    patch_dirty: bool = False

    def check(self, v: Version, include_pre: bool) -> bool:
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

    def _tilde(self, v: Version) -> bool:
        c = self.bound
        if _cmp(v, c) < 0:
            return False
        if (c.major, c.minor, c.patch) == (0, 0, 0) and not self.minor_dirty and not self.patch_dirty:
            return True  # ~0.0.0 and ~* take everything from 0.0.0 on
        if v.major != c.major:
            return False
        return v.minor == c.minor or self.minor_dirty

    def _not_equal(self, v: Version) -> bool:
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

    def _caret(self, v: Version) -> bool:
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
        raise ConstraintError(f"{bounded_repr(text)} is not a version")
    components, pre = split
    # The first wildcard or missing component decides the range; components after a wildcard
    # are ignored, as Masterminds does (1.x.3 is 1.x).
    wild = next((i for i, c in enumerate(components) if c in _WILDCARDS), len(components))
    numbers: list[int] = []
    for component in components[:wild]:
        number = _number(component)
        if number is None:
            raise ConstraintError(f"{bounded_repr(text)}: {bounded_repr(component)} is too large")
        numbers.append(number)
    numbers.extend([0] * (3 - len(numbers)))
    bound = Version(numbers[0], numbers[1], numbers[2], pre, len(components))
    return _Comparison(_OPERATORS[op], bound, dirty=wild < 3, minor_dirty=wild == 1, patch_dirty=wild == 2)


@dataclass(frozen=True, slots=True)
class Constraint:
    """Alternatives, each a conjunction of comparisons and whether it admits prereleases."""

    alternatives: tuple[tuple[tuple[_Comparison, ...], bool], ...]

    def check(self, v: Version) -> bool:
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
            raise ConstraintError(f"unexpected character {ch!r}")
        tokens.append((kind, text[i:end], spaced))
        spaced, i = False, end
    return tokens


def _alternative(text: str) -> tuple[_Comparison, ...]:
    """One ``||`` alternative: ``[op] version`` or ``A - B``, separated by whitespace or a comma."""
    tokens = _tokens(text)
    if not tokens:
        raise ConstraintError("empty constraint")
    out: list[_Comparison] = []
    i = 0
    while True:
        kind, word, _ = tokens[i]
        op, bare = "=", kind != "op"
        if kind == "op":
            if word not in _OPERATORS:
                raise ConstraintError(f"unknown operator {bounded_repr(word)}")
            op, i = word, i + 1
            if i == len(tokens):
                raise ConstraintError(f"{bounded_repr(word)} needs a version")
            kind, word, _ = tokens[i]
        if kind != "version" or word == "-":
            raise ConstraintError(f"expected a version, found {bounded_repr(word)}")
        i += 1
        if i < len(tokens) and tokens[i][:2] == ("version", "-"):
            # A hyphen range: Masterminds only recognises it with spaces around the '-' and bare
            # versions on both sides, and rewrites it to >= A, <= B.
            nxt = tokens[i + 1] if i + 1 < len(tokens) else None
            if not bare:
                raise ConstraintError("a hyphen range takes bare versions")
            if not tokens[i][2] or nxt is None or nxt[0] != "version" or not nxt[2] or nxt[1] == "-":
                raise ConstraintError("a hyphen range is 'A - B' with spaces around '-'")
            out += [_comparison(">=", word), _comparison("<=", nxt[1])]
            i += 2
        else:
            out.append(_comparison(op, word))
        if i == len(tokens):
            return tuple(out)
        if tokens[i][0] == ",":
            i += 1
            if i == len(tokens):
                raise ConstraintError("trailing comma")
        elif not tokens[i][2]:
            raise ConstraintError(f"missing space or comma before {bounded_repr(tokens[i][1])}")


def parse_constraint(text: str) -> Constraint:
    """A constraint (Masterminds ``NewConstraint``; grammar in the module doc).

    :raises ConstraintError: it does not parse, or is longer than 512 characters
    """
    if len(text) > _MAX_CONSTRAINT:
        raise ConstraintError(f"longer than {_MAX_CONSTRAINT} characters")
    alternatives = []
    for part in text.split("||"):
        group = _alternative(part)
        alternatives.append((group, any(c.bound.pre for c in group)))
    return Constraint(tuple(alternatives))


# --- ranking ---------------------------------------------------------------------------------


def _tie_break(item: tuple[str, Version]) -> tuple[int, bool, int, str]:
    tag, version = item
    return (-version.parts, tag.startswith("v"), len(tag), tag)


def highest_first(versioned: list[tuple[str, Version]]) -> None:
    """Sort (tag, version) pairs in place, highest version first; ties as :meth:`TagMatcher.select` says."""
    # Two stable sorts: tie-breaks ascending, then version descending.
    versioned.sort(key=_tie_break)
    versioned.sort(key=lambda item: item[1].key, reverse=True)


def rank_versions(tags: Iterable[str]) -> tuple[list[str], list[str]]:
    """The tags that are versions, highest first, ranked as ``latest`` ranks them; and the others, in order.

    Equal versions spelled differently (``1.2``, ``1.2.0``, ``v1.2.0``) are ranked by the most
    explicit spelling (more components, then without ``v``, then shorter, then string order).
    Retention's ``keep_latest`` ranks with this too, so it agrees with sync's ``latest``.
    """
    versioned: list[tuple[str, Version]] = []
    others: list[str] = []
    for tag in tags:
        version = parse_version(tag)
        if version is None:
            others.append(tag)
        else:
            versioned.append((tag, version))
    highest_first(versioned)
    return [t for t, _ in versioned], others


