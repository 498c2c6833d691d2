"""Bearer tokens: parsing token-endpoint responses and caching tokens with single-flight refresh.

Owns the token response format of the Docker token spec (docs/protocol.md#token-requests: ``token``/``access_token``,
``expires_in``, ``issued_at``, ``refresh_token``) and :class:`TokenCache`, keyed by
``(registry, realm, service, frozenset(scopes))``. No HTTP: the transport passes a ``fetch`` callable.

Times: ``Token.expires_at`` is on the cache's clock (monotonic by default), never on the wall clock, so a
wall-clock jump cannot expire or resurrect tokens.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Final, TypeAlias

from regcopy.errors import ProtocolViolation
from regcopy.registry._challenge import Scope, merge_scopes
from regcopy.singleflight import SingleFlight

__all__ = ("Token", "TokenCache", "TokenKey", "parse_token_response", "token_key")

logger = logging.getLogger(__name__)

# expires_in defaults to 60 and c/image raises anything lower to 60 (docs/protocol.md#token-requests).
_MIN_LIFETIME: Final = 60.0
# Longer lifetimes are capped: refreshing once a day costs nothing, and it keeps huge or bogus values finite.
_MAX_LIFETIME: Final = 86400.0
_RFC3339: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)


@dataclass(frozen=True, slots=True)
class Token:
    """A bearer token; ``value`` and ``refresh_token`` never appear in ``repr()``.

    :ivar expires_at: expiry on the cache's clock (see :func:`parse_token_response`)
    :ivar refresh_token: a new OAuth2 refresh token to keep as the identity token (ggcr does), or None
    :ivar scopes: the granted scopes when the server said so (OAuth2 responses carry ``scope``)
    """

    value: str = field(repr=False)
    expires_at: float
    refresh_token: str | None = field(default=None, repr=False)
    scopes: tuple[str, ...] = ()


def parse_token_response(body: bytes, *, now: float, wall_now: float) -> Token:
    """Parse a token endpoint's JSON answer (GET or OAuth2 POST, docs/protocol.md#token-requests).

    The lifetime is ``expires_in`` (default 60, raised to at least 60, capped at a day). Without ``issued_at``
    the token expires at ``now + lifetime``. With it, the token's age ``wall_now - issued_at`` can only
    *shorten* that, and never below ``now + 60``: a server clock that runs ahead cannot stretch a token past
    its lifetime, and one that runs behind cannot make a fresh token look expired (which would refetch it
    forever). A registry that really rejects it answers 401, and the transport fetches a new one.

    :param body: the response body
    :param now: the current time on the cache's clock (``TokenCache.clock()``)
    :param wall_now: the current wall-clock time (``time.time()``), to compare with ``issued_at``
    :raises ProtocolViolation: not JSON, not an object, no token, or a field of the wrong type
    """
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ProtocolViolation("token response is not valid JSON") from exc
    if not isinstance(data, dict):
        raise ProtocolViolation("token response is not a JSON object")
    value = _optional_str(data, "token") or _optional_str(data, "access_token")
    if not value:
        raise ProtocolViolation("token response has neither 'token' nor 'access_token'")
    if not all(0x21 <= ord(c) <= 0x7E for c in value):
        # It goes into an Authorization header: refuse anything that could break or inject a header.
        raise ProtocolViolation("token response: token has characters not allowed in an HTTP header")
    lifetime = _lifetime(data.get("expires_in"))
    expires_at = now + lifetime
    issued = _issued_at(data.get("issued_at"))
    if issued is not None:
        age = wall_now - issued
        expires_at = now + min(lifetime, max(_MIN_LIFETIME, lifetime - age))
    return Token(
        value,
        expires_at,
        refresh_token=_optional_str(data, "refresh_token") or None,
        scopes=_scopes(data.get("scope")),
    )


def _optional_str(data: dict[str, object], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise ProtocolViolation(f"token response: {key!r} must be a string, not {type(value).__name__}")
    return value


def _lifetime(value: object) -> float:
    if value is None:
        return _MIN_LIFETIME
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProtocolViolation(f"token response: 'expires_in' must be a number, not {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ProtocolViolation("token response: 'expires_in' must be finite")
    # Compare before converting: float(10**400) overflows.
    return float(min(max(value, _MIN_LIFETIME), _MAX_LIFETIME))


def _issued_at(value: object) -> float | None:
    """``issued_at`` as epoch seconds; None when absent or unparsable (then the lifetime counts from now)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ProtocolViolation(f"token response: 'issued_at' must be a string, not {type(value).__name__}")
    match = _RFC3339.fullmatch(value)
    if match is None:
        logger.debug("ignoring token issued_at that is not RFC 3339: %.64r", value)
        return None
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    try:
        offset = timedelta(hours=int(off_h or 0), minutes=int(off_m or 0))
        tz = UTC if zulu else timezone(-offset if sign == "-" else offset)
        micros = int((fraction or "0")[:6].ljust(6, "0"))
        stamp = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micros, tz)
        return stamp.timestamp()
    except (ValueError, OverflowError):
        logger.debug("ignoring out-of-range token issued_at %.64r", value)
        return None


def _scopes(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(value.split())
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise ProtocolViolation(f"token response: 'scope' must be a string, not {type(value).__name__}")


TokenKey: TypeAlias = tuple[str, str, str | None, frozenset[str]]
"""What a token is good for: ``(registry, realm, service, frozenset(scope strings))``
(docs/protocol.md#token-requests).

Build it with :func:`token_key` so that equal access gives equal keys; any tuple of that shape works."""


def token_key(registry: str, realm: str, service: str | None, scopes: Iterable[Scope | str]) -> TokenKey:
    """A :data:`TokenKey` whose scopes are merged per resource and in canonical ``str(Scope)`` form.

    :raises ProtocolViolation: a scope string is malformed
    """
    parsed = (s if isinstance(s, Scope) else Scope.parse(s) for s in scopes)
    return (registry, realm, service, frozenset(str(s) for s in merge_scopes(parsed)))


@dataclass(slots=True)
class _Entry:
    token: Token
    refresh_at: float


class TokenCache:
    """Tokens per :class:`TokenKey`, refreshed a little before they expire, fetched once per key at a time.

    A token is reused until ``expires_at - margin``, where the margin is ``refresh_margin`` or 10 % of the
    token's lifetime, whichever is smaller (a 60 s token is refreshed after 54 s, a 300 s one after 270 s).

    Fetches are single-flight (:class:`~regcopy.singleflight.SingleFlight`): concurrent :meth:`get` calls for
    one key share one ``fetch``. A failed fetch is not cached; its exception reaches every caller that waited
    on it. If the fetching caller is cancelled, a waiter starts a new fetch rather than inheriting the
    cancellation.
    """

    def __init__(self, *, refresh_margin: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        """
        :param refresh_margin: the most seconds before expiry at which a token is refreshed
        :param clock: the clock ``Token.expires_at`` is measured on; pass ``clock()`` to
            :func:`parse_token_response` as ``now``
        """
        self.clock = clock
        self._margin = refresh_margin
        self._entries: dict[TokenKey, _Entry] = {}
        self._flights: SingleFlight[TokenKey, Token] = SingleFlight(share_errors=True)

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: TokenKey, fetch: Callable[[], Awaitable[Token]]) -> Token:
        """The cached token for ``key`` if still fresh, else the result of ``fetch()`` (shared by callers).

        :raises Exception: whatever ``fetch`` raised, unchanged
        """
        fresh = self.peek(key)
        if fresh is not None:
            return fresh
        token, _ = await self._flights.do(key, lambda: self._fetch(key, fetch))
        return token

    async def _fetch(self, key: TokenKey, fetch: Callable[[], Awaitable[Token]]) -> Token:
        # A caller that took over from a cancelled fetch may find the token another fetch stored meanwhile.
        fresh = self.peek(key)
        if fresh is not None:
            return fresh
        token = await fetch()
        self._store(key, token)
        return token

    def _store(self, key: TokenKey, token: Token) -> None:
        lifetime = max(0.0, token.expires_at - self.clock())
        margin = min(self._margin, 0.1 * lifetime)
        self._entries[key] = _Entry(token, token.expires_at - margin)

    def peek(self, key: TokenKey) -> Token | None:
        """The cached token for ``key`` if it is still fresh, without fetching; drops a stale one."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if self.clock() < entry.refresh_at:
            return entry.token
        del self._entries[key]
        return None

    def invalidate(self, key: TokenKey, token: Token | None = None) -> None:
        """Forget the token of ``key`` (after the registry rejected it with 401).

        :param token: forget only if the cached token is still this one, so that several requests failing
            with the same old token do not throw away the new token the first of them already fetched
        """
        entry = self._entries.get(key)
        if entry is not None and (token is None or entry.token == token):
            del self._entries[key]
