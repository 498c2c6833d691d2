"""One blob ledger across worker processes, in Redis (redis.asyncio; the ``regcopy[scale]`` extra).

Redis holds, per (destination storage, digest), the set of repositories where the blob is known to be
mountable (``{prefix}:blob:{storage}:{digest}``, a hint that expires unless written again), and an
advisory lease (``{prefix}:lease:{storage}:{digest}``: ``SET NX PX`` with a random token, renewed while
the upload runs, released by compare-and-delete) so one worker uploads a shared blob while the others
wait, then mount it (docs/scale-out.md, "Ledger and leases").

The registry stays the truth. A hint is only ever a mount candidate (a refused mount clears it and the
blob is uploaded) or a reason to HEAD; never a reason to skip a blob unseen. A lease is advisory: a
worker whose lease expired (stopped, partitioned) finishes its upload anyway, and the duplicate is
harmless and counted (``uploads`` key). Losing Redis degrades dedup, never correctness: every call
is bounded, a failure marks Redis down for a few seconds and the ledger acts as a one-process one
(local holders, no lease) until it answers again.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Self, TypeVar

import anyio
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from regcopy.digest import Digest
from regcopy.ledger import BlobDecision, BlobLedger
from regcopy.manifest import Descriptor
from regcopy.stores.base import Destination, Origin

__all__ = ("UPLOADS_KEY", "LedgerStats", "RedisLedger", "connect")

log = logging.getLogger(__name__)
T = TypeVar("T")

_HINT_TTL_MS: Final = 7 * 24 * 3600 * 1000
"""A mount hint lives a week after its last write: long enough for a migration's re-runs."""

# Compare-and-delete and compare-and-renew: only the token's owner may release or extend a lease
# (the pattern of the Redis documentation for SET NX PX locks).
_RELEASE: Final = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
_RENEW: Final = ("if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) "
                 "end return 0")


UPLOADS_KEY: ContextVar[str | None] = ContextVar("regcopy_uploads_key", default=None)
"""The hash counting uploads for the copies run in this context (a worker's unit sets its run's)."""


class _Down:
    """Redis did not answer (the call's stand-in result)."""


_DOWN: Final = _Down()


@dataclass(slots=True)
class LedgerStats:
    """What the shared ledger did in this process."""

    leases: int = 0
    """Leases taken (uploads this process started while holding one)."""
    waits: int = 0
    """Uploads of another process this process waited for instead of uploading."""
    lost: int = 0
    """Leases that expired under this process (it was stopped or cut off); its upload went on."""
    degraded: int = 0
    """Times Redis stopped answering; each cost dedup until it answered again."""
    uploads: dict[tuple[str, str], int] = field(default_factory=dict)
    """(storage, digest) → uploads this process completed."""


def connect(url: str, *, timeout: float = 2.0) -> aioredis.Redis:
    """A Redis client for ``url`` whose every call ends within ``timeout`` seconds (connect and reply).

    :raises ValueError: not a ``redis://``, ``rediss://`` or ``unix://`` URL
    """
    return aioredis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                   retry_on_timeout=False)


class RedisLedger(BlobLedger):
    """A :class:`~regcopy.ledger.BlobLedger` whose holders and leases are shared through Redis.

    Use as ``async with RedisLedger(client) as ledger`` (a background task writes hints in batches).

    :param client: a redis.asyncio client (see :func:`connect`); not closed by the ledger
    :param prefix: the key prefix (one Redis can serve several independent migrations)
    :param lease_ms: the lease's life; renewed every third of it while the upload runs
    :param uploads_key: a hash counting completed uploads per ``storage|digest`` (duplicates show as > 1)
    :param down_for: seconds Redis is left alone after a failed call
    """

    def __init__(self, client: aioredis.Redis, *, prefix: str = "regcopy", lease_ms: int = 30_000,
                 uploads_key: str | None = None, down_for: float = 5.0) -> None:
        super().__init__()
        self.redis = client
        self.prefix = prefix
        self.lease_ms = lease_ms
        self.uploads_key = uploads_key
        self.down_for = down_for
        self.stats = LedgerStats()
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self._down_until = 0.0
        self._pending: dict[tuple[str, str, str], bool] = {}  # (storage, digest, repo) → add (True) / remove
        self._wake = anyio.Event()
        self._tg: anyio.abc.TaskGroup | None = None
        self._release = client.register_script(_RELEASE)
        self._renew = client.register_script(_RENEW)

    # -- life
    async def __aenter__(self) -> Self:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._flusher)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        await self._tg.__aexit__(None, None, None)
        self._tg = None
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            await self.flush()

    # -- the decision
    async def decide(self, destination: Destination, blob: Descriptor, origin: Origin | None) -> BlobDecision:
        """The one-process decision, with the repositories other workers filled as mount candidates.

        When another worker noted the blob in this very repository, the registry is asked (a HEAD)
        rather than trusting that this run found the repository empty.
        """
        storage, repository = destination.storage_id, destination.repository
        remote = await self.remote_holders(storage, blob.digest)
        for repo in remote - {repository}:
            self.holders.setdefault((storage, blob.digest), set()).add(repo)
        unseen = repository in remote and self.known(storage, blob.digest, repository) is False
        if unseen and await destination.has_blob(blob):
            return BlobDecision("skipped")
        return await super().decide(destination, blob, origin)

    async def remote_holders(self, storage: str, digest: Digest) -> set[str]:
        """Repositories other workers noted as holding the blob (empty when Redis is down)."""
        found = await self._call(lambda: self.redis.smembers(self._key("blob", storage, digest)))
        if isinstance(found, _Down):
            return set()
        return {m.decode() if isinstance(m, bytes) else str(m) for m in found}

    def note(self, storage: str, digest: Digest, repository: str) -> None:
        super().note(storage, digest, repository)
        self._queue((storage, str(digest), repository), True)

    def forget(self, storage: str, digest: Digest, repository: str) -> None:
        super().forget(storage, digest, repository)
        self._queue((storage, str(digest), repository), False)

    # -- the lease
    @asynccontextmanager
    async def upload_lease(self, destination: Destination, blob: Descriptor) -> AsyncIterator[bool]:
        """Take the lease, or wait for the process holding it and yield False (decide again).

        With the lease, the blob's holder is written to Redis before the lease is released, so a
        waiter that wakes finds it. Redis down: no lease, yield True (upload; dedup degrades).
        """
        storage, repository = destination.storage_id, destination.repository
        key = self._key("lease", storage, blob.digest)
        token = f"{self.owner}:{uuid.uuid4().hex}"
        got = await self._call(lambda: self.redis.set(key, token, nx=True, px=self.lease_ms))
        if got is None:  # held by another process
            self.stats.waits += 1
            await self._wait_released(key)
            yield False
            return
        leased = not isinstance(got, _Down)
        if leased and await self.remote_holders(storage, blob.digest):
            # The holder released between this worker's decision and its SET NX: mount instead.
            await self._call(lambda: self._release(keys=[key], args=[token]))
            self.stats.waits += 1
            yield False
            return
        stop = anyio.Event()
        if leased:
            self.stats.leases += 1
            self._spawn(self._keep, key, token, stop)
        try:
            yield True
        except BaseException:
            stop.set()
            if leased:
                with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                    await self._call(lambda: self._release(keys=[key], args=[token]))
            raise
        stop.set()
        await self._uploaded(storage, blob.digest, repository, key if leased else None, token)

    async def _uploaded(self, storage: str, digest: Digest, repository: str, lease: str | None, token: str) -> None:
        """One round trip: the holder, its expiry, the upload count, then the lease's release."""
        counted = (storage, str(digest))
        self.stats.uploads[counted] = self.stats.uploads.get(counted, 0) + 1
        hint = self._key("blob", storage, digest)
        uploads = self.uploads_key or UPLOADS_KEY.get()

        async def write() -> Any:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.sadd(hint, repository)
                pipe.pexpire(hint, _HINT_TTL_MS)
                if uploads is not None:
                    pipe.hincrby(uploads, f"{storage}|{digest}", 1)
                if lease is not None:
                    await self._release(keys=[lease], args=[token], client=pipe)
                return await pipe.execute()

        with anyio.CancelScope(shield=True):
            await self._call(write)

    async def _keep(self, key: str, token: str, stop: anyio.Event) -> None:
        """Renew the lease every third of its life until ``stop``; note a lease lost meanwhile."""
        while True:
            with anyio.move_on_after(self.lease_ms / 3000):
                await stop.wait()
            if stop.is_set():
                return
            renewed = await self._call(lambda: self._renew(keys=[key], args=[token, self.lease_ms]))
            if renewed == 0:
                # Expired while this process was stopped or cut off: another may be uploading too.
                # The upload goes on (advisory lease); the duplicate is counted, never an error.
                self.stats.lost += 1
                log.info("lease %s lost; the upload goes on", key)
                return

    async def _wait_released(self, key: str) -> None:
        """Until the lease is gone (released, or expired with its holder); Redis down ends the wait."""
        delay = 0.05
        while True:
            ttl = await self._call(lambda: self.redis.pttl(key))
            if isinstance(ttl, _Down) or ttl < 0:  # -2: gone; -1 cannot happen (always set with PX)
                return
            await anyio.sleep(min(delay, ttl / 1000 + 0.01))
            delay = min(delay * 2, 1.0)

    # -- hints in batches
    def _queue(self, item: tuple[str, str, str], add: bool) -> None:
        self._pending[item] = add
        self._wake.set()

    async def _flusher(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            await anyio.sleep(0.2)  # gather a batch: one round trip for many notes
            await self.flush()

    async def flush(self) -> None:
        """Write the queued hints now (dropped, not retried, when Redis is down: they are only hints)."""
        if not self._pending:
            return
        batch, self._pending = self._pending, {}

        async def write() -> Any:
            async with self.redis.pipeline(transaction=False) as pipe:
                for (storage, digest, repo), add in batch.items():
                    hint = self._key("blob", storage, digest)
                    if add:
                        pipe.sadd(hint, repo)
                        pipe.pexpire(hint, _HINT_TTL_MS)
                    else:
                        pipe.srem(hint, repo)
                return await pipe.execute()

        await self._call(write)

    # -- plumbing
    def _key(self, kind: str, storage: str, digest: Digest | str) -> str:
        return f"{self.prefix}:{kind}:{storage}:{digest}"

    def _spawn(self, fn: Callable[..., Coroutine[Any, Any, None]], *args: Any) -> None:
        if self._tg is None:
            raise RuntimeError("use the ledger as `async with RedisLedger(...)`")
        self._tg.start_soon(fn, *args)

    async def _call(self, fn: Callable[[], Awaitable[T]]) -> T | _Down:
        """``fn()`` unless Redis is resting after a failure; a failure starts such a rest."""
        if time.monotonic() < self._down_until:
            return _DOWN
        try:
            return await fn()
        except (RedisError, OSError) as exc:
            self.stats.degraded += 1
            log.warning("the Redis ledger is not answering (%s); deduplicating within this process "
                            "for %.1f s", exc, self.down_for)
            self._down_until = time.monotonic() + self.down_for
            return _DOWN
