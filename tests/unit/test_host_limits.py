"""The per-host limits as values and schedules (``registry/limits.py``, ``throttle.py``), the header and
setting parsers they read (``ratelimit-*``, ``limit_rate``), and the plan keys that set them.

Schedules run on real time with short windows (sleeps of tens of milliseconds); nothing is mocked.
"""

from __future__ import annotations

import contextlib
import math
import time

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regcopy.errors import ConfigError, PullLimitReached, RegistryTimeout, TransportError
from regcopy.progress import ConcurrencyChanged, Event, PullReserveReached
from regcopy.registry._headers import RateLimitHeader, parse_ratelimit
from regcopy.registry.limits import AdaptiveLimiter, HostLimits, PullBudget
from regcopy.settings import RegistrySettings, parse_byte_rate
from regcopy.sync import parse_plan
from regcopy.throttle import Quota, SlidingWindow, TokenBucket

# ------------------------------------------------------------------------------------ adaptive limit


def test_the_limit_halves_once_per_congestion_and_grows_by_one_per_steady_window() -> None:
    events: list[Event] = []
    limiter = AdaptiveLimiter("r", 16, True, events.append)
    assert limiter.limit == 16
    # Sixteen requests sent together all meet a 429: one cut, not sixteen.
    epochs = [limiter.epoch] * 16
    for epoch in epochs:
        limiter.congested(epoch, "HTTP 429")
    assert int(limiter.limit) == 8
    # A request sent after the cut meets one too: a second cut.
    limiter.congested(limiter.epoch, "HTTP 429")
    assert int(limiter.limit) == 4
    assert [(e.old, e.new, e.reason) for e in events if isinstance(e, ConcurrencyChanged)] == [
        (16, 8, "HTTP 429"), (8, 4, "HTTP 429")]
    # Growth needs windows in which the limit was reached: answers alone do not grow it.
    for _ in range(20):
        limiter.success(0.01)
    assert int(limiter.limit) == 4
    for _ in range(3):
        _saturated_window(limiter, latency=0.01)
    assert int(limiter.limit) == 7


def _saturated_window(limiter: AdaptiveLimiter, latency: float) -> None:
    n = int(limiter.limit)
    limiter.in_flight = n - 1
    limiter._window.saturated = limiter._window.saturated or limiter.in_flight + 1 >= n  # as acquire() does
    limiter.in_flight = 0
    for _ in range(n):
        limiter.success(latency)


def test_the_limit_stays_within_one_and_the_ceiling() -> None:
    limiter = AdaptiveLimiter("r", 4, True, lambda e: None)
    for _ in range(10):
        limiter.congested(limiter.epoch, "time-out")
    assert limiter.limit == 1 and limiter.low == 1
    for _ in range(20):
        _saturated_window(limiter, 0.01)
    assert limiter.limit == 4 and limiter.high == 4


def test_slow_answers_and_errors_stop_growth() -> None:
    limiter = AdaptiveLimiter("r", 16, True, lambda e: None)
    limiter.congested(0, "HTTP 503")
    _saturated_window(limiter, 0.01)  # the baseline
    assert int(limiter.limit) == 9
    _saturated_window(limiter, 0.5)  # fifty times slower: not steady
    assert int(limiter.limit) == 9
    limiter.unsteady()  # a 500 in the window
    _saturated_window(limiter, 0.01)
    assert int(limiter.limit) == 9
    _saturated_window(limiter, 0.01)
    assert int(limiter.limit) == 10


def test_a_fixed_limit_never_moves() -> None:
    limiter = AdaptiveLimiter("r", 5, False, lambda e: None)
    limiter.congested(0, "HTTP 429")
    _saturated_window(limiter, 0.01)
    assert limiter.limit == 5 and limiter.changes == 0


async def test_waiters_get_slots_as_the_limit_allows() -> None:
    limiter = AdaptiveLimiter("r", 2, True, lambda e: None)
    held: list[int] = []
    peak = 0

    async def one(i: int) -> None:
        nonlocal peak
        await limiter.acquire()
        held.append(i)
        peak = max(peak, limiter.in_flight)
        await anyio.sleep(0.01)
        limiter.release()

    async with anyio.create_task_group() as tg:
        for i in range(10):
            tg.start_soon(one, i)
    assert sorted(held) == list(range(10)) and peak == 2


async def test_a_cancelled_waiter_passes_its_wake_up_on() -> None:
    limiter = AdaptiveLimiter("r", 1, True, lambda e: None)
    await limiter.acquire()
    got: list[str] = []
    scope = anyio.CancelScope()

    async def wait(name: str) -> None:
        await limiter.acquire()
        got.append(name)
        limiter.release()

    async def cancellable() -> None:
        with scope:
            await wait("cancelled")

    with anyio.fail_after(5):  # a lost wake-up would hang the second waiter
        async with anyio.create_task_group() as tg:
            tg.start_soon(cancellable)
            await anyio.sleep(0.01)
            tg.start_soon(wait, "second")
            await anyio.sleep(0.01)
            limiter.release()  # wakes the first waiter...
            scope.cancel()  # ...which is cancelled around the time it wakes
    # Whether the cancellation reached the first waiter before it took the slot is the event loop's
    # business; either way the second gets it and no slot leaks.
    assert got[-1] == "second" and limiter.in_flight == 0 and not limiter._waiters


async def test_a_waiter_cancelled_while_waiting_leaves_the_queue() -> None:
    limiter = AdaptiveLimiter("r", 1, True, lambda e: None)
    await limiter.acquire()
    with anyio.move_on_after(0.02):
        await limiter.acquire()
    assert not limiter._waiters and limiter.in_flight == 1
    limiter.release()
    assert limiter.in_flight == 0


# ------------------------------------------------------------------------------------ host limits


async def test_a_host_s_connection_failures_cut_its_limit_but_another_host_s_do_not() -> None:
    limits = HostLimits("r", RegistrySettings(max_concurrency=8))
    with pytest.raises(TransportError):
        async with limits.slot(pull=False, timed=True):
            raise TransportError("the source broke", registry="source")  # an upload body's source
    assert limits.concurrency.limit == 8 and limits.counts["resets"] == 0
    with pytest.raises(RegistryTimeout):
        async with limits.slot(pull=False, timed=True):
            raise RegistryTimeout("slow", registry="r")
    assert limits.concurrency.limit == 4 and limits.counts["timeouts"] == 1
    assert limits.concurrency.in_flight == 0


async def test_answers_feed_the_limit_and_the_counters() -> None:
    limits = HostLimits("r", RegistrySettings(max_concurrency=8))
    async with limits.slot(pull=False, timed=True) as slot:
        slot.answered(429, {})
    async with limits.slot(pull=False, timed=True) as slot:
        slot.answered(503, {})
    snap = limits.snapshot()
    assert snap["throttled"] == 1 and snap["unavailable"] == 1 and snap["requests"] == 2
    assert snap["concurrency"] == {"limit": 2, "min": 2, "max": 8, "changes": 2, "ceiling": 8, "adaptive": True}


# ------------------------------------------------------------------------------------ pull budget


async def test_pulls_keep_the_reserve_counting_those_in_flight() -> None:
    events: list[Event] = []
    budget = PullBudget("hub", 2, events.append)
    await budget.admit()  # the first pull goes alone, before any answer
    budget.observe(RateLimitHeader(100, 5, 21600.0))
    budget.done()
    await budget.admit()
    await budget.admit()  # 5 left, 2 in flight: a third would leave 2 = the reserve... allowed
    await budget.admit()
    with pytest.raises(PullLimitReached) as caught:
        await budget.admit()
    assert caught.value.remaining == 5 and caught.value.limit == 100 and caught.value.window == 21600.0
    assert not caught.value.retryable
    assert budget.count == 4 and budget.stopped
    assert [type(e) for e in events] == [PullReserveReached]
    with pytest.raises(PullLimitReached):  # for the rest of the run
        await budget.admit()


def test_an_older_answer_arriving_late_does_not_raise_the_count() -> None:
    """Two pulls in flight are answered 3 then 2 left, but their answers are read in the other order."""
    budget = PullBudget("hub", 1, lambda e: None)
    budget.observe(RateLimitHeader(100, 2, 21600.0))
    budget.observe(RateLimitHeader(100, 3, 21600.0))  # the older answer, read last
    assert budget.quota is not None and budget.quota.remaining == 2
    budget.observe(RateLimitHeader(None, None, 21600.0))  # a header without a count keeps the count
    assert budget.quota.remaining == 2 and budget.quota.limit == 100
    budget.observe(RateLimitHeader(100, 0, 21600.0))
    assert budget.quota.remaining == 0


async def test_until_a_first_answer_pulls_go_one_at_a_time() -> None:
    budget = PullBudget("hub", 0, lambda e: None)
    order: list[str] = []

    async def pull(name: str) -> None:
        await budget.admit()
        order.append(f"{name} start")
        await anyio.sleep(0.02)
        if name == "first":
            budget.observe(None)  # the answer: no quota announced
        budget.done()
        order.append(f"{name} end")

    async with anyio.create_task_group() as tg:
        tg.start_soon(pull, "first")
        await anyio.sleep(0.001)
        tg.start_soon(pull, "second")
        tg.start_soon(pull, "third")
    assert order[:2] == ["first start", "first end"]
    assert budget.count == 3


async def test_a_spent_quota_stops_pulls() -> None:
    limits = HostLimits("hub", RegistrySettings())
    async with limits.slot(pull=True, timed=True) as slot:
        slot.answered(429, {"RateLimit-Limit": "100;w=21600", "RateLimit-Remaining": "0;w=21600"}, manifest=True)
    with pytest.raises(PullLimitReached):
        async with limits.slot(pull=True, timed=True):
            pass
    assert limits.snapshot()["pull_quota"] == {"limit": 100, "remaining": 0, "window": 21600.0, "reserve": 0,
                                                "stopped": True}


# ------------------------------------------------------------------------------------ schedules


async def test_a_sliding_window_never_lets_more_than_its_limit_in() -> None:
    quota = Quota([SlidingWindow(3, 0.2)])
    starts: list[float] = []

    async def start() -> None:
        await quota.acquire()
        starts.append(time.monotonic())

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(start)
    starts.sort()
    for i in range(len(starts) - 3):
        assert starts[i + 3] - starts[i] >= 0.2
    assert quota.waited > 0


async def test_a_quota_keeps_every_window_at_once() -> None:
    # A minute's quota as 6 per 0.3 s, its burst bound as 2 per 0.05 s.
    quota = Quota([SlidingWindow(6, 0.3), SlidingWindow(2, 0.05)])
    starts: list[float] = []
    for _ in range(14):
        await quota.acquire()
        starts.append(time.monotonic())
    for i in range(len(starts) - 6):
        assert starts[i + 6] - starts[i] >= 0.3
    for i in range(len(starts) - 2):
        assert starts[i + 2] - starts[i] >= 0.05


async def test_a_token_bucket_holds_its_rate_over_concurrent_takers() -> None:
    bucket = TokenBucket(200_000, burst=10_000)
    started = time.monotonic()

    async def take() -> None:
        for _ in range(5):
            await bucket.take(8_000)

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(take)
    # 160 kB at 200 kB/s after a 10 kB burst: at least 0.75 s, never sooner.
    assert time.monotonic() - started >= (160_000 - 10_000) / 200_000 * 0.98


def test_a_chunk_larger_than_the_burst_still_passes() -> None:
    bucket = TokenBucket(1000, burst=10)
    assert bucket.delay(5000) == pytest.approx(4.99, abs=0.01)


# ------------------------------------------------------------------------------------ parsers


@pytest.mark.parametrize(("limit", "remaining", "expected"), [
    ("100;w=21600", "87;w=21600", RateLimitHeader(100, 87, 21600.0)),  # Docker Hub
    ("100, 100;w=10, 1000;w=3600", "9", RateLimitHeader(100, 9, None)),  # the IETF draft's list
    ('5;w="60"', None, RateLimitHeader(5, None, 60.0)),
    (None, "0;w=21600", RateLimitHeader(None, 0, 21600.0)),
    (None, None, None),
    ("many", "lots", None),
    ("-1", "1e3", None),
])
def test_ratelimit_headers(limit: str | None, remaining: str | None, expected: RateLimitHeader | None) -> None:
    assert parse_ratelimit(limit, remaining) == expected


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.none(), st.text(max_size=60)), st.one_of(st.none(), st.text(max_size=60)))
def test_ratelimit_headers_never_fail(limit: str | None, remaining: str | None) -> None:
    parsed = parse_ratelimit(limit, remaining)
    if parsed is not None:
        assert parsed.limit is None or parsed.limit >= 0
        assert parsed.remaining is None or parsed.remaining >= 0


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 10**9), st.integers(0, 10**6))
def test_ratelimit_headers_round_trip(count: int, window: int) -> None:
    assert parse_ratelimit(f"{count};w={window}", f"{count}") == RateLimitHeader(count, count, float(window))


@pytest.mark.parametrize(("text", "rate"), [
    ("50M", 50 * 2**20), ("1.5g", int(1.5 * 2**30)), ("800KiB/s", 800 * 1024), ("10MB", 10_000_000),
    ("100", 100), ("1k", 1024), ("2 MiB", 2 * 2**20),
])
def test_byte_rates(text: str, rate: int) -> None:
    assert parse_byte_rate(text) == rate


@pytest.mark.parametrize("text", ["", "fast", "-1M", "0", "0.1", "1e6", "10 ib", "5Q", "1" * 50])
def test_bad_byte_rates(text: str) -> None:
    with pytest.raises(ValueError, match="byte rate"):
        parse_byte_rate(text)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=45))
def test_byte_rates_never_fail_otherwise(text: str) -> None:
    with contextlib.suppress(ValueError):
        assert parse_byte_rate(text) >= 1


# ------------------------------------------------------------------------------------ settings


def test_plan_keys_set_the_limits() -> None:
    plan = parse_plan({"version": 1, "registries": {"docker.io": {
        "max_concurrency": 32, "adaptive": False, "requests_per_second": 5, "requests_per_minute": 5000,
        "limit_rate": "50M", "pull_reserve": 10}}, "sync": [{"source": "docker.io/library/a", "target": "m/a"}]})
    assert dict(plan.registries["docker.io"].settings) == {
        "max_concurrency": 32, "adaptive": False, "requests_per_second": 5.0, "requests_per_minute": 5000.0,
        "limit_rate": 50 * 2**20, "pull_reserve": 10}


@pytest.mark.parametrize(("key", "value", "message"), [
    ("adaptive", "yes", "must be true or false"),
    ("limit_rate", "fast", "not a byte rate"),
    ("limit_rate", 0, "bytes per second"),
    ("limit_rate", True, "bytes per second"),
    ("pull_reserve", -1, "0 or more"),
    ("pull_reserve", 1.5, "0 or more"),
    ("requests_per_minute", 0, "above 0"),
    ("requests_per_minute", math.inf, "above 0"),
])
def test_bad_plan_keys_name_the_key(key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        parse_plan({"version": 1, "registries": {"docker.io": {key: value}},
                    "sync": [{"source": "docker.io/library/a", "target": "m/a"}]})
    assert key in str(caught.value)


def test_settings_refuse_nonsense() -> None:
    bad_ones = ({"limit_rate": 0}, {"requests_per_minute": -1}, {"pull_reserve": -1}, {"requests_per_second": math.nan})
    for bad in bad_ones:
        with pytest.raises(ValueError):
            RegistrySettings(**bad)  # type: ignore[arg-type]
