"""The task queue: Dramatiq on its Redis broker, embedded in ``regcopy worker`` (the ``regcopy[scale]`` extra).

Why embedded rather than the ``dramatiq`` command: regcopy must own the signals. Dramatiq's own
worker process answers SIGTERM by waiting for running actors (dramatiq cli.py ``worker_process``),
but a pod being stopped must abort its uploads cleanly (sessions DELETEd, as any regcopy
cancellation does) and hand its unit back at once. Here the event loop is regcopy's
(:mod:`regcopy.interrupt`): SIGTERM cancels the running units, each unit's message is put back on the
queue (a fresh message; the old one is acked), then the Dramatiq worker
stops and requeues what it had prefetched.

Facts this relies on, read in dramatiq 2.x (brokers/redis.py, brokers/redis/dispatch.lua,
middleware/time_limit.py, worker.py):

* a fetched message sits in the worker's ack set until acked; a worker is dead when its heartbeat
  (refreshed by every broker command it sends) is older than ``heartbeat_timeout``, and its
  messages go back on the queue during "maintenance", which a command triggers with probability
  ``maintenance_chance`` per million. A live copy is never redelivered for being long;
* a consumer whose prefetch is full sends no command, hence no heartbeat. A busy worker stays alive
  today only because its delay-queue consumer keeps polling (measured: with :class:`Heartbeat`
  disabled, a unit busy for four heartbeat timeouts was not redelivered). Liveness must not hang on
  that detail (a consumer restarting after a connection error sends nothing for seconds either), so
  :class:`Heartbeat` sends one every ``heartbeat_timeout / 4`` from its own thread;
* ``TimeLimit`` (a default middleware) kills actors after 10 minutes: the broker here has only
  ``CurrentMessage`` and ``Retries``, so a unit may run for days.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Final

from dramatiq import Message, Worker
from dramatiq.actor import Actor
from dramatiq.brokers.redis import MAINTENANCE_SCALE, RedisBroker
from dramatiq.middleware import CurrentMessage, Retries

__all__ = (
    "ACTOR", "HEARTBEAT_TIMEOUT_MS", "QUEUE", "Heartbeat", "PortalClosed", "Served", "enqueue", "make_broker",
    "start_worker",
)

log = logging.getLogger(__name__)

QUEUE: Final = "regcopy-units"
ACTOR: Final = "regcopy_unit"
_NAMESPACE: Final = "regcopy-dq"
_MAX_HANDBACKS: Final = 3
"""A unit failing outside its images (Redis away too long, a bug) is handed back this many times."""
HEARTBEAT_TIMEOUT_MS: Final = 20_000
"""A worker silent this long is dead and its units go back on the queue: with heartbeats every 5 s
and maintenance on every command, a SIGKILLed worker's unit is taken again within about 25 s."""


def make_broker(url: str, *, heartbeat_timeout_ms: int = HEARTBEAT_TIMEOUT_MS) -> RedisBroker:
    """The Redis broker, every command doing maintenance (a dead worker's units come back quickly;
    the check is one ZRANGEBYSCORE while no worker is dead)."""
    broker = RedisBroker(  # type: ignore[no-untyped-call]
        url=url, namespace=_NAMESPACE, heartbeat_timeout=heartbeat_timeout_ms, maintenance_chance=MAINTENANCE_SCALE,
        middleware=[CurrentMessage(), Retries(max_retries=3, min_backoff=5_000, max_backoff=60_000)])
    broker.declare_queue(QUEUE)
    return broker


def enqueue(broker: RedisBroker, payload: dict[str, Any]) -> None:
    """Put one unit on the queue."""
    broker.enqueue(Message(queue_name=QUEUE, actor_name=ACTOR, args=(payload,), kwargs={}, options={}))


class Served:
    """How the worker threads reach the event loop: ``run(payload)`` runs a unit there and returns its
    report, or raises ``concurrent.futures.CancelledError`` when the loop is stopping."""

    def __init__(self, run: Callable[[dict[str, Any]], Any]) -> None:
        self.run = run
        self.stopping = threading.Event()


def start_worker(broker: RedisBroker, served: Served, *, units: int) -> Worker:
    """Declare the actor and start ``units`` worker threads, each holding at most one unit."""

    def unit(payload: dict[str, Any]) -> None:
        message = CurrentMessage.get_current_message()
        assert message is not None
        if served.stopping.is_set():
            _hand_back(broker, message)
            return
        try:
            served.run(payload)
        except (concurrent.futures.CancelledError, PortalClosed):
            # The loop stopped the unit (SIGTERM): its uploads were aborted; another worker takes it.
            _hand_back(broker, message)
        except Exception:
            # Not an image failure (those are in the unit's report): Redis away past patience, a bug.
            # Handed back a few times, not dropped: an ack after a failed retry enqueue would lose it.
            log.exception("unit %s failed", payload.get("unit"))
            if int(payload.get("handbacks", 0)) >= _MAX_HANDBACKS:
                raise  # then Dramatiq's Retries takes over, and its dead-letter queue keeps it
            _hand_back(broker, message, {**payload, "handbacks": int(payload.get("handbacks", 0)) + 1})

    Actor(unit, broker=broker, actor_name=ACTOR, queue_name=QUEUE, priority=0, options={"max_retries": 3})
    worker = Worker(broker, worker_threads=units)
    worker.queue_prefetch = units  # never hoard units another worker could start now
    worker.start()
    return worker


class PortalClosed(RuntimeError):
    """The event loop is gone (raised by :attr:`Served.run` once the worker is stopping)."""


def _hand_back(broker: RedisBroker, message: Message[Any], payload: dict[str, Any] | None = None) -> None:
    """Put the unit back on the queue now, as a new message; the old one is acked when this returns.

    Not the broker's ``requeue`` of the same message: this very worker may fetch it again before the
    ack, and the ack would then delete it (dispatch.lua ``ack`` removes a message it finds in the
    worker's ack set). Killed between the two steps, the unit is there twice: a unit is idempotent.
    """
    payload = payload or message.args[0]
    for delay in (0.2, 0.5, 1, 2, 5, 5, 10, 10, 30, 30, 60, 60, 120, 120, 240):
        try:
            enqueue(broker, payload)
            break
        except Exception as exc:  # Redis away: the message stays unacked meanwhile
            log.warning("cannot hand unit %s back yet (%s)", payload.get("unit"), exc)
            time.sleep(delay)
    else:
        raise RuntimeError(f"unit {payload.get('unit')}: Redis stayed away; the unit stays unacked")
    log.info("unit %s handed back to the queue", payload.get("unit"))


class Heartbeat(threading.Thread):
    """Keeps a busy worker alive in the broker's eyes (see the module doc)."""

    def __init__(self, broker: RedisBroker, interval: float) -> None:
        super().__init__(name="regcopy-heartbeat", daemon=True)
        self.broker = broker
        self.interval = interval
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                # An unknown command to the broker's dispatch script: it refreshes this worker's
                # heartbeat (and runs maintenance) and does nothing else.
                self.broker.do_heartbeat(QUEUE)
            except Exception as exc:  # Redis away: the next beat tries again
                log.debug("heartbeat failed: %s", exc)

