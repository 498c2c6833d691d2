"""Rate limits as schedules: the byte token bucket of ``--limit-rate`` and the request quotas' windows.

:class:`TokenBucket` paces anything counted in units (blob bytes for ``--limit-rate`` and a host's
``limit_rate``; request starts for a host's request quotas): ``rate`` units per second, at most
``burst`` at once. A taker is debited at once, even beyond what the bucket holds, and sleeps until the
debt is paid, so concurrent takers share the rate in the order they came and a chunk larger than the
burst still passes (after its own time). :class:`SlidingWindow` is the exact count rule a quota
promises: at most ``limit`` starts in any ``window`` seconds.

Both read ``time.monotonic`` and sleep with ``anyio.sleep``; neither holds an anyio primitive, so one
schedule may serve every task of a process (docs/architecture.md, "Limits").
"""

from __future__ import annotations

import math
import time
from collections import deque

import anyio

__all__ = ("Quota", "SlidingWindow", "TokenBucket")


class TokenBucket:
    """``rate`` units per second with bursts of at most ``burst`` units.

    :param rate: units per second (> 0)
    :param burst: units that may go at once after an idle spell (default: a tenth of a second's worth,
        at least one unit)
    """

    def __init__(self, rate: float, burst: float | None = None) -> None:
        if not (rate > 0 and math.isfinite(rate)):
            raise ValueError(f"rate must be a positive number, not {rate!r}")
        self.rate = float(rate)
        self.burst = max(1.0, float(burst) if burst is not None else self.rate / 10)
        self._tokens = self.burst
        self._stamp = time.monotonic()
        self.waited = 0.0
        """Seconds takers spent waiting, summed (for reports)."""

    def delay(self, units: float) -> float:
        """Debit ``units`` now; the seconds the taker must wait before using them."""
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        self._tokens -= units
        return max(0.0, -self._tokens / self.rate)

    async def take(self, units: float) -> None:
        """Wait until ``units`` may go; a cancelled wait gives nothing back (the units count as used)."""
        wait = self.delay(units)
        if wait > 0:
            self.waited += wait
            await anyio.sleep(wait)


class SlidingWindow:
    """At most ``limit`` starts in any ``window`` seconds: a log of the last ``limit`` start times.

    A start is kept ``guard`` seconds (10 % of the window, at most 0.5 s) further from the window's
    edge than the rule needs: the registry counts arrivals, which the network's jitter and a busy
    event loop may bring closer together than regcopy's starts were (measured on a loaded 2-core
    machine: a 2 % guard let a proxy count 5 in a second against a quota of 4). The price is a rate
    about a tenth under the quota.
    """

    def __init__(self, limit: int, window: float) -> None:
        if limit < 1 or not (window > 0 and math.isfinite(window)):
            raise ValueError(f"a window needs limit >= 1 and window > 0, not {limit!r}/{window!r}")
        self.limit = limit
        self.window = float(window)
        self.guard = min(0.5, self.window * 0.1)
        self._starts: deque[float] = deque(maxlen=limit)

    def wait(self, now: float) -> float:
        """Seconds from ``now`` until one more start keeps the rule (0: now)."""
        if len(self._starts) < self.limit:
            return 0.0
        return max(0.0, self._starts[0] + self.window + self.guard - now)

    def record(self, now: float) -> None:
        """A start at ``now`` (monotonic seconds)."""
        self._starts.append(now)


class Quota:
    """Several windows that every start must keep at once (a rate and its burst bound).

    :meth:`acquire` records the start only when every window allows it, with no await in between,
    so concurrent starters never overshoot; a starter that must wait sleeps and looks again.
    """

    def __init__(self, windows: list[SlidingWindow]) -> None:
        self.windows = windows
        self.waited = 0.0
        """Seconds starters spent waiting, summed (for reports)."""

    async def acquire(self) -> None:
        """Wait until one more start keeps every window, and record it."""
        while True:
            now = time.monotonic()
            wait = max(w.wait(now) for w in self.windows)
            if wait <= 0:
                for w in self.windows:
                    w.record(now)
                return
            self.waited += wait
            await anyio.sleep(wait)
