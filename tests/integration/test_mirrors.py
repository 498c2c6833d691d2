"""Source mirrors (ISSUE #8 §4) against a real pull-through cache (`proxy.remoteurl`) of a real upstream."""

from __future__ import annotations

from typing import Any

from conftest import make_client  # type: ignore[import-not-found]
from regcopy.credentials import StaticCredentials
from regcopy.sync import SyncOptions, parse_plan
from servers import skopeo
from servers.registry import RegistryServer


def _plan(upstream: RegistryServer, dst: RegistryServer, mirrors: list[str], *extra: RegistryServer) -> Any:
    registries: dict[str, Any] = {s.host: {"tls": "http"} for s in (dst, *extra)}
    registries[upstream.host] = {"tls": "http", "mirrors": mirrors}
    return parse_plan({"registries": registries, "sync": [
        {"source": f"{upstream.host}/apps", "type": "namespace", "target": f"{dst.host}/m"}]})


def _blob_gets(server: RegistryServer) -> list[str]:
    return [e.path for e in server.access_log() if e.method == "GET" and "/blobs/sha256:" in e.path]


async def test_a_pull_through_cache_serves_and_upstream_credentials_never_reach_it(
    registry_factory: Any, seed: Any
) -> None:
    # The cache demands Basic auth from its clients (htpasswd over plain http) and knows two users:
    # its own and the upstream's. Had regcopy forwarded the upstream's credentials to the cache, the
    # cache would accept them and log that user. (The cache pulls from an open upstream: 2.8.2's
    # proxy fails to answer an upstream's Basic challenge, so the upstream cannot demand auth here.)
    upstream = registry_factory("http")
    seed(upstream, "shared-a", "apps/a", "v1")
    digest = seed(upstream, "multi", "apps/multi", "v1")
    cache = registry_factory("basic", tls=False, users={"cacheuser": "cache-secret", "upuser": "up-secret"},
                             extra_config={"proxy": {"remoteurl": upstream.url}})
    dst = registry_factory("http")
    creds = StaticCredentials({upstream.host: ("upuser", "up-secret"), cache.host: ("cacheuser", "cache-secret")})
    upstream_blob_gets_before = len(_blob_gets(upstream))
    async with make_client(upstream, cache, dst, credentials=creds) as client:
        report = await client.sync(_plan(upstream, dst, [cache.host], cache), options=SyncOptions())
    assert report.ok and len(report.images) == 2
    assert all(r.served_by == [cache.host] for r in report.images), [r.served_by for r in report.images]
    skopeo.verify(dst, "m/multi:v1", digest)
    skopeo.verify(dst, "m/a:v1")
    # Blobs came through the cache (which fetched them from upstream as its own client)...
    assert _blob_gets(cache)
    regcopy_hits = [e for e in upstream.access_log() if e.user_agent.startswith("regcopy")]
    assert not [e for e in regcopy_hits if "/blobs/sha256:" in e.path]
    assert len(_blob_gets(upstream)) > upstream_blob_gets_before  # the cache's own pulls
    # ...and the cache only ever saw its own credentials from regcopy.
    cache_log = cache.log_text()
    assert 'auth.user.name=cacheuser' in cache_log
    assert not [line for line in cache_log.splitlines()
                if "auth.user.name=upuser" in line and "regcopy" in line]


async def test_a_dead_mirror_falls_back_to_the_upstream_and_the_report_says_so(
    http_registry: RegistryServer, registry_factory: Any, seed: Any
) -> None:
    seed(http_registry, "oci", "apps/one", "v1")
    dst = registry_factory("http")
    dead = registry_factory("http")
    dead_host = dead.host
    dead.stop()  # nothing listens there any more: connection refused
    async with make_client(http_registry, dst) as client:
        report = await client.sync(_plan(http_registry, dst, [dead_host]), options=SyncOptions())
    assert report.ok
    assert [r.served_by for r in report.images] == [[http_registry.host]]
    skopeo.verify(dst, "m/one:v1")


async def test_a_cache_without_the_image_falls_back_per_read(
    http_registry: RegistryServer, registry_factory: Any, seed: Any
) -> None:
    # A mirror that is up but does not hold the image (a plain registry, not a cache): 404s send
    # each read on to the upstream, and the mirror stays in use for the next image.
    seed(http_registry, "docker", "apps/two", "v1")
    empty = registry_factory("http")
    dst = registry_factory("http")
    async with make_client(http_registry, empty, dst) as client:
        report = await client.sync(_plan(http_registry, dst, [empty.host], empty), options=SyncOptions())
    assert report.ok and [r.served_by for r in report.images] == [[http_registry.host]]
    assert [e for e in empty.access_log() if "/manifests/" in e.path]  # it was asked first
    skopeo.verify(dst, "m/two:v1")


def test_mirror_settings_are_validated() -> None:
    import pytest

    import regcopy

    def plan(mirrors: object) -> Any:
        return parse_plan({"registries": {"src.example": {"mirrors": mirrors}},
                           "sync": [{"source": "src.example/a", "target": "dst.example/a"}]})

    mirrors = plan(["cache.local:5000", "cache2.example/hub", "cache.local:5000"]).registries["src.example"].mirrors
    assert tuple(map(str, mirrors)) == ("cache.local:5000", "cache2.example/hub")
    for bad, message in [("cache.local", "must be a list"), (["src.example"], "cannot mirror itself"),
                         (["oci:/x"], "not a local store"), (["nohost"], "must start with a registry host"),
                         ([5], "must be a string")]:
        with pytest.raises(regcopy.ConfigError, match=message) as info:
            plan(bad)
        assert "mirrors" in str(info.value)
