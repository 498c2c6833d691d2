"""Transport against real registries: probe policy, auth modes, tokens and scopes, operations."""

from __future__ import annotations

import socket
from typing import Any

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

import regcopy
from conftest import make_client  # type: ignore[import-not-found]
from regcopy.manifest import OCI_INDEX
from regcopy.registry import blobs, manifests
from servers.registry import RegistryServer


async def test_ping_picks_the_scheme_each_mode_answers(any_registry: RegistryServer) -> None:
    # Settings "auto" for the http registry (race on loopback), "https" with the CA otherwise.
    async with make_client(any_registry) as client:
        result = await client.ping(any_registry.host)
    assert result.scheme == any_registry.scheme
    expected_auth = {"http": None, "https": None, "basic": "basic", "token": "bearer"}[any_registry.mode]
    assert (result.challenge.scheme if result.challenge else None) == expected_auth
    assert result.status == (200 if expected_auth is None else 401)


async def test_auto_races_and_http_wins_on_a_plain_http_loopback_registry(http_registry: RegistryServer) -> None:
    async with regcopy.Client(settings={}) as client:
        result = await client.ping(http_registry.host)
    assert result.scheme == "http"
    assert [p.scheme for p in result.probes] == ["https", "http"]
    https = result.probes[0]
    assert https.status is None and https.error  # TLS to a plain-http port fails at once (docs/protocol.md#the-probe)
    assert "http answered" in result.reason


async def test_auto_prefers_https_when_both_answer(https_registry: RegistryServer) -> None:
    assert https_registry.ca_pem_path
    settings = {https_registry.host: regcopy.RegistrySettings(scheme="auto", ca_file=str(https_registry.ca_pem_path))}
    async with regcopy.Client(settings=settings) as client:
        result = await client.ping(https_registry.host)
    assert result.scheme == "https"
    # http to a TLS port gets "400 Client sent an HTTP request to an HTTPS server": not an answer.
    http = next(p for p in result.probes if p.scheme == "http")
    assert http.status in (None, 400)


async def test_explicit_http_prefix_never_probes_https(http_registry: RegistryServer) -> None:
    ref = regcopy.Reference.parse(f"http://{http_registry.host}/any/repo:tag")
    assert ref.scheme == "http"
    async with regcopy.Client() as client:
        result = await client.ping(ref.registry, scheme=ref.scheme)
    assert [p.scheme for p in result.probes] == ["http"]
    assert result.scheme == "http"


async def test_https_policy_refuses_plain_http(http_registry: RegistryServer) -> None:
    settings = {http_registry.host: regcopy.RegistrySettings(scheme="https")}
    async with regcopy.Client(settings=settings) as client:
        with pytest.raises(regcopy.TransportError) as info:
            await client.ping(http_registry.host)
    assert "https" in str(info.value)
    assert http_registry.access_log() == []


class _MapResolver(AbstractResolver):
    """Resolves every name to 127.0.0.1, so a public-looking name reaches a loopback registry."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            {
                "hostname": host,
                "host": "127.0.0.1",
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        return None


async def test_public_looking_name_never_tries_http(http_registry: RegistryServer) -> None:
    port = http_registry.port
    connector = aiohttp.TCPConnector(resolver=_MapResolver())
    async with aiohttp.ClientSession(connector=connector) as session:
        async with regcopy.Client(session=session) as client:
            with pytest.raises(regcopy.TransportError):
                await client.ping(f"registry.example.com:{port}")
            transport = client.transport(f"registry.example.com:{port}")
            assert transport.settings.candidates(transport.registry) == ("https",)
        assert not session.closed  # an injected session is never closed by the client
    # The plain-http registry received no HTTP request at all (the TLS hello is not an HTTP request).
    assert http_registry.access_log() == []


async def test_basic_auth_good_and_bad_credentials(basic_registry: RegistryServer, seed: Any) -> None:
    seed(basic_registry, "oci", "lib/app")
    async with make_client(basic_registry) as client:
        assert await client.tags(f"{basic_registry.host}/lib/app") == ["oci"]
    bad = regcopy.StaticCredentials({basic_registry.host: ("alice", "wrong")})
    async with make_client(basic_registry, credentials=bad) as client:
        with pytest.raises(regcopy.AuthenticationError) as info:
            await client.tags(f"{basic_registry.host}/lib/app")
    assert info.value.status == 401
    assert "wrong" not in str(info.value)


async def test_basic_credentials_are_not_sent_to_another_host(
    basic_registry: RegistryServer, http_registry: RegistryServer, seed: Any
) -> None:
    # Credentials exist only for the basic registry; the http registry must see no Authorization.
    seed(http_registry, "oci", "lib/app")
    async with make_client(basic_registry, http_registry) as client:
        await client.tags(f"{http_registry.host}/lib/app")
    assert all(e.user in ("-", "") for e in http_registry.access_log())


async def test_token_auth_requests_exact_scopes(token_registry: RegistryServer, seed: Any) -> None:
    seed(token_registry, "oci", "src/app")
    ts = token_registry.token_server
    assert ts is not None
    before = len(ts.requests)
    async with make_client(token_registry) as client:
        digest = await client.digest(f"{token_registry.host}/src/app:oci")
        t = client.transport(token_registry.host)
        # A mount needs pull,push on the target and pull on the source in ONE token (docs/protocol.md#scopes).
        result = await blobs.blob_mount(t, "dst/app", regcopy.Digest.parse(str(digest)), "src/app")
        assert result.mounted is False  # a manifest digest is no blob: 2.8.2 opens a session instead
        assert result.location
        assert await blobs.upload_cancel(t, "dst/app", result.location)
    scopes = [sorted(r.scopes) for r in ts.requests[before:]]
    assert ["repository:src/app:pull"] in scopes
    assert ["repository:dst/app:pull,push", "repository:src/app:pull"] in scopes
    assert all(r.user == token_registry.username for r in ts.requests[before:])


async def test_token_is_cached_per_scope_set(token_registry: RegistryServer, seed: Any) -> None:
    seed(token_registry, "oci", "src/app")
    ts = token_registry.token_server
    assert ts is not None
    async with make_client(token_registry) as client:
        before = len(ts.requests)
        for _ in range(5):
            await client.digest(f"{token_registry.host}/src/app:oci")
            await client.tags(f"{token_registry.host}/src/app")
    assert len(ts.requests) - before == 1


async def test_pull_only_user_cannot_push(registry_factory: Any, seed: Any) -> None:
    acl = {
        "alice": {"password": "secret", "access": {"*": ["pull", "push", "delete"]}},
        "reader": {"password": "r", "access": {"*": ["pull"]}},
    }
    reg = registry_factory("token", acl=acl)
    seed(reg, "oci", "src/app")
    creds = regcopy.StaticCredentials({reg.host: ("reader", "r")})
    async with make_client(reg, credentials=creds) as client:
        assert await client.tags(f"{reg.host}/src/app") == ["oci"]
        with pytest.raises(regcopy.PermissionDenied):
            await client.copy(f"{reg.host}/src/app:oci", f"{reg.host}/dst/app:oci")
    assert await_no_tag(reg, "dst/app")


def await_no_tag(server: RegistryServer, repo: str) -> bool:
    return not any(e.method == "PUT" and f"/v2/{repo}/manifests/" in e.path for e in server.access_log())


async def test_oauth2_refresh_token_flow(token_registry: RegistryServer, seed: Any) -> None:
    seed(token_registry, "oci", "src/app")
    ts = token_registry.token_server
    assert ts is not None
    refresh = ts.issue_refresh_token(token_registry.username)
    creds = regcopy.StaticCredentials({token_registry.host: regcopy.Credential(identity_token=refresh)})
    before = len(ts.requests)
    async with make_client(token_registry, credentials=creds) as client:
        assert await client.tags(f"{token_registry.host}/src/app") == ["oci"]
    grants = [r.grant_type for r in ts.requests[before:]]
    assert grants == ["refresh_token"]


async def test_wrong_token_credentials_fail_clearly(token_registry: RegistryServer) -> None:
    creds = regcopy.StaticCredentials({token_registry.host: ("alice", "nope")})
    async with make_client(token_registry, credentials=creds) as client:
        with pytest.raises(regcopy.AuthenticationError) as info:
            await client.tags(f"{token_registry.host}/src/app")
    assert "token server" in str(info.value)
    assert "nope" not in str(info.value)


async def test_manifest_ops_and_tags(any_registry: RegistryServer, seed: Any) -> None:
    digest = seed(any_registry, "multi", "lib/multi", "v1")
    seed(any_registry, "oci", "lib/multi", "a")
    seed(any_registry, "docker", "lib/multi", "b")
    async with make_client(any_registry) as client:
        t = client.transport(any_registry.host)
        info = await manifests.manifest_head(t, "lib/multi", "v1")
        assert info is not None and str(info.digest) == digest
        assert info.media_type == OCI_INDEX
        m = await manifests.manifest_get(t, "lib/multi", "v1")
        assert str(m.digest) == digest and m.is_index and len(m.manifests) == 3
        child = await manifests.manifest_get(t, "lib/multi", str(m.manifests[0].digest))
        assert child.config is not None
        assert await manifests.manifest_head(t, "lib/multi", "missing") is None
        with pytest.raises(regcopy.ManifestNotFound):
            await manifests.manifest_get(t, "lib/multi", "missing")
        assert await manifests.tags_list(t, "lib/multi") == ["a", "b", "v1"]
        size = await blobs.blob_head(t, "lib/multi", child.config.digest)
        assert size == child.config.size
        data = b"".join([c async for c in blobs.blob_chunks(t, "lib/multi", child.config.digest, child.config.size)])
        assert regcopy.Digest.of(data) == child.config.digest


async def test_catalog_pagination_follows_relative_links(registry_factory: Any, seed: Any) -> None:
    reg = registry_factory("http", extra_config={"catalog": {"maxentries": 2}})
    for i in range(5):
        seed(reg, "oci", f"repo{i}")
    async with make_client(reg) as client:
        t = client.transport(reg.host)
        assert await manifests.catalog(t, page_size=2) == [f"repo{i}" for i in range(5)]
    pages = [e for e in reg.access_log() if e.route == "/v2/_catalog"]
    assert len(pages) >= 3


async def test_catalog_forbidden_is_a_clear_error(registry_factory: Any) -> None:
    acl = {"alice": {"password": "secret", "access": {"repository:*": ["pull"]}}}
    reg = registry_factory("token", acl=acl)
    async with make_client(reg) as client:
        t = client.transport(reg.host)
        with pytest.raises(regcopy.Unsupported) as info:
            await manifests.catalog(t)
    assert "catalog" in str(info.value)


async def test_delete_requires_digest_and_reports_disabled(
    http_registry: RegistryServer, delete_registry: RegistryServer, seed: Any
) -> None:
    d1 = seed(http_registry, "oci", "lib/app")
    d2 = seed(delete_registry, "oci", "lib/app")
    async with make_client(http_registry, delete_registry) as client:
        with pytest.raises(regcopy.Unsupported) as info:
            await manifests.manifest_delete(client.transport(http_registry.host), "lib/app", regcopy.Digest.parse(d1))
        assert "deletes are disabled" in str(info.value)
        t = client.transport(delete_registry.host)
        await manifests.manifest_delete(t, "lib/app", regcopy.Digest.parse(d2))
        assert await manifests.manifest_head(t, "lib/app", "oci") is None
