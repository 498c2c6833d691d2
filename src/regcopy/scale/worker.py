"""``regcopy worker``: one worker process of a dynamic run (docs/scale-out.md, "Dynamic mode").

One event loop (regcopy's own, so SIGINT/SIGTERM are regcopy's: :mod:`regcopy.interrupt`) holds one
:class:`~regcopy.client.Client`, one shared :class:`~regcopy.scale.redis_ledger.RedisLedger` and a
portal the Dramatiq worker threads run units through (:mod:`regcopy.scale.queue`). A unit adopts its
run's plan settings (the plan's ``registries:``, read from Redis once per run), copies, records its
report, and is acked. On a signal the running units are cancelled (open uploads aborted), their
messages handed back, and the worker stops.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import anyio
from anyio.from_thread import BlockingPortal

from regcopy.client import Client
from regcopy.context import RunContext
from regcopy.errors import ConfigError
from regcopy.interrupt import run as run_interruptible
from regcopy.planfile import StrictLoader, parse_yaml
from regcopy.scale.queue import HEARTBEAT_TIMEOUT_MS, Heartbeat, PortalClosed, Served, make_broker, start_worker
from regcopy.scale.redis_ledger import UPLOADS_KEY, RedisLedger, connect
from regcopy.scale.runs import RunKeys
from regcopy.scale.work import Progress, UnitLimits, flush_progress, run_unit
from regcopy.sync import parse_plan

__all__ = ("serve",)

log = logging.getLogger(__name__)


def serve(url: str, make_client: Callable[[], Client], *, units: int = 2, images: int = 8,
          heartbeat_timeout_ms: int = HEARTBEAT_TIMEOUT_MS, lease_ms: int = 30_000, prefix: str = "regcopy") -> None:
    """Serve units from the queue at ``url`` until a signal (then :class:`~regcopy.interrupt.Interrupted`).

    :param units: units run at once (each a worker thread); :param images: images in flight over them
    """
    broker = make_broker(url, heartbeat_timeout_ms=heartbeat_timeout_ms)
    heartbeat = Heartbeat(broker, heartbeat_timeout_ms / 4000)
    holder: dict[str, Any] = {}
    served = Served(lambda payload: _call(holder, payload))
    worker = start_worker(broker, served, units=units)
    heartbeat.start()
    try:
        run_interruptible(lambda: _loop(url, make_client, holder, served, images, lease_ms, prefix))
    finally:
        served.stopping.set()
        heartbeat.stopped.set()
        worker.stop(timeout=30_000)  # threads are free by now: stop consumers, requeue prefetched units
        broker.close()


def _call(holder: dict[str, Any], payload: dict[str, Any]) -> Any:
    portal: BlockingPortal | None = holder.get("portal")
    if portal is None:
        raise PortalClosed("the worker is stopping")
    try:
        return portal.call(holder["run"], payload)
    except RuntimeError as exc:
        if "portal is not running" in str(exc):
            raise PortalClosed(str(exc)) from None
        raise


async def _loop(url: str, make_client: Callable[[], Client], holder: dict[str, Any], served: Served, images: int,
                lease_ms: int, prefix: str) -> None:
    redis = connect(url, timeout=5.0)
    limits = UnitLimits.make(images)
    progress: dict[str, Progress] = {}
    adopted: dict[str, RunContext] = {}
    lock = anyio.Lock()
    try:
        async with make_client() as client, RedisLedger(redis, prefix=prefix, lease_ms=lease_ms) as ledger, \
                BlockingPortal() as portal:

            async def run(payload: dict[str, Any]) -> dict[str, Any]:
                async with lock:
                    context = await _adopt(client, redis, payload, adopted)
                UPLOADS_KEY.set(RunKeys(payload["prefix"], payload["run"]).uploads)
                counter = progress.setdefault(payload["run"], Progress())
                return await run_unit(context, ledger, redis, payload, limits, counter)

            holder.update(portal=portal, run=run)
            log.info("worker ready: %d images in flight", images)
            try:
                while True:
                    await anyio.sleep(1.0)
                    await _quietly(flush_progress(redis, progress, prefix))
            finally:
                holder.pop("portal", None)
                served.stopping.set()
                with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                    await _quietly(flush_progress(redis, progress, prefix))
    finally:
        with anyio.CancelScope(shield=True):
            await redis.aclose()


async def _adopt(client: Client, redis: Any, payload: dict[str, Any], adopted: dict[str, RunContext]) -> RunContext:
    """The run's context: the client with the run's plan settings (``registries:``), made once per run."""
    run = payload["run"]
    if run in adopted:
        return adopted[run]
    text = await redis.hget(RunKeys(payload["prefix"], run).meta, "plan")
    if text is None:
        raise ConfigError(f"run {run}: its plan is not in Redis (expired, or another Redis)")
    data = parse_yaml(text, StrictLoader, f"run {run}")  # the plan the submitter validated, read as one
    adopted[run] = client.context(parse_plan(data, path=f"run {run}").registries)
    return adopted[run]


async def _quietly(work: Any) -> None:
    try:
        await work
    except Exception as exc:  # Redis away: progress is best effort, the next second tries again
        log.debug("progress not sent: %s", exc)

