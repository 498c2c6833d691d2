"""Bounded time under a dripping or stalling registry (docs/security.md, "Time bounds").

The hostile registry (``servers.hostile_registry``) sends status and headers at once, then the body one
byte at a time, or stops mid-blob. aiohttp's per-read timeout never fires on a drip; regcopy's total
``request_timeout`` (small answers) and minimum-progress rule (blob bodies) must. Each test proves "does
not hang" with a generous ``fail_after`` (ten times or more what the bound allows; a drip lasts minutes).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

import regcopy
from regcopy.registry import blobs, manifests
from servers.blackhole import Blackhole
from servers.hostile_registry import HostileRegistry
from servers.images import layout_contents, read_blob

IMAGE = "oci"
BIG = "big"  # a 3 MB and a 700 KB layer
DRIP = 3.0  # seconds per byte: even a 30-byte tag list would take 90 s
GENEROUS = 20.0


@pytest.fixture
def hostile(tmp_path: Path) -> Iterator[HostileRegistry]:
    with HostileRegistry(tmp_path / "hostile") as reg:
        yield reg


@pytest.fixture
def bearer(tmp_path: Path) -> Iterator[HostileRegistry]:
    with HostileRegistry(tmp_path / "bearer", auth="bearer") as reg:
        yield reg


def client(reg: HostileRegistry, tmp_path: Path, upload: regcopy.UploadPolicy | None = None,
           **overrides: Any) -> regcopy.Client:
    values: dict[str, Any] = {"scheme": "http", "retries": 1, "backoff": 0.01, "backoff_max": 0.05,
                              "request_timeout": 1.0, **overrides}
    authfile = reg.write_authfile(tmp_path / "auth.json")
    return regcopy.Client(authfile=str(authfile), settings={reg.host: regcopy.RegistrySettings(**values)},
                          upload=upload)


@pytest.mark.parametrize("kind", ["manifest", "tags"])
async def test_dripping_small_answer_times_out(
    kind: str, hostile: HostileRegistry, tmp_path: Path, sample_layout: tuple[Path, dict[str, str]]
) -> None:
    hostile.put_image(sample_layout[0], IMAGE, "app")
    hostile.script.drip[kind] = DRIP
    async with client(hostile, tmp_path) as c:
        with anyio.fail_after(GENEROUS), pytest.raises(regcopy.RegistryTimeout) as info:
            if kind == "manifest":
                await c.manifest(f"{hostile.host}/app:{IMAGE}")
            else:
                await c.tags(f"{hostile.host}/app")
        assert c.retries() == 1  # a timeout is transient: retried once (retries=1), then reported
    assert "request_timeout 1 s" in str(info.value)


async def test_dripping_catalog_times_out(
    hostile: HostileRegistry, tmp_path: Path, sample_layout: tuple[Path, dict[str, str]]
) -> None:
    hostile.put_image(sample_layout[0], IMAGE, "app")
    hostile.script.drip["catalog"] = DRIP
    async with client(hostile, tmp_path, retries=0) as c:
        with anyio.fail_after(GENEROUS), pytest.raises(regcopy.RegistryTimeout):
            await c.catalog(hostile.host)


async def test_dripping_token_answer_fails_the_auth(bearer: HostileRegistry, tmp_path: Path,
                                                   sample_layout: tuple[Path, dict[str, str]]) -> None:
    bearer.put_image(sample_layout[0], IMAGE, "app")
    async with client(bearer, tmp_path) as c:
        assert await c.tags(f"{bearer.host}/app") == [IMAGE]  # the handshake works undisturbed
    bearer.script.drip["token"] = DRIP
    async with client(bearer, tmp_path) as c:
        with anyio.fail_after(GENEROUS), pytest.raises(regcopy.AuthenticationError) as info:
            await c.tags(f"{bearer.host}/app")
    assert "token endpoint" in str(info.value) and "cut short" in str(info.value)


async def test_dripping_error_body_keeps_the_status(
    hostile: HostileRegistry, tmp_path: Path, sample_layout: tuple[Path, dict[str, str]]
) -> None:
    """A 404 whose body drips ends at the deadline as the 404 it is (not retried as a timeout)."""
    hostile.put_image(sample_layout[0], IMAGE, "app")
    hostile.script.drip["error"] = DRIP
    async with client(hostile, tmp_path) as c:
        with anyio.fail_after(GENEROUS), pytest.raises(regcopy.ManifestNotFound) as info:
            await c.manifest(f"{hostile.host}/app:missing")
        assert c.retries() == 0
    assert info.value.status == 404


async def test_stalled_blob_download_resumes_and_completes(
    hostile: HostileRegistry, tmp_path: Path, sample_layout: tuple[Path, dict[str, str]]
) -> None:
    layout = sample_layout[0]
    digest = hostile.put_image(layout, BIG, "app")
    hostile.script.stall_blob = (100 * 1024, 2)  # the first two blob GETs stop after 100 KB
    out = tmp_path / "out"
    async with client(hostile, tmp_path, progress_window=1.0, progress_bytes=1) as c:
        with anyio.fail_after(GENEROUS):
            result = await c.copy(f"{hostile.host}/app:{BIG}", f"oci:{out}:v1")
    assert str(result.digest) == digest
    for blob in layout_contents(layout, BIG).blobs:
        assert read_blob(out, blob) == read_blob(layout, blob)
    resumed = [r for r in hostile.received if r.method == "GET" and "/blobs/" in r.url and r.range]
    assert len(resumed) == 2 and all(r.range == f"bytes={100 * 1024}-" for r in resumed)


async def test_dripping_blob_download_fails_after_its_resumes(
    hostile: HostileRegistry, tmp_path: Path, sample_layout: tuple[Path, dict[str, str]]
) -> None:
    hostile.put_image(sample_layout[0], IMAGE, "app")
    hostile.script.drip["blob"] = 0.3  # ~3 bytes a second, far below 1 KiB a second
    async with client(hostile, tmp_path, progress_window=1.0, progress_bytes=1024) as c:
        with anyio.fail_after(GENEROUS * 2), pytest.raises(regcopy.RegistryTimeout) as info:
            await c.copy(f"{hostile.host}/app:{IMAGE}", f"oci:{tmp_path / 'out'}:v1")
    assert "fewer than 1024 bytes in 1 s" in str(info.value)


async def test_stalled_upload_body_is_retried_and_completes(
    hostile: HostileRegistry, tmp_path: Path, sample_layout: tuple[Path, dict[str, str]]
) -> None:
    """A registry that stops reading an upload body: the upload breaks on the progress rule (or the
    answer's deadline, when the body fit in the socket buffers) and the store starts it again."""
    layout = sample_layout[0]
    hostile.script.stall_upload = 1
    async with client(hostile, tmp_path, progress_window=1.0, upload=regcopy.UploadPolicy(small_blob=0)) as c:
        with anyio.fail_after(GENEROUS):
            await c.copy(f"oci:{layout}:{BIG}", f"{hostile.host}/dst/app:v1")
        stats = c.upload_policy(hostile.host).stats
    contents = layout_contents(layout, BIG)
    assert hostile.tags["dst/app"]["v1"] == contents.root.digest
    assert stats.restarted + stats.resumed == 1


async def test_host_read_timeout_is_applied(
    hostile: HostileRegistry, tmp_path: Path, sample_layout: tuple[Path, dict[str, str]]
) -> None:
    """The host's own ``read_timeout`` bounds each read (it used to be the default settings' only)."""
    hostile.put_image(sample_layout[0], IMAGE, "app")
    hostile.script.drip["manifest"] = 2.0  # a byte every 2 s: within no total deadline, beyond the read timeout
    async with client(hostile, tmp_path, request_timeout=600.0, read_timeout=0.3, retries=0) as c:
        with anyio.fail_after(GENEROUS), pytest.raises(regcopy.RegistryTimeout) as info:
            await c.manifest(f"{hostile.host}/app:{IMAGE}")
    assert "request_timeout" not in str(info.value)  # the per-read timeout fired, not the deadline


async def test_host_connect_timeout_is_applied() -> None:
    """A TLS handshake that never completes ends at the host's ``connect_timeout``, not ``probe_timeout``."""
    with Blackhole() as hole:
        host = f"127.0.0.1:{hole.port}"
        settings = regcopy.RegistrySettings(scheme="https", probe_timeout=300.0, connect_timeout=0.3, retries=0)
        async with regcopy.Client(settings={host: settings}, credentials=regcopy.StaticCredentials({})) as c:
            # Under the default connect_timeout (15 s), which the session used for every host.
            with anyio.fail_after(8.0), pytest.raises(regcopy.TransportError):
                await c.ping(host)
        assert hole.accepted >= 1


async def test_an_injected_sessions_total_timeout_does_not_bound_regcopys_requests(
    hostile: HostileRegistry, tmp_path: Path, sample_layout: tuple[Path, dict[str, str]]
) -> None:
    """A client given an aiohttp session (examples/embed_in_aiohttp_service.py) sets each request's own
    timeouts: the session's ``total`` (aiohttp's default is 5 minutes, here 0.5 s) does not cut a body that
    keeps arriving, and the host's ``read_timeout`` still bounds each read."""
    digest = hostile.put_image(sample_layout[0], IMAGE, "app")
    hostile.script.drip["manifest"] = 0.004  # a manifest of some 500 bytes: about 2 s, four times the total
    values = {"scheme": "http", "retries": 0, "request_timeout": 60.0}
    authfile = hostile.write_authfile(tmp_path / "auth.json")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.5)) as session:
        async with regcopy.Client(session=session, authfile=str(authfile),
                                  settings={hostile.host: regcopy.RegistrySettings(**values)}) as c:
            with anyio.fail_after(GENEROUS):
                started = anyio.current_time()
                manifest = await c.manifest(f"{hostile.host}/app:{IMAGE}")
                assert anyio.current_time() - started > 0.5  # the body did outlast the session's total
        assert str(manifest.digest) == digest
        hostile.script.drip["manifest"] = 2.0  # now beyond the host's read timeout
        strict = regcopy.RegistrySettings(**values, read_timeout=0.3)
        async with regcopy.Client(session=session, authfile=str(authfile), settings={hostile.host: strict}) as c:
            with anyio.fail_after(GENEROUS), pytest.raises(regcopy.RegistryTimeout):
                await c.manifest(f"{hostile.host}/app:{IMAGE}")


# ---------------------------------------------------------------------------------- who is waiting on whom


async def _chunks(count: int, size: int, pause: float = 0.0) -> AsyncIterator[bytes]:
    for i in range(count):
        if pause:
            await anyio.sleep(pause)
        yield bytes([i % 256]) * size


async def test_upload_body_the_registry_stops_reading_fails_on_the_progress_rule(
    hostile: HostileRegistry, tmp_path: Path
) -> None:
    """32 MB into a registry that reads nothing: more than loopback's socket buffers, so the body itself
    stalls; the progress rule (1 s) ends it long before the answer's deadline (60 s) could."""
    hostile.script.stall_upload = 1
    async with client(hostile, tmp_path, request_timeout=60.0, progress_window=1.0) as c:
        t = c.transport(hostile.host)
        location, _ = await blobs.upload_start(t, "app")
        with anyio.fail_after(GENEROUS), pytest.raises(regcopy.RegistryTimeout):
            await blobs.upload_stream(t, "app", location, _chunks(128, 256 * 1024), 128 * 256 * 1024)


async def test_a_slow_source_is_not_the_registrys_stall(hostile: HostileRegistry, tmp_path: Path) -> None:
    """Waiting on the upload's own source (here 0.5 s per chunk) is not counted against the registry."""
    async with client(hostile, tmp_path, request_timeout=0.4, progress_window=0.2, retries=0) as c:
        t = c.transport(hostile.host)
        location, _ = await blobs.upload_start(t, "app")
        location = await blobs.upload_stream(t, "app", location, _chunks(4, 64 * 1024, pause=0.5), 4 * 64 * 1024)
        _, held = await blobs.upload_status(t, "app", location)
    assert held == 4 * 64 * 1024


async def test_a_slow_consumer_is_not_the_registrys_stall(
    hostile: HostileRegistry, tmp_path: Path, sample_layout: tuple[Path, dict[str, str]]
) -> None:
    """Time a download waits on its consumer (a slow destination) is not counted against the source."""
    layout = sample_layout[0]
    hostile.put_image(layout, BIG, "app")
    layer = max(layout_contents(layout, BIG).blobs.values(), key=lambda d: d.size)
    async with client(hostile, tmp_path, progress_window=0.2, retries=0) as c:
        t = c.transport(hostile.host)
        data = bytearray()
        async for chunk in blobs.blob_chunks(t, "app", regcopy.Digest.parse(layer.digest), layer.size, resumes=0):
            data += chunk
            if len(data) < 1024 * 1024:
                await anyio.sleep(0.3)  # longer than the window, several times
    assert bytes(data) == read_blob(layout, layer.digest)


async def test_a_body_slower_than_the_window_in_total_but_never_idle_completes(
    hostile: HostileRegistry, tmp_path: Path
) -> None:
    """One byte every 0.1 s for 2.4 s against a 0.3 s window: the rule holds at every read, so the body
    completes although it lasts eight windows (and more than ``request_timeout``); the watchdog timer
    fires while later reads are under way and must look again rather than end them."""
    data = bytes(range(24))
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    (hostile.root / "blobs").mkdir(parents=True, exist_ok=True)
    (hostile.root / "blobs" / digest.split(":", 1)[1]).write_bytes(data)
    hostile.blobs[digest] = len(data)
    hostile.links.setdefault("app", set()).add(digest)
    hostile.script.drip["blob"] = 0.1
    async with client(hostile, tmp_path, progress_window=0.3, progress_bytes=1, retries=0) as c:
        t = c.transport(hostile.host)
        with anyio.fail_after(GENEROUS):
            got = b"".join([chunk async for chunk in blobs.blob_chunks(t, "app", regcopy.Digest.parse(digest),
                                                                       len(data), resumes=0)])
    assert got == data


async def test_plan_request_timeout_bounds_a_dripping_registry(
    hostile: HostileRegistry, tmp_path: Path, sample_layout: tuple[Path, dict[str, str]]
) -> None:
    """``registries.<host>.request_timeout`` in a plan reaches the host's transport."""
    from regcopy.sync.plan import parse_plan

    hostile.put_image(sample_layout[0], IMAGE, "app")
    hostile.script.drip["tags"] = DRIP
    plan = parse_plan({"version": 1, "registries": {hostile.host: {"tls": "http", "request_timeout": 1}},
                       "sync": [{"source": f"{hostile.host}/app", "target": f"oci:{tmp_path / 'out'}"}]})
    async with regcopy.Client(authfile=str(hostile.write_authfile(tmp_path / "auth.json"))) as c:
        run = c.context(plan.registries)  # what c.sync(plan) runs with
        assert run.transport(hostile.host).settings.request_timeout == 1.0
        assert c.transport(hostile.host).settings.request_timeout == 60.0  # the client itself is unchanged
        with anyio.fail_after(GENEROUS * 3), pytest.raises(regcopy.RegistryTimeout):
            await manifests.tags_list(run.transport(hostile.host), "app")
