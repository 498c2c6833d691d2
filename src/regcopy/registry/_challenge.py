"""``WWW-Authenticate`` challenges and token scopes: parsing, choosing, merging (pure, no I/O).

Owns the RFC 7235 §2.1 / §4.1 challenge grammar as registries use it (RFC 6750 §3 ``Bearer`` challenges of the
Docker token spec, docs/protocol.md#challenges) and the ``type:name:actions`` resource scopes of ``scope.md``.

The parser is a hand-written, linear-time scanner: a header comes from the network, so it must never backtrack
catastrophically and must never raise anything but :class:`~regcopy.errors.ProtocolViolation`.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, NoReturn

from regcopy.errors import ProtocolViolation

__all__ = (
    "CATALOG_SCOPE",
    "Challenge",
    "Scope",
    "merge_scopes",
    "parse_www_authenticate",
    "pick_challenge",
)

# RFC 7230 §3.2.6 tchar, and RFC 7235 §2.1 token68 characters (the trailing '=' padding handled apart).
_TCHAR: Final = frozenset("!#$%&'*+-.^_`|~" + string.ascii_letters + string.digits)
_TOKEN68: Final = frozenset("-._~+/" + string.ascii_letters + string.digits)
_WS: Final = " \t"
_MAX_SHOWN: Final = 200


@dataclass(frozen=True, slots=True)
class Challenge:
    """One authentication challenge: a lowercased scheme and its parameters (keys lowercased, in order).

    ``token68`` holds the rare ``Scheme <token68>`` form (RFC 7235 §2.1); registries never send it.
    """

    scheme: str
    params: tuple[tuple[str, str], ...] = ()
    token68: str | None = None

    def param(self, name: str) -> str | None:
        """The value of parameter ``name`` (case-insensitive); the first one if it is repeated."""
        wanted = name.lower()
        for key, value in self.params:
            if key == wanted:
                return value
        return None

    @property
    def realm(self) -> str | None:
        """The ``realm``: the token endpoint URL for Bearer (docs/protocol.md#token-requests)."""
        return self.param("realm")

    @property
    def service(self) -> str | None:
        """The ``service`` to send to the token endpoint."""
        return self.param("service")

    @property
    def scopes(self) -> tuple[str, ...]:
        """The ``scope`` parameter split on whitespace: a space-separated list (docs/protocol.md#challenges)."""
        value = self.param("scope")
        return tuple(value.split()) if value else ()

    @property
    def error(self) -> str | None:
        """The RFC 6750 §3.1 ``error`` code, such as ``insufficient_scope`` or ``invalid_token``."""
        return self.param("error")


def parse_www_authenticate(values: Sequence[str]) -> list[Challenge]:
    """Parse every challenge of one or more ``WWW-Authenticate`` header values.

    One value may hold several comma-separated challenges (``Basic realm="a", Bearer realm="b"``); values
    may be quoted strings with backslash escapes (commas inside quotes are data) or bare tokens.

    :param values: the header values, in the order received (a lone ``str`` is taken as one value)
    :returns: the challenges, in order
    :raises ProtocolViolation: a value is empty, or not a challenge list (unterminated quote, missing ``=``,
        parameters without a scheme, control characters, ...)
    """
    if isinstance(values, str):
        values = (values,)
    challenges: list[Challenge] = []
    for value in values:
        challenges.extend(_Scanner(value).challenges())
    return challenges


def pick_challenge(challenges: Iterable[Challenge]) -> Challenge | None:
    """The challenge to answer: the first ``bearer``, else the first ``basic``, else None.

    Other schemes (Negotiate, ...) are ignored, as go-containerregistry pkg/v1/remote/transport/bearer.go
    ``pickFromMultipleChallenges`` does.
    """
    basic: Challenge | None = None
    for challenge in challenges:
        if challenge.scheme == "bearer":
            return challenge
        if challenge.scheme == "basic" and basic is None:
            basic = challenge
    return basic


class _Scanner:
    """A cursor over one header value; every method is linear in what it consumes."""

    __slots__ = ("pos", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, why: str) -> NoReturn:
        shown = self.text[:_MAX_SHOWN]
        if not shown.isprintable():
            shown = repr(shown)[1:-1]
        raise ProtocolViolation(f"malformed WWW-Authenticate header: {why}: {shown}")

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def skip_ws(self) -> bool:
        start = self.pos
        while self.peek() and self.peek() in _WS:
            self.pos += 1
        return self.pos > start

    def skip_separators(self) -> None:
        # RFC 7230 §7: recipients accept empty list elements (", ,").
        while self.peek() and self.peek() in " \t,":
            self.pos += 1

    def run(self, allowed: frozenset[str]) -> str:
        start = self.pos
        while self.peek() and self.peek() in allowed:
            self.pos += 1
        return self.text[start : self.pos]

    def challenges(self) -> list[Challenge]:
        for index, char in enumerate(self.text):
            if (ord(char) < 0x20 and char != "\t") or 0x7F <= ord(char) <= 0x9F:
                self.fail(f"control character at offset {index}")
        self.skip_separators()
        if self.at_end():
            self.fail("empty header")
        found: list[Challenge] = []
        while not self.at_end():
            found.append(self.challenge())
        return found

    def challenge(self) -> Challenge:
        """One challenge; leaves the cursor at the next challenge's scheme or at the end."""
        scheme = self.run(_TCHAR)
        if not scheme:
            self.fail(f"expected an auth scheme at offset {self.pos}")
        spaced = self.skip_ws()
        char = self.peek()
        if char == "=":
            self.fail("parameter without an auth scheme")
        if char in ("", ","):
            self.skip_separators()
            return Challenge(scheme.lower())
        if not spaced:
            self.fail(f"unexpected {char!r} after the auth scheme")
        token68 = self.token68()
        if token68 is not None:
            return Challenge(scheme.lower(), token68=token68)
        return Challenge(scheme.lower(), self.params())

    def token68(self) -> str | None:
        """``Scheme token68`` (RFC 7235 §2.1), only when the token68 is the whole list element."""
        start = self.pos
        body = self.run(_TOKEN68)
        if body:
            while self.peek() == "=":
                self.pos += 1
            value = self.text[start : self.pos]
            self.skip_ws()
            if self.peek() in ("", ","):
                self.skip_separators()
                return value
        self.pos = start
        return None

    def params(self) -> tuple[tuple[str, str], ...]:
        params: list[tuple[str, str]] = []
        while True:
            name = self.run(_TCHAR)
            if not name:
                self.fail(f"expected a parameter name at offset {self.pos}")
            self.skip_ws()
            if self.peek() != "=":
                self.fail(f"missing '=' after parameter {name!r}")
            self.pos += 1
            self.skip_ws()
            value = self.quoted() if self.peek() == '"' else self.bare(name)
            params.append((name.lower(), value))
            self.skip_ws()
            if self.at_end():
                break
            if self.peek() != ",":
                self.fail(f"expected ',' after the value of {name!r}")
            self.skip_separators()
            if self.at_end() or not self.param_follows():
                break
        return tuple(params)

    def param_follows(self) -> bool:
        """Whether the next list element is ``name=...`` (this challenge) rather than a new scheme."""
        start = self.pos
        name = self.run(_TCHAR)
        self.skip_ws()
        follows = bool(name) and self.peek() == "="
        self.pos = start
        return follows

    def quoted(self) -> str:
        """A quoted-string (RFC 7230 §3.2.6) with ``\\`` quoted-pairs; the cursor is on the opening quote."""
        self.pos += 1
        out: list[str] = []
        text = self.text
        while self.pos < len(text):
            char = text[self.pos]
            if char == '"':
                self.pos += 1
                return "".join(out)
            if char == "\\":
                self.pos += 1
                if self.pos >= len(text):
                    break
                char = text[self.pos]
            out.append(char)
            self.pos += 1
        self.fail("unterminated quoted string")

    def bare(self, name: str) -> str:
        # Strictly a token (RFC 7235 §2.1), but some servers send bare URLs (realm=https://...), so read up to
        # whitespace, ',' or a quote. The control-character check already ran.
        start = self.pos
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char in ' \t,"\\' or ord(char) > 0x7E:
                break
            self.pos += 1
        if self.pos == start:
            self.fail(f"missing value for parameter {name!r}")
        return self.text[start : self.pos]


@dataclass(frozen=True, slots=True, order=True)
class Scope:
    """A resource scope ``type:name:actions`` (``repository:library/alpine:pull``).

    ``type`` keeps a resource class if present (``repository(plugin)``); ``str()`` gives the canonical form
    with sorted actions, as sent in the token request's ``scope=`` parameters (docs/protocol.md#token-requests).
    """

    type: str
    name: str
    actions: frozenset[str]

    @classmethod
    def parse(cls, text: str) -> Scope:
        """Parse ``type:name:action[,action]``: type up to the first ``:``, actions after the last one.

        The name may contain a ``:port`` (``repository:localhost:5000/app:pull``, scope.md NOTE).

        :raises ProtocolViolation: fewer than three parts, an empty type or name, or whitespace
        """
        kind, sep, rest = text.partition(":")
        name, sep2, actions = rest.rpartition(":")
        if not sep or not sep2 or not kind or not name or any(c.isspace() for c in text):
            raise ProtocolViolation(f"malformed scope {text[:_MAX_SHOWN]!r}: expected type:name:actions")
        return cls(kind, name, frozenset(a for a in actions.split(",") if a))

    @classmethod
    def repository(cls, name: str, *actions: str) -> Scope:
        """``repository:<name>:<actions>``, e.g. ``Scope.repository("app", "pull", "push")``."""
        return cls("repository", name, frozenset(actions))

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(sorted(self.actions))}"


CATALOG_SCOPE: Final = Scope("registry", "catalog", frozenset({"*"}))


def merge_scopes(scopes: Iterable[Scope]) -> tuple[Scope, ...]:
    """Merge scopes of the same ``(type, name)`` into one with the union of their actions.

    The result keeps the order of first appearance, so callers control which scope comes first: ggcr puts
    newly challenged scopes first because some servers only read the first one (docs/protocol.md#challenges).
    """
    merged: dict[tuple[str, str], set[str]] = {}
    for scope in scopes:
        merged.setdefault((scope.type, scope.name), set()).update(scope.actions)
    return tuple(Scope(kind, name, frozenset(actions)) for (kind, name), actions in merged.items())
