"""Proof that the integration harness works: real registries in every mode, seeded and read by skopeo.

Covers seeding (OCI image, Docker-media image, multi-platform index, nested index) and verification in
http/https/basic/token modes, token-server scopes and grants, the OAuth2 refresh flow through skopeo,
delete, the access log, start-up failures and port-collision retries.
"""

from __future__ import annotations

import base64
import json
import shutil
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import aiohttp
import jwt
import pytest

from servers import registry as registry_mod
from servers.images import ImageSpec, IndexSpec, LayerSpec, layout_contents, read_blob, write_layout
from servers.registry import Mode, RegistryFactory, RegistryServer, parse_access_log
from servers.skopeo import SkopeoError, inspect_digest, inspect_raw, list_tags, seed, verify
from servers.token_server import Scope, TokenRequest, TokenServer, parse_scope

pytestmark = [
    pytest.mark.skopeo,
    pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed"),
]

BASE = LayerSpec(4096, "harness-base")
APP = LayerSpec(8192, "harness-app", "text")
ARM = LayerSpec(2048, "harness-arm")
SPECS: dict[str, ImageSpec | IndexSpec] = {
    "oci": ImageSpec([BASE, APP], labels={"kind": "oci"}),
    "docker": ImageSpec([BASE, APP], media="docker"),
    "multi": IndexSpec([ImageSpec([BASE]), ImageSpec([ARM], arch="arm64", variant="v8")]),
    "nested": IndexSpec(
        [
            IndexSpec([ImageSpec([BASE], arch="ppc64le"), ImageSpec([ARM], arch="arm", variant="v7")]),
            ImageSpec([APP], arch="s390x"),
        ]
    ),
}
DLIST = IndexSpec(
    [ImageSpec([BASE], media="docker"), ImageSpec([ARM], arch="arm64", variant="v8", media="docker")],
    media="docker",
)
READER = ("reader", "reader-secret")


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory, image_cache_dir: Path) -> Path:
    path = tmp_path_factory.mktemp("harness") / "layout"
    write_layout(path, {**SPECS, "dlist": DLIST}, cache_dir=image_cache_dir)
    return path


def _stored_blobs(server: RegistryServer) -> set[str]:
    blobs = server.root / "docker" / "registry" / "v2" / "blobs" / "sha256"
    return {"sha256:" + p.parent.name for p in blobs.glob("*/*/data")}


def _request(server: RegistryServer, method: str, path: str, **headers: str) -> tuple[int, bytes]:
    req = urllib.request.Request(f"{server.url}{path}", method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10, context=server.ssl_context()) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return int(exc.code), exc.read()


def test_seed_and_verify_every_kind(any_registry: RegistryServer, layout: Path) -> None:
    reg = any_registry
    for tag in SPECS:
        want = layout_contents(layout, tag).root.digest
        assert seed(reg, layout, tag, "harness/app") == want, tag
        raw = verify(reg, f"harness/app:{tag}", want)
        assert raw == read_blob(layout, want), tag
    assert list_tags(reg, "harness/app") == sorted(SPECS)
    # Independent of skopeo: every config and layer is on the registry's disk, nothing more.
    wanted = {d for tag in SPECS for d in layout_contents(layout, tag).blobs}
    manifests = {d for tag in SPECS for d in layout_contents(layout, tag).manifests}
    assert wanted <= _stored_blobs(reg) <= wanted | manifests


def test_docker_manifest_list(http_registry: RegistryServer, layout: Path) -> None:
    want = layout_contents(layout, "dlist").root.digest
    assert seed(http_registry, layout, "dlist", "harness/list", dest_tag="v1") == want
    assert verify(http_registry, "harness/list:v1", want) == read_blob(layout, want)
    assert verify(http_registry, f"harness/list@{want}") == read_blob(layout, want)


def test_verify_detects_wrong_digest(http_registry: RegistryServer, layout: Path) -> None:
    seed(http_registry, layout, "oci", "harness/app")
    with pytest.raises(AssertionError, match="digest"):
        verify(http_registry, "harness/app:oci", layout_contents(layout, "docker").root.digest)
    with pytest.raises(SkopeoError, match="manifest unknown"):
        inspect_raw(http_registry, "harness/app:missing")


def _granted(requests: list[TokenRequest], user: str) -> set[Scope]:
    return {g for r in requests if r.user == user and r.status == 200 for g in r.granted}


def test_token_scopes_and_pull_only_user(token_registry: RegistryServer, layout: Path) -> None:
    reg = token_registry
    ts = reg.token_server
    assert ts is not None
    digest = seed(reg, layout, "oci", "team/app")
    pushes = [
        parse_scope(s)
        for r in ts.requests
        if r.user == "alice" and r.method == "GET" and r.service == ts.service
        for s in r.scopes
    ]
    assert any(s.type == "repository" and s.name == "team/app" and set(s.actions) == {"pull", "push"} for s in pushes)
    assert {g.name: set(g.actions) for g in _granted(ts.requests, "alice")}["team/app"] == {"pull", "push"}

    ts.reset()
    assert verify(reg, "team/app:oci", digest, creds=READER) == read_blob(layout, digest)
    assert _granted(ts.requests, "reader") == {Scope("repository", "team/app", ("pull",))}

    ts.reset()
    with pytest.raises(SkopeoError, match=r"(?i)denied|unauthorized|authentication required"):
        seed(reg, layout, "docker", "team/app", creds=READER)
    asked = [s for r in ts.requests if r.user == "reader" for s in r.scopes]
    assert any("push" in parse_scope(s).actions for s in asked), asked
    # The intersection was granted (pull only), not a 401: only bad credentials get 401.
    assert all(r.status == 200 for r in ts.requests)
    assert all(g.actions == ("pull",) for g in _granted(ts.requests, "reader"))
    assert list_tags(reg, "team/app") == ["oci"]

    ts.reset()
    with pytest.raises(SkopeoError):
        inspect_raw(reg, "team/app:oci", creds=("alice", "wrong"))
    assert ts.counts.get("401", 0) >= 1 and ts.counts.get("issued", 0) == 0


def test_oauth_refresh_flow_through_skopeo(token_registry: RegistryServer, layout: Path, tmp_path: Path) -> None:
    reg = token_registry
    ts = reg.token_server
    assert ts is not None
    digest = seed(reg, layout, "multi", "team/multi")
    form = {
        "grant_type": "password",
        "username": "alice",
        "password": "secret",
        "service": ts.service,
        "client_id": "regcopy-tests",
        "access_type": "offline",
        "scope": "repository:team/multi:pull repository:team/other:pull",
    }
    req = urllib.request.Request(ts.realm, data=urllib.parse.urlencode(form).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=10, context=reg.ssl_context()) as resp:
        body = json.loads(resp.read())
    assert body["refresh_token"] and body["access_token"] == body["token"]
    assert body["scope"] == "repository:team/multi:pull repository:team/other:pull"

    # c/image uses identitytoken only when `auth` decodes to "user:" (docs/protocol.md#credential-files).
    authfile = tmp_path / "auth.json"
    entry = {"auth": base64.b64encode(b"alice:").decode(), "identitytoken": body["refresh_token"]}
    authfile.write_text(json.dumps({"auths": {reg.host: entry}}))
    ts.reset()
    assert verify(reg, "team/multi:multi", digest, authfile=authfile) == read_blob(layout, digest)
    posts = [r for r in ts.requests if r.method == "POST"]
    assert posts, ts.requests
    assert all(r.grant_type == "refresh_token" and r.client_id == "containers/image" for r in posts)
    assert all(r.user == "alice" and r.status == 200 for r in posts)
    assert not [r for r in ts.requests if r.method == "GET"]

    # A refresh token the server never issued is refused.
    entry["identitytoken"] = "not-a-token"
    authfile.write_text(json.dumps({"auths": {reg.host: entry}}))
    with pytest.raises(SkopeoError):
        inspect_raw(reg, "team/multi:multi", authfile=authfile)
    assert ts.requests[-1].status == 401


async def test_jwt_accepted_and_expiry_enforced(token_registry: RegistryServer) -> None:
    reg = token_registry
    ts = reg.token_server
    assert ts is not None
    ssl_ctx = reg.ssl_context()
    assert ssl_ctx is not None
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{reg.url}/v2/", ssl=ssl_ctx) as resp:
            assert resp.status == 401
            challenge = resp.headers["WWW-Authenticate"]
        assert challenge.startswith("Bearer ") and f'realm="{ts.realm}"' in challenge
        params = [("service", ts.service), ("scope", "repository:x/y:pull"), ("scope", "registry:catalog:*")]
        # Header built by hand: aiohttp 3.14 deprecates BasicAuth (a DeprecationWarning, an error here).
        basic = {"Authorization": "Basic " + base64.b64encode(b"reader:reader-secret").decode()}
        async with session.get(ts.realm, params=params, headers=basic, ssl=ssl_ctx) as resp:
            assert resp.status == 200
            body = await resp.json()
        assert body["expires_in"] == 300 and body["issued_at"].endswith("Z") and "refresh_token" not in body
        header = jwt.get_unverified_header(body["token"])
        assert header == {"alg": "ES256", "kid": ts.kid, "typ": "JWT"}
        claims = jwt.decode(body["token"], options={"verify_signature": False})
        assert claims["aud"] == ts.service and claims["iss"] == ts.issuer and claims["sub"] == "reader"
        # reader has no catalog grant: only the repository scope survives the intersection.
        assert claims["access"] == [{"type": "repository", "name": "x/y", "actions": ["pull"]}]

        bearer = {"Authorization": f"Bearer {body['token']}"}
        async with session.get(f"{reg.url}/v2/", headers=bearer, ssl=ssl_ctx) as resp:
            assert resp.status == 200
        async with session.get(f"{reg.url}/v2/x/y/tags/list", headers=bearer, ssl=ssl_ctx) as resp:
            assert resp.status == 404  # authorized; the repository just does not exist
        async with session.get(f"{reg.url}/v2/_catalog", headers=bearer, ssl=ssl_ctx) as resp:
            assert resp.status == 401
            assert 'error="insufficient_scope"' in resp.headers["WWW-Authenticate"]

        # Beyond 2.8.2's 60 s leeway the registry must refuse the token.
        ts.exp_offset = -400
        stale = {"Authorization": f"Bearer {ts.issue_token('alice', ['registry:catalog:*'])}"}
        async with session.get(f"{reg.url}/v2/_catalog", headers=stale, ssl=ssl_ctx) as resp:
            assert resp.status == 401
            assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]
        ts.exp_offset = 0
        fresh = {"Authorization": f"Bearer {ts.issue_token('alice', ['registry:catalog:*'])}"}
        async with session.get(f"{reg.url}/v2/_catalog", headers=fresh, ssl=ssl_ctx) as resp:
            assert resp.status == 200 and await resp.json() == {"repositories": []}


@pytest.mark.parametrize("mode", ["basic", "token"])
def test_auth_modes_over_plain_http(registry_factory: RegistryFactory, layout: Path, mode: Mode) -> None:
    reg = registry_factory(mode, tls=False)
    assert reg.scheme == "http" and reg.ssl_context() is None and reg.cert_dir is None
    assert "--tls-verify=false" in reg.skopeo_flags() and "--creds" in reg.skopeo_flags()
    digest = seed(reg, layout, "oci", "plain/app")
    assert verify(reg, "plain/app:oci", digest) == read_blob(layout, digest)
    with pytest.raises(SkopeoError):
        inspect_raw(reg, "plain/app:oci", creds=(reg.username or "", "wrong-password"))
    if reg.token_server is not None:
        assert reg.token_server.realm.startswith("http://")


async def test_token_server_protocol(tmp_path: Path) -> None:
    assert parse_scope("repository:localhost:5000/a/b:pull,push") == Scope(
        "repository", "localhost:5000/a/b", ("pull", "push")
    )
    assert parse_scope("repository(plugin):x:pull") == Scope("repository", "x", ("pull",))
    assert parse_scope("registry:catalog:*") == Scope("registry", "catalog", ("*",))
    with pytest.raises(ValueError):
        parse_scope("repository:nope")
    with TokenServer(tmp_path / "ts", anonymous={"public/*": ["pull"]}, expires_in=61) as ts:
        async with aiohttp.ClientSession() as session:
            # Anonymous: allowed here, and only the public pull survives the intersection.
            params = [("service", ts.service), ("scope", "repository:public/a:pull,push repository:private/b:pull")]
            async with session.get(ts.realm, params=params) as resp:
                assert resp.status == 200
                body = await resp.json()
            claims = jwt.decode(body["token"], options={"verify_signature": False})
            assert claims["sub"] == "" and claims["exp"] - claims["iat"] == 61
            assert claims["access"] == [{"type": "repository", "name": "public/a", "actions": ["pull"]}]
            # GET with offline_token=true returns a refresh token usable in the POST grant.
            basic = {"Authorization": "Basic " + base64.b64encode(b"alice:secret").decode()}
            params = [("service", ts.service), ("offline_token", "true"), ("client_id", "t")]
            async with session.get(ts.realm, params=params, headers=basic) as resp:
                refresh = (await resp.json())["refresh_token"]
            form = {"grant_type": "refresh_token", "refresh_token": refresh, "service": ts.service}
            form |= {"client_id": "t", "scope": "registry:catalog:*"}
            async with session.post(ts.realm, data=form) as resp:
                assert resp.status == 200
                body = await resp.json()
            assert body["scope"] == "registry:catalog:*" and "refresh_token" not in body
            # Bad password, unknown service, missing client_id on POST.
            bad = {"Authorization": "Basic " + base64.b64encode(b"alice:nope").decode()}
            async with session.get(ts.realm, params={"service": ts.service}, headers=bad) as resp:
                assert resp.status == 401
            async with session.get(ts.realm, params={"service": "other"}) as resp:
                assert resp.status == 400
            async with session.post(ts.realm, data={"grant_type": "refresh_token", "refresh_token": refresh}) as resp:
                assert resp.status == 400
        assert [(r.method, r.status) for r in ts.requests] == [
            ("GET", 200),
            ("GET", 200),
            ("POST", 200),
            ("GET", 401),
            ("GET", 400),
            ("POST", 400),
        ]
        assert ts.requests[1].offline and ts.requests[2].grant_type == "refresh_token"
        assert ts.counts == {"get": 4, "post": 2, "issued": 3, "refresh_issued": 1, "401": 1, "400": 2}
    with TokenServer(tmp_path / "ts2") as strict:
        async with aiohttp.ClientSession() as session, session.get(strict.realm) as resp:
            assert resp.status == 401  # anonymous refused by default


def test_delete_by_digest(registry_factory: RegistryFactory, layout: Path) -> None:
    reg = registry_factory("http", delete=True)
    plain = registry_factory("http")
    assert reg.delete_enabled and not plain.delete_enabled
    for server in (reg, plain):
        digest = seed(server, layout, "oci", "del/app")
        status, _ = _request(server, "DELETE", f"/v2/del/app/manifests/{digest}")
        assert status == (202 if server is reg else 405)
    with pytest.raises(SkopeoError):
        inspect_digest(reg, "del/app:oci")
    assert inspect_digest(plain, "del/app:oci") == digest
    entry = reg.wait_for_access(lambda e: e.method == "DELETE")
    assert (entry.route, entry.status) == (f"/v2/del/app/manifests/{digest}", 202)


def test_access_log_records_pushes(http_registry: RegistryServer, layout: Path) -> None:
    reg = http_registry
    digest = seed(reg, layout, "oci", "log/app")
    put = reg.wait_for_access(lambda e: e.method == "PUT" and e.route == "/v2/log/app/manifests/oci")
    assert put.status == 201 and put.user_agent.startswith("skopeo/")
    entries = reg.access_log()
    blob_puts = [e for e in entries if e.method == "PUT" and "/blobs/uploads/" in e.route]
    blobs = layout_contents(layout, "oci").blobs
    assert len(blob_puts) == len(blobs)
    assert {urllib.parse.parse_qs(urllib.parse.urlsplit(e.path).query)["digest"][0] for e in blob_puts} == set(blobs)
    assert all(e.status == 201 for e in blob_puts)
    assert not [e for e in entries if e.user_agent == registry_mod.PROBE_USER_AGENT]
    assert [e for e in reg.access_log(include_probes=True) if e.user_agent == registry_mod.PROBE_USER_AGENT]
    status, body = _request(
        reg, "GET", f"/v2/log/app/manifests/{digest}", Accept=layout_contents(layout, "oci").root.media_type
    )
    assert status == 200 and body == read_blob(layout, digest)
    got = reg.wait_for_access(lambda e: e.method == "GET" and e.route.endswith(digest))
    assert got.size == len(body)


def test_parse_access_log_variants() -> None:
    text = "\n".join(
        [
            'time="2026-11-23T06:29:06Z" level=info msg="response completed" http.request.method=GET',
            '127.0.0.1 - - [23/Nov/2026:06:29:06 +0000] "GET /v2/_catalog?n=3 HTTP/1.1" 200 20 "" "curl/7.88.1"',
            '127.0.0.1 - alice [23/Nov/2026:06:29:07 +0000] "HEAD /v2/a/blobs/sha256:ab HTTP/1.1" 404 - '
            '"-" "x \\"q\\""',
            "garbage",
        ]
    )
    first, second = parse_access_log(text)
    assert (first.method, first.path, first.route, first.status, first.size) == (
        "GET",
        "/v2/_catalog?n=3",
        "/v2/_catalog",
        200,
        20,
    )
    assert (second.user, second.method, second.status, second.size) == ("alice", "HEAD", 404, 0)


def test_startup_failure_reports_log(tmp_path: Path) -> None:
    server = RegistryServer(tmp_path / "bad", "http", extra_config={"storage": {"nosuchdriver": {}}})
    with pytest.raises(RuntimeError, match="nosuchdriver") as info:
        server.start()
    assert "docker-registry exited" in str(info.value)
    assert not server.running


def test_port_collision_is_retried(
    registry_factory: RegistryFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    taken = registry_factory("http")
    ports = iter([taken.port])
    real = registry_mod._free_port
    monkeypatch.setattr(registry_mod, "_free_port", lambda: next(ports, None) or real())
    with RegistryServer(tmp_path / "second", "http") as second:
        assert second.running and second.port != taken.port
        assert "address already in use" in second.log_text()
    assert not second.running


def test_restart_keeps_port_and_storage(http_registry: RegistryServer, layout: Path) -> None:
    digest = seed(http_registry, layout, "oci", "keep/app")
    port = http_registry.port
    http_registry.restart()
    assert http_registry.port == port
    assert inspect_digest(http_registry, "keep/app:oci") == digest
