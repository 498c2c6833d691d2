"""Faults injected by a proxy in front of a real registry: retries, resume, fallbacks, bad input.

Recoverable faults must end in a correct copy (verified with skopeo); unrecoverable ones in a clear
regcopy error and no destination tag pointing at an incomplete image.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

import regcopy
from conftest import manifest_puts  # type: ignore[import-not-found]
from servers import skopeo
from servers.faulty_proxy import Fault, FaultyProxy
from servers.images import read_blob
from servers.registry import RegistryServer

FAST = {"backoff": 0.05, "backoff_max": 0.2}


@pytest.fixture
def src_proxy(http_registry: RegistryServer) -> Iterator[FaultyProxy]:
    with FaultyProxy(http_registry.url) as proxy:
        yield proxy


def client(**kwargs: Any) -> regcopy.Client:
    settings = regcopy.RegistrySettings(scheme="http", **{**FAST, **kwargs})
    return regcopy.Client(default_settings=settings, credentials=regcopy.StaticCredentials({}))


async def copy(src: FaultyProxy | RegistryServer, dst: FaultyProxy | RegistryServer, sample: str,
               target: str = "dst/app:v1", **kwargs: Any) -> regcopy.CopyResult:
    async with client(**kwargs) as c:
        return await c.copy(f"{src.host}/src/app:{sample}", f"{dst.host}/{target}")


# ---------------------------------------------------------------------------------- recoverable


@pytest.mark.parametrize("status", [500, 502, 503, 408])
async def test_transient_status_on_manifest_get_is_retried(
    status: int, http_registry: RegistryServer, src_proxy: FaultyProxy, dst: RegistryServer, seed: Any
) -> None:
    digest = seed(http_registry, "multi", "src/app")
    fault = src_proxy.add(Fault(method="GET", path=r"/manifests/", status=status, times=2))
    result = await copy(src_proxy, dst, "multi")
    assert fault.hits == 2 and result.retries >= 2
    skopeo.verify(dst, "dst/app:v1", digest)


async def test_429_retry_after_is_honoured(
    http_registry: RegistryServer, src_proxy: FaultyProxy, seed: Any
) -> None:
    seed(http_registry, "oci", "src/app")
    fault = src_proxy.add(Fault(method="GET", path=r"/tags/list", status=429, headers={"Retry-After": "1"}))
    # Retry-After is honoured up to 4 x backoff_max (120 s by default; 2 s here, the first backoff 0.05 s).
    async with client(backoff_max=0.5) as c:
        started = time.monotonic()
        assert await c.tags(f"{src_proxy.host}/src/app") == ["oci"]
        waited = time.monotonic() - started
    assert fault.hits == 1
    assert waited >= 0.9  # backoff alone is 0.05 s here: only Retry-After explains the wait


async def test_persistent_429_gives_up_with_rate_limited(src_proxy: FaultyProxy) -> None:
    fault = src_proxy.add(Fault(method="GET", path=r"/tags/list", status=429, headers={"Retry-After": "0"},
                                times=-1))
    async with client(retries=3) as c:
        with pytest.raises(regcopy.RateLimited) as info:
            await c.tags(f"{src_proxy.host}/src/app")
    assert fault.hits == 4  # the first try and three retries: bounded
    assert info.value.retry_after == 0


def _largest_blob(layout: Path, tag: str) -> str:
    from servers.images import layout_contents

    blobs = layout_contents(layout, tag).blobs
    return max(blobs, key=lambda d: blobs[d].size)


async def test_broken_blob_download_resumes_with_range(
    http_registry: RegistryServer, src_proxy: FaultyProxy, dst: RegistryServer, seed: Any,
    sample_layout: tuple[Path, dict[str, str]],
) -> None:
    digest = seed(http_registry, "big", "src/app")
    big = _largest_blob(sample_layout[0], "big")
    fault = src_proxy.add(Fault(method="GET", path=rf"/blobs/{big}", reset_after_bytes=1_000_000, times=1))
    result = await copy(src_proxy, dst, "big")
    assert fault.hits == 1
    faulted = next(r for r in src_proxy.requests if r.action)
    resumed = [r for r in src_proxy.requests if r.method == "GET" and r.path == faulted.path]
    assert len(resumed) == 2 and resumed[1].status == 206
    assert result.bytes_uploaded > 3_000_000
    skopeo.verify(dst, "dst/app:v1", digest)


async def test_truncated_blob_download_resumes(
    http_registry: RegistryServer, src_proxy: FaultyProxy, dst: RegistryServer, seed: Any,
    sample_layout: tuple[Path, dict[str, str]],
) -> None:
    digest = seed(http_registry, "big", "src/app")
    big = _largest_blob(sample_layout[0], "big")
    fault = src_proxy.add(Fault(method="GET", path=rf"/blobs/{big}", truncate=500_000, times=1))
    await copy(src_proxy, dst, "big")
    assert fault.hits == 1
    assert any(r.status == 206 for r in src_proxy.requests)
    skopeo.verify(dst, "dst/app:v1", digest)


async def test_stalled_source_times_out_and_recovers(
    http_registry: RegistryServer, src_proxy: FaultyProxy, dst: RegistryServer, seed: Any,
    sample_layout: tuple[Path, dict[str, str]],
) -> None:
    digest = seed(http_registry, "big", "src/app")
    big = _largest_blob(sample_layout[0], "big")
    fault = src_proxy.add(Fault(method="GET", path=rf"/blobs/{big}", stall_after_bytes=(200_000, 10.0), times=1))
    async with regcopy.Client(default_settings=regcopy.RegistrySettings(scheme="http", read_timeout=1.0, **FAST),
                              credentials=regcopy.StaticCredentials({})) as c:
        await c.copy(f"{src_proxy.host}/src/app:big", f"{dst.host}/dst/app:v1")
    assert fault.hits == 1
    skopeo.verify(dst, "dst/app:v1", digest)


async def test_broken_upload_restarts_with_a_fresh_session(
    http_registry: RegistryServer, dst_proxy: FaultyProxy, dst: RegistryServer, seed: Any
) -> None:
    digest = seed(http_registry, "big", "src/app")
    fault = dst_proxy.add(Fault(method="PATCH", path=r"/blobs/uploads/", request_reset_after_bytes=700_000))
    result = await copy(http_registry, dst_proxy, "big")
    assert fault.hits == 1
    posts = [r for r in dst_proxy.requests if r.method == "POST" and "/blobs/uploads/" in r.path]
    assert len(posts) == 4  # config + 2 layers + one restart (2.8.2 kills a session after a broken PATCH)
    assert result.blobs_uploaded == 3
    skopeo.verify(dst, "dst/app:v1", digest)


async def test_a_refused_upload_shape_falls_back_and_is_remembered(
    http_registry: RegistryServer, dst_proxy: FaultyProxy, dst: RegistryServer, seed: Any
) -> None:
    digest = seed(http_registry, "big", "src/app")
    fault = dst_proxy.add(Fault(method="PATCH", path=r"/blobs/uploads/", status=413, times=1))
    async with regcopy.Client(default_settings=regcopy.RegistrySettings(scheme="http", **FAST),
                              credentials=regcopy.StaticCredentials({}),
                              upload=regcopy.UploadPolicy(chunk_size=1024 * 1024, small_blob=0)) as c:
        # One blob at a time, biggest first: the refused PATCH is the 3 MiB layer's.
        await c.copy(f"{http_registry.host}/src/app:big", f"{dst_proxy.host}/dst/app:v1", jobs=1)
        policy = c.upload_policy(dst_proxy.host)
    assert fault.hits == 1
    assert policy.strategy == "chunked" and policy.learned
    # After the refusal, the 3 MiB layer went up in 1 MiB chunks (the tail rides on the closing PUT).
    chunks = [r for r in dst_proxy.requests if r.method == "PATCH" and r.status == 202 and r.request_bytes == 1 << 20]
    assert len(chunks) >= 2
    skopeo.verify(dst, "dst/app:v1", digest)


# ---------------------------------------------------------------------------------- unrecoverable


async def test_wrong_source_bytes_are_refused_and_nothing_is_pushed(
    http_registry: RegistryServer, src_proxy: FaultyProxy, dst: RegistryServer, seed: Any
) -> None:
    seed(http_registry, "big", "src/app")
    src_proxy.add(Fault(method="GET", path=r"/blobs/sha256:", corrupt=True, times=-1))
    with pytest.raises(regcopy.DigestMismatch):
        await copy(src_proxy, dst, "big")
    assert manifest_puts(dst) == []


async def test_wrong_manifest_bytes_by_digest_are_refused(
    http_registry: RegistryServer, src_proxy: FaultyProxy, dst: RegistryServer, seed: Any
) -> None:
    seed(http_registry, "multi", "src/app")
    # Children are fetched by digest: a flipped byte must be caught against the requested digest.
    src_proxy.add(Fault(method="GET", path=r"/manifests/sha256:", corrupt=True, times=-1))
    with pytest.raises((regcopy.DigestMismatch, regcopy.InvalidManifest)):
        await copy(src_proxy, dst, "multi")
    assert manifest_puts(dst) == []


async def test_persistent_server_errors_fail_without_a_tag(
    http_registry: RegistryServer, dst_proxy: FaultyProxy, dst: RegistryServer, seed: Any
) -> None:
    seed(http_registry, "oci", "src/app")
    dst_proxy.add(Fault(method="HEAD", path=r"/blobs/", status=500, body=b"<html>oops</html>", times=-1))
    with pytest.raises(regcopy.RegistryError) as info:
        await copy(http_registry, dst_proxy, "oci", retries=2)
    assert info.value.status == 500 and dst_proxy.host in str(info.value)
    assert manifest_puts(dst) == []


@pytest.mark.parametrize(
    ("fault", "match"),
    [
        (Fault(method="GET", path=r"/tags/list", garbage=b"<html><body>Bad Gateway</body></html>"), "not JSON"),
        (Fault(method="GET", path=r"/tags/list", garbage=b'{"name": "x", "tags": "nope"}'), "list of strings"),
        (Fault(method="GET", path=r"/tags/list", garbage=b"[1, 2]"), "not a JSON object"),
        (Fault(method="GET", path=r"/tags/list", set_headers={"Link": "<<garbage"}), "Link"),
    ],
)
async def test_garbage_answers_are_protocol_violations(
    fault: Fault, match: str, http_registry: RegistryServer, src_proxy: FaultyProxy, seed: Any
) -> None:
    seed(http_registry, "oci", "src/app")
    src_proxy.add(fault)
    async with client() as c:
        with pytest.raises(regcopy.ProtocolViolation, match=match) as info:
            await c.tags(f"{src_proxy.host}/src/app")
    assert info.value.registry == src_proxy.host


async def test_missing_location_on_upload_is_a_protocol_violation(
    http_registry: RegistryServer, dst_proxy: FaultyProxy, dst: RegistryServer, seed: Any
) -> None:
    seed(http_registry, "oci", "src/app")
    dst_proxy.add(Fault(method="POST", path=r"/blobs/uploads/", drop_header="Location", times=-1))
    with pytest.raises(regcopy.ProtocolViolation, match="without Location"):
        await copy(http_registry, dst_proxy, "oci")
    assert manifest_puts(dst) == []


async def test_html_manifest_is_an_invalid_manifest(
    http_registry: RegistryServer, src_proxy: FaultyProxy, dst: RegistryServer, seed: Any
) -> None:
    seed(http_registry, "oci", "src/app")
    src_proxy.add(Fault(method="GET", path=r"/manifests/oci", garbage=b"<html>login</html>",
                        drop_header="Docker-Content-Digest", set_headers={"Content-Type": "text/html"}))
    with pytest.raises(regcopy.InvalidManifest, match="not valid JSON"):
        await copy(src_proxy, dst, "oci")


# ---------------------------------------------------------------------------------- credentials


async def test_redirected_blob_get_carries_no_credentials(
    basic_registry: RegistryServer, dst: RegistryServer, seed: Any,
    sample_layout: tuple[Path, dict[str, str]],
) -> None:
    """A blob GET redirected to another origin (storage, CDN) gets no Authorization (spec@main §API)."""
    layout, _ = sample_layout
    digest = seed(basic_registry, "oci", "src/app")
    seen: list[str | None] = []

    async def storage(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        return web.Response(body=read_blob(layout, request.match_info["digest"]))

    app = web.Application()
    app.router.add_get("/blob/{digest}", storage)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        with FaultyProxy(basic_registry.url, upstream_ssl=basic_registry.ssl_context()) as proxy:
            # Every blob GET is redirected to the "storage" server, each to its own digest.
            for blob_digest in _blob_digests(layout, "oci"):
                proxy.add(Fault(method="GET", path=rf"/blobs/{blob_digest}", status=307, times=-1,
                                headers={"Location": f"http://127.0.0.1:{port}/blob/{blob_digest}"}))
            user, password = basic_registry.username or "", basic_registry.password or ""
            creds = regcopy.StaticCredentials({proxy.host: (user, password)})
            settings = {proxy.host: regcopy.RegistrySettings(scheme="http")}
            async with regcopy.Client(settings=settings, credentials=creds) as c:
                await c.copy(f"{proxy.host}/src/app:oci", f"{dst.host}/dst/app:v1")
            proxied_auth = [r for r in proxy.requests if r.method == "GET" and "/manifests/" in r.path]
            assert proxied_auth  # the manifest came through the proxy (with credentials, same origin)
    finally:
        await runner.cleanup()
    assert len(seen) == 3 and seen == [None, None, None]
    skopeo.verify(dst, "dst/app:v1", digest)


def _blob_digests(layout: Path, tag: str) -> list[str]:
    from servers.images import layout_contents

    return sorted(layout_contents(layout, tag).blobs)
