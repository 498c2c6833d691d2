"""Credentials go only to the registry's own origin (docs/security.md).

A hostile registry (``servers.hostile_registry``, Basic credentials ``user``/``S3CRETpw`` from an auth
file) points its ``Link``, upload ``Location`` and redirects at a listener on another port, which logs
the method, URL and ``Authorization`` of every request it receives. Each test asserts what the listener
received (no credentials, or nothing at all where regcopy refuses) and what the user sees.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import regcopy
from regcopy.registry import blobs
from servers.hostile_registry import HostileRegistry, describe

FAST = {"retries": 1, "backoff": 0.01, "backoff_max": 0.05}
IMAGE = "oci"  # the sample image: a config and two layers (200 KB, 64 KB)


@pytest.fixture
def hostile(tmp_path: Path) -> Iterator[HostileRegistry]:
    with HostileRegistry(tmp_path / "hostile") as reg:
        yield reg
        print("listener received:", describe(reg.seen))  # shown with -rA or on failure: the before/after record


@pytest.fixture
def hostile_tls(tmp_path: Path) -> Iterator[HostileRegistry]:
    with HostileRegistry(tmp_path / "hostile-tls", tls=True) as reg:
        yield reg
        print("listener received:", describe(reg.seen))


def client(reg: HostileRegistry, tmp_path: Path, **kwargs: Any) -> regcopy.Client:
    """A client whose only credentials are the hostile registry's, from an auth file (``--authfile``)."""
    authfile = reg.write_authfile(tmp_path / "auth.json")
    if reg.tls:
        settings = regcopy.RegistrySettings(scheme="https", ca_file=str(reg.write_ca(tmp_path / "ca.pem")), **FAST)
    else:
        settings = regcopy.RegistrySettings(scheme="http", **FAST)
    return regcopy.Client(authfile=str(authfile), settings={reg.host: settings}, **kwargs)


def assert_no_credentials(reg: HostileRegistry) -> None:
    assert reg.seen, "the listener was never reached"
    assert [s.auth for s in reg.seen] == [None] * len(reg.seen), describe(reg.seen)
    assert not any(s.url.startswith("/token") for s in reg.seen), "a token was fetched from the other origin"


def assert_copied(reg: HostileRegistry, layout: Path, repo: str, tag: str) -> None:
    from servers.images import layout_contents

    contents = layout_contents(layout, IMAGE)
    assert reg.tags[repo][tag] == contents.root.digest
    assert set(contents.blobs) <= reg.links[repo]
    for digest in contents.blobs:
        assert "sha256:" + __import__("hashlib").sha256(reg.blob(digest)).hexdigest() == digest


# ---------------------------------------------------------------------------------- listings


async def test_tags_link_to_another_origin_is_refused(
    hostile: HostileRegistry, tmp_path: Path, sample_layout: tuple[Path, dict[str, str]]
) -> None:
    hostile.put_image(sample_layout[0], IMAGE, "app", "a")
    hostile.script.tags_link = f'<{hostile.listener_url}/v2/app/tags/list?last=a>; rel="next"'
    async with client(hostile, tmp_path) as c:
        with pytest.raises(regcopy.ProtocolViolation) as info:
            await c.tags(f"{hostile.host}/app")
    assert hostile.seen == []  # the listing never continues on another host
    message = str(info.value)
    assert hostile.origin in message and hostile.listener_url in message
    assert "S3CRETpw" not in message


async def test_catalog_link_to_another_origin_is_refused(
    hostile: HostileRegistry, tmp_path: Path, sample_layout: tuple[Path, dict[str, str]]
) -> None:
    hostile.put_image(sample_layout[0], IMAGE, "link")
    hostile.script.catalog_link = f'<{hostile.listener_url}/v2/_catalog?last=link&n=1>; rel="next"'
    async with client(hostile, tmp_path) as c:
        with pytest.raises(regcopy.ProtocolViolation) as info:
            await c.catalog(hostile.host)
    assert hostile.seen == []
    assert hostile.origin in str(info.value) and hostile.listener_url in str(info.value)


async def test_same_origin_absolute_link_is_followed(
    hostile: HostileRegistry, tmp_path: Path, sample_layout: tuple[Path, dict[str, str]]
) -> None:
    # The rule refuses other origins, not absolute links: the registry's own absolute Link still works.
    hostile.put_image(sample_layout[0], IMAGE, "app", "a")
    hostile.put_image(sample_layout[0], IMAGE, "app", "b")
    hostile.script.tags_link = f'<{hostile.url}/v2/app/tags/list?last=a>; rel="next"'
    async with client(hostile, tmp_path) as c:
        assert await c.tags(f"{hostile.host}/app") == ["a", "b"]
    assert hostile.seen == []


# ---------------------------------------------------------------------------------- uploads


@pytest.mark.parametrize(
    ("strategy", "methods"),
    [("stream", {"PATCH", "PUT"}), ("chunked", {"PATCH", "PUT"}), ("monolithic", {"PUT"})],
)
async def test_upload_location_on_another_origin_gets_no_credentials(
    strategy: str, methods: set[str], hostile: HostileRegistry, tmp_path: Path,
    sample_layout: tuple[Path, dict[str, str]],
) -> None:
    """A storage back end that needs no credentials keeps working; it never sees the registry's."""
    layout = sample_layout[0]
    hostile.script.upload_location = hostile.listener_url + "/v2/{repo}/blobs/uploads/{uuid}"
    policy = (regcopy.UploadPolicy() if strategy == "monolithic"
              else regcopy.UploadPolicy(strategy=strategy, chunk_size=64 * 1024, small_blob=0))  # type: ignore[arg-type]
    async with client(hostile, tmp_path, upload=policy) as c:
        await c.copy(f"oci:{layout}:{IMAGE}", f"{hostile.host}/dst/app:v1")
    assert_no_credentials(hostile)
    assert {s.method for s in hostile.seen} == methods
    assert_copied(hostile, layout, "dst/app", "v1")


@pytest.mark.parametrize("strategy", ["stream", "chunked", "monolithic"])
async def test_upload_location_that_demands_credentials_fails_naming_both_origins(
    strategy: str, hostile: HostileRegistry, tmp_path: Path, sample_layout: tuple[Path, dict[str, str]]
) -> None:
    # The listener answers 401 with a Bearer challenge whose realm is itself: neither the credentials
    # nor a token request may reach it (the chunked PATCH is replayable, so a 401 there once fetched a
    # token from the foreign realm with the registry's Basic credentials).
    hostile.script.upload_location = hostile.listener_url + "/v2/{repo}/blobs/uploads/{uuid}"
    hostile.listener_mode = "deny-bearer"
    policy = (regcopy.UploadPolicy(restarts=0) if strategy == "monolithic"
              else regcopy.UploadPolicy(strategy=strategy, chunk_size=64 * 1024, small_blob=0,  # type: ignore[arg-type]
                                        restarts=0))
    async with client(hostile, tmp_path, upload=policy) as c:
        with pytest.raises(regcopy.AuthenticationError) as info:
            await c.copy(f"oci:{sample_layout[0]}:{IMAGE}", f"{hostile.host}/dst/app:v1")
    assert_no_credentials(hostile)
    message = str(info.value)
    assert hostile.origin in message and hostile.listener_url in message
    assert "dst/app" not in hostile.tags


async def test_https_registry_upload_location_on_plain_http_is_refused(
    hostile_tls: HostileRegistry, tmp_path: Path, sample_layout: tuple[Path, dict[str, str]]
) -> None:
    """https → http on the same host is a downgrade: refused before any byte is sent."""
    reg = hostile_tls
    reg.script.upload_location = reg.listener_url + "/v2/{repo}/blobs/uploads/{uuid}"
    async with client(reg, tmp_path) as c:
        with pytest.raises(regcopy.ProtocolViolation) as info:
            await c.copy(f"oci:{sample_layout[0]}:{IMAGE}", f"{reg.host}/dst/app:v1")
    assert reg.seen == []
    message = str(info.value)
    assert reg.origin in message and reg.listener_url in message and "downgrade" in message


async def test_session_requests_through_a_foreign_location_carry_no_credentials(
    hostile: HostileRegistry, tmp_path: Path
) -> None:
    """Status GET and DELETE of a session whose Location is on another origin (the journal and the
    resume path use these)."""
    hostile.script.upload_location = hostile.listener_url + "/v2/{repo}/blobs/uploads/{uuid}"
    async with client(hostile, tmp_path) as c:
        t = c.transport(hostile.host)
        location, _ = await blobs.upload_start(t, "app")
        assert location.startswith(hostile.listener_url)
        newest, held = await blobs.upload_status(t, "app", location)
        assert newest.startswith(hostile.listener_url) and held == 1  # 2.8.2-style "0-0" for an empty session
        assert await blobs.upload_cancel(t, "app", newest)
    assert_no_credentials(hostile)
    assert [s.method for s in hostile.seen] == ["GET", "DELETE"]


async def test_mount_answered_with_a_foreign_session_is_closed_without_credentials(
    hostile: HostileRegistry, tmp_path: Path, sample_layout: tuple[Path, dict[str, str]]
) -> None:
    layout = sample_layout[0]
    hostile.put_image(layout, IMAGE, "src/app")
    hostile.script.mount_location = hostile.listener_url + "/v2/{repo}/blobs/uploads/{uuid}"
    async with client(hostile, tmp_path) as c:
        await c.copy(f"{hostile.host}/src/app:{IMAGE}", f"{hostile.host}/dst/app:v1")
    assert_no_credentials(hostile)
    assert {s.method for s in hostile.seen} == {"DELETE"}  # the session each refused mount opened
    assert_copied(hostile, layout, "dst/app", "v1")


# ---------------------------------------------------------------------------------- redirects


async def test_blob_redirect_to_another_origin_gets_no_credentials(
    hostile: HostileRegistry, tmp_path: Path, sample_layout: tuple[Path, dict[str, str]]
) -> None:
    hostile.put_image(sample_layout[0], IMAGE, "src/app")
    hostile.script.blob_redirect = hostile.listener_url + "/v2/{repo}/blobs/{digest}"
    async with client(hostile, tmp_path) as c:
        await c.copy(f"{hostile.host}/src/app:{IMAGE}", f"oci:{tmp_path / 'out'}:v1")
    assert_no_credentials(hostile)
    assert {s.method for s in hostile.seen} == {"GET"} and len(hostile.seen) == 3


async def test_manifest_redirect_to_another_origin_is_followed_without_credentials(
    hostile: HostileRegistry, tmp_path: Path, sample_layout: tuple[Path, dict[str, str]]
) -> None:
    digest = hostile.put_image(sample_layout[0], IMAGE, "src/app")
    hostile.script.manifest_redirect = hostile.listener_url + "/v2/{repo}/manifests/{ref}"
    async with client(hostile, tmp_path) as c:
        result = await c.copy(f"{hostile.host}/src/app:{IMAGE}", f"oci:{tmp_path / 'out'}:v1")
    assert str(result.digest) == digest
    assert_no_credentials(hostile)
    assert all("/manifests/" in s.url for s in hostile.seen)


async def test_redirect_to_an_origin_that_demands_credentials_fails_naming_both(
    hostile: HostileRegistry, tmp_path: Path, sample_layout: tuple[Path, dict[str, str]]
) -> None:
    # A blob GET is replayable: its 401 once made regcopy fetch a token from the foreign realm with the
    # registry's Basic credentials.
    hostile.put_image(sample_layout[0], IMAGE, "src/app")
    hostile.script.blob_redirect = hostile.listener_url + "/v2/{repo}/blobs/{digest}"
    hostile.listener_mode = "deny-bearer"
    async with client(hostile, tmp_path) as c:
        with pytest.raises(regcopy.AuthenticationError) as info:
            await c.copy(f"{hostile.host}/src/app:{IMAGE}", f"oci:{tmp_path / 'out'}:v1")
    assert_no_credentials(hostile)
    assert hostile.origin in str(info.value) and hostile.listener_url in str(info.value)


async def test_https_registry_redirect_to_plain_http_is_refused(
    hostile_tls: HostileRegistry, tmp_path: Path, sample_layout: tuple[Path, dict[str, str]]
) -> None:
    reg = hostile_tls
    reg.put_image(sample_layout[0], IMAGE, "src/app")
    reg.script.blob_redirect = reg.listener_url + "/v2/{repo}/blobs/{digest}"
    async with client(reg, tmp_path) as c:
        with pytest.raises(regcopy.ProtocolViolation) as info:
            await c.copy(f"{reg.host}/src/app:{IMAGE}", f"oci:{tmp_path / 'out'}:v1")
    assert reg.seen == []
    assert "downgrade" in str(info.value) and reg.listener_url in str(info.value)


@pytest.mark.parametrize("location", ["http://[bad/x", "http://127.0.0.1:99999/x", "ftp://127.0.0.1/x", "http://user@/x"])
async def test_malformed_redirect_is_a_protocol_violation(
    location: str, hostile: HostileRegistry, tmp_path: Path, sample_layout: tuple[Path, dict[str, str]]
) -> None:
    hostile.put_image(sample_layout[0], IMAGE, "src/app")
    hostile.script.blob_redirect = location
    async with client(hostile, tmp_path) as c:
        with pytest.raises(regcopy.ProtocolViolation):
            await c.copy(f"{hostile.host}/src/app:{IMAGE}", f"oci:{tmp_path / 'out'}:v1")


# ---------------------------------------------------------------------------------- the CLI


def run_cli(args: list[str], authfile: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REGISTRY_AUTH_FILE": str(authfile)}
    return subprocess.run([sys.executable, "-m", "regcopy", *args], capture_output=True, text=True, env=env,
                          timeout=60)


def test_cli_ls_refuses_a_foreign_link_with_one_line(
    hostile: HostileRegistry, tmp_path: Path, sample_layout: tuple[Path, dict[str, str]]
) -> None:
    hostile.put_image(sample_layout[0], IMAGE, "app", "a")
    hostile.script.tags_link = f'<{hostile.listener_url}/v2/app/tags/list?last=a>; rel="next"'
    done = run_cli(["ls", f"{hostile.host}/app"], hostile.write_authfile(tmp_path / "auth.json"))
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert hostile.listener_url in done.stderr and hostile.origin in done.stderr
    assert hostile.seen == []


def test_cli_malformed_redirect_is_one_line_not_a_traceback(
    hostile: HostileRegistry, tmp_path: Path, sample_layout: tuple[Path, dict[str, str]]
) -> None:
    hostile.put_image(sample_layout[0], IMAGE, "src/app")
    hostile.script.blob_redirect = "http://[bad/x"
    done = run_cli(["copy", f"{hostile.host}/src/app:{IMAGE}", f"oci:{tmp_path / 'out'}:v1"],
                   hostile.write_authfile(tmp_path / "auth.json"))
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and "regcopy:" in done.stderr
