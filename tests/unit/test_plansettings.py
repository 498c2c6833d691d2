"""Tests for :mod:`regcopy.plansettings`: what a plan's ``registries:`` entry makes of a host's settings.

The parser itself is tested through the plans that carry the section (test_plan.py, test_retention_parse.py);
here the values: :meth:`RegistryConfig.over` (plan settings over a client's) and :meth:`Credentials.store`
(the store each credentials form names), answered by a real helper process and a real auth file.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from regcopy.credentials import Credential
from regcopy.plansettings import Credentials, RegistryConfig
from regcopy.registry import RegistrySettings

BASE = RegistrySettings(scheme="https", ca_file="/base/ca.pem", client_cert="/base/c.pem", client_key="/base/c.key",
                        max_concurrency=3, requests_per_second=5.0, retries=7)


@pytest.mark.parametrize(("config", "expected"), [
    # The plan's scheme mode always wins (auto included); everything it leaves out stays the client's.
    (RegistryConfig("reg.io"), RegistrySettings(
        scheme="auto", ca_file="/base/ca.pem", client_cert="/base/c.pem", client_key="/base/c.key",
        max_concurrency=3, requests_per_second=5.0, retries=7)),
    (RegistryConfig("reg.io", "http", ca_file="/plan/ca.pem", max_concurrency=9), RegistrySettings(
        scheme="http", ca_file="/plan/ca.pem", client_cert="/base/c.pem", client_key="/base/c.key",
        max_concurrency=9, requests_per_second=5.0, retries=7)),
    (RegistryConfig("reg.io", "insecure", client_cert="/p/c.pem", client_key="/p/c.key", requests_per_second=0.5),
     RegistrySettings(scheme="insecure", ca_file="/base/ca.pem", client_cert="/p/c.pem", client_key="/p/c.key",
                      max_concurrency=3, requests_per_second=0.5, retries=7)),
    (RegistryConfig("reg.io", "https", request_timeout=90.0), RegistrySettings(
        scheme="https", ca_file="/base/ca.pem", client_cert="/base/c.pem", client_key="/base/c.key",
        max_concurrency=3, requests_per_second=5.0, retries=7, request_timeout=90.0)),
])
def test_plan_settings_over_the_clients(config: RegistryConfig, expected: RegistrySettings) -> None:
    assert config.over(BASE) == expected


async def test_inline_credentials() -> None:
    store = Credentials(username="u", password="p").store("reg.io")
    assert await store.get("reg.io") == Credential("u", "p")
    token = Credentials(identity_token="refresh").store("reg.io")
    assert await token.get("reg.io") == Credential(identity_token="refresh")


async def test_an_auth_file(tmp_path: Path) -> None:
    auth = tmp_path / "auth.json"
    auth.write_text(json.dumps({"auths": {"reg.io": {"auth": base64.b64encode(b"alice:pw").decode()}}}))
    store = Credentials(authfile=str(auth)).store("reg.io")
    assert await store.get("reg.io") == Credential("alice", "pw")


async def test_a_helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    helper = tmp_path / "docker-credential-plan"
    answer = json.dumps({"Username": "bob", "Secret": "s3"})
    helper.write_text(f"#!/bin/sh\ntest \"$1\" = get || exit 9\ncat >/dev/null\nprintf '%s' '{answer}'\n")
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    store = Credentials(helper="plan", refresh_after=60).store("reg.io")
    assert await store.get("reg.io") == Credential("bob", "s3")
