"""Token responses and the token cache (docs/protocol.md#token-requests)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given
from hypothesis import strategies as st

from regcopy.errors import ProtocolViolation
from regcopy.registry._challenge import Scope
from regcopy.registry._tokens import Token, TokenCache, TokenKey, parse_token_response, token_key

NOW = 1000.0  # monotonic
Fetch = Callable[[], Awaitable[Token]]
WALL = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC).timestamp()


def parse(obj: object) -> Token:
    return parse_token_response(json.dumps(obj).encode(), now=NOW, wall_now=WALL)


def ago(seconds: float) -> str:
    return (datetime.fromtimestamp(WALL, UTC) - timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize(
    ("obj", "value", "expires_at"),
    [
        ({"token": "t"}, "t", NOW + 60),
        ({"access_token": "a"}, "a", NOW + 60),
        ({"token": "t", "access_token": "a"}, "t", NOW + 60),
        ({"token": "", "access_token": "a"}, "a", NOW + 60),
        ({"token": None, "access_token": "a"}, "a", NOW + 60),
        ({"token": "t", "expires_in": 300}, "t", NOW + 300),
        ({"token": "t", "expires_in": 300.5}, "t", NOW + 300.5),
        ({"token": "t", "expires_in": 10}, "t", NOW + 60),  # c/image raises lower values to 60
        ({"token": "t", "expires_in": -5}, "t", NOW + 60),
        ({"token": "t", "expires_in": 10**400}, "t", NOW + 86400),  # capped, no float overflow
        ({"token": "t", "expires_in": None}, "t", NOW + 60),
        # issued_at makes an old token expire sooner ...
        ({"token": "t", "expires_in": 300, "issued_at": ago(30)}, "t", NOW + 270),
        ({"token": "t", "expires_in": 300, "issued_at": "2024-05-01T11:59:30.123456789Z"}, "t", NOW + 270.123456),
        ({"token": "t", "expires_in": 300, "issued_at": "2024-05-01t13:59:30+02:00"}, "t", NOW + 270),
        ({"token": "t", "expires_in": 300, "issued_at": "2024-05-01T06:59:30.5-05:00"}, "t", NOW + 270.5),
        # ... but never sooner than now + 60 (a server clock behind ours) ...
        ({"token": "t", "expires_in": 300, "issued_at": ago(3600)}, "t", NOW + 60),
        ({"token": "t", "expires_in": 60, "issued_at": ago(30)}, "t", NOW + 60),
        # ... and never later than now + lifetime (a server clock ahead of ours).
        ({"token": "t", "expires_in": 300, "issued_at": ago(-3600)}, "t", NOW + 300),
        # unparsable or out-of-range issued_at: counted from receipt
        ({"token": "t", "expires_in": 300, "issued_at": "yesterday"}, "t", NOW + 300),
        ({"token": "t", "expires_in": 300, "issued_at": "2024-13-45T99:00:00Z"}, "t", NOW + 300),
        ({"token": "t", "expires_in": 300, "issued_at": "2024-05-01T12:00:00+25:00"}, "t", NOW + 300),
    ],
)
def test_parse(obj: dict[str, object], value: str, expires_at: float) -> None:
    token = parse(obj)
    assert token.value == value
    assert token.expires_at == pytest.approx(expires_at, abs=1e-3)


def test_parse_extras() -> None:
    token = parse({"access_token": "a", "refresh_token": "r", "scope": "repository:a:pull registry:catalog:*"})
    assert token.refresh_token == "r"
    assert token.scopes == ("repository:a:pull", "registry:catalog:*")
    assert parse({"token": "t", "refresh_token": ""}).refresh_token is None
    assert parse({"token": "t", "scope": ["x"]}).scopes == ("x",)


def test_repr_hides_secrets() -> None:
    token = parse({"token": "s3cr3t-value", "refresh_token": "r3fr3sh-value"})
    assert "s3cr3t" not in repr(token)
    assert "r3fr3sh" not in repr(token)
    assert "expires_at" in repr(token)


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"", "not valid JSON"),
        (b"<html>", "not valid JSON"),
        (b"\xff\xfe\x00", "not valid JSON"),
        (b"[" * 100_000, "not valid JSON"),
        (b'["token"]', "not a JSON object"),
        (b'"s3cr3t"', "not a JSON object"),
        (b"{}", "neither 'token' nor 'access_token'"),
        (b'{"token": "", "access_token": ""}', "neither"),
        (b'{"token": 42}', "'token' must be a string"),
        (b'{"access_token": ["s3cr3t"]}', "'access_token' must be a string"),
        (b'{"token": "s3cr3t", "expires_in": "300"}', "'expires_in' must be a number"),
        (b'{"token": "s3cr3t", "expires_in": true}', "'expires_in' must be a number"),
        (b'{"token": "s3cr3t", "expires_in": NaN}', "finite"),
        (b'{"token": "s3cr3t", "expires_in": Infinity}', "finite"),
        (b'{"token": "s3cr3t", "issued_at": 1714564800}', "'issued_at' must be a string"),
        (b'{"token": "s3cr3t", "refresh_token": 1}', "'refresh_token' must be a string"),
        (b'{"token": "s3cr3t", "scope": 1}', "'scope' must be a string"),
        (b'{"token": "s3cr3t\\r\\nX-Evil: 1"}', "not allowed in an HTTP header"),
        (b'{"token": "s3cr3t with space"}', "not allowed in an HTTP header"),
    ],
)
def test_parse_errors(body: bytes, why: str) -> None:
    with pytest.raises(ProtocolViolation) as info:
        parse_token_response(body, now=NOW, wall_now=WALL)
    assert why in str(info.value)
    assert "s3cr3t" not in str(info.value)


@given(st.binary(max_size=200))
def test_arbitrary_bytes(body: bytes) -> None:
    try:
        token = parse_token_response(body, now=NOW, wall_now=WALL)
    except ProtocolViolation:
        return
    assert NOW + 60 <= token.expires_at <= NOW + 86400


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)
_fields = st.sampled_from(["token", "access_token", "expires_in", "issued_at", "refresh_token", "scope"])


@given(
    st.dictionaries(_fields, _json | st.text(alphabet="0123456789-:TZ.+", max_size=30), max_size=6),
    st.floats(min_value=-1e12, max_value=1e12),
)
def test_arbitrary_objects(obj: dict[str, object], wall_now: float) -> None:
    body = json.dumps(obj).encode()
    try:
        token = parse_token_response(body, now=NOW, wall_now=wall_now)
    except ProtocolViolation:
        return
    assert token.value
    assert NOW + 60 <= token.expires_at <= NOW + 86400


def test_issued_at_offsets_agree() -> None:
    instant = datetime(2024, 5, 1, 11, 59, 0, tzinfo=UTC)
    forms = [
        instant.strftime("%Y-%m-%dT%H:%M:%SZ"),
        instant.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat(),
        instant.astimezone(timezone(timedelta(hours=-8))).isoformat(),
        instant.strftime("%Y-%m-%dT%H:%M:%S.000000000Z"),
    ]
    expiries = {parse({"token": "t", "expires_in": 600, "issued_at": f}).expires_at for f in forms}
    assert expiries == {NOW + 540}


# ---------------------------------------------------------------------------------------------- cache


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


KEY: TokenKey = token_key("reg", "https://auth/token", "svc", [Scope.repository("a", "pull")])


def counting_fetch(clock: FakeClock, lifetime: float = 300.0) -> tuple[list[int], Fetch]:
    calls: list[int] = []

    async def fetch() -> Token:
        calls.append(1)
        await anyio.lowlevel.checkpoint()
        return Token(f"tok{len(calls)}", clock() + lifetime)

    return calls, fetch


async def test_cache_hit_and_refresh_margin() -> None:
    clock = FakeClock()
    cache = TokenCache(clock=clock)
    calls, fetch = counting_fetch(clock, 300)
    assert (await cache.get(KEY, fetch)).value == "tok1"
    clock.now = 269.9
    assert (await cache.get(KEY, fetch)).value == "tok1"
    clock.now = 270.0  # 30 s margin
    assert (await cache.get(KEY, fetch)).value == "tok2"
    assert len(calls) == 2


async def test_short_tokens_use_ten_percent_margin() -> None:
    clock = FakeClock()
    cache = TokenCache(clock=clock)
    _, fetch = counting_fetch(clock, 60)
    await cache.get(KEY, fetch)
    clock.now = 53.9
    assert cache.peek(KEY) is not None
    clock.now = 54.0
    assert cache.peek(KEY) is None
    assert len(cache) == 0


async def test_keys_are_separate_and_canonical() -> None:
    clock = FakeClock()
    cache = TokenCache(clock=clock)
    calls, fetch = counting_fetch(clock)
    k1 = token_key("reg", "r", "s", [Scope.repository("a", "push"), "repository:a:pull"])
    k2 = token_key("reg", "r", "s", ["repository:a:pull,push"])
    assert k1 == k2 == ("reg", "r", "s", frozenset({"repository:a:pull,push"}))
    await cache.get(k1, fetch)
    await cache.get(k2, fetch)
    await cache.get(("other", "r", "s", k1[3]), fetch)
    assert len(calls) == 2


async def test_single_flight() -> None:
    cache = TokenCache(clock=FakeClock())
    calls = 0
    release = anyio.Event()

    async def fetch() -> Token:
        nonlocal calls
        calls += 1
        await release.wait()
        return Token("shared", 300.0)

    results: list[Token] = []

    async def worker() -> None:
        results.append(await cache.get(KEY, fetch))

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(worker)
        await anyio.wait_all_tasks_blocked()
        release.set()
    assert calls == 1
    assert [t.value for t in results] == ["shared"] * 10


async def test_failure_reaches_every_waiter_and_is_not_cached() -> None:
    cache = TokenCache(clock=FakeClock())
    calls = 0
    release = anyio.Event()

    async def failing() -> Token:
        nonlocal calls
        calls += 1
        await release.wait()
        raise ProtocolViolation("token endpoint broke")

    errors: list[BaseException] = []

    async def worker() -> None:
        try:
            await cache.get(KEY, failing)
        except ProtocolViolation as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(worker)
        await anyio.wait_all_tasks_blocked()
        release.set()
    assert calls == 1
    assert len(errors) == 5

    async def ok() -> Token:
        return Token("fresh", 300.0)

    assert (await cache.get(KEY, ok)).value == "fresh"


async def test_cancelled_fetcher_hands_over_to_a_waiter() -> None:
    cache = TokenCache(clock=FakeClock())
    calls = 0

    async def fetch() -> Token:
        nonlocal calls
        calls += 1
        if calls == 1:
            await anyio.sleep_forever()
        return Token("second", 300.0)

    got: list[str] = []
    leader_scope = anyio.CancelScope()

    async def leader() -> None:
        with leader_scope:
            await cache.get(KEY, fetch)

    async def waiter() -> None:
        got.append((await cache.get(KEY, fetch)).value)

    async with anyio.create_task_group() as tg:
        tg.start_soon(leader)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        leader_scope.cancel()
    assert got == ["second"]
    assert calls == 2


async def test_invalidate() -> None:
    clock = FakeClock()
    cache = TokenCache(clock=clock)
    _, fetch = counting_fetch(clock)
    old = await cache.get(KEY, fetch)
    cache.invalidate(KEY)
    new = await cache.get(KEY, fetch)
    assert (old.value, new.value) == ("tok1", "tok2")
    cache.invalidate(KEY, old)  # a late 401 with the old token keeps the new one
    assert cache.peek(KEY) == new
    cache.invalidate(KEY, new)
    assert cache.peek(KEY) is None
    cache.invalidate(KEY)  # absent: no error
