"""The fault-injecting proxy (:mod:`servers.faulty_proxy`) and the black hole (:mod:`servers.blackhole`).

Every action is checked against a real ``docker-registry`` with plain aiohttp requests, so tests of
regcopy's retry logic can rely on the faults doing exactly what they say. The proxy must also be
invisible when no fault applies: raw request targets (``_state`` tokens) reach the registry
byte-exact, bodies stream both ways, and ``Location`` keeps clients on the proxy.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator

import aiohttp
import pytest
from yarl import URL

from servers.blackhole import Blackhole
from servers.faulty_proxy import Fault, FaultyProxy
from servers.registry import RegistryServer, shared_ca

MB = 1 << 20
UA = "faulty-proxy-test/1"
TIMEOUT = aiohttp.ClientTimeout(total=30)


@pytest.fixture
def proxy(http_registry: RegistryServer) -> Iterator[FaultyProxy]:
    with FaultyProxy(http_registry.url) as p:
        yield p


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=TIMEOUT, headers={"User-Agent": UA}) as s:
        yield s


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def raw(url: str) -> URL:
    # Upload URLs are opaque (docs/protocol.md#upload-sessions): never let yarl re-encode the _state token.
    return URL(url, encoded=True)


async def start_upload(session: aiohttp.ClientSession, base: str, repo: str) -> str:
    async with session.post(f"{base}/v2/{repo}/blobs/uploads/", allow_redirects=False) as r:
        assert r.status == 202, await r.text()
        return r.headers["Location"]


async def push_blob(session: aiohttp.ClientSession, base: str, repo: str, data: bytes) -> str:
    """Monolithic POST + PUT ?digest=; returns the digest."""
    digest = digest_of(data)
    location = await start_upload(session, base, repo)
    async with session.put(raw(f"{location}&digest={digest}"), data=data, allow_redirects=False) as r:
        assert r.status == 201, await r.text()
    return digest


async def wait_until(predicate: Callable[[], bool]) -> None:
    """Poll ``predicate`` (proxy and registry logs are written by other threads/processes)."""
    # Polling, not an Event: the state lives in another thread or in the registry's log file.
    for _ in range(250):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met within 5 s")


# ---------------------------------------------------------------------------------------------- passthrough


async def test_passthrough_forwards_headers_and_logs(
    proxy: FaultyProxy, http_registry: RegistryServer, session: aiohttp.ClientSession
) -> None:
    async with session.get(f"{proxy.url}/v2/") as r:
        assert r.status == 200
        assert r.headers["Docker-Distribution-Api-Version"] == "registry/2.0"
        assert await r.read() == b"{}"
    # `done` flips after the handler returns, which can be just after the client has the whole body.
    await wait_until(lambda: proxy.requests[-1].done)
    [entry] = proxy.requests
    assert (entry.method, entry.path, entry.action, entry.status) == ("GET", "/v2/", None, 200)
    assert (entry.request_bytes, entry.response_bytes) == (0, 2)
    # The client's own User-Agent arrives, not one added by the proxy's aiohttp client.
    seen = http_registry.wait_for_access(lambda e: e.path == "/v2/")
    assert seen.user_agent == UA


async def test_raw_target_and_location_rewrite(
    proxy: FaultyProxy, http_registry: RegistryServer, session: aiohttp.ClientSession
) -> None:
    location = await start_upload(session, proxy.url, "app")
    # The registry built an absolute URL for its own origin; the proxy swapped in its own origin only.
    assert location.startswith(f"{proxy.url}/v2/app/blobs/uploads/")
    assert "_state=" in location
    data = b"hello through the proxy"
    digest = digest_of(data)
    target = location[len(proxy.url) :] + f"&digest={digest}"
    async with session.put(raw(proxy.url + target), data=data, allow_redirects=False) as r:
        assert r.status == 201
        assert r.headers["Location"] == f"{proxy.url}/v2/app/blobs/{digest}"
    # Byte-exact request target at the registry (percent-escapes of the _state token included).
    assert http_registry.wait_for_access(lambda e: e.method == "PUT").path == target
    # Odd escapes too: nothing is decoded, normalized or re-encoded on the way.
    odd = "/v2/a%2Fb/tags/list?n=1&x=%41%3d+b"
    async with session.get(raw(proxy.url + odd)) as r:
        assert r.status == 404
    assert http_registry.wait_for_access(lambda e: e.path.startswith("/v2/a%2F")).path == odd


async def test_streams_a_20mb_monolithic_upload(
    proxy: FaultyProxy, http_registry: RegistryServer, session: aiohttp.ClientSession
) -> None:
    size, half = 20 * MB, 10 * MB
    block = bytes(range(256)) * 4096  # 1 MiB
    data = block * 20
    digest = digest_of(data)
    location = await start_upload(session, proxy.url, "big")
    uuid = location.split("/uploads/", 1)[1].split("?", 1)[0]
    upload_file = http_registry.root / "docker/registry/v2/repositories/big/_uploads" / uuid / "data"
    reached_registry_mid_body: list[int] = []

    async def body() -> AsyncIterator[bytes]:
        for _ in range(half // MB):
            yield block
        # Hold the second half back until the registry has stored most of the first: a proxy that
        # buffered whole bodies would never get there.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            stored = upload_file.stat().st_size if upload_file.exists() else 0
            if stored >= half - 2 * MB:
                reached_registry_mid_body.append(stored)
                break
            await asyncio.sleep(0.02)
        for _ in range((size - half) // MB):
            yield block

    headers = {"Content-Length": str(size), "Content-Type": "application/octet-stream"}
    async with session.put(raw(f"{location}&digest={digest}"), data=body(), headers=headers) as r:
        assert r.status == 201, await r.text()
    assert reached_registry_mid_body, "the registry saw nothing before the client finished the body"
    put = next(e for e in proxy.requests if e.method == "PUT")
    assert put.request_bytes == size
    async with session.head(f"{proxy.url}/v2/big/blobs/{digest}") as r:
        assert r.status == 200
        assert r.headers["Content-Length"] == str(size)
        assert r.headers["Docker-Content-Digest"] == digest


async def test_chunked_request_body_is_forwarded_chunked(proxy: FaultyProxy, session: aiohttp.ClientSession) -> None:
    data = b"c" * (3 * MB + 123)
    location = await start_upload(session, proxy.url, "chunky")

    async def body() -> AsyncIterator[bytes]:
        for i in range(0, len(data), 500_000):
            yield data[i : i + 500_000]

    # No Content-Length: aiohttp sends Transfer-Encoding: chunked, which 2.8.2 accepts on PATCH.
    async with session.patch(raw(location), data=body(), headers={"Content-Type": "application/octet-stream"}) as r:
        assert r.status == 202, await r.text()
        assert r.headers["Range"] == f"0-{len(data) - 1}"
        location = r.headers["Location"]
    async with session.put(raw(f"{location}&digest={digest_of(data)}")) as r:
        assert r.status == 201
    assert next(e for e in proxy.requests if e.method == "PATCH").request_bytes == len(data)


# ---------------------------------------------------------------------------------------------- matching


async def test_status_answers_without_upstream_then_passes(
    proxy: FaultyProxy, http_registry: RegistryServer, session: aiohttp.ClientSession
) -> None:
    fault = proxy.add(Fault(method="GET", path=r"^/v2/$", status=503, headers={"Retry-After": "1"}, body=b"busy"))
    async with session.get(f"{proxy.url}/v2/") as r:
        assert r.status == 503
        assert r.headers["Retry-After"] == "1"
        assert await r.read() == b"busy"
    async with session.get(f"{proxy.url}/v2/") as r:
        assert r.status == 200
    assert fault.hits == 1
    assert [(e.action, e.status) for e in proxy.requests] == [("status", 503), (None, 200)]
    http_registry.wait_for_access(lambda e: e.path == "/v2/")
    assert len([e for e in http_registry.access_log() if e.path == "/v2/"]) == 1  # the 503 never went upstream


async def test_skip_times_and_order(proxy: FaultyProxy, session: aiohttp.ClientSession) -> None:
    async def statuses(n: int, method: str = "GET") -> list[int]:
        out = []
        for _ in range(n):
            async with session.request(method, f"{proxy.url}/v2/") as r:
                out.append(r.status)
        return out

    fault = proxy.add(Fault(path=r"^/v2/$", status=500, skip=1, times=2))
    assert await statuses(4) == [200, 500, 500, 200]
    assert (fault.hits, fault.seen, fault.exhausted) == (2, 3, True)

    proxy.clear()
    forever = proxy.add(Fault(method="GET", path="/v2/", status=429, times=-1))
    assert await statuses(5) == [429] * 5
    assert await statuses(1, "HEAD") == [200]  # method filter
    assert forever.hits == 5

    # First active fault wins; a skipping fault counts the requests others took.
    proxy.clear()
    first = proxy.add(Fault(path="/v2/", status=502))
    second = proxy.add(Fault(path="/v2/", status=504, skip=1))
    assert await statuses(3) == [502, 504, 200]
    assert (first.hits, second.hits, second.seen) == (1, 1, 2)
    assert [e.action for e in proxy.requests] == ["status", "status", None]


def test_invalid_faults_are_rejected() -> None:
    with pytest.raises(ValueError, match="need"):
        Fault(path="x")
    with pytest.raises(ValueError, match="combined"):
        Fault(reset=True, status=500)
    with pytest.raises(ValueError, match="one of"):
        Fault(truncate=1, reset_after_bytes=1)
    with pytest.raises(ValueError, match="garbage"):
        Fault(garbage=b"x", corrupt=True)
    with pytest.raises(ValueError, match="status answer"):
        Fault(truncate=1, headers={"X": "y"})
    assert Fault(stall=1, status=503).action == "stall+status"
    assert Fault(garbage=b"x", status=200, drop_header="ETag").action == "garbage+drop_header"


# ---------------------------------------------------------------------------------------------- connection faults


async def test_reset_raises_a_connection_error(proxy: FaultyProxy, session: aiohttp.ClientSession) -> None:
    # aiohttp retries an idempotent request once after a disconnect, so one reset is absorbed...
    proxy.add(Fault(method="GET", path=r"^/v2/$", reset=True))
    async with session.get(f"{proxy.url}/v2/") as r:
        assert r.status == 200
    assert [(e.action, e.status) for e in proxy.requests] == [("reset", None), (None, 200)]
    # ...and two are not.
    proxy.clear()
    proxy.add(Fault(method="GET", path=r"^/v2/$", reset=True, times=2))
    with pytest.raises(aiohttp.ClientConnectionError):
        async with session.get(f"{proxy.url}/v2/") as r:
            await r.read()
    assert [e.action for e in proxy.requests] == ["reset", "reset"]


async def test_reset_after_bytes(proxy: FaultyProxy, session: aiohttp.ClientSession) -> None:
    data = bytes(range(256)) * 4096
    digest = await push_blob(session, proxy.url, "app", data)
    proxy.add(Fault(method="GET", path="/blobs/sha256:", reset_after_bytes=1000))
    got = bytearray()
    async with session.get(f"{proxy.url}/v2/app/blobs/{digest}") as r:
        assert r.status == 200
        assert r.headers["Content-Length"] == str(len(data))
        with pytest.raises(aiohttp.ClientPayloadError):
            async for chunk in r.content.iter_any():
                got += chunk
    assert got == data[:1000]
    assert proxy.requests[-1].response_bytes == 1000


async def test_truncate_closes_cleanly_short(proxy: FaultyProxy, session: aiohttp.ClientSession) -> None:
    data = b"t" * MB
    digest = await push_blob(session, proxy.url, "app", data)
    fault = proxy.add(Fault(method="GET", path="/blobs/", truncate=4096))
    got = bytearray()
    async with session.get(f"{proxy.url}/v2/app/blobs/{digest}") as r:
        assert r.headers["Content-Length"] == str(len(data))  # the full length is still announced
        with pytest.raises(aiohttp.ClientPayloadError, match="not completed"):
            async for chunk in r.content.iter_any():
                got += chunk
    assert bytes(got) == data[:4096]
    assert fault.hits == 1
    async with session.get(f"{proxy.url}/v2/app/blobs/{digest}") as r:  # once: the next one is whole
        assert await r.read() == data


async def test_request_reset_after_bytes_breaks_an_upload(
    proxy: FaultyProxy, http_registry: RegistryServer, session: aiohttp.ClientSession
) -> None:
    location = await start_upload(session, proxy.url, "app")
    proxy.add(Fault(method="PATCH", path="/blobs/uploads/", request_reset_after_bytes=MB))
    with pytest.raises(aiohttp.ClientError):
        headers = {"Content-Type": "application/octet-stream"}
        async with session.patch(raw(location), data=b"u" * (4 * MB), headers=headers) as r:
            await r.read()
    entry = proxy.requests[-1]
    assert (entry.action, entry.status, entry.request_bytes) == ("request_reset_after_bytes", None, MB)
    # The registry really got a broken upload of exactly 1 MiB, and the session is now unusable.
    await wait_until(lambda: "copied=1048576" in http_registry.log_text())
    async with session.get(raw(location)) as r:
        assert r.status == 404
        assert "BLOB_UPLOAD_INVALID" in await r.text()


async def test_drop_response_lets_the_request_take_effect(
    proxy: FaultyProxy, http_registry: RegistryServer, session: aiohttp.ClientSession
) -> None:
    proxy.add(Fault(method="POST", path="/blobs/uploads/", drop_response=True))
    with pytest.raises(aiohttp.ClientConnectionError):
        await start_upload(session, proxy.url, "app")
    # The upload session was created; only its answer was lost.
    assert http_registry.wait_for_access(lambda e: e.method == "POST").status == 202


# ---------------------------------------------------------------------------------------------- timing faults


async def test_stall_hits_a_read_timeout_and_is_never_forwarded(
    proxy: FaultyProxy, http_registry: RegistryServer, session: aiohttp.ClientSession
) -> None:
    proxy.add(Fault(method="GET", path="/v2/_catalog", stall=0.5))
    started = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        async with session.get(f"{proxy.url}/v2/_catalog", timeout=aiohttp.ClientTimeout(sock_read=0.2)) as r:
            await r.read()
    assert time.monotonic() - started < 0.45
    # The client left, so the stalled handler was cancelled: the request never reaches the registry.
    await wait_until(lambda: proxy.requests[-1].done)
    await asyncio.sleep(0.5)
    async with session.get(f"{proxy.url}/v2/") as r:
        assert r.status == 200
    http_registry.wait_for_access(lambda e: e.path == "/v2/" and e.user_agent == UA)
    assert not [e for e in http_registry.access_log() if e.path.startswith("/v2/_catalog")]


async def test_stall_after_bytes(proxy: FaultyProxy, session: aiohttp.ClientSession) -> None:
    data = b"s" * (256 * 1024)
    digest = await push_blob(session, proxy.url, "app", data)
    proxy.add(Fault(method="GET", path="/blobs/", stall_after_bytes=(1000, 5.0)))
    async with session.get(f"{proxy.url}/v2/app/blobs/{digest}", timeout=aiohttp.ClientTimeout(sock_read=0.3)) as r:
        assert await r.content.readexactly(1000) == data[:1000]
        with pytest.raises(asyncio.TimeoutError):
            await r.content.readexactly(1)
    # A shorter stall just delays the rest.
    proxy.clear()
    proxy.add(Fault(method="GET", path="/blobs/", stall_after_bytes=(1000, 0.2)))
    started = time.monotonic()
    async with session.get(f"{proxy.url}/v2/app/blobs/{digest}") as r:
        assert await r.read() == data
    assert time.monotonic() - started >= 0.2


async def test_drip_sends_one_byte_at_a_time(proxy: FaultyProxy, session: aiohttp.ClientSession) -> None:
    data = b"d" * 2000
    digest = await push_blob(session, proxy.url, "app", data)
    proxy.add(Fault(method="GET", path="/blobs/", drip=0.05))
    started = time.monotonic()
    # Never silent for 0.3 s, so a per-read timeout does not fire; 2000 bytes would take 100 s.
    async with session.get(f"{proxy.url}/v2/app/blobs/{digest}", timeout=aiohttp.ClientTimeout(sock_read=0.3)) as r:
        assert r.content_length == len(data)
        got = b"".join([await r.content.readexactly(1) for _ in range(10)])
    assert got == data[:10]
    assert time.monotonic() - started >= 9 * 0.05
    assert proxy.requests[-1].action == "drip"


def test_stop_cancels_a_stall_promptly(http_registry: RegistryServer) -> None:
    # Sync test, client on its own loop in a thread: the proxy must not depend on the caller's loop.
    outcome: list[BaseException | int] = []
    proxy = FaultyProxy(http_registry.url).start()
    proxy.add(Fault(stall=60))

    async def client() -> None:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as s:
            try:
                async with s.get(f"{proxy.url}/v2/") as r:
                    outcome.append(r.status)
            except aiohttp.ClientError as exc:
                outcome.append(exc)

    thread = threading.Thread(target=asyncio.run, args=(client(),))
    thread.start()
    deadline = time.monotonic() + 5
    while not proxy.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    proxy.stop()
    assert time.monotonic() - started < 3
    thread.join(5)
    assert len(outcome) == 1 and isinstance(outcome[0], aiohttp.ClientError)
    assert not [t for t in threading.enumerate() if t.name == f"faulty-proxy-{id(proxy):x}"]


# ---------------------------------------------------------------------------------------------- content faults


async def test_corrupt_keeps_length_and_flips_a_byte(proxy: FaultyProxy, session: aiohttp.ClientSession) -> None:
    data = bytes(range(256)) * 1000
    digest = await push_blob(session, proxy.url, "app", data)
    proxy.add(Fault(method="GET", path="/blobs/", corrupt=True))
    async with session.get(f"{proxy.url}/v2/app/blobs/{digest}") as r:
        body = await r.read()
        assert r.headers["Docker-Content-Digest"] == digest
    assert len(body) == len(data) and body != data
    assert sum(a != b for a, b in zip(body, data, strict=True)) == 1
    assert digest_of(body) != digest


async def test_garbage_replaces_body_and_length(proxy: FaultyProxy, session: aiohttp.ClientSession) -> None:
    data = b"g" * 5000
    digest = await push_blob(session, proxy.url, "app", data)
    proxy.add(Fault(method="GET", path="/blobs/", garbage=b"<html>captive portal</html>"))
    proxy.add(Fault(method="HEAD", path="/blobs/", garbage=b"12345", status=206))
    async with session.get(f"{proxy.url}/v2/app/blobs/{digest}") as r:
        assert r.status == 200
        assert await r.read() == b"<html>captive portal</html>"
        assert r.headers["Docker-Content-Digest"] == digest  # still claims the real blob
    async with session.head(f"{proxy.url}/v2/app/blobs/{digest}") as r:
        assert r.status == 206
        assert r.headers["Content-Length"] == "5"


async def test_drop_and_set_headers(proxy: FaultyProxy, session: aiohttp.ClientSession) -> None:
    digest = await push_blob(session, proxy.url, "app", b"h" * 100)
    proxy.add(Fault(method="HEAD", path="/blobs/", drop_header="Docker-Content-Digest"))
    async with session.head(f"{proxy.url}/v2/app/blobs/{digest}") as r:
        assert r.status == 200
        assert "Docker-Content-Digest" not in r.headers
        assert r.headers["Content-Length"] == "100"

    proxy.add(Fault(method="POST", path="/blobs/uploads/", drop_header=("Location", "Docker-Upload-UUID")))
    async with session.post(f"{proxy.url}/v2/app/blobs/uploads/") as r:
        assert r.status == 202
        assert "Location" not in r.headers and "Docker-Upload-UUID" not in r.headers

    location = await start_upload(session, proxy.url, "app")
    proxy.add(Fault(method="PATCH", set_headers={"Range": "0-999999", "Location": "/elsewhere"}))
    async with session.patch(raw(location), data=b"abc", headers={"Content-Type": "application/octet-stream"}) as r:
        assert r.status == 202
        assert r.headers["Range"] == "0-999999"
        assert r.headers["Location"] == "/elsewhere"  # set verbatim, not rewritten


# ---------------------------------------------------------------------------------------------- TLS


def _server_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    shared_ca().issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    return ctx


async def test_https_upstream_and_https_listener(
    https_registry: RegistryServer, session: aiohttp.ClientSession
) -> None:
    client_ctx = https_registry.ssl_context()
    assert client_ctx is not None
    with FaultyProxy(https_registry.url, upstream_ssl=https_registry.ssl_context()) as plain:
        async with session.get(f"{plain.url}/v2/") as r:
            assert r.status == 200
        location = await start_upload(session, plain.url, "tls")
        assert location.startswith(f"http://{plain.host}/v2/tls/blobs/uploads/")  # https upstream → http proxy
        plain.add(Fault(method="GET", status=502))
        async with session.get(f"{plain.url}/v2/") as r:
            assert r.status == 502

    with FaultyProxy(https_registry.url, upstream_ssl=client_ctx, ssl_context=_server_context()) as tls:
        assert tls.url.startswith("https://")
        async with session.get(f"{tls.url}/v2/", ssl=client_ctx) as r:
            assert r.status == 200
        async with session.post(f"{tls.url}/v2/tls/blobs/uploads/", ssl=client_ctx) as r:
            assert r.headers["Location"].startswith(f"{tls.url}/v2/tls/blobs/uploads/")
        tls.add(Fault(method="GET", reset=True, times=2))
        with pytest.raises(aiohttp.ClientError):
            async with session.get(f"{tls.url}/v2/", ssl=client_ctx) as r:
                await r.read()


# ---------------------------------------------------------------------------------------------- black hole


async def test_blackhole_accepts_and_never_answers() -> None:
    with Blackhole() as hole:
        timeout = aiohttp.ClientTimeout(total=0.3)
        async with aiohttp.ClientSession(timeout=timeout) as s:
            for url in (f"http://{hole.host}/v2/", f"{hole.url}/v2/"):
                with pytest.raises(asyncio.TimeoutError):
                    async with s.get(url) as r:
                        await r.read()
        await wait_until(lambda: hole.accepted == 2 and hole.bytes_received > 0)
        port = hole.port
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)
