"""What every request of a client to one host shares (docs/architecture.md, "Limits").

One :class:`HostLimits` per host and limit settings, made by the client's pool and handed to each of
its transports for that host, so every copy, run and worker unit of a client (one per process in the
CLI and ``regcopy worker``) shares:

* :class:`AdaptiveLimiter`: requests in flight, an AIMD limit in ``[1, max_concurrency]``
  (regclient reghttp's per-host throttle, made adaptive the way TCP's congestion window is): it
  starts at ``max_concurrency`` (a registry that never pushes back sees what a static limit gives),
  halves on 429, 503, time-outs and resets, at most once for the requests sent before the cut, and
  grows by one per window of steady answers (as many answers as the limit, while it was reached);
* request quotas (``requests_per_second``, ``requests_per_minute``) as windows of
  :mod:`regcopy.throttle`, counted when a request is actually sent;
* the byte cap of ``limit_rate`` (a :class:`~regcopy.throttle.TokenBucket` on blob bodies);
* the pause one 429 puts on every request to the host;
* :class:`PullBudget`: pulls (manifest GETs) counted, and the quota a registry announces
  (Docker Hub's ``ratelimit-remaining``) kept above ``pull_reserve``;
* the counters a report shows (:meth:`HostLimits.snapshot`).

Changes are events (:mod:`regcopy.progress`) handed to ``emit``.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final

import anyio

from regcopy.errors import PullLimitReached, RegistryTimeout, TransportError
from regcopy.progress import ConcurrencyChanged, Event, PullReserveReached, RateLimitPaused, null_reporter
from regcopy.registry._headers import RateLimitHeader, parse_ratelimit
from regcopy.settings import RegistrySettings
from regcopy.throttle import Quota, SlidingWindow, TokenBucket

__all__ = (
    "AdaptiveLimiter", "Emit", "HostLimits", "PullBudget", "Slot", "limits_key", "merge_snapshots", "subtract_counters",
)

log = logging.getLogger(__name__)

_STEADY: Final = 2.0  # a window whose mean answer time exceeds this multiple of the baseline is not steady
_DRIFT: Final = 1.05  # the baseline rises this much per unsteady window, so a lasting new level becomes steady
_MIN_BYTE_BURST: Final = 256 * 1024

Emit = Callable[[Event], None]
"""Where a host's events go (the client's broadcast)."""


def limits_key(registry: str, s: RegistrySettings) -> tuple[object, ...]:
    """Which transports share one :class:`HostLimits`: the same host with the same limit settings."""
    return (registry, s.max_concurrency, s.adaptive, s.requests_per_second, s.requests_per_minute, s.limit_rate,
            s.pull_reserve)


class AdaptiveLimiter:
    """Requests in flight to one host, at most :attr:`limit` at once (AIMD when ``adaptive``).

    Every request holds a slot from :meth:`acquire` to :meth:`release`; its outcome is told with
    :meth:`success`, :meth:`unsteady` or :meth:`congested`. ``epoch`` counts the cuts: a congestion
    signal from a request sent before the last cut is the same congestion, already answered.
    """

    def __init__(self, registry: str, ceiling: int, adaptive: bool, emit: Emit) -> None:
        self.registry = registry
        self.ceiling = ceiling
        self.adaptive = adaptive
        self.limit = float(ceiling)
        self.in_flight = 0
        self.epoch = 0
        self.low = self.high = int(self.limit)
        self.changes = 0
        self._emit = emit
        self._waiters: deque[anyio.Event] = deque()
        self._window = _Window()
        self._baseline = math.inf

    async def acquire(self) -> int:
        """Wait for a slot; returns the epoch to pass back with the outcome."""
        while self.in_flight >= int(self.limit):
            event = anyio.Event()
            self._waiters.append(event)
            try:
                await event.wait()
            except BaseException:
                if event.is_set():
                    self._wake()  # the wake-up this waiter got goes to the next one
                else:
                    self._waiters.remove(event)
                raise
        self.in_flight += 1
        if self.in_flight >= int(self.limit):
            self._window.saturated = True
        return self.epoch

    def release(self) -> None:
        """Give a slot back."""
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        free = int(self.limit) - self.in_flight
        while free > 0 and self._waiters:
            self._waiters.popleft().set()
            free -= 1

    def success(self, latency: float | None) -> None:
        """An answer that is no sign of overload; ``latency`` its time to the status line, when timed."""
        window = self._window
        window.answers += 1
        if latency is not None:
            window.latency += latency
            window.timed += 1
        if self.adaptive and window.answers >= int(self.limit):
            self._close_window()

    def unsteady(self) -> None:
        """An answer that stops growth for this window without being congestion (a 5xx other than 503)."""
        self._window.steady = False

    def congested(self, epoch: int, reason: str) -> None:
        """A 429, 503, time-out or reset: halve the limit, once per epoch."""
        if not self.adaptive or epoch != self.epoch:
            return
        self.epoch += 1
        self._set(max(1.0, self.limit / 2), reason)
        self._window = _Window()

    def _close_window(self) -> None:
        window, self._window = self._window, _Window()
        mean = window.latency / window.timed if window.timed else None
        if mean is not None:
            steady_latency = mean <= self._baseline * _STEADY
            self._baseline = min(self._baseline * _DRIFT, mean) if math.isfinite(self._baseline) else mean
        else:
            steady_latency = True
        if not (window.steady and steady_latency and window.saturated) or self.limit >= self.ceiling:
            return
        self._set(min(float(self.ceiling), self.limit + 1), "steady answers")

    def _set(self, value: float, reason: str) -> None:
        old, self.limit = int(self.limit), value
        new = int(value)
        if new != old:
            self.changes += 1
            self.low, self.high = min(self.low, new), max(self.high, new)
            log.info("%s: %d requests in flight at most (was %d): %s", self.registry, new, old, reason)
            self._emit(ConcurrencyChanged(self.registry, old, new, reason))
            self._wake()


@dataclass(slots=True)
class _Window:
    """What the answers of one window said."""

    answers: int = 0
    timed: int = 0
    latency: float = 0.0
    steady: bool = True
    saturated: bool = False


class PullBudget:
    """Pulls (manifest GETs) to one host: counted, and kept above ``reserve`` when the host says how many remain.

    ``remaining`` is what the last answer said (Docker Hub counts the GET it answers); the GETs sent
    since then and not yet answered are taken off it. Until a first manifest answer has told whether
    the host announces a quota, one pull goes at a time (a burst of pulls sent before that answer
    could spend the reserve). Once a new pull would leave fewer than ``reserve``, no new pull starts
    for the rest of the client's life (the quota's window is hours on Docker Hub): :meth:`admit`
    raises :class:`~regcopy.errors.PullLimitReached`.
    """

    def __init__(self, registry: str, reserve: int, emit: Emit) -> None:
        self.registry = registry
        self.reserve = reserve
        self.count = 0
        self.in_flight = 0
        self.quota: RateLimitHeader | None = None
        self.known = False
        """Whether a manifest answer has told whether the host announces a quota."""
        self.stopped = False
        self._emit = emit
        self._changed = anyio.Event()

    async def admit(self) -> None:
        """Count one pull about to start (after the first answer, when none has come yet).

        :raises PullLimitReached: the pull would eat into the reserve (or the quota is spent)
        """
        while not self.known and self.in_flight and not self.stopped:
            await self._changed.wait()
        remaining = self.quota.remaining if self.quota is not None else None
        if not self.stopped and remaining is not None and remaining - self.in_flight <= self.reserve:
            self._stop(remaining)
        if self.stopped:
            raise self.error()
        self.in_flight += 1
        self.count += 1

    def done(self) -> None:
        """A pull admitted earlier got its answer (or failed)."""
        self.in_flight -= 1
        self._changed.set()
        self._changed = anyio.Event()

    def observe(self, quota: RateLimitHeader | None) -> None:
        """What a manifest answer announced (a HEAD counts no pull but tells); None: no quota header."""
        self.known = True
        if quota is None:
            return
        old = self.quota or RateLimitHeader(None, None, None)
        # Answers to concurrent requests arrive in any order: an older, higher count must not undo a
        # newer one, so the count only falls over the client's life, as the stop does (class docstring).
        remaining = old.remaining if quota.remaining is None else quota.remaining
        if old.remaining is not None and remaining is not None:
            remaining = min(old.remaining, remaining)
        self.quota = RateLimitHeader(quota.limit if quota.limit is not None else old.limit, remaining,
                                     quota.window if quota.window is not None else old.window)

    def exhausted(self) -> None:
        """The host refused a pull for its quota (429 with nothing remaining)."""
        old = self.quota or RateLimitHeader(None, None, None)
        self.quota = RateLimitHeader(old.limit, 0, old.window)
        self._stop(0)

    def _stop(self, remaining: int) -> None:
        if self.stopped:
            return
        self.stopped = True
        limit, window = (self.quota.limit, self.quota.window) if self.quota else (None, None)
        log.warning("%s: pull reserve reached: %d pulls left%s, %d more being made, reserve %d: no new pulls "
                    "from %s in this run; what is in flight finishes, the rest is left for a later run",
                    self.registry, remaining, _per(limit, window), self.in_flight, self.reserve, self.registry)
        self._emit(PullReserveReached(self.registry, remaining, self.reserve, limit, window))

    def error(self) -> PullLimitReached:
        """The error of a refused pull."""
        q = self.quota or RateLimitHeader(None, None, None)
        remaining = q.remaining or 0
        return PullLimitReached(
            f"pull reserve reached: {remaining} pulls left{_per(q.limit, q.window)}, reserve {self.reserve}; "
            f"no new pulls from {self.registry} in this run", registry=self.registry, remaining=remaining,
            limit=q.limit, window=q.window)


def _per(limit: int | None, window: float | None) -> str:
    if limit is None:
        return ""
    return f" of {limit}" + (f" per {window:g} s" if window else "")


@dataclass(slots=True)
class Slot:
    """One request's place in its host's limits: tell it the answer with :meth:`answered`."""

    limits: HostLimits
    epoch: int
    started: float
    timed: bool
    status: int | None = None

    def answered(self, status: int, headers: Mapping[str, str], *, manifest: bool = False) -> None:
        """The status line and headers arrived (``manifest``: of a manifest request, which may announce
        the pull quota)."""
        self.status = status
        self.limits.answered(self, status, headers, manifest)


class HostLimits:
    """Every shared limit of one host (see the module docstring)."""

    def __init__(self, registry: str, settings: RegistrySettings, emit: Emit = null_reporter) -> None:
        self.registry = registry
        self.emit = emit
        self.concurrency = AdaptiveLimiter(registry, settings.max_concurrency, settings.adaptive, emit)
        self.quota = _quota(settings)
        rate = settings.limit_rate
        self.bandwidth = TokenBucket(rate, max(_MIN_BYTE_BURST, rate / 10)) if rate else None
        self.pulls = PullBudget(registry, settings.pull_reserve, emit)
        self.pause_until = 0.0
        self.counts: dict[str, int] = dict.fromkeys(_COUNTS, 0)
        self.paused = 0.0

    async def respect_pause(self) -> None:
        """Wait out a 429's pause."""
        wait = self.pause_until - time.monotonic()
        if wait > 0:
            await anyio.sleep(wait)

    def pause(self, seconds: float, reason: str) -> None:
        """Pause every request to the host for ``seconds`` from now (a longer pause already set stays)."""
        until = time.monotonic() + seconds
        if until > self.pause_until + 0.01:
            self.paused += until - max(self.pause_until, time.monotonic())
            self.pause_until = until
            self.emit(RateLimitPaused(self.registry, round(seconds, 3), reason))

    @asynccontextmanager
    async def slot(self, *, pull: bool, timed: bool, quota: bool = True) -> AsyncIterator[Slot]:
        """A request's place: the pull budget (for a manifest GET), the pause, a concurrency slot, then
        the quotas; held until the block ends (a download's body included).

        :param timed: the answer's latency counts for the adaptive limit (no upload body before it)
        :param quota: take the quota here; False for a streamed body, which takes it before its first
            chunk (:meth:`quota_start`): aiohttp sends the headers with that chunk, and the registry
            counts the request when they arrive
        :raises PullLimitReached: a pull the budget refuses
        """
        if pull:
            await self.pulls.admit()
        try:
            await self.respect_pause()
            epoch = await self.concurrency.acquire()
            try:
                if quota:
                    await self.quota_start()
                self.counts["requests"] += 1
                slot = Slot(self, epoch, time.monotonic(), timed)
                try:
                    yield slot
                except TransportError as exc:
                    self._failed(slot, exc)
                    raise
            finally:
                self.concurrency.release()
        finally:
            if pull:
                self.pulls.done()

    async def quota_start(self) -> None:
        """Wait until one more request keeps the host's quotas, and count it."""
        if self.quota is not None:
            await self.quota.acquire()

    def answered(self, slot: Slot, status: int, headers: Mapping[str, str], manifest: bool) -> None:
        """Tell the limits what a request's answer said."""
        spent = False
        if manifest:
            quota = parse_ratelimit(headers.get("RateLimit-Limit"), headers.get("RateLimit-Remaining"))
            self.pulls.observe(quota)
            if quota is not None and quota.remaining == 0:
                self.pulls.exhausted()  # Docker Hub's 429 TOOMANYREQUESTS says "0" too
                spent = status == 429
        if spent:
            self.counts["throttled"] += 1  # the pull quota, not overload: the limit stays
        elif status == 429 or status == 503:
            self.counts["throttled" if status == 429 else "unavailable"] += 1
            self.concurrency.congested(slot.epoch, f"HTTP {status}")
        elif status >= 500:
            self.concurrency.unsteady()
        else:
            self.concurrency.success(time.monotonic() - slot.started if slot.timed else None)

    def _failed(self, slot: Slot, exc: TransportError) -> None:
        if exc.registry != self.registry:
            return  # another host's failure carried through this request (an upload body's source)
        timeout = isinstance(exc, RegistryTimeout)
        self.counts["timeouts" if timeout else "resets"] += 1
        self.concurrency.congested(slot.epoch, "time-out" if timeout else "connection failure")

    def snapshot(self) -> dict[str, object]:
        """Counters and state for reports (docs/events.md, ``run.summary``)."""
        c = self.concurrency
        out: dict[str, object] = dict(self.counts)
        out["pulls"] = self.pulls.count
        out["concurrency"] = {"limit": int(c.limit), "min": c.low, "max": c.high, "changes": c.changes,
                              "ceiling": c.ceiling, "adaptive": c.adaptive}
        out["paused_seconds"] = round(self.paused, 3)
        waited = (self.quota.waited if self.quota else 0.0) + (self.bandwidth.waited if self.bandwidth else 0.0)
        out["throttled_seconds"] = round(waited, 3)
        q = self.pulls.quota
        if q is not None:
            out["pull_quota"] = {"limit": q.limit, "remaining": q.remaining, "window": q.window,
                                 "reserve": self.pulls.reserve, "stopped": self.pulls.stopped}
        return out


_COUNTS: Final = ("requests", "retries", "throttled", "unavailable", "timeouts", "resets")


def _quota(s: RegistrySettings) -> Quota | None:
    """The windows of a host's request quotas: ``requests_per_second`` evenly spaced; ``requests_per_minute``
    counted over any 60 s, at most a second's share of it at once (the burst bound)."""
    windows: list[SlidingWindow] = []
    if s.requests_per_second:
        windows.append(SlidingWindow(1, 1.0 / s.requests_per_second))
    if s.requests_per_minute:
        per_minute = max(1, int(s.requests_per_minute))
        windows.append(SlidingWindow(per_minute, 60.0))
        windows.append(SlidingWindow(max(1, math.ceil(s.requests_per_minute / 60)), 1.0))
    return Quota(windows) if windows else None



def merge_snapshots(a: Mapping[str, object], b: Mapping[str, object]) -> dict[str, object]:
    """Two snapshots of one host (limits of different settings) as one: counters added, the rest from ``b``."""
    out = dict(b)
    for key, value in a.items():
        other = b.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and isinstance(other, int | float):
            out[key] = value + other
    return out


def subtract_counters(now: Mapping[str, object], before: Mapping[str, object]) -> dict[str, object]:
    """``now``'s counters minus ``before``'s (what one run did); state such as the concurrency stays as is."""
    out = dict(now)
    for key, value in now.items():
        old = before.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and isinstance(old, int | float):
            out[key] = round(value - old, 3) if isinstance(value, float) else value - old
    return out
