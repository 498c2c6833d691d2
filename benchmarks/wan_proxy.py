"""A WAN-emulating TCP proxy (latency + bandwidth cap) for benchmarks; the kernel here has no netem.

This module owns :class:`WanProxy`: one listening port forwarding to one upstream ``host:port``, and
its command line (``python benchmarks/wan_proxy.py --listen 127.0.0.1:0 --upstream 127.0.0.1:5000
--rtt-ms 40 --mbit 1000``, which prints the bound port as the first stdout line and stops cleanly on
SIGTERM/SIGINT). In-process use: ``async with WanProxy(0, "127.0.0.1", 5000, rtt=0.04) as wan:``
(or ``await wan.start()`` / ``await wan.stop()``) on a running event loop; ``wan.port`` is the port.

The model, per proxied connection:

* Latency: every piece of data is delivered ``rtt / 2`` after the proxy read it, in each direction.
  Each direction is a queue of timestamped chunks drained by its own writer, so a long stream is
  pipelined like a real link (throughput is not ``chunk / rtt``) and a request/response exchange
  costs one ``rtt``. EOF (half-close) and close/reset travel through the same queues, so they arrive
  after the data sent before them.
* Connection setup: the client's ``connect()`` completes at once (the kernel accepts it), but the
  upstream is dialled ``rtt`` later and the client's first bytes cannot leave before then, like a
  TCP handshake. A first request on a new connection therefore takes ``2 * rtt``, later ones
  ``rtt``. An unreachable upstream closes the client connection after ``rtt``.
* Bandwidth: a cap in **bytes per second** (``bandwidth_bps``; the CLI takes ``--mbit``, megabits).
  By default it is one shared link: all connections and both directions draw on a single
  serializer, so ``125e6`` is 1 Gbit/s total, like a half-duplex pipe. ``per_direction=True`` gives
  upload and download a cap each (still shared by all connections), like a full-duplex line.
  The serializer is a token bucket one chunk deep (a virtual clock): a chunk of ``n`` bytes occupies
  the link for ``n / bandwidth`` seconds, then flies ``rtt / 2``. ``None`` (``--mbit 0``) = no cap.
* Not modelled: loss, reordering, jitter, TCP window limits (the in-flight data per direction is
  only bounded by ``buffer_bytes`` to cap memory; reading pauses above it).

Efficiency: plain ``asyncio.Protocol``s (no stream copies), reads of up to 256 KiB (asyncio's
maximum per ``recv``), per-chunk work only, so ~1 Gbit/s on loopback costs a fraction of a core.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import logging
import signal
import socket
import struct
import sys
from dataclasses import dataclass

__all__ = ("LinkStats", "WanProxy", "main")

log = logging.getLogger("wan_proxy")

# A sender may run at most this far ahead of the link (seconds of queued serialization): a router
# queue, and the bound on how long a newcomer waits behind a bulk transfer on the shared link.
_MAX_AHEAD = 0.02
_EOF = b""  # queue marker: half-close (an empty chunk is never queued as data)


class _Link:
    """The bandwidth cap: a virtual clock that serializes every chunk sent on it."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self.free_at = 0.0

    def reserve(self, nbytes: int, start: float) -> float:
        """Book ``nbytes`` starting no earlier than ``start``; returns when the last byte is on the wire."""
        if self.rate is None:
            return start
        begin = max(start, self.free_at)
        self.free_at = begin + nbytes / self.rate
        return self.free_at


@dataclass
class LinkStats:
    """Counters since start (read them from the proxy's loop thread or after stop)."""

    connections: int = 0  # accepted
    active: int = 0  # currently open
    bytes_up: int = 0  # client → upstream, delivered
    bytes_down: int = 0  # upstream → client, delivered
    connect_failures: int = 0


class _Side(asyncio.Protocol):
    """One TCP endpoint of a proxied connection: the accepted client socket or the upstream socket."""

    def __init__(self, conn: _Conn | None, proxy: WanProxy | None = None) -> None:
        self.conn = conn
        self.proxy = proxy  # set for an accepted client, whose connection is made on accept
        self.transport: asyncio.Transport | None = None
        self.writable = asyncio.Event()
        self.writable.set()
        self.closed = False
        self._pause_reasons: set[str] = set()

    # -- protocol callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=4 << 20)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.conn is None:
            assert self.proxy is not None
            self.conn = _Conn(self.proxy, self)
        else:
            self.conn.upstream_made()

    def data_received(self, data: bytes) -> None:
        assert self.conn is not None
        self.conn.pipe_from(self).push(data)

    def eof_received(self) -> bool:
        assert self.conn is not None
        self.conn.pipe_from(self).push_eof()
        return True  # keep the other direction open (half-close)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.writable.set()
        if self.conn is not None:
            self.conn.side_lost(self, exc)

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    # -- flow control of what we read

    def pause(self, reason: str) -> None:
        if not self._pause_reasons and self.transport is not None and not self.closed:
            self.transport.pause_reading()
        self._pause_reasons.add(reason)

    def resume(self, reason: str) -> None:
        if reason not in self._pause_reasons:
            return
        self._pause_reasons.discard(reason)
        if not self._pause_reasons and self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def kill(self, how: str) -> None:
        """``close``: FIN after buffered data; ``abort``: drop buffered data now; ``rst``: abort with RST."""
        if self.transport is None or self.closed:
            return
        if how == "close":
            self.transport.close()
            return
        if how == "rst":
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                # SO_LINGER 0: the abort goes out as an RST, as the reset we are relaying did.
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()


class _Pipe:
    """One direction: chunks read from ``src``, stamped with their delivery time, written to ``dst``."""

    def __init__(self, conn: _Conn, src: _Side, link: _Link, *, up: bool, not_before: float) -> None:
        self.conn = conn
        self.src = src
        self.dst: _Side | None = None
        self.link = link
        self.up = up
        self.not_before = not_before  # nothing departs before the emulated handshake is done
        self.queue: collections.deque[tuple[float, bytes | None]] = collections.deque()
        self.queued = 0
        self.last_at = 0.0
        self.wake = asyncio.Event()
        self.dst_ready = asyncio.Event()
        self.ended = False
        self._resume_handle: asyncio.TimerHandle | None = None

    def _stamp(self, nbytes: int) -> float:
        loop = self.conn.loop
        now = loop.time()
        on_wire = self.link.reserve(nbytes, max(now, self.not_before)) if nbytes else max(now, self.not_before)
        at = max(on_wire + self.conn.proxy.one_way, self.last_at)
        self.last_at = at
        # Backpressure on the reader: a sender far ahead of the link, or too much in flight, waits.
        if on_wire - now > _MAX_AHEAD:
            self.src.pause("link")
            if self._resume_handle is not None:
                self._resume_handle.cancel()
            self._resume_handle = loop.call_at(on_wire - _MAX_AHEAD / 2, self.src.resume, "link")
        return at

    def push(self, data: bytes) -> None:
        if self.ended or not data:
            return
        self.queue.append((self._stamp(len(data)), data))
        self.queued += len(data)
        if self.queued > self.conn.proxy.buffer_bytes:
            self.src.pause("buffer")
        self.wake.set()

    def push_eof(self) -> None:
        if not self.ended:
            self.queue.append((self._stamp(0), _EOF))
            self.wake.set()

    def push_close(self) -> None:
        # None = the source is gone: close the destination once the data before it is delivered.
        if not self.ended:
            self.queue.append((self._stamp(0), None))
            self.wake.set()

    async def run(self) -> None:
        loop = self.conn.loop
        stats = self.conn.proxy.stats
        await self.dst_ready.wait()
        dst = self.dst
        assert dst is not None
        while True:
            while not self.queue:
                self.wake.clear()
                await self.wake.wait()
            at, data = self.queue[0]
            delay = at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self.queue.popleft()
            if data is None:
                self.ended = True
                dst.kill("rst" if self.conn.reset else "close")
                return
            if dst.closed or dst.transport is None:
                continue  # the peer left; what was in flight to it is lost
            if not data:  # _EOF
                if dst.transport.can_write_eof():
                    dst.transport.write_eof()
                continue
            await dst.writable.wait()
            if dst.closed:
                continue
            dst.transport.write(data)
            self.queued -= len(data)
            if self.up:
                stats.bytes_up += len(data)
            else:
                stats.bytes_down += len(data)
            if self.queued <= self.conn.proxy.buffer_bytes // 2:
                self.src.resume("buffer")

    def cancel_timers(self) -> None:
        if self._resume_handle is not None:
            self._resume_handle.cancel()


class _Conn:
    """A client connection and its (delayed) upstream connection."""

    def __init__(self, proxy: WanProxy, client: _Side) -> None:
        self.proxy = proxy
        self.loop = asyncio.get_running_loop()
        self.client = client
        self._finished = False
        self.upstream = _Side(self)
        self.reset = False
        established = self.loop.time() + proxy.rtt
        self.up = _Pipe(self, client, proxy.link_up, up=True, not_before=established)
        # Upstream data can only exist after the upstream connected, i.e. after `established`.
        self.down = _Pipe(self, self.upstream, proxy.link_down, up=False, not_before=0.0)
        self.up.dst = self.upstream
        self.down.dst = client
        self.down.dst_ready.set()
        proxy.stats.connections += 1
        proxy.stats.active += 1
        proxy.conns.add(self)
        self.tasks = [
            self.loop.create_task(self._dial()),
            self.loop.create_task(self.up.run()),
            self.loop.create_task(self.down.run()),
        ]

    def pipe_from(self, side: _Side) -> _Pipe:
        return self.up if side is self.client else self.down

    async def _dial(self) -> None:
        # The handshake's round trip: SYN out, SYN-ACK back.
        await asyncio.sleep(self.proxy.rtt)
        try:
            await self.loop.create_connection(lambda: self.upstream, self.proxy.upstream_host, self.proxy.upstream_port)
        except OSError as exc:
            log.info("upstream %s:%s: %s", self.proxy.upstream_host, self.proxy.upstream_port, exc)
            self.proxy.stats.connect_failures += 1
            self.client.kill("rst")
            self.finish()

    def upstream_made(self) -> None:
        self.up.dst_ready.set()

    def side_lost(self, side: _Side, exc: Exception | None) -> None:
        if exc is not None:
            self.reset = True
        self.pipe_from(side).push_close()
        if self.client.closed and (self.upstream.closed or self.upstream.transport is None):
            self.finish()

    def finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        self.proxy.stats.active -= 1
        self.proxy.conns.discard(self)
        current = asyncio.current_task()
        for task in self.tasks:
            if task is not current:
                task.cancel()
        self.up.cancel_timers()
        self.down.cancel_timers()

    def abort(self) -> None:
        self.client.kill("abort")
        self.upstream.kill("abort")
        self.finish()


class WanProxy:
    """Listen on ``listen_port`` and forward to ``upstream_host:upstream_port`` through an emulated WAN.

    :param listen_port: port to listen on; 0 picks a free one (read :attr:`port` after start).
    :param upstream_host: upstream address.
    :param upstream_port: upstream port.
    :param rtt: round-trip time in seconds; each direction delays data by ``rtt / 2``.
    :param bandwidth_bps: link capacity in **bytes** per second (default 1 Gbit/s); ``None`` = no cap.
    :param per_direction: one cap per direction instead of one shared by both directions.
    :param listen_host: address to listen on.
    :param buffer_bytes: in-flight bytes per direction above which reading from the sender pauses;
        default: enough for the bandwidth-delay product (8 MiB at least, 64 MiB without a cap).
    """

    def __init__(
        self,
        listen_port: int,
        upstream_host: str,
        upstream_port: int,
        rtt: float = 0.040,
        bandwidth_bps: float | None = 1e9 / 8,
        *,
        per_direction: bool = False,
        listen_host: str = "127.0.0.1",
        buffer_bytes: int | None = None,
    ) -> None:
        if rtt < 0 or (bandwidth_bps is not None and bandwidth_bps <= 0):
            raise ValueError("rtt must be >= 0 and bandwidth_bps > 0 (or None)")
        self.listen_host = listen_host
        self.port = listen_port
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.rtt = rtt
        self.one_way = rtt / 2
        self.bandwidth_bps = bandwidth_bps
        self.per_direction = per_direction
        if buffer_bytes is None:
            if bandwidth_bps is None:
                buffer_bytes = 64 << 20
            else:
                buffer_bytes = max(8 << 20, int(4 * bandwidth_bps * (self.one_way + _MAX_AHEAD)))
        self.buffer_bytes = buffer_bytes
        self.link_up = _Link(bandwidth_bps)
        self.link_down = _Link(bandwidth_bps) if per_direction else self.link_up
        self.stats = LinkStats()
        self.conns: set[_Conn] = set()
        self._server: asyncio.Server | None = None

    def __repr__(self) -> str:
        cap = "no cap" if self.bandwidth_bps is None else f"{self.bandwidth_bps * 8 / 1e6:g} Mbit/s"
        return (
            f"<WanProxy {self.listen_host}:{self.port} -> {self.upstream_host}:{self.upstream_port} "
            f"rtt={self.rtt * 1000:g}ms {cap}{' per direction' if self.per_direction else ''}>"
        )

    async def start(self) -> WanProxy:
        """Bind and start accepting on the running loop."""
        if self._server is not None:
            return self
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Side(None, self), self.listen_host, self.port, reuse_address=True, backlog=512
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Stop accepting, close every proxied connection and cancel their tasks. Idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        conns = list(self.conns)
        tasks = [t for c in conns for t in c.tasks if not t.done()]
        for conn in conns:
            conn.abort()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def __aenter__(self) -> WanProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


# ---------------------------------------------------------------------------------------------- CLI


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


async def _serve(args: argparse.Namespace) -> None:
    listen_host, listen_port = args.listen
    upstream_host, upstream_port = args.upstream
    proxy = WanProxy(
        listen_port,
        upstream_host,
        upstream_port,
        rtt=args.rtt_ms / 1000,
        bandwidth_bps=args.mbit * 1e6 / 8 if args.mbit > 0 else None,
        per_direction=args.per_direction,
        listen_host=listen_host,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await proxy.start()
    # The first stdout line is the contract with whoever started us (port 0 → the real port).
    print(proxy.port, flush=True)
    log.info("%r", proxy)
    try:
        await stop.wait()
    finally:
        await proxy.stop()
        s = proxy.stats
        log.info("stopped: %d connections, %d bytes up, %d bytes down", s.connections, s.bytes_up, s.bytes_down)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--listen", type=_host_port, default=("127.0.0.1", 0), help="HOST:PORT (port 0: any)")
    parser.add_argument("--upstream", type=_host_port, required=True, help="HOST:PORT to forward to")
    parser.add_argument("--rtt-ms", type=float, default=40.0, help="round-trip time in ms (default 40)")
    parser.add_argument("--mbit", type=float, default=1000.0, help="link capacity in Mbit/s; 0 = no cap")
    parser.add_argument("--per-direction", action="store_true", help="cap each direction separately")
    parser.add_argument("-v", "--verbose", action="store_true", help="log to stderr")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr)
    asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
