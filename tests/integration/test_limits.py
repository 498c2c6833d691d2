"""Per-host limits against real registries: the adaptive concurrency limit (AIMD) in front of a registry
that serves K requests at once, request quotas counted by a proxy, and the byte caps.

Figures printed with ``-s`` (429s adaptive vs fixed) are the ones the closing notes quote.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import pytest

import regcopy
from conftest import make_client  # type: ignore[import-not-found]
from regcopy.progress import ConcurrencyChanged, Event
from regcopy.registry.manifests import manifest_head
from regcopy.sync import SyncOptions, SyncReport, parse_plan
from servers import skopeo
from servers.faulty_proxy import FaultyProxy
from servers.quota_proxy import CapacityProxy, max_in_window
from servers.registry import RegistryServer

SAMPLES = ("oci", "docker", "multi", "dockerlist", "nested", "shared-a", "shared-b", "big")
K = 6  # requests the capacity proxy serves at once


@pytest.fixture
def source(http_registry: RegistryServer, seed: Any) -> dict[str, str]:
    """Eight sample images in ``lim/<sample>:v1`` of a plain-http source; repository → digest."""
    return {f"lim/{s}": seed(http_registry, s, f"lim/{s}", "v1") for s in SAMPLES}


def _settings(**fields: Any) -> regcopy.RegistrySettings:
    # Short backoffs: the runs below measure 429 counts, not patience.
    return regcopy.RegistrySettings(scheme="http", retries=10, backoff=0.05, backoff_max=1.0, **fields)


async def _mirror(src: RegistryServer, dst_host: str, settings: regcopy.RegistrySettings,
                  events: list[Event] | None = None, copies: int = 1, **options: Any) -> SyncReport:
    """Sync ``lim/*`` to ``mirror/*`` (and ``mirror2/*``, ... with ``copies``)."""
    plan = parse_plan({"version": 1, "sync": [
        {"source": f"{src.host}/lim", "target": f"{dst_host}/mirror{i or ''}", "type": "namespace"}
        for i in range(copies)]})
    opts = {"images": 16, "blob_jobs": 6, "blobs": 64, **options}
    async with make_client(src, settings={src.host: _settings(), dst_host: settings}) as client:
        reporter = events.append if events is not None else None
        return await client.sync(plan, options=SyncOptions(**opts), reporter=reporter)


def _verify(dst: RegistryServer, digests: dict[str, str], copies: int = 1) -> None:
    for i in range(copies):
        for repo, digest in digests.items():
            skopeo.verify(dst, f"mirror{i or ''}/{repo.removeprefix('lim/')}:v1", digest)


async def test_adaptive_concurrency_converges_near_capacity_with_far_fewer_429s(
    source: dict[str, str], http_registry: RegistryServer, registry_factory: Any,
) -> None:
    adaptive_dst, fixed_dst = registry_factory("http"), registry_factory("http")
    events: list[Event] = []
    with CapacityProxy(adaptive_dst.url, K) as proxy:
        adaptive = await _mirror(http_registry, proxy.host, _settings(max_concurrency=32), events, copies=3)
        adaptive_429, adaptive_served = proxy.refused, proxy.served
    with CapacityProxy(fixed_dst.url, K) as proxy:
        fixed = await _mirror(http_registry, proxy.host, _settings(max_concurrency=32, adaptive=False), copies=3)
        fixed_429, fixed_served = proxy.refused, proxy.served
    print(f"\n429s adaptive {adaptive_429} ({adaptive_served} served), fixed 32: {fixed_429} ({fixed_served} served)")
    # Both finish, exactly.
    assert adaptive.ok and fixed.ok, (adaptive.to_json(), fixed.to_json())
    _verify(adaptive_dst, source, 3)
    _verify(fixed_dst, source, 3)
    # A wide margin: the fixed limit keeps knocking; the adaptive one learns K.
    assert fixed_429 >= 30, f"the fixed run met only {fixed_429} 429s: the workload does not overload the proxy"
    assert adaptive_429 * 5 <= fixed_429, f"adaptive {adaptive_429} vs fixed {fixed_429}"
    # Converged near K: from the ceiling (32) the limit came down to K's band and ended in it (the
    # AIMD saw-tooth between about K/2 and K+1).
    concurrency = adaptive.hosts[proxy_host(adaptive)]["concurrency"]
    assert isinstance(concurrency, dict)
    assert K // 2 - 1 <= concurrency["limit"] <= K + 2, concurrency
    assert concurrency["min"] <= K and concurrency["max"] == 32, concurrency
    assert concurrency["changes"] >= 3, concurrency
    # Its changes were events, with the reason, and in the report (429 counted per host).
    cuts = [e for e in events if isinstance(e, ConcurrencyChanged) and e.new < e.old]
    assert cuts and all(e.reason == "HTTP 429" for e in cuts)
    assert adaptive.hosts[proxy_host(adaptive)]["throttled"] == adaptive_429
    assert fixed.hosts[proxy_host(fixed)]["concurrency"] == {  # type: ignore[comparison-overlap]
        "limit": 32, "min": 32, "max": 32, "changes": 0, "ceiling": 32, "adaptive": False}


def proxy_host(report: SyncReport) -> str:
    """The destination (proxy) host of a report: the one a mirror/ target names."""
    return report.images[0].target.split("/", 1)[0]


async def test_requests_per_second_hold_in_every_window_across_copies(
    source: dict[str, str], http_registry: RegistryServer, registry_factory: Any,
) -> None:
    """Two copies of one client at once share the destination's quota: never more than 8 requests in
    any second, counted where the registry would count them."""
    dst = registry_factory("http")
    with FaultyProxy(dst.url) as proxy:
        settings = {http_registry.host: _settings(), proxy.host: _settings(requests_per_second=8)}
        async with make_client(http_registry, settings=settings) as client, anyio.create_task_group() as tg:
            for sample in ("big", "multi"):
                tg.start_soon(client.copy, f"{http_registry.host}/lim/{sample}:v1",
                              f"{proxy.host}/mirror/{sample}:v1")
        requests = proxy.requests
    assert len(requests) > 3 * 8, f"only {len(requests)} requests: the quota never bound"
    assert max_in_window(requests, 1.0) <= 8
    gaps = [b.at - a.at for a, b in zip(sorted(requests, key=lambda r: r.at), sorted(requests, key=lambda r: r.at)[1:],
                                        strict=False)]
    assert min(gaps) >= 1 / 8 * 0.8, "requests_per_second spaces requests evenly (no burst)"
    skopeo.verify(dst, "mirror/big:v1", source["lim/big"])


async def test_requests_per_minute_hold_in_every_window_with_a_bounded_burst(
    source: dict[str, str], http_registry: RegistryServer, registry_factory: Any,
) -> None:
    """``requests_per_minute: 240`` over a sync of eight images: at most 4 in any second (a second's
    share of the minute: the burst bound), at most 240 in any minute."""
    dst = registry_factory("http")
    with FaultyProxy(dst.url) as proxy:
        report = await _mirror(http_registry, proxy.host, _settings(requests_per_minute=240))
        requests = proxy.requests
    assert report.ok, report.to_json()
    assert len(requests) > 3 * 4
    assert max_in_window(requests, 1.0) <= 4
    assert max_in_window(requests, 60.0) <= 240
    _verify(dst, source)


@pytest.mark.slow
async def test_requests_per_minute_window_binds_beyond_a_minute(
    http_registry: RegistryServer, registry_factory: Any, seed: Any,
) -> None:
    """A run longer than a minute at ``requests_per_minute: 90`` (bursts of 2 a second): the count in any
    60 s window stays at 90, the count of the whole run goes past it."""
    seed(http_registry, "oci", "lim/oci", "v1")
    dst = registry_factory("http")
    with FaultyProxy(dst.url) as proxy:
        async with make_client(http_registry, settings={http_registry.host: _settings(),
                                                        proxy.host: _settings(requests_per_minute=90)}) as client:
            transport = client.transport(proxy.host)
            async with anyio.create_task_group() as tg:
                for i in range(100):
                    tg.start_soon(manifest_head, transport, "lim/oci", f"v{i}")
        requests = proxy.requests
    assert len(requests) > 90
    assert max_in_window(requests, 60.0) <= 90
    assert max_in_window(requests, 1.0) <= 2


# ----------------------------------------------------------------------------------------- bytes


async def _timed_copy(src: RegistryServer, dst_host: str, **client: Any) -> tuple[regcopy.CopyResult, float]:
    settings = client.pop("settings", {src.host: _settings(), dst_host: _settings()})
    async with make_client(src, settings=settings, **client) as c:
        started = time.monotonic()
        result = await c.copy(f"{src.host}/lim/big:v1", f"{dst_host}/capped/big:v1")
        return result, time.monotonic() - started


async def test_limit_rate_caps_a_copy_far_below_its_uncapped_speed(
    source: dict[str, str], http_registry: RegistryServer, registry_factory: Any,
) -> None:
    """``Client(limit_rate=1 MiB/s)``: the 3.7 MB image cannot go faster than the cap allows (the
    token bucket's burst aside), and goes far slower than the same copy uncapped."""
    capped_dst, free_dst = registry_factory("http"), registry_factory("http")
    free, free_s = await _timed_copy(http_registry, free_dst.host)
    capped, capped_s = await _timed_copy(http_registry, capped_dst.host, limit_rate=1 << 20)
    assert capped.bytes_uploaded == free.bytes_uploaded > 3_000_000
    floor = (capped.bytes_uploaded - 256 * 1024) / (1 << 20)  # what the bucket lets through at most
    print(f"\nuncapped {free_s:.2f} s, capped at 1 MiB/s {capped_s:.2f} s (floor {floor:.2f} s)")
    assert capped_s >= floor * 0.95
    assert capped_s >= 3 * free_s
    skopeo.verify(capped_dst, "capped/big:v1", source["lim/big"])


async def test_limit_rate_per_host_in_a_plan_caps_downloads_from_that_host(
    source: dict[str, str], http_registry: RegistryServer, registry_factory: Any, tmp_path: Path,
) -> None:
    """``registries: {SRC: {limit_rate: 1M}}``: the source's blob bodies are capped, through the plan."""
    dst = registry_factory("http")
    plan = parse_plan({"version": 1, "registries": {http_registry.host: {"tls": "http", "limit_rate": "1M"}},
                       "sync": [{"source": f"{http_registry.host}/lim/big", "target": f"{dst.host}/planned/big",
                                 "tags": {"exact": ["v1"]}}]})
    async with make_client(http_registry, dst) as client:
        started = time.monotonic()
        report = await client.sync(plan)
        seconds = time.monotonic() - started
    assert report.ok, report.to_json()
    sent = report.totals()["bytes_uploaded"]
    assert sent > 3_000_000
    assert seconds >= (sent - 256 * 1024) / (1 << 20) * 0.95
    assert report.hosts[http_registry.host]["throttled_seconds"] > 1.0  # type: ignore[operator]
    skopeo.verify(dst, "planned/big:v1", source["lim/big"])

