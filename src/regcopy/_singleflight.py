"""SingleFlight: one in-flight call per key; concurrent callers share its outcome; failures are not cached.

Modelled on ggcr ``remote/pusher.go`` and regclient ``imageSeenOrWait``: the first caller runs the
work, later callers wait for it; if it fails, the entry is dropped so the next caller tries again.
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

    Waiters of a failed call do not receive its exception: they retry the work themselves, because a
    failure in one image's copy (a cancelled task, a broken source stream) says nothing about theirs.
    """

    def __init__(self) -> None:
        self._calls: dict[K, _Call[V]] = {}

    def in_flight(self, key: K) -> bool:
        """Whether a call for ``key`` is running now."""
        return key in self._calls

    async def do(self, key: K, work: Callable[[], Awaitable[V]]) -> tuple[V, bool]:
        """Run ``work`` unless a call for ``key`` is in flight, then wait for that one.

        :returns: the value and whether this caller shared another caller's result
        """
        while True:
            call = self._calls.get(key)
            if call is None:
                break
            await call.done.wait()
            if call.error is None:
                return cast(V, call.value), True  # set before done, unless the call failed
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
