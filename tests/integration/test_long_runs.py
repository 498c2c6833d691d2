"""Long runs against real registries: tokens that expire mid-run are refreshed and the run goes on; credential
helpers are re-run when their answer is rejected or too old; the ECR provider plugs into the transport the
same way.

Durations here only make tokens and credentials age; nothing asserts how fast anything is.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

import regcopy
from conftest import make_client  # type: ignore[import-not-found]
from regcopy.credentials import CredentialStore, HelperCredentials
from regcopy.ecr import EcrCredentials, EcrRegistry
from regcopy.registry._tokens import TokenCache
from regcopy.registry.manifests import push_scope
from servers.images import ImageSpec, LayerSpec, write_layout
from servers.registry import AccessEntry, RegistryServer, shared_ca
from servers.token_server import TokenServer

# distribution 2.8.2 accepts a JWT until 60 s after its `exp` (docs/protocol.md#tokens-distribution-accepts):
# an exp_offset of -(expires_in + 60) + N makes the registry refuse a token N seconds (N-1..N: `exp` is
# whole seconds) after it was issued.
LEEWAY = 60


def small_images(tmp_path: Path, cache: Path, count: int, name: str) -> tuple[Path, list[str]]:
    """An OCI layout of ``count`` distinct one-layer images (4 KiB each); returns it and its tags."""
    layout = tmp_path / f"{name}-layout"
    specs = {f"{name}{i}": ImageSpec(layers=[LayerSpec(4096, f"{name}-{i}")]) for i in range(count)}
    write_layout(layout, specs, cache_dir=cache)
    return layout, list(specs)


def auth_failures(server: RegistryServer) -> list[AccessEntry]:
    """401s other than the client's unauthenticated ``GET /v2/`` probe."""
    return [e for e in server.access_log() if e.status == 401 and e.route != "/v2/"]


def write_helper(bindir: Path, name: str, user: str, secrets: list[str]) -> Path:
    """``docker-credential-<name>``: answers ``secrets[n]`` on its n-th run (the last one from then on) and
    appends the server URL it was asked for to the returned file, one line per run."""
    calls = bindir.parent / f"{name}-calls"
    script = bindir / f"docker-credential-{name}"
    cases = "".join(f"  {i + 1}) secret='{s}' ;;\n" for i, s in enumerate(secrets[:-1]))
    script.write_text(
        "#!/bin/sh\n"
        '[ "$1" = get ] || exit 9\n'
        f"read url; echo \"$url\" >> {calls}\n"
        f"n=$(wc -l < {calls})\n"
        f'case "$n" in\n{cases}  *) secret=\'{secrets[-1]}\' ;;\nesac\n'
        f"printf '{{\"ServerURL\":\"%s\",\"Username\":\"{user}\",\"Secret\":\"%s\"}}' \"$url\" \"$secret\"\n"
    )
    script.chmod(0o755)
    return calls


def helper_runs(calls: Path) -> int:
    return len(calls.read_text().splitlines()) if calls.exists() else 0


@pytest.fixture
def bindir(tmp_path: Path) -> Path:
    path = tmp_path / "bin"
    path.mkdir()
    return path


def helper_env(bindir: Path) -> dict[str, str]:
    return {"PATH": f"{bindir}:/usr/bin:/bin"}


# ------------------------------------------------------------------------------- expiring tokens


async def test_tokens_rejected_mid_run_are_refreshed_and_pulls_continue(
    registry_factory: Any, tmp_path: Path, image_cache_dir: Path
) -> None:
    """The registry refuses each token 1-2 s after it was issued while the client, which raises every lifetime
    to 60 s (docs/protocol.md#token-requests), still holds it: each refusal must cost one 401 and a new token,
    never the run."""
    ts = TokenServer(tmp_path / "token", ca=shared_ca(), expires_in=2).start()
    try:
        reg = registry_factory("token", token_server=ts)
        layout, tags = small_images(tmp_path, image_cache_dir, 4, "pull")
        async with make_client(reg) as seeder:
            digests = {t: (await seeder.copy(f"oci:{layout}:{t}", f"{reg.host}/long/app:{t}")).digest for t in tags}
        ts.exp_offset = 2 - ts.expires_in - LEEWAY
        ts.reset()
        copied = 0
        start = time.monotonic()
        async with make_client(reg, settings_overrides={"requests_per_second": 20}) as client:
            # Run until two tokens have died mid-run (a cap in case refresh never happens).
            while ts.counts.get("issued", 0) < 3 and time.monotonic() - start < 60:
                for tag in tags:
                    dest = f"oci:{tmp_path / f'out{copied}'}:{tag}"
                    result = await client.copy(f"{reg.host}/long/app:{tag}", dest)
                    assert result.digest == digests[tag]
                    copied += 1
        assert ts.counts.get("issued", 0) >= 3  # refreshed several times
        assert ts.counts.get("401", 0) == 0
        refused = auth_failures(reg)
        assert refused, "no token expired mid-run: the test did not test anything"
        # Every refused request was answered on its retry with the fresh token: none failed for good.
        later = reg.access_log()
        for entry in refused:
            index = later.index(entry)
            assert any(e.method == entry.method and e.path == entry.path and e.status < 400
                       for e in later[index + 1:]), f"{entry.method} {entry.path} never succeeded"
    finally:
        ts.stop()


async def test_tokens_are_refreshed_before_they_expire_during_a_long_push(
    registry_factory: Any, tmp_path: Path, image_cache_dir: Path
) -> None:
    """60 s tokens over a compressed run: the client's token clock runs 40x faster than the registry's, so
    the cache refreshes each token after ~1.35 s of real time, before the registry starts refusing it (3-4 s).
    Every blob upload (streamed, so never replayable) therefore finds a valid token: no 401 at all."""
    ts = TokenServer(tmp_path / "token", ca=shared_ca(), expires_in=60).start()
    try:
        reg = registry_factory("token", token_server=ts)
        ts.exp_offset = 4 - ts.expires_in - LEEWAY
        layout, tags = small_images(tmp_path, image_cache_dir, 40, "push")
        origin = time.monotonic()

        def fast() -> float:
            return origin + (time.monotonic() - origin) * 40

        copied = 0
        async with make_client(reg, settings_overrides={"requests_per_second": 20}) as client:
            client.tokens = TokenCache(clock=fast)  # before the first transport is made
            for tag in tags:  # until the third token (>= 0.4 s an image at 20 requests/s: 40 are plenty)
                await client.copy(f"oci:{layout}:{tag}", f"{reg.host}/long/app:{tag}")
                copied += 1
                if ts.counts.get("issued", 0) >= 3:
                    break
            assert client.retries() == 0
        assert ts.counts.get("issued", 0) >= 3
        assert auth_failures(reg) == []
        assert await await_tags(reg, "long/app") == sorted(tags[:copied])
    finally:
        ts.stop()


async def test_a_token_refused_on_a_streamed_request_is_dropped(token_registry: RegistryServer) -> None:
    """A streamed body cannot be replayed, so its 401 is raised; but the refused token must not be used again:
    whoever restarts the operation (the blob store restarts an upload) gets a fresh one, not a second 401."""
    ts = token_registry.token_server
    assert ts is not None
    ts.exp_offset = -400  # the first token is refused at once
    scopes = (push_scope("long/app"),)

    async def body() -> AsyncIterator[bytes]:
        yield b"x" * 10

    async with make_client(token_registry) as client:
        t = client.transport(token_registry.host)
        with pytest.raises(regcopy.AuthenticationError):
            await t.request("POST", "/v2/long/app/blobs/uploads/", scopes=scopes, data=body(), ok=(202,),
                            retry=False)
        ts.exp_offset = 0
        reply = await t.request("HEAD", "/v2/long/app/manifests/none", scopes=scopes, ok=(404,))
        assert reply.status == 404
    assert len(auth_failures(token_registry)) == 1
    assert ts.counts.get("issued", 0) == 2


async def await_tags(server: RegistryServer, repo: str) -> list[str]:
    async with make_client(server) as client:
        return sorted(await client.tags(f"{server.host}/{repo}"))


# ------------------------------------------------------------------------------- credential helpers


async def test_rejected_helper_credentials_are_fetched_again_basic(
    basic_registry: RegistryServer, seed: Any, bindir: Path, tmp_path: Path
) -> None:
    digest = seed(basic_registry, "oci", "lib/app")
    assert basic_registry.password is not None and basic_registry.username is not None
    calls = write_helper(bindir, "flaky", basic_registry.username, ["stale-password", basic_registry.password])
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"credHelpers": {basic_registry.host: "flaky"}}))
    store = regcopy.DockerConfigCredentials([config], env=helper_env(bindir))
    async with make_client(basic_registry, credentials=store) as client:
        result = await client.copy(f"{basic_registry.host}/lib/app:oci", f"oci:{tmp_path / 'out'}:app")
    assert result.digest == digest
    assert helper_runs(calls) == 2
    assert len(auth_failures(basic_registry)) == 1  # the stale password, once; then the helper's new answer


async def test_rejected_helper_credentials_are_fetched_again_token(
    token_registry: RegistryServer, seed: Any, bindir: Path, tmp_path: Path
) -> None:
    ts = token_registry.token_server
    assert ts is not None and token_registry.password is not None and token_registry.username is not None
    digest = seed(token_registry, "oci", "lib/app")
    ts.reset()
    calls = write_helper(bindir, "flaky", token_registry.username, ["stale-password", token_registry.password])
    store = HelperCredentials({token_registry.host: "flaky"}, env=helper_env(bindir))
    async with make_client(token_registry, credentials=store) as client:
        result = await client.copy(f"{token_registry.host}/lib/app:oci", f"oci:{tmp_path / 'out'}:app")
    assert result.digest == digest
    assert helper_runs(calls) == 2
    assert ts.counts.get("401", 0) == 1  # the token server refused the stale password once
    assert ts.counts.get("issued", 0) >= 1
    assert auth_failures(token_registry) == []


def refreshing_store(kind: str, host: str, bindir: Path, tmp_path: Path) -> CredentialStore:
    """The ``steady`` helper for ``host`` with a 0.5 s max age, named directly or in a docker config."""
    if kind == "helper":
        return HelperCredentials({host: "steady"}, env=helper_env(bindir), refresh_after=0.5)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"credHelpers": {host: "steady"}}))
    return regcopy.DockerConfigCredentials([config], env=helper_env(bindir), refresh_after=0.5)


@pytest.mark.parametrize("kind", ["helper", "config"])
async def test_helper_with_max_age_is_rerun_during_a_long_run(
    basic_registry: RegistryServer, seed: Any, bindir: Path, tmp_path: Path, kind: str
) -> None:
    digest = seed(basic_registry, "oci", "lib/app")
    assert basic_registry.password is not None and basic_registry.username is not None
    calls = write_helper(bindir, "steady", basic_registry.username, [basic_registry.password])
    store = refreshing_store(kind, basic_registry.host, bindir, tmp_path)
    copied = 0
    start = time.monotonic()
    async with make_client(basic_registry, credentials=store) as client:
        while helper_runs(calls) < 3 and time.monotonic() - start < 30:  # a cap in case it is never re-run
            result = await client.copy(f"{basic_registry.host}/lib/app:oci", f"oci:{tmp_path / f'o{copied}'}:a")
            assert result.digest == digest
            copied += 1
    assert helper_runs(calls) >= 3  # re-run as its answer aged, not only on rejection
    assert auth_failures(basic_registry) == []


# ------------------------------------------------------------------------------- the ECR provider


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def ecr_answer(password: str) -> dict[str, Any]:
    return {"authorizationData": [{
        "authorizationToken": base64.b64encode(f"AWS:{password}".encode()).decode(),
        "expiresAt": datetime.now(UTC) + timedelta(hours=12),
        "proxyEndpoint": "https://123456789012.dkr.ecr.us-east-1.amazonaws.com",
    }]}


async def test_ecr_provider_through_the_transport(
    registry_factory: Any, seed: Any, tmp_path: Path, aws_env: None
) -> None:
    """A loopback htpasswd registry stands in for ECR (user ``AWS``); a stubbed GetAuthorizationToken first
    answers a token the registry refuses, then the right one: the 401 makes the transport forget the token
    and the provider call the API again."""
    reg = registry_factory("basic", users={"AWS": "ecr-token-password"})
    digest = seed(reg, "oci", "lib/app")
    session = boto3.session.Session(aws_access_key_id="AKIDEXAMPLEEXAMPLE", aws_secret_access_key="fake",
                                    region_name="us-east-1")
    ecr = session.client("ecr", region_name="us-east-1")
    regions: list[tuple[str, bool]] = []

    def factory(region: str, fips: bool) -> Any:
        regions.append((region, fips))
        return ecr

    def hosts(host: str) -> EcrRegistry | None:  # the registry under test is "an ECR host"
        return EcrRegistry("123456789012", "us-east-1") if host == reg.host else None

    with Stubber(ecr) as stubber:
        for password in ("expired-token-password", "ecr-token-password"):
            stubber.add_response("get_authorization_token", ecr_answer(password),
                                 expected_params={"registryIds": ["123456789012"]})
        store = EcrCredentials(client_factory=factory, hosts=hosts)
        async with make_client(reg, credentials=store) as client:
            result = await client.copy(f"{reg.host}/lib/app:oci", f"oci:{tmp_path / 'out'}:app")
            assert await client.tags(f"{reg.host}/lib/app") == ["oci"]  # the cached token serves on
        stubber.assert_no_pending_responses()  # exactly two GetAuthorizationToken calls
    assert result.digest == digest
    assert regions == [("us-east-1", False)]
    assert len(auth_failures(reg)) == 1
