"""More transport behaviour against real registries: anonymous tokens, mutual TLS, shared per-host
backoff, secrets kept out of logs, and the shipped examples."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

import regcopy
from conftest import make_client  # type: ignore[import-not-found]
from servers import skopeo
from servers.faulty_proxy import Fault, FaultyProxy
from servers.registry import RegistryServer, shared_ca
from servers.token_server import TokenServer

ROOT = Path(__file__).resolve().parents[2]


async def test_anonymous_pull_gets_an_anonymous_token(registry_factory: Any, tmp_path: Path, seed: Any) -> None:
    ts = TokenServer(tmp_path / "token", anonymous={"public/*": ["pull"]}, ca=shared_ca()).start()
    try:
        reg = registry_factory("token", token_server=ts)
        digest = seed(reg, "oci", "public/app")
        async with make_client(reg, credentials=regcopy.StaticCredentials({})) as client:
            assert str(await client.digest(f"{reg.host}/public/app:oci")) == digest
            with pytest.raises(regcopy.PermissionDenied):  # anonymous has no push anywhere
                await client.copy(f"{reg.host}/public/app:oci", f"{reg.host}/public/copy:oci")
        assert any(r.user is None and r.status == 200 for r in ts.requests)
    finally:
        ts.stop()


async def test_mutual_tls_client_certificate(registry_factory: Any, tmp_path: Path, seed: Any) -> None:
    ca = shared_ca()
    ca_pem = tmp_path / "clientca.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    client_cert = ca.issue_cert("regcopy-client@example.test")
    cert, key = tmp_path / "client.cert", tmp_path / "client.key"
    client_cert.cert_chain_pems[0].write_to_path(str(cert))
    client_cert.private_key_pem.write_to_path(str(key))
    reg = registry_factory("https", extra_config={"http": {"tls": {"clientcas": [str(ca_pem)]}}},
                           client_cert=(cert, key))
    assert reg.ca_pem_path is not None
    without = {reg.host: regcopy.RegistrySettings(scheme="https", ca_file=str(reg.ca_pem_path))}
    async with regcopy.Client(settings=without, credentials=regcopy.StaticCredentials({})) as client:
        with pytest.raises(regcopy.TransportError):
            await client.ping(reg.host)
    with_cert = {reg.host: regcopy.RegistrySettings(scheme="https", ca_file=str(reg.ca_pem_path),
                                                     client_cert=str(cert), client_key=str(key))}
    src = registry_factory("http")
    digest = seed(src, "oci", "src/app")
    async with regcopy.Client(settings=with_cert, credentials=regcopy.StaticCredentials({})) as client:
        result = await client.ping(reg.host)
        assert result.scheme == "https" and result.status == 200
        await client.copy(f"{src.host}/src/app:oci", f"{reg.host}/dst/app:oci")
    # skopeo reads its client pair from the cert dir too (containers-certs.d: *.cert + *.key).
    assert reg.cert_dir is not None
    (reg.cert_dir / "client.cert").write_bytes(cert.read_bytes())
    (reg.cert_dir / "client.key").write_bytes(key.read_bytes())
    skopeo.verify(reg, "dst/app:oci", digest)


async def test_a_429_slows_every_request_to_that_host(http_registry: RegistryServer, seed: Any) -> None:
    seed(http_registry, "oci", "src/app")
    with FaultyProxy(http_registry.url) as proxy:
        proxy.add(Fault(method="GET", path=r"/tags/list", status=429, headers={"Retry-After": "1"}))
        # Retry-After is honoured up to 4 x backoff_max: 2 s here, while the backoff alone stays tiny.
        settings = regcopy.RegistrySettings(scheme="http", backoff=0.01, backoff_max=0.5)
        async with regcopy.Client(default_settings=settings, credentials=regcopy.StaticCredentials({})) as client:
            await client.ping(proxy.host)
            done: dict[str, float] = {}
            started = time.monotonic()

            async def tags() -> None:
                await client.tags(f"{proxy.host}/src/app")
                done["tags"] = time.monotonic() - started

            async def digest() -> None:
                await anyio.sleep(0.2)  # starts after the 429 was answered
                await client.digest(f"{proxy.host}/src/app:oci")
                done["digest"] = time.monotonic() - started

            async with anyio.create_task_group() as tg:
                tg.start_soon(tags)
                tg.start_soon(digest)
    # The HEAD never got a 429 itself, but it waited out the host's Retry-After pause too.
    assert done["digest"] >= 0.9 and done["tags"] >= 0.9


async def test_secrets_never_reach_logs_or_errors(
    token_registry: RegistryServer, seed: Any, caplog: pytest.LogCaptureFixture
) -> None:
    seed(token_registry, "oci", "src/app")
    caplog.set_level(logging.DEBUG, logger="regcopy")
    async with make_client(token_registry) as client:
        await client.copy(f"{token_registry.host}/src/app:oci", f"{token_registry.host}/dst/app:oci")
        t = client.transport(token_registry.host)
        tokens = [entry.token.value for entry in client.tokens._entries.values()]
        assert tokens
        with pytest.raises(regcopy.NotFound) as info:
            await client.copy(f"{token_registry.host}/nope/app:v1", f"{token_registry.host}/dst/app:x")
        assert t.stats["requests"] > 0
    text = caplog.text + str(info.value)
    assert token_registry.password and token_registry.password not in text
    assert "_state=" not in text  # upload URLs are redacted to their path
    assert "Authorization" not in text and "Bearer " not in text
    for tok in tokens:
        assert str(tok) not in text


def test_cli_verbose_logs_hold_no_secrets(
    http_registry: RegistryServer, basic_registry: RegistryServer, seed: Any, tmp_path: Path
) -> None:
    import base64

    digest = seed(http_registry, "oci", "src/app")
    auth = tmp_path / "auth.json"
    secret = base64.b64encode(f"{basic_registry.username}:{basic_registry.password}".encode()).decode()
    auth.write_text(json.dumps({"auths": {basic_registry.host: {"auth": secret}}}))
    assert basic_registry.cert_dir is not None
    out = subprocess.run(
        [sys.executable, "-m", "regcopy", "copy", f"{http_registry.host}/src/app:oci",
         f"{basic_registry.host}/dst/app:oci", "-vv", "--progress", "none", "--authfile", str(auth),
         "--dest-cert-dir", str(basic_registry.cert_dir)],
        capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert "DEBUG" in out.stderr and "/blobs/uploads/" in out.stderr
    assert basic_registry.password and basic_registry.password not in out.stderr + out.stdout
    assert secret not in out.stderr and "_state=" not in out.stderr
    skopeo.verify(basic_registry, "dst/app:oci", digest)


def test_example_copy_one(http_registry: RegistryServer, registry_factory: Any, seed: Any) -> None:
    dst = registry_factory("http")
    digest = seed(http_registry, "multi", "src/app")
    out = subprocess.run([sys.executable, str(ROOT / "examples/copy_one.py"), f"{http_registry.host}/src/app:multi",
                          f"{dst.host}/dst/app:multi", "--http"], capture_output=True, text=True, timeout=120,
                         check=False)
    assert out.returncode == 0, out.stderr
    assert digest in out.stdout and "BlobDone" in out.stdout
    skopeo.verify(dst, "dst/app:multi", digest)


async def test_example_aiohttp_service(http_registry: RegistryServer, registry_factory: Any, seed: Any) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import embed_in_aiohttp_service as service  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(ROOT / "examples"))
    dst = registry_factory("http")
    digest = seed(http_registry, "oci", "src/app")
    async with TestClient(TestServer(service.make_app())) as web:
        resp = await web.post("/mirror", json={"src": f"{http_registry.host}/src/app:oci",
                                               "dst": f"{dst.host}/dst/app:oci"})
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["digest"] == digest
        bad = await web.post("/mirror", json={"src": "UPPER/x", "dst": f"{dst.host}/dst/app:oci"})
        assert bad.status == 400
    skopeo.verify(dst, "dst/app:oci", digest)


async def test_credential_helper_from_docker_config_against_a_real_registry(
    basic_registry: RegistryServer, seed: Any, tmp_path: Path
) -> None:
    seed(basic_registry, "oci", "lib/app")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    calls = tmp_path / "calls"
    helper = bindir / "docker-credential-regcopytest"
    # The docker credential-helper protocol: `get`, the server URL on stdin, JSON on stdout.
    answer = json.dumps({"Username": basic_registry.username, "Secret": basic_registry.password})
    helper.write_text(f"#!/bin/sh\nread url; echo \"$url\" >> {calls}\necho '{answer}'\n")
    helper.chmod(0o755)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"credHelpers": {basic_registry.host: "regcopytest"}}))
    store = regcopy.DockerConfigCredentials([config], env={"PATH": f"{bindir}:/usr/bin:/bin"})
    async with make_client(basic_registry, credentials=store) as client:
        assert await client.tags(f"{basic_registry.host}/lib/app") == ["oci"]
        assert await client.digest(f"{basic_registry.host}/lib/app:oci")
    assert calls.read_text().split() == [basic_registry.host]  # run once, cached for the client
    assert basic_registry.password not in calls.read_text()
