"""SingleFlight: one in-flight call per key, shared success; failures retried by the waiters or (share_errors)
raised to them; never cached; a cancelled call hands over to a waiter."""

from __future__ import annotations

import anyio
import pytest

from regcopy.singleflight import SingleFlight


class Boom(Exception):
    pass


async def test_concurrent_callers_share_one_call() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    runs = 0
    release = anyio.Event()
    results: list[tuple[int, bool]] = []

    async def work() -> int:
        nonlocal runs
        runs += 1
        await release.wait()
        return 42

    async def caller() -> None:
        results.append(await flight.do("k", work))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(caller)
            await anyio.wait_all_tasks_blocked()
            assert runs == 1  # one call in flight, 19 callers waiting on it
            release.set()
    assert runs == 1
    assert len(results) == 20
    assert all(value == 42 for value, _ in results)
    assert [shared for _, shared in results].count(False) == 1
    assert await flight.do("k", work) == (42, False) and runs == 2  # the key is free again


async def test_different_keys_run_independently() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    runs: list[str] = []
    release = anyio.Event()
    results: dict[str, tuple[str, bool]] = {}

    def work_for(key: str):  # type: ignore[no-untyped-def]
        async def work() -> str:
            runs.append(key)
            await release.wait()
            return key.upper()

        return work

    async def caller(key: str) -> None:
        results[key] = await flight.do(key, work_for(key))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(caller, "a")
            tg.start_soon(caller, "b")
            await anyio.wait_all_tasks_blocked()
            assert sorted(runs) == ["a", "b"]  # both in flight at once
            release.set()
    assert sorted(runs) == ["a", "b"]
    assert results == {"a": ("A", False), "b": ("B", False)}


async def test_failure_not_shared_waiters_retry() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    runs = 0
    release = anyio.Event()
    outcomes: list[object] = []

    async def work() -> int:
        nonlocal runs
        runs += 1
        await release.wait()
        if runs == 1:
            raise Boom("first attempt")
        return runs

    async def caller() -> None:
        try:
            outcomes.append(await flight.do("k", work))
        except Boom as exc:
            outcomes.append(exc)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(caller)
            await anyio.wait_all_tasks_blocked()
            release.set()
    # Only the leader saw its own failure; one waiter re-ran the work and the rest shared that.
    errors = [o for o in outcomes if isinstance(o, Boom)]
    values = [o for o in outcomes if not isinstance(o, Boom)]
    assert len(errors) == 1
    assert runs == 2
    assert sorted(values, key=lambda v: v[1]) == [(2, False)] + [(2, True)] * 3  # type: ignore[index]
    assert await flight.do("k", work) == (3, False)  # the key is free again


async def test_every_waiter_retries_when_work_keeps_failing() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    runs = 0
    release = anyio.Event()
    failures = 0

    async def work() -> int:
        nonlocal runs
        runs += 1
        await release.wait()
        raise Boom(f"attempt {runs}")

    async def caller() -> None:
        nonlocal failures
        with pytest.raises(Boom):
            await flight.do("k", work)
        failures += 1

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(caller)
            await anyio.wait_all_tasks_blocked()
            release.set()
    assert failures == 4
    assert runs == 4  # nobody received another caller's failure


async def test_failure_is_not_cached() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    calls = 0

    async def flaky() -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise Boom("once")
        return 7

    with pytest.raises(Boom):
        await flight.do("k", flaky)
    assert await flight.do("k", flaky) == (7, False)  # the failed call left the key free, unshared
    assert calls == 2


async def test_success_not_memoised_after_flight() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    calls = 0

    async def work() -> int:
        nonlocal calls
        calls += 1
        return calls

    assert await flight.do("k", work) == (1, False)
    assert await flight.do("k", work) == (2, False)
    assert calls == 2


async def test_leader_cancellation_does_not_hang_waiters() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    runs = 0
    never = anyio.Event()
    go = anyio.Event()
    results: list[tuple[str, bool]] = []

    async def work() -> str:
        nonlocal runs
        runs += 1
        if runs == 1:
            await never.wait()  # the leader hangs until it is cancelled
        await go.wait()
        return f"run{runs}"

    async def waiter() -> None:
        results.append(await flight.do("k", work))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            leader_scope = anyio.CancelScope()

            async def leader() -> None:
                with leader_scope:
                    await flight.do("k", work)
                    pytest.fail("the leader should have been cancelled")

            tg.start_soon(leader)
            await anyio.wait_all_tasks_blocked()
            for _ in range(3):
                tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            assert runs == 1 and results == []
            leader_scope.cancel()
            await anyio.wait_all_tasks_blocked()
            assert runs == 2  # one waiter took over; the others wait for it, not for the dead leader
            go.set()
    assert runs == 2
    assert sorted(results, key=lambda r: r[1]) == [("run2", False), ("run2", True), ("run2", True)]
    assert await flight.do("k", work) == ("run3", False)  # the key is free again


async def test_shared_errors_reach_every_waiter_and_are_not_cached() -> None:
    flight: SingleFlight[str, int] = SingleFlight(share_errors=True)
    runs = 0
    release = anyio.Event()
    errors: list[Boom] = []

    async def work() -> int:
        nonlocal runs
        runs += 1
        await release.wait()
        if runs == 1:
            raise Boom("first attempt")
        return runs

    async def caller() -> None:
        try:
            await flight.do("k", work)
        except Boom as exc:
            errors.append(exc)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(caller)
            await anyio.wait_all_tasks_blocked()
            release.set()
    assert runs == 1  # one run, its failure shared by the four waiters
    assert len(errors) == 5 and all(e is errors[0] for e in errors)
    assert await flight.do("k", work) == (2, False)  # the failure was not cached


async def test_shared_errors_cancelled_leader_hands_over() -> None:
    flight: SingleFlight[str, str] = SingleFlight(share_errors=True)
    runs = 0
    go = anyio.Event()
    results: list[tuple[str, bool]] = []

    async def work() -> str:
        nonlocal runs
        runs += 1
        if runs == 1:
            await anyio.sleep_forever()
        await go.wait()
        return f"run{runs}"

    async def waiter() -> None:
        results.append(await flight.do("k", work))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            leader_scope = anyio.CancelScope()

            async def leader() -> None:
                with leader_scope:
                    await flight.do("k", work)

            tg.start_soon(leader)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(waiter)
            tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            leader_scope.cancel()  # not an Exception: the waiters do not inherit the cancellation
            await anyio.wait_all_tasks_blocked()
            assert runs == 2
            go.set()
    assert sorted(results, key=lambda r: r[1]) == [("run2", False), ("run2", True)]
