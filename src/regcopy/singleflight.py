"""SingleFlight: one call per key at a time; concurrent callers share its outcome; nothing is cached.

The one single-flight mechanism of regcopy: the blob ledger (one upload per storage and digest), the
token cache (one token fetch per key) and the credential cache (one lookup per host) all use it.
Modelled on ggcr ``pkg/v1/remote/pusher.go`` and regclient ``imageSeenOrWait``: the first caller runs
the work, later callers wait for it; when it ends the key is free again, so a failure is never cached.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar, cast

import anyio

__all__ = ("SingleFlight",)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _Call(Generic[V]):
    __slots__ = ("done", "error", "value")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.value: V | None = None
        self.error: BaseException | None = None


class SingleFlight(Generic[K, V]):
    """Deduplicates concurrent calls per key.

    :param share_errors: whether a failure of the running call reaches the callers waiting on it.
        False (the blob ledger): waiters run the work again themselves, because one image's failure
        (a broken source stream) says nothing about theirs. True (token and credential caches): an
        ``Exception`` is raised to every waiter, so a failing credential helper runs once, not once
        per waiter. Either way, a call ended by cancellation (any ``BaseException`` that is not an
        ``Exception``) hands over: one waiter runs the work, the others wait for that one.
    """

    def __init__(self, *, share_errors: bool = False) -> None:
        self.share_errors = share_errors
        self._calls: dict[K, _Call[V]] = {}

    def busy(self, key: K) -> bool:
        """Whether a call for ``key`` is in flight now."""
        return key in self._calls

    async def do(self, key: K, work: Callable[[], Awaitable[V]]) -> tuple[V, bool]:
        """Run ``work`` unless a call for ``key`` is in flight, then wait for that one.

        :returns: the value and whether this caller shared another caller's result
        :raises BaseException: what this caller's ``work`` raised, or (``share_errors``) the
            ``Exception`` of the call it waited for
        """
        while True:
            call = self._calls.get(key)
            if call is None:
                break
            await call.done.wait()
            if call.error is None:
                return cast(V, call.value), True  # set before done, unless the call failed
            if self.share_errors and isinstance(call.error, Exception):
                raise call.error
        call = _Call[V]()
        self._calls[key] = call
        try:
            call.value = await work()
            return call.value, False
        except BaseException as exc:
            call.error = exc
            raise
        finally:
            del self._calls[key]
            call.done.set()
