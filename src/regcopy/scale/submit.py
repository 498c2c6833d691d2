"""The submitter of a dynamic run (``regcopy sync PLAN --redis URL``) and ``regcopy status``.

The submitter does what one process does before copying — discover, check, plan (tag lists, HEADs,
one manifest fetch per image to copy) — then cuts the images still to copy into units
(:func:`~regcopy.scale.units.make_units`), records the run in Redis (:mod:`regcopy.scale.runs`) and
enqueues the units biggest first. Submitting the same run again (``--run RUN``) skips its finished
units; a new run of a finished plan finds every image up to date and enqueues nothing. Waiting, it
shows the workers' progress and ends with the merged report (the submitter's part and every unit's).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from regcopy.client import Client
from regcopy.errors import ConfigError
from regcopy.scale.runs import RUN_TTL_S, RunKeys, image_payload, merged_report
from regcopy.scale.static import refuse_local_targets
from regcopy.scale.units import DEFAULT_BIG_IMAGE, make_units
from regcopy.sync import PlannedImage, SyncOptions, SyncPlan, SyncReport

__all__ = ("RunStatus", "Submitted", "read_status", "submit", "wait")


@dataclass(frozen=True, slots=True)
class Submitted:
    """What a submission did: the run, units enqueued now, units it found already finished."""

    run: str
    units: int
    skipped: int
    images: int


@dataclass(frozen=True, slots=True)
class RunStatus:
    """A run's state as Redis has it."""

    run: str
    units: int
    done: int
    submitted: bool
    progress: dict[str, int]
    report: dict[str, Any] | None
    """The merged report once every unit is done, else None."""

    @property
    def finished(self) -> bool:
        return self.submitted and self.done >= self.units


async def submit(client: Client, plan: SyncPlan, plan_text: str, redis: aioredis.Redis,
                 enqueue: Callable[[dict[str, Any]], None], *, run: str, prefix: str = "regcopy",
                 options: SyncOptions | None = None, big: int = DEFAULT_BIG_IMAGE,
                 report: SyncReport | None = None) -> Submitted:
    """Plan ``plan`` and enqueue its units as run ``run``.

    :param enqueue: puts one unit payload on the queue (blocking; called from a worker thread)
    :raises ConfigError: a local target, or ``delete_extra`` (it needs every unit's outcome first)
    """
    refuse_local_targets(plan, "--redis")
    for entry in plan.entries:
        if entry.delete_extra is not None:
            raise ConfigError(f"{entry.name}: delete_extra is not supported with --redis (run it in one "
                              "process after the distributed run: it only deletes)")
    report = report if report is not None else SyncReport()
    keys = RunKeys(prefix, run)
    planned = await client.plan_sync(plan, options=options or SyncOptions(), report=report)
    units = make_units(planned, key=lambda p: str(p.job.source.repo), size=lambda p: p.plan.total_bytes,
                       ident=lambda p: f"{p.job.source}>{p.job.target}@{p.plan.source_digest}", big=big)
    done = {_text(k) for k in await redis.hkeys(keys.done)}
    todo = [u for u in units if u.id not in done]
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hset(keys.meta, mapping={"plan": plan_text, "report": json.dumps(report.to_json()),
                                      "units": len(units), "submitted": 0, "created": round(time.time(), 3)})
        await pipe.execute()
    for unit in todo:
        payload = {"prefix": prefix, "run": run, "unit": unit.id, "key": unit.key, "bytes": unit.bytes,
                   "images": [image_payload(p) for p in unit.images], "fresh": _fresh(client, unit.images)}
        await anyio.to_thread.run_sync(enqueue, payload)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hset(keys.meta, "submitted", 1)
        for key in keys.all():
            pipe.expire(key, RUN_TTL_S)
        await pipe.execute()
    return Submitted(run, len(todo), len(units) - len(todo), sum(len(u.images) for u in units))


def _fresh(client: Client, images: tuple[PlannedImage, ...]) -> list[str]:
    """Target repositories of these images that discovery found empty (their blob HEADs can be skipped)."""
    out = {str(p.job.target.repo) for p in images
           if (p.destination.storage_id, p.destination.repository) in client.ledger.empty}
    return sorted(out)


async def read_status(redis: aioredis.Redis, run: str, *, prefix: str = "regcopy") -> RunStatus:
    """The run's state; with the merged report once it is finished.

    :raises ConfigError: no such run in this Redis (never submitted, or expired)
    """
    keys = RunKeys(prefix, run)
    meta = _texts(await redis.hgetall(keys.meta))
    if not meta:
        raise ConfigError(f"no run {run!r} in this Redis (never submitted, or its records expired)")
    done_count = int(await redis.hlen(keys.done))
    progress = {k: int(v) for k, v in _texts(await redis.hgetall(keys.progress)).items()}
    status = RunStatus(run, int(meta.get("units", 0)), done_count, meta.get("submitted") == "1", progress, None)
    if not status.finished:
        return status
    done = _texts(await redis.hgetall(keys.done))
    uploads = _texts(await redis.hgetall(keys.uploads))
    return RunStatus(status.run, status.units, status.done, True, progress, merged_report(meta, done, uploads))


async def wait(redis: aioredis.Redis, run: str, show: Callable[[RunStatus], None], *, prefix: str = "regcopy",
               interval: float = 1.0) -> RunStatus:
    """Poll until every unit of the run is done, calling ``show`` each time; the final status."""
    while True:
        try:
            status = await read_status(redis, run, prefix=prefix)
        except (RedisError, OSError):  # Redis restarting: the workers wait for it too
            await anyio.sleep(interval)
            continue
        show(status)
        if status.finished:
            return status
        await anyio.sleep(interval)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _texts(mapping: dict[Any, Any]) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in mapping.items()}
