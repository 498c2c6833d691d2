"""One unit, run by a worker: its images copied with the engine and the shared ledger, reported to Redis.

The unit's payload holds each image's manifests, so the copy starts at the blobs (no manifest fetched
again), and whether the image's referrers travel with it (:func:`~regcopy.artifacts.copy_with_referrers`:
the worker lists the source repository's tags for cosign and fallback tags, one request per image).
Target repositories the submitter found empty skip their blob HEADs, as one process does, unless the
unit was started before (a redelivery: a killed worker may have written there). Each image is tried
twice (the second time planned afresh), like a one-process sync; its failure is in the unit's report,
never an exception. The report and the counters go to Redis only when the unit ends: a unit cut short
is not done, and the queue hands it to another worker.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from regcopy.artifacts import ReferrerPolicy, copy_with_referrers
from regcopy.context import RunContext
from regcopy.engine import ByteBudget, CopyResult, ImagePlan, Limits
from regcopy.errors import RegcopyError
from regcopy.manifest import Platform
from regcopy.progress import BlobProgress, ImageDone
from regcopy.reference import Reference, Repository
from regcopy.scale.redis_ledger import RedisLedger
from regcopy.scale.report_merge import UploadTally
from regcopy.scale.runs import RUN_TTL_S, RunKeys, unpack_plan
from regcopy.sync import ImageReport, SyncReport

__all__ = ("Progress", "UnitLimits", "durably", "flush_progress", "record_done", "run_unit")

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(slots=True)
class UnitLimits:
    """What every unit of one worker shares: images and blobs in flight, bytes in flight."""

    images: anyio.CapacityLimiter
    limits: Limits
    blob_jobs: int = 6

    @classmethod
    def make(cls, images: int, blobs: int = 24, bytes_in_flight: int = 2 * 1024**3, blob_jobs: int = 6) -> UnitLimits:
        return cls(anyio.CapacityLimiter(images), Limits(anyio.CapacityLimiter(blobs), ByteBudget(bytes_in_flight)),
                   blob_jobs)


@dataclass(slots=True)
class Progress:
    """Counters a unit adds to, sent to Redis by the worker every second."""

    counts: dict[str, int] = field(default_factory=dict)

    def __call__(self, event: object) -> None:
        if isinstance(event, BlobProgress):
            self.add("bytes", event.delta)
        elif isinstance(event, ImageDone):
            self.add("images_failed" if event.error else "images", 1)

    def add(self, name: str, n: int) -> None:
        self.counts[name] = self.counts.get(name, 0) + n

    def take(self) -> dict[str, int]:
        out, self.counts = self.counts, {}
        return out


async def run_unit(context: RunContext, ledger: RedisLedger, redis: aioredis.Redis, payload: dict[str, Any],
                   limits: UnitLimits, progress: Any) -> dict[str, Any]:
    """Copy the unit's images; record its report as done in Redis; return the report.

    :param progress: a reporter counting bytes and images for the run's live progress
    """
    keys = RunKeys(payload["prefix"], payload["run"])
    unit = payload["unit"]
    attempt = await durably(lambda: redis.hincrby(keys.attempts, unit, 1))
    if attempt == 1:
        for target in payload.get("fresh", []):
            repo = Repository.parse(target)
            ledger.set_empty(context.registry_store(repo, writable=True).storage_id, repo.path, True)
    report = SyncReport()
    tally = UploadTally(progress)
    started = time.monotonic()
    async with anyio.create_task_group() as tg:
        for image in payload["images"]:
            tg.start_soon(_image, context, ledger, image, limits, tally, report)
    report.seconds = time.monotonic() - started
    doc = {**report.to_json(), "unit": unit, "attempt": attempt, "uploaded_blobs": tally.blobs}
    await record_done(redis, keys, unit, doc)
    return doc


async def record_done(redis: aioredis.Redis, keys: RunKeys, unit: str, doc: dict[str, Any]) -> None:
    """Record the unit as finished with its report (waiting for Redis if it is away)."""

    async def write() -> Any:
        async with redis.pipeline(transaction=False) as pipe:
            pipe.hset(keys.done, unit, json.dumps(doc))
            for key in (keys.done, keys.attempts, keys.uploads):
                pipe.expire(key, RUN_TTL_S)
            return await pipe.execute()

    await durably(write)


async def durably(fn: Callable[[], Awaitable[T]], patience: float = 600.0) -> T:
    """``fn()``, tried again while Redis is away (a restart, a failover), for up to ``patience`` seconds.

    A unit's start and end must reach Redis: without the end the unit would be copied again, and
    the queue's own ack waits for Redis the same way (dramatiq worker.py ``post_process_message``).
    """
    deadline = time.monotonic() + patience
    delay = 0.2
    while True:
        try:
            return await fn()
        except (RedisError, OSError) as exc:
            if time.monotonic() > deadline:
                raise
            log.warning("Redis is away (%s); trying again in %.1f s", exc, delay)
            await anyio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def _image(context: RunContext, ledger: RedisLedger, image: dict[str, Any], limits: UnitLimits,
                 reporter: UploadTally, report: SyncReport) -> None:
    source, target = Reference.parse(image["source"]), Reference.parse(image["target"])
    platforms = tuple(Platform.parse(p) for p in image.get("platforms", []))
    src = context.source(source.repo)  # the run's pull-through mirrors first, if its plan names any
    dst = context.registry_store(target, writable=True)
    plan: ImagePlan | None = unpack_plan(image)
    carried = image.get("referrers") or {}
    policy = ReferrerPolicy(enabled=bool(carried.get("enabled")),
                            artifact_types=tuple(carried.get("artifact_types", ())))
    async with limits.images:
        for attempt in (1, 2):
            started = time.monotonic()
            try:
                result = await copy_with_referrers(
                    src, dst, source.identifier, target_tag=target.tag, platforms=platforms, policy=policy,
                    blob_jobs=limits.blob_jobs, reporter=reporter, ledger=ledger, plan=plan, limits=limits.limits)
            except RegcopyError as exc:
                if attempt == 1:
                    log.warning("%s -> %s failed (%s); trying again", source, target, exc)
                    plan = None  # planned afresh: the source may have changed
                    continue
                report.images.append(ImageReport(image["entry"], str(source), str(target), "failed",
                                                 error=str(exc) or type(exc).__name__, attempts=attempt))
                return
            report.images.append(_image_report(image["entry"], source, target, result, attempt,
                                               time.monotonic() - started))
            return


def _image_report(entry: str, source: Reference, target: Reference, result: CopyResult, attempt: int,
                  seconds: float) -> ImageReport:
    return ImageReport(entry, str(source), str(target), "up-to-date" if result.up_to_date else "copied",
                       result.source_digest, result.digest, result.blobs_uploaded, result.blobs_mounted,
                       result.blobs_skipped, result.bytes_uploaded, result.retries, attempt, round(seconds, 3),
                       referrers=result.referrers)


async def flush_progress(redis: aioredis.Redis, progress: dict[str, Progress], prefix: str) -> None:
    """Send every run's progress counters gathered since the last call (one round trip)."""
    batch = {run: p.take() for run, p in progress.items()}
    batch = {run: counts for run, counts in batch.items() if counts}
    if not batch:
        return
    async with redis.pipeline(transaction=False) as pipe:
        for run, counts in batch.items():
            key = RunKeys(prefix, run).progress
            for name, n in counts.items():
                pipe.hincrby(key, name, n)
            pipe.expire(key, RUN_TTL_S)
        await pipe.execute()
