"""The shared blob ledger (regcopy.scale.redis_ledger) against a real redis-server: holders, leases
(SET NX PX, renewal, compare-and-delete), stale hints, and Redis going away mid-run."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
from memstores import MemMountingDestination, MemSource, MemStorage, add_image

from regcopy.digest import Digest
from regcopy.engine import copy_image
from regcopy.manifest import OCI_LAYER, Descriptor
from regcopy.scale.redis_ledger import RedisLedger, connect
from servers.redis_server import RedisServer

BASE = b"base-layer " * 4000
RUNTIME = b"runtime " * 3000


@asynccontextmanager
async def ledgers(server: RedisServer, n: int = 1, **kwargs: Any) -> AsyncIterator[list[RedisLedger]]:
    """``n`` RedisLedgers on their own clients, as ``n`` worker processes would have them."""
    async with AsyncExitStack() as stack:
        out = []
        for _ in range(n):
            client = connect(server.url, timeout=1.0)
            stack.push_async_callback(client.aclose)
            out.append(await stack.enter_async_context(RedisLedger(client, **kwargs)))
        yield out


def blob(data: bytes) -> Descriptor:
    return Descriptor(OCI_LAYER, Digest.of(data), len(data))


async def test_a_lease_makes_the_second_worker_wait_then_mount(redis_server: RedisServer) -> None:
    async with ledgers(redis_server, 2) as (a, b):
        await _wait_then_mount(a, b)


async def _wait_then_mount(a: RedisLedger, b: RedisLedger) -> None:
    storage = MemStorage()
    dst_a, dst_b = MemMountingDestination(storage, "team/a"), MemMountingDestination(storage, "team/b")
    desc = blob(BASE)
    order: list[str] = []

    async def holder() -> None:
        async with a.upload_lease(dst_a, desc) as leased:
            assert leased
            order.append("a holds")
            await anyio.sleep(0.5)
            storage.blobs["team/a"][desc.digest] = BASE
            order.append("a uploaded")

    async def waiter() -> None:
        await anyio.sleep(0.1)
        async with b.upload_lease(dst_b, desc) as leased:
            order.append(f"b leased={leased}")
        decision = await b.decide(dst_b, desc, None)
        assert decision.action == "mounted" and decision.candidates == ("team/a",)

    async with anyio.create_task_group() as tg:
        tg.start_soon(holder)
        tg.start_soon(waiter)
    assert order == ["a holds", "a uploaded", "b leased=False"]
    assert a.stats.leases == 1 and b.stats.waits == 1
    assert await a.redis.exists("regcopy:lease:registry:mem:" + str(desc.digest)) == 0  # released


async def test_a_lease_is_renewed_while_the_upload_runs(redis_server: RedisServer) -> None:
    async with ledgers(redis_server, lease_ms=300) as (a,):
        await _renewed(a)


async def _renewed(a: RedisLedger) -> None:
    dst = MemMountingDestination(MemStorage(), "r")
    desc = blob(b"renewed")
    key = f"regcopy:lease:registry:mem:{desc.digest}"
    async with a.upload_lease(dst, desc) as leased:
        assert leased
        for _ in range(6):  # 1.2 s: four lifetimes of the lease
            await anyio.sleep(0.2)
            assert (await a.redis.get(key) or b"").startswith(a.owner.encode())
    assert await a.redis.exists(key) == 0


async def test_an_expired_lease_frees_the_waiter_and_release_is_compare_and_delete(redis_server: RedisServer) -> None:
    async with ledgers(redis_server) as (a,):
        await _expired(a)


async def _expired(a: RedisLedger) -> None:
    dst = MemMountingDestination(MemStorage(), "r")
    desc = blob(b"orphan")
    key = f"regcopy:lease:registry:mem:{desc.digest}"
    # A worker that was SIGKILLed holding the lease: nobody renews or releases it.
    await a.redis.set(key, "dead-worker:token", px=400)
    started = time.monotonic()
    async with a.upload_lease(dst, desc) as leased:
        assert not leased  # waited for the expiry, now decide again
    assert 0.3 < time.monotonic() - started < 5
    async with a.upload_lease(dst, desc) as leased:
        assert leased
        # The dead worker's release (its own token) must not delete this lease.
        assert await a._release(keys=[key], args=["dead-worker:token"]) == 0
        assert await a.redis.exists(key) == 1
    assert await a.redis.exists(key) == 0


async def test_a_lost_lease_does_not_stop_the_upload_and_is_counted(redis_server: RedisServer) -> None:
    async with ledgers(redis_server, lease_ms=300, uploads_key="run:uploads") as (a,):
        await _lost(a)


async def _lost(a: RedisLedger) -> None:
    dst = MemMountingDestination(MemStorage(), "r")
    desc = blob(b"stopped")
    key = f"regcopy:lease:registry:mem:{desc.digest}"
    async with a.upload_lease(dst, desc) as leased:
        assert leased
        await a.redis.set(key, "other-worker:token", px=5000)  # as if ours expired and another took it
        await anyio.sleep(0.4)
    assert a.stats.lost == 1
    assert await a.redis.get(key) == b"other-worker:token"  # not ours to delete
    assert await a.redis.hget("run:uploads", f"registry:mem|{desc.digest}") == b"1"


async def test_a_stale_hint_is_cleared_and_the_blob_uploaded(redis_server: RedisServer) -> None:
    async with ledgers(redis_server) as (a,):
        await _stale(a)


async def _stale(a: RedisLedger) -> None:
    storage = MemStorage()
    src = MemSource()
    image = add_image(src, [BASE], tag="v1")
    layer = image.layers[0].digest
    hint = f"regcopy:blob:registry:mem:{layer}"
    await a.redis.sadd(hint, "gone/repo")  # an earlier run's hint; the registry lost the blob since
    dst = MemMountingDestination(storage, "team/app")
    result = await copy_image(src, dst, "v1", target_tag="v1", ledger=a)
    assert ("mount_blob", "team/app", str(layer), "gone/repo") in storage.log
    assert ("put_blob", "team/app", str(layer)) in storage.log
    assert result.blobs_uploaded == 2  # the layer (after the refused mount) and the config
    await a.flush()
    assert {m.decode() for m in await a.redis.smembers(hint)} == {"team/app"}


async def test_four_workers_upload_each_shared_blob_once(redis_server: RedisServer) -> None:
    async with ledgers(redis_server, 4) as workers:
        await _four(workers)


async def _four(workers: list[RedisLedger]) -> None:
    storage = MemStorage()
    src = MemSource()
    tags = []
    for i in range(8):
        add_image(src, [BASE, RUNTIME, f"app-{i}".encode() * 100], tag=f"v{i}")
        tags.append(f"v{i}")

    async def run(ledger: RedisLedger, tag: str) -> None:
        dst = MemMountingDestination(storage, f"team/{tag}")
        await copy_image(src, dst, tag, target_tag=tag, ledger=ledger)

    async with anyio.create_task_group() as tg:
        for i, tag in enumerate(tags):
            tg.start_soon(run, workers[i % 4], tag)
    puts = [entry[2] for entry in storage.log if entry[0] == "put_blob"]
    assert len(puts) == len(set(puts)), "a blob was uploaded twice across workers"
    assert puts.count(str(Digest.of(BASE))) == 1 and puts.count(str(Digest.of(RUNTIME))) == 1
    for tag in tags:
        assert storage.tags[f"team/{tag}"][tag] == src.tags[tag]


async def test_losing_redis_degrades_dedup_not_correctness(redis_server: RedisServer) -> None:
    async with ledgers(redis_server, down_for=0.5) as (a,):
        await _outage(a, redis_server)


async def _outage(a: RedisLedger, redis_server: RedisServer) -> None:
    storage = MemStorage()
    src = MemSource()
    add_image(src, [BASE, b"one" * 50], tag="v1")
    add_image(src, [BASE, b"two" * 50], tag="v2")
    redis_server.stop()
    started = time.monotonic()
    r1 = await copy_image(src, MemMountingDestination(storage, "x/one"), "v1", target_tag="v1", ledger=a)
    assert time.monotonic() - started < 10  # every Redis call is bounded
    assert a.stats.degraded >= 1 and r1.blobs_uploaded == 3
    redis_server.start()
    await anyio.sleep(0.6)
    r2 = await copy_image(src, MemMountingDestination(storage, "x/two"), "v2", target_tag="v2", ledger=a)
    assert (r2.blobs_mounted, r2.blobs_uploaded) == (2, 1)  # base and config from x/one: local knowledge stayed
    assert storage.tags["x/two"]["v2"] == src.tags["v2"]
    async with a.upload_lease(MemMountingDestination(storage, "x/three"), blob(b"again")) as leased:
        assert leased and await a.redis.exists(f"regcopy:lease:registry:mem:{Digest.of(b'again')}") == 1
