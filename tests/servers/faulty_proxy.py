"""A fault-injecting HTTP reverse proxy in front of a real registry, for resilience tests.

This module owns :class:`FaultyProxy` (an aiohttp server on its own event loop in a daemon thread, so
sync fixtures and tests on any event loop can use it), the :class:`Fault` script entries it applies,
and the :class:`ProxiedRequest` log tests assert on (each entry stamped with its ``time.monotonic()``
arrival time, ``at``, so tests can measure the gap between two attempts, e.g. a ``Retry-After`` wait).

Forwarding is as transparent as aiohttp allows: the method and the request target are sent exactly as
received (``request.raw_path`` through ``yarl.URL(..., encoded=True)``, so ``_state`` upload tokens
are never re-encoded, docs/protocol.md#upload-sessions); end-to-end headers are copied (hop-by-hop ones and ``Expect``
dropped, ``Host`` set to the upstream's authority, no ``X-Forwarded-*`` and no client defaults such
as ``User-Agent`` or ``Accept-Encoding`` added); request and response bodies are streamed chunk by
chunk (a chunked request body goes upstream chunked); compressed bodies pass through undecoded. A
``Location`` header that points at the upstream origin, under either scheme, is rewritten to the
proxy's origin so clients keep coming back through the proxy; everything else (``WWW-Authenticate``
realms, ``Link``) is left alone. Two small deviations: aiohttp adds ``Content-Type:
application/octet-stream`` to a non-empty response that had none, and ``Date``/``Server`` headers
when upstream sent none. An unreachable upstream gives ``502``.

Fault fields (``Fault(method=..., path=..., <action>=...)``):

Matching
    ``method``: ``None`` matches any method, otherwise compared case-insensitively.
    ``path``: regex, ``re.search``-ed against the raw request target (path and query, as sent).
    ``skip``: the first ``skip`` matching requests are not faulted by this fault (another fault may
    take them). ``times``: how many requests it then applies to; ``-1`` = forever.
    Every fault counts every request matching ``method``/``path`` (``seen``) until it is exhausted,
    whichever fault ends up applying, so ``skip`` does not depend on the other faults. Faults are
    checked in the order added and the first *active* one (past ``skip``, not exhausted) applies;
    ``hits`` counts the requests it was applied to.

Actions without upstream contact
    ``reset=True``: abort the client connection (TCP RST) before any response.
    ``status=NNN`` (+ ``headers={...}``, ``body=b"..."``): answer with that status directly.

Request actions (the request is forwarded)
    ``request_reset_after_bytes=N``: forward the first N request-body bytes upstream, then reset both
    connections, like an upload broken mid-body (no body, or a shorter one: reset at its end).
    ``drop_response=True``: forward the request, read the whole upstream response, then reset the
    client connection: the request took effect, the client never learns the outcome.

Response actions (combinable, except as noted)
    ``reset_after_bytes=N``: send status, headers and N body bytes, then reset (RST).
    ``truncate=N``: send status and headers (full ``Content-Length``) and N body bytes, then close
    cleanly (FIN). At most one of ``reset_after_bytes``/``truncate``.
    ``stall_after_bytes=(N, seconds)``: send N body bytes, stall, then send the rest.
    ``drip=seconds``: send the body one byte every ``seconds`` (a server that never stalls long enough
    for a per-read timeout, and never finishes).
    ``corrupt=True``: same length, one byte flipped (XOR 0x01 at the middle of a known length, else
    at offset 0; an empty body stays empty).
    ``garbage=b"..."`` (+ optional ``status``): replace the body and ``Content-Length`` (upstream
    headers otherwise kept, ``Docker-Content-Digest`` included); not combinable with the body ones.
    ``drop_header="Name"`` (or a tuple of names), ``set_headers={...}``: edit the response headers
    after the ``Location`` rewrite (a ``Location`` given in ``set_headers`` is sent verbatim).

Any action
    ``stall=seconds``: wait before doing anything else (alone: then forward normally). Stalls end
    early when the client disconnects or the proxy stops.

Note for tests: aiohttp 3.14's client retries an idempotent request (GET, HEAD, PUT, DELETE, ...)
once, on a fresh connection, when it fails with ``ServerDisconnectedError``/``ClientOSError``, so a
connection-level fault with ``times=1`` on such a request is absorbed by aiohttp; use ``times=2``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import re
import socket
import ssl
import struct
import termios
import threading
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from ._background import start_loop_thread, stop_loop_thread

__all__ = ("Fault", "FaultyProxy", "ProxiedRequest")

_HOP_BY_HOP = frozenset(
    h.lower()
    for h in (
        "Connection",
        "Keep-Alive",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Proxy-Connection",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
    )
)
# Expect: aiohttp's server already answered "100 Continue" to the client; Host: set to the upstream.
_REQUEST_DROP = _HOP_BY_HOP | {"host", "expect"}
# Headers aiohttp's client would invent; the upstream must see only what the client sent.
_SKIP_AUTO = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")
_CHUNK = 1 << 20
# How long an RST waits for the client to take the bytes sent before it (a client that stopped reading).
_FLUSH_TIMEOUT = 2.0


@dataclass(eq=False)
class Fault:
    """One scripted fault; see the module docstring for the fields. ``hits``/``seen`` are counters."""

    method: str | None = None
    path: str = ""
    skip: int = 0
    times: int = 1
    # no upstream contact
    reset: bool = False
    status: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    # request side
    request_reset_after_bytes: int | None = None
    drop_response: bool = False
    # response side
    reset_after_bytes: int | None = None
    truncate: int | None = None
    stall_after_bytes: tuple[int, float] | None = None
    drip: float | None = None
    corrupt: bool = False
    garbage: bytes | None = None
    drop_header: str | tuple[str, ...] | None = None
    set_headers: Mapping[str, str] | None = None
    # any
    stall: float | None = None
    hits: int = field(default=0, init=False)
    seen: int = field(default=0, init=False)
    _regex: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.method is not None:
            self.method = self.method.upper()
        self._regex = re.compile(self.path)
        if self.skip < 0 or self.times == 0 or self.times < -1:
            raise ValueError(f"bad skip/times: skip={self.skip} times={self.times}")
        if isinstance(self.drop_header, str):
            self.drop_header = (self.drop_header,)
        answer = self.status is not None and self.garbage is None
        body_edits = [
            n
            for n in ("reset_after_bytes", "truncate", "stall_after_bytes", "drip", "corrupt")
            if getattr(self, n) is not None and getattr(self, n) is not False  # `0 in (None, False)` is True
        ]
        header_edits = bool(self.drop_header or self.set_headers)
        response = bool(body_edits) or self.garbage is not None or header_edits
        exclusive = [
            name
            for name, on in (
                ("reset", self.reset),
                ("status", answer),
                ("request_reset_after_bytes", self.request_reset_after_bytes is not None),
                ("drop_response", self.drop_response),
                ("response edits", response),
            )
            if on
        ]
        if len(exclusive) > 1:
            raise ValueError(f"fault actions cannot be combined: {exclusive}")
        if self.reset_after_bytes is not None and self.truncate is not None:
            raise ValueError("use one of reset_after_bytes and truncate")
        if self.garbage is not None and body_edits:
            raise ValueError(f"garbage replaces the body; it cannot be combined with {body_edits}")
        if (self.headers or self.body) and not answer:
            raise ValueError("headers/body only go with a status answer (use set_headers/garbage otherwise)")
        if not exclusive and self.stall is None:
            raise ValueError("a fault needs an action")

    @property
    def action(self) -> str:
        """The action names, ``+``-joined, as shown in the request log (e.g. ``stall+status``)."""
        names = [n for n in ("stall", "reset") if getattr(self, n)]
        if self.status is not None and self.garbage is None:
            names.append("status")
        names += [
            n
            for n in (
                "request_reset_after_bytes",
                "drop_response",
                "reset_after_bytes",
                "truncate",
                "stall_after_bytes",
                "drip",
                "corrupt",
                "garbage",
                "drop_header",
                "set_headers",
            )
            if getattr(self, n) not in (None, False, ())
        ]
        return "+".join(names)

    @property
    def exhausted(self) -> bool:
        return self.times != -1 and self.hits >= self.times

    def _matches(self, method: str, target: str) -> bool:
        return (self.method is None or self.method == method) and self._regex.search(target) is not None


@dataclass
class ProxiedRequest:
    """One request the proxy received; a snapshot when read through :attr:`FaultyProxy.requests`."""

    method: str
    path: str  # raw request target, query included, as received
    action: str | None  # the applied fault's :attr:`Fault.action`; None = passed through untouched
    status: int | None = None  # status sent to the client; None = no response (reset) or not yet
    request_bytes: int = 0  # request-body bytes forwarded upstream so far
    response_bytes: int = 0  # response-body bytes sent to the client so far
    # The proxy finished handling it; may flip just after the client got the last byte, so poll.
    done: bool = False
    # time.monotonic() when the request arrived (before any fault's stall): to measure gaps between attempts.
    at: float = field(default_factory=time.monotonic)


class FaultyProxy:
    """Reverse proxy to ``upstream_url`` applying :class:`Fault` scripts; a context manager.

    :param upstream_url: origin of the upstream, e.g. ``registry.url`` (``http(s)://127.0.0.1:PORT``).
    :param upstream_ssl: SSL context for an https upstream (e.g. ``registry.ssl_context()``).
    :param ssl_context: serve https to clients with this server-side context instead of plain http.
    :param host: address to listen on; the port is always a free one.
    """

    def __init__(
        self,
        upstream_url: str,
        *,
        upstream_ssl: ssl.SSLContext | None = None,
        ssl_context: ssl.SSLContext | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        scheme, sep, rest = upstream_url.partition("://")
        if not sep or scheme not in ("http", "https"):
            raise ValueError(f"upstream_url must be http(s)://host:port, got {upstream_url!r}")
        self.upstream_authority = rest.split("/", 1)[0]
        self.upstream_origin = f"{scheme}://{self.upstream_authority}"
        self.upstream_ssl = upstream_ssl
        self.ssl_context = ssl_context
        self.bind_host = host
        self.port = 0
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._requests: list[ProxiedRequest] = []
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------------------------ addresses

    @property
    def scheme(self) -> str:
        return "https" if self.ssl_context is not None else "http"

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``, the registry part of image references through the proxy."""
        return f"{self.bind_host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    def __repr__(self) -> str:
        return f"<FaultyProxy {self.url} -> {self.upstream_origin} faults={len(self._faults)}>"

    # ------------------------------------------------------------------------------------ test API

    def add(self, fault: Fault) -> Fault:
        """Append a fault (checked after those already added); returns it, to read ``hits`` later."""
        with self._lock:
            self._faults.append(fault)
        return fault

    def remove(self, fault: Fault) -> None:
        with self._lock:
            self._faults = [f for f in self._faults if f is not fault]

    def clear(self, *, faults: bool = True, requests: bool = True) -> None:
        """Forget the faults and/or the request log."""
        with self._lock:
            if faults:
                self._faults.clear()
            if requests:
                self._requests.clear()

    @property
    def faults(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    @property
    def requests(self) -> list[ProxiedRequest]:
        """Snapshot of every request received so far, oldest first (copies: later updates not seen)."""
        with self._lock:
            return [dataclasses.replace(r) for r in self._requests]

    # ------------------------------------------------------------------------------------ lifecycle

    def start(self) -> FaultyProxy:
        """Start listening; returns once the socket accepts connections."""
        if self._thread is not None:
            return self
        self._thread, self._loop = start_loop_thread(f"faulty-proxy-{id(self):x}", self._serve, self._cleanup)
        return self

    def stop(self) -> None:
        """Cancel in-flight requests (stalls included), close every connection, join the thread."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        if not stop_loop_thread(thread, loop):
            raise RuntimeError("faulty proxy thread did not stop")
        self._thread = None
        self._loop = None

    def __enter__(self) -> FaultyProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _serve(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self.upstream_ssl if self.upstream_ssl is not None else True),
            auto_decompress=False,  # pass Content-Encoding'd bodies through byte for byte
            cookie_jar=aiohttp.DummyCookieJar(),
            # No total timeout: a proxied 1 GB upload may take long; a dead upstream socket still fails.
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            read_bufsize=_CHUNK,
        )
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(
            app,
            access_log=None,  # aiohttp's access logger would add noise to every test's captured logs
            # A client that gives up (read timeout during a stall) cancels its handler, so a stalled
            # request is never forwarded after the client left.
            handler_cancellation=True,
            read_bufsize=_CHUNK,
            shutdown_timeout=1.0,
        )
        await self._runner.setup()
        # Bind ourselves: port 0 gives a free port with no race, and we learn it without aiohttp internals.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.bind_host, 0))
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock, ssl_context=self.ssl_context).start()

    async def _cleanup(self) -> None:
        # Handlers first (a stall may sleep for minutes), then the listener and idle keep-alive
        # connections, then the pooled upstream connections.
        tasks = [t for t in self._tasks if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        # Whatever is left (a connection's protocol task, an upstream body writer) must not outlive
        # the loop, or closing it warns about destroyed pending tasks.
        rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in rest:
            task.cancel()
        await asyncio.gather(*rest, return_exceptions=True)

    # ------------------------------------------------------------------------------------ bookkeeping

    def _match(self, method: str, target: str) -> Fault | None:
        with self._lock:
            chosen: Fault | None = None
            for fault in self._faults:
                if fault.exhausted or not fault._matches(method, target):
                    continue
                fault.seen += 1
                if chosen is None and fault.seen > fault.skip:
                    fault.hits += 1
                    chosen = fault
            return chosen

    def _update(self, record: ProxiedRequest, **changes: Any) -> None:
        with self._lock:
            for key, value in changes.items():
                setattr(record, key, value)

    def _add_bytes(self, record: ProxiedRequest, attr: str, n: int) -> None:
        with self._lock:
            setattr(record, attr, getattr(record, attr) + n)

    # ------------------------------------------------------------------------------------ handling

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        fault = self._match(request.method, request.raw_path)
        record = ProxiedRequest(request.method, request.raw_path, fault.action if fault else None)
        with self._lock:
            self._requests.append(record)
        try:
            return await self._apply(request, record, fault)
        finally:
            self._tasks.discard(task)
            self._update(record, done=True)

    async def _apply(self, request: web.Request, record: ProxiedRequest, fault: Fault | None) -> web.StreamResponse:
        if fault is None:
            return await self._forward(request, record, None)
        if fault.stall:
            await asyncio.sleep(fault.stall)
        if fault.reset:
            return self._kill(request, rst=True)
        if fault.status is not None and fault.garbage is None:
            self._update(record, status=fault.status)
            return web.Response(status=fault.status, body=fault.body, headers=dict(fault.headers))
        if fault.request_reset_after_bytes is not None:
            return await self._broken_upload(request, record, fault.request_reset_after_bytes)
        return await self._forward(request, record, fault)

    def _kill(self, request: web.Request, *, rst: bool) -> web.StreamResponse:
        """Close the client connection (RST or FIN); returns a response aiohttp fails quietly to send."""
        transport = request.transport
        if transport is not None:
            if rst:
                sock = transport.get_extra_info("socket")
                if sock is not None:
                    # SO_LINGER on with a zero timeout: close() sends RST instead of FIN.
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                transport.abort()
            else:
                transport.close()
        # Writing to the closing transport raises ConnectionError, which aiohttp's server treats as a
        # premature client disconnect: nothing is logged and the connection is dropped.
        return web.Response(status=500)

    async def _flush(self, request: web.Request) -> None:
        # Before an RST, let the bytes already "sent" reach the client: abort() discards asyncio's
        # buffer and an RST discards the kernel send queue, either of which would lose the N bytes.
        transport = request.transport
        if transport is None:
            return
        sock = transport.get_extra_info("socket")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _FLUSH_TIMEOUT
        while loop.time() < deadline and not transport.is_closing():
            pending = transport.get_write_buffer_size()
            if pending == 0 and sock is not None:
                pending = _unsent_bytes(sock)
            if pending == 0:
                return
            await asyncio.sleep(0.002)

    def _upstream_headers(self, request: web.Request) -> CIMultiDict[str]:
        drop = set(_REQUEST_DROP)
        for value in request.headers.getall("Connection", ()):
            drop.update(token.strip().lower() for token in value.split(","))
        headers = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in drop)
        headers["Host"] = self.upstream_authority
        return headers

    async def _send_upstream(self, request: web.Request, body: AsyncIterator[bytes] | None) -> aiohttp.ClientResponse:
        assert self._session is not None
        url = URL(self.upstream_origin + request.raw_path, encoded=True)
        return await self._session.request(
            request.method,
            url,
            headers=self._upstream_headers(request),
            data=body,
            skip_auto_headers=_SKIP_AUTO,
            allow_redirects=False,
        )

    async def _pump(
        self,
        request: web.Request,
        record: ProxiedRequest,
        limit: int | None = None,
        limit_hit: asyncio.Event | None = None,
    ) -> AsyncIterator[bytes]:
        """The client's request body as it arrives (never buffered whole), optionally cut after ``limit``."""
        sent = 0
        while True:
            chunk = await request.content.readany()
            if not chunk:
                break
            if limit is not None and sent + len(chunk) >= limit:
                chunk = chunk[: limit - sent]
                if chunk:
                    self._add_bytes(record, "request_bytes", len(chunk))
                    yield chunk
                break
            sent += len(chunk)
            self._add_bytes(record, "request_bytes", len(chunk))
            yield chunk
        if limit_hit is not None:
            limit_hit.set()
            # Never end the body: ending it would let aiohttp finish the upload (the chunked terminator),
            # and the upstream must see a broken one. The handler cancels us.
            await asyncio.Event().wait()

    async def _broken_upload(self, request: web.Request, record: ProxiedRequest, limit: int) -> web.StreamResponse:
        if not request.body_exists:
            return self._kill(request, rst=True)
        limit_hit = asyncio.Event()
        upstream = asyncio.ensure_future(self._send_upstream(request, self._pump(request, record, limit, limit_hit)))
        waiter = asyncio.ensure_future(limit_hit.wait())
        try:
            # The upstream may also answer early (or fail); the upload is broken either way.
            await asyncio.wait({upstream, waiter}, return_when=asyncio.FIRST_COMPLETED)
            # A moment for the last forwarded bytes to leave before the upstream connection is torn down.
            await asyncio.sleep(0.01)
        finally:
            for t in (upstream, waiter):
                t.cancel()
            await asyncio.gather(upstream, waiter, return_exceptions=True)
            if upstream.done() and not upstream.cancelled() and upstream.exception() is None:
                upstream.result().close()
        return self._kill(request, rst=True)

    def _response_headers(self, upstream: aiohttp.ClientResponse) -> CIMultiDict[str]:
        drop = set(_HOP_BY_HOP)
        for value in upstream.headers.getall("Connection", ()):
            drop.update(token.strip().lower() for token in value.split(","))
        headers: CIMultiDict[str] = CIMultiDict()
        for key, value in upstream.headers.items():
            if key.lower() in drop:
                continue
            headers.add(key, self._rewrite_location(value) if key.lower() == "location" else value)
        return headers

    def _rewrite_location(self, value: str) -> str:
        # String surgery, never URL parsing: the rest of the Location (the _state token) stays byte-exact.
        for scheme in ("http", "https"):
            prefix = f"{scheme}://{self.upstream_authority}"
            head, tail = value[: len(prefix)], value[len(prefix) :]
            if head.lower() == prefix.lower() and tail[:1] in ("", "/", "?", "#"):
                return self.url + tail
        return value

    async def _forward(self, request: web.Request, record: ProxiedRequest, fault: Fault | None) -> web.StreamResponse:
        body = self._pump(request, record) if request.body_exists else None
        try:
            upstream = await self._send_upstream(request, body)
        except (aiohttp.ClientError, OSError) as exc:
            transport = request.transport
            if transport is None or transport.is_closing():
                return self._kill(request, rst=False)
            self._update(record, status=502)
            return web.Response(status=502, text=f"faulty proxy: upstream request failed: {exc!r}\n")
        async with upstream:
            if fault is not None and fault.drop_response:
                async for _ in upstream.content.iter_any():
                    pass
                return self._kill(request, rst=True)
            status = upstream.status
            headers = self._response_headers(upstream)
            garbage = fault.garbage if fault is not None else None
            if fault is not None:
                if garbage is not None:
                    headers["Content-Length"] = str(len(garbage))
                    status = fault.status if fault.status is not None else status
                for name in fault.drop_header or ():
                    headers.popall(name, None)
                for name, value in (fault.set_headers or {}).items():
                    headers[name] = value
            resp = web.StreamResponse(
                status=status, reason=upstream.reason if status == upstream.status else None, headers=headers
            )
            self._update(record, status=status)
            try:
                await resp.prepare(request)
                if garbage is not None:
                    if request.method != "HEAD" and garbage:
                        await resp.write(garbage)
                        self._add_bytes(record, "response_bytes", len(garbage))
                else:
                    await self._stream_body(request, resp, upstream, record, fault)
            except ConnectionError:
                pass  # the client went away; aiohttp drops the connection when we return
            return resp

    async def _stream_body(
        self,
        request: web.Request,
        resp: web.StreamResponse,
        upstream: aiohttp.ClientResponse,
        record: ProxiedRequest,
        fault: Fault | None,
    ) -> None:
        cut: int | None = None
        pause: tuple[int, float] | None = None
        flip: int | None = None
        if fault is not None:
            cut = fault.truncate if fault.truncate is not None else fault.reset_after_bytes
            pause = fault.stall_after_bytes
            if fault.corrupt:
                length = upstream.content_length
                flip = length // 2 if length else 0
        sent = 0

        drip = fault.drip if fault is not None else None

        async def emit(data: bytes) -> None:
            nonlocal sent
            for piece in (data[i:i + 1] for i in range(len(data))) if drip else (data,):
                if piece:
                    await resp.write(piece)
                    sent += len(piece)
                    self._add_bytes(record, "response_bytes", len(piece))
                    if drip:
                        await asyncio.sleep(drip)

        if cut != 0:
            async for piece in upstream.content.iter_any():
                chunk = piece
                last = cut is not None and sent + len(chunk) >= cut
                if last:
                    assert cut is not None
                    chunk = chunk[: cut - sent]
                if flip is not None and sent <= flip < sent + len(chunk):
                    mutable = bytearray(chunk)
                    mutable[flip - sent] ^= 0x01
                    chunk = bytes(mutable)
                if pause is not None and sent + len(chunk) >= pause[0]:
                    head = pause[0] - sent
                    await emit(chunk[:head])
                    await asyncio.sleep(pause[1])
                    chunk, pause = chunk[head:], None
                await emit(chunk)
                if last:
                    break
        if fault is not None and fault.truncate is not None:
            self._kill(request, rst=False)  # FIN after the buffered bytes: a clean, short response
        elif fault is not None and fault.reset_after_bytes is not None:
            await self._flush(request)
            self._kill(request, rst=True)


def _unsent_bytes(sock: Any) -> int:
    """Bytes still in the kernel send queue (Linux SIOCOUTQ); 0 when unknown."""
    try:
        buf = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    except (OSError, AttributeError, ValueError):
        return 0
    return int(struct.unpack("i", buf)[0])
