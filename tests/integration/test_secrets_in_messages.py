"""Secrets stay out of error text and logs (docs/security.md, "Redaction").

A redirected blob GET goes to a signed storage URL whose query (``X-Amz-Credential``,
``X-Amz-Signature``) is a credential; references may carry ``user:password@``. Whatever fails — the
storage refusing with a body that quotes the URL, an unreachable storage host, a URL regcopy refuses —
neither ``str``, ``repr``, the log nor the CLI's stderr may show them.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import regcopy
from servers.hostile_registry import HostileRegistry

SIGNED = "?X-Amz-Credential=AKIASECRETKEY%2F20250101&X-Amz-Signature=SIGSECRETSIG"
SECRETS = ("AKIASECRETKEY", "SIGSECRETSIG", "S3CRETpw")


@pytest.fixture
def hostile(tmp_path: Path, sample_layout: tuple[Path, dict[str, str]]) -> Iterator[HostileRegistry]:
    with HostileRegistry(tmp_path / "hostile") as reg:
        reg.put_image(sample_layout[0], "oci", "src/app")
        yield reg


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def assert_clean(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, text


def storage_url(reg: HostileRegistry, kind: str) -> str:
    if kind == "refusing-storage":  # 403 whose body quotes the signed URL
        reg.listener_mode = "echo-403"
        return reg.listener_url + "/blob/{digest}" + SIGNED
    if kind == "unreachable-storage":
        return f"http://127.0.0.1:{closed_port()}/blob/{{digest}}" + SIGNED
    if kind == "not-http":
        return "ftp://storage.example/blob/{digest}" + SIGNED
    return "http://[storage/blob/{digest}" + SIGNED  # malformed


KINDS = ["refusing-storage", "unreachable-storage", "not-http", "malformed"]


@pytest.mark.parametrize("kind", KINDS)
async def test_redirected_blob_get_error_hides_the_signed_query(
    kind: str, hostile: HostileRegistry, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hostile.script.blob_redirect = storage_url(hostile, kind)
    settings = {hostile.host: regcopy.RegistrySettings(scheme="http", retries=1, backoff=0.01, backoff_max=0.02)}
    caplog.set_level(logging.DEBUG, logger="regcopy")
    async with regcopy.Client(authfile=str(hostile.write_authfile(tmp_path / "auth.json")), settings=settings) as c:
        with pytest.raises(regcopy.RegistryError) as info:
            await c.copy(f"{hostile.host}/src/app:oci", f"oci:{tmp_path / 'out'}:v1")
    err = info.value
    assert_clean(str(err), repr(err), err.message, err.url or "", caplog.text)
    if kind == "refusing-storage":
        assert err.status == 403 and "AccessDenied" in str(err)  # the body still explains


@pytest.mark.parametrize("kind", KINDS)
def test_cli_error_hides_the_signed_query(kind: str, hostile: HostileRegistry, tmp_path: Path) -> None:
    hostile.script.blob_redirect = storage_url(hostile, kind)
    env = {**os.environ, "REGISTRY_AUTH_FILE": str(hostile.write_authfile(tmp_path / "auth.json"))}
    done = subprocess.run([sys.executable, "-m", "regcopy", "copy", "-vv", f"{hostile.host}/src/app:oci",
                           f"oci:{tmp_path / 'out'}:v1"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and "regcopy:" in done.stderr
    assert_clean(done.stdout, done.stderr)


@pytest.mark.parametrize("text", ["http://user:S3CRETpw@host/x:1", "https://user:S3CRETpw@registry.example/a b",
                                  "docker://user:S3CRETpw@registry.example/app@sha256:1"])
def test_reference_error_hides_userinfo(text: str, tmp_path: Path) -> None:
    with pytest.raises(regcopy.InvalidReference) as info:
        regcopy.Reference.parse(text)
    assert_clean(str(info.value), repr(info.value))
    assert "***@" in str(info.value)
    done = subprocess.run([sys.executable, "-m", "regcopy", "copy", text, f"oci:{tmp_path / 'out'}:v1"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert_clean(done.stderr)
