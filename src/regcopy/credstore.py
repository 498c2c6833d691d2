"""The credential value and the store contract every credential source implements.

Owns :class:`Credential` (what to authenticate with), :data:`ANONYMOUS`, the :class:`CredentialStore`
protocol, and :class:`CredentialCache`, the one per-host cache and single-flight refresh of every store
that looks credentials up (docker credential helpers and config files in :mod:`regcopy.credentials`,
Amazon ECR in :mod:`regcopy.ecr`). Both of those build on this module and neither on the other's
internals; :mod:`regcopy.credentials` re-exports the value and the protocol, their documented home.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, Protocol, runtime_checkable

from regcopy.singleflight import SingleFlight

__all__ = ("ANONYMOUS", "Credential", "CredentialCache", "CredentialStore")


@dataclass(frozen=True, slots=True, repr=False)
class Credential:
    """What to authenticate with; every field may be None. ``repr()`` shows the username only.

    :ivar username: for Basic auth, token requests (``account=``) and the OAuth2 password grant
    :ivar password: the password
    :ivar identity_token: an OAuth2 refresh token (docker ``identitytoken``), exchanged by POST
        (docs/protocol.md#token-requests)
    :ivar registry_token: a bearer token sent directly to the registry (docker ``registrytoken``)
    """

    username: str | None = None
    password: str | None = None
    identity_token: str | None = None
    registry_token: str | None = None

    @property
    def anonymous(self) -> bool:
        """True when there is nothing to authenticate with."""
        return not (self.username or self.password or self.identity_token or self.registry_token)

    def __repr__(self) -> str:
        def hidden(value: str | None) -> str:
            return "None" if value is None else "'***'"

        return (
            f"Credential(username={self.username!r}, password={hidden(self.password)}, "
            f"identity_token={hidden(self.identity_token)}, registry_token={hidden(self.registry_token)})"
        )


ANONYMOUS: Final = Credential()


@runtime_checkable
class CredentialStore(Protocol):
    """Finds the credential of one registry host. The answer is for that host only (see the module doc)."""

    async def get(self, registry: str) -> Credential:
        """The credential for ``registry`` (``host[:port]``, Hub as ``docker.io``); :data:`ANONYMOUS` if none.

        :raises CredentialError: a config file is unreadable or a credential helper failed
        """
        ...

    def forget(self, registry: str) -> None:
        """Drop anything cached for ``registry`` so the next :meth:`get` looks again (after a 401)."""
        ...


class CredentialCache:
    """Per-host credentials, each kept until forgotten or until its maximum age passes; one lookup per host at a
    time. The one refresh mechanism of every store that looks credentials up (helpers, ECR).

    Like the token cache: concurrent :meth:`get` calls for a host share one ``lookup``
    (:class:`~regcopy.singleflight.SingleFlight`); a failed lookup is not cached and its exception reaches every
    caller that waited on it (a failing helper runs once, not once per waiter); if the looking-up task was
    cancelled, a waiter looks up on its own behalf.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._entries: dict[str, tuple[Credential, float]] = {}  # host -> (credential, refresh at on clock)
        self._flights: SingleFlight[str, Credential] = SingleFlight(share_errors=True)

    async def get(self, host: str, lookup: Callable[[], Awaitable[tuple[Credential, float | None]]]) -> Credential:
        """The cached credential of ``host`` if still fresh, else ``lookup()``'s.

        :param lookup: returns the credential and its maximum age in seconds (None: until forgotten)
        """
        fresh = self._fresh(host)
        if fresh is not None:
            return fresh
        credential, _ = await self._flights.do(host, lambda: self._lookup(host, lookup))
        return credential

    def _fresh(self, host: str) -> Credential | None:
        entry = self._entries.get(host)
        return entry[0] if entry is not None and self.clock() < entry[1] else None

    async def _lookup(self, host: str, lookup: Callable[[], Awaitable[tuple[Credential, float | None]]]) -> Credential:
        # A caller that took over from a cancelled lookup may find the answer another lookup stored meanwhile.
        fresh = self._fresh(host)
        if fresh is not None:
            return fresh
        credential, max_age = await lookup()
        self._entries[host] = (credential, math.inf if max_age is None else self.clock() + max_age)
        return credential

    def forget(self, host: str) -> None:
        self._entries.pop(host, None)
