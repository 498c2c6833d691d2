"""The WAN emulator (``benchmarks/wan_proxy.py``) really adds latency and caps bandwidth.

These are correctness checks of the emulator with generous bounds, not performance assertions of
regcopy: a fresh connection pays the emulated handshake, every exchange pays one round trip, a
capped bulk transfer takes about size / bandwidth, and a long stream is pipelined (its throughput
is not one chunk per round trip).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import pytest

WAN_PROXY_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "wan_proxy.py"
RTT = 0.040
MB = 1_000_000


def _load() -> ModuleType:
    # benchmarks/ is not a package on sys.path; load the file the CLI runs.
    spec = importlib.util.spec_from_file_location("wan_proxy", WAN_PROXY_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("wan_proxy", module)  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


wan = _load()


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while chunk := await reader.read(1 << 20):
        writer.write(chunk)
        await writer.drain()
    writer.close()


async def _sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    # Count until the client half-closes, then report: the reply proves every byte went through.
    total = 0
    while chunk := await reader.read(1 << 20):
        total += len(chunk)
    writer.write(f"{total}\n".encode())
    await writer.drain()
    writer.close()


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


@pytest.fixture
async def sink_port() -> AsyncIterator[int]:
    server = await asyncio.start_server(_sink, "127.0.0.1", 0, limit=1 << 20)
    async with server:
        yield server.sockets[0].getsockname()[1]


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> float:
    started = time.monotonic()
    writer.write(b"ping\n")
    await writer.drain()
    assert await reader.readline() == b"ping\n"
    return time.monotonic() - started


async def _upload(port: int, size: int) -> float:
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    block = b"w" * (1 << 20)
    left = size
    while left > 0:
        writer.write(block[:left])
        left -= len(block)
        await writer.drain()
    writer.write_eof()
    assert await reader.readline() == f"{size}\n".encode()
    elapsed = time.monotonic() - started
    writer.close()
    await writer.wait_closed()
    return elapsed


async def test_handshake_and_round_trips_are_delayed(echo_port: int) -> None:
    async with wan.WanProxy(0, "127.0.0.1", echo_port, rtt=RTT, bandwidth_bps=None) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        first = await _exchange(reader, writer)  # handshake (rtt) + request/response (rtt)
        later = [await _exchange(reader, writer) for _ in range(3)]
        writer.close()
        await writer.wait_closed()
    assert first >= 2 * RTT - 0.001, first
    assert all(t >= RTT - 0.001 for t in later), later
    assert min(later) < first, (first, later)  # the handshake is paid once per connection


async def test_bandwidth_cap_bounds_a_bulk_transfer(sink_port: int) -> None:
    async with wan.WanProxy(0, "127.0.0.1", sink_port, rtt=RTT, bandwidth_bps=400e6 / 8) as proxy:
        elapsed = await _upload(proxy.port, 50 * MB)
        assert proxy.stats.bytes_up == 50 * MB
    # 50 MB at 400 Mbit/s is 1.0 s on the wire.
    assert 0.95 <= elapsed <= 3.0, elapsed


async def test_a_long_stream_is_pipelined(sink_port: int) -> None:
    # Without a cap only latency remains: 50 MB must not take one round trip per 256 KiB read (~7.6 s).
    async with wan.WanProxy(0, "127.0.0.1", sink_port, rtt=RTT, bandwidth_bps=None) as proxy:
        elapsed = await _upload(proxy.port, 50 * MB)
    assert elapsed < 2.0, elapsed


async def test_shared_cap_counts_both_directions(echo_port: int) -> None:
    # One shared link: echoed data crosses it twice, so 10 MB each way at 200 Mbit/s takes ~0.8 s,
    # while per-direction caps let both directions run at once (~0.4 s).
    async def echo_10mb(port: int) -> float:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 22)
        line = b"e" * 99_999 + b"\n"
        started = time.monotonic()

        async def send() -> None:
            for _ in range(100):
                writer.write(line)
                await writer.drain()

        async def receive() -> None:
            for _ in range(100):
                assert len(await reader.readline()) == len(line)

        await asyncio.gather(send(), receive())
        elapsed = time.monotonic() - started
        writer.close()
        await writer.wait_closed()
        return elapsed

    async with wan.WanProxy(0, "127.0.0.1", echo_port, rtt=RTT, bandwidth_bps=200e6 / 8) as shared:
        shared_time = await echo_10mb(shared.port)
    async with wan.WanProxy(0, "127.0.0.1", echo_port, rtt=RTT, bandwidth_bps=200e6 / 8, per_direction=True) as split:
        split_time = await echo_10mb(split.port)
    assert 0.75 <= shared_time <= 2.5, shared_time
    assert 0.38 <= split_time <= shared_time - 0.15, (split_time, shared_time)


async def test_unreachable_upstream_closes_the_client() -> None:
    async with wan.WanProxy(0, "127.0.0.1", 1, rtt=RTT) as proxy:  # nothing listens on port 1
        started = time.monotonic()
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        with contextlib.suppress(ConnectionResetError):  # the proxy relays the failure as a reset
            assert await reader.read() == b""
        assert time.monotonic() - started >= RTT - 0.001
        writer.close()
        await asyncio.sleep(0)
        assert proxy.stats.connect_failures == 1


async def test_cli_prints_the_port_and_stops_on_sigterm(echo_port: int) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(WAN_PROXY_PATH),
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        f"127.0.0.1:{echo_port}",
        "--rtt-ms",
        "20",
        "--mbit",
        "100",
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        port = int(await asyncio.wait_for(proc.stdout.readline(), 10))
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await _exchange(reader, writer) >= 0.039  # 20 ms handshake + 20 ms round trip
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 5) == 0
        assert await reader.read() == b""  # the proxy closed our connection on the way out
        writer.close()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
