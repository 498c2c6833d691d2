"""Housekeeping verbs against real registries: catalog, manifest, inspect, tag, delete (library and CLI)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import regcopy
from conftest import make_client  # type: ignore[import-not-found]
from servers import skopeo
from servers.registry import RegistryServer


def cli(*args: str, authfile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "regcopy", *args, "--authfile", str(authfile)],
                          capture_output=True, text=True, timeout=120, check=False)


async def test_catalog_manifest_inspect(any_registry: RegistryServer, seed: Any) -> None:
    index_digest = seed(any_registry, "multi", "lib/multi", "v1")
    seed(any_registry, "oci", "lib/app", "v1")
    async with make_client(any_registry) as client:
        assert await client.catalog(any_registry.host) == ["lib/app", "lib/multi"]
        raw = await client.manifest(f"{any_registry.host}/lib/multi:v1")
        assert str(raw.digest) == index_digest and raw.is_index
        arm = await client.manifest(f"{any_registry.host}/lib/multi:v1", platform="linux/arm64")
        assert not arm.is_index and arm.digest in {d.digest for d in raw.manifests}
        info = await client.inspect(f"{any_registry.host}/lib/app:v1")
    assert (info.os, info.architecture) == ("linux", "amd64")
    assert info.labels == {"kind": "oci"} and info.created == "2024-01-01T00:00:00Z"
    assert len(info.layers) == 2 and info.total_size == sum(layer.size for layer in info.layers) > 0


async def test_inspect_an_index_picks_this_machines_platform_or_the_asked_one(
    http_registry: RegistryServer, seed: Any
) -> None:
    seed(http_registry, "multi", "lib/multi", "v1")
    async with make_client(http_registry) as client:
        default = await client.inspect(f"{http_registry.host}/lib/multi:v1")
        arm = await client.inspect(f"{http_registry.host}/lib/multi:v1", platform="linux/arm/v7")
        with pytest.raises(regcopy.InvalidManifest, match="windows/amd64"):
            await client.inspect(f"{http_registry.host}/lib/multi:v1", platform="windows/amd64")
    assert (default.os, default.architecture) == (regcopy.client.host_platform().os,
                                                  regcopy.client.host_platform().architecture)
    assert (arm.architecture, arm.variant) == ("arm", "v7")


async def test_tag_is_one_manifest_put_without_blob_traffic(http_registry: RegistryServer, seed: Any) -> None:
    digest = seed(http_registry, "multi", "lib/multi", "v1")
    before = len(http_registry.access_log())
    async with make_client(http_registry) as client:
        assert str(await client.tag(f"{http_registry.host}/lib/multi:v1", "stable")) == digest
    new = http_registry.access_log()[before:]
    assert [e.method for e in new if e.method not in ("GET", "HEAD")] == ["PUT"]
    assert not [e for e in new if "/blobs/" in e.route]
    skopeo.verify(http_registry, "lib/multi:stable", digest)


async def test_delete_resolves_the_tag_and_reports_every_tag_on_the_digest(
    delete_registry: RegistryServer, seed: Any
) -> None:
    digest = seed(delete_registry, "oci", "lib/app", "v1")
    seed(delete_registry, "oci", "lib/app", "latest")
    seed(delete_registry, "docker", "lib/app", "other")
    async with make_client(delete_registry) as client:
        result = await client.delete(f"{delete_registry.host}/lib/app:v1")
        assert result.digest == digest and result.tags == ["latest", "v1"]
        assert await client.tags(f"{delete_registry.host}/lib/app") == ["other"]
        with pytest.raises(regcopy.ManifestNotFound):
            await client.delete(f"{delete_registry.host}/lib/app:v1")


async def test_delete_on_a_registry_with_deletes_disabled_is_a_clear_error(
    http_registry: RegistryServer, seed: Any
) -> None:
    seed(http_registry, "oci", "lib/app", "v1")
    async with make_client(http_registry) as client:
        with pytest.raises(regcopy.Unsupported, match="deletes are disabled"):
            await client.delete(f"{http_registry.host}/lib/app:v1")
        assert await client.tags(f"{http_registry.host}/lib/app") == ["v1"]


def test_cli_verbs(delete_registry: RegistryServer, seed: Any, empty_authfile: Path) -> None:
    host = delete_registry.host
    digest = seed(delete_registry, "oci", "lib/app", "v1")
    seed(delete_registry, "multi", "lib/multi", "v1")
    out = cli("catalog", host, "-o", "json", "--filter", "lib/.*", authfile=empty_authfile)
    assert json.loads(out.stdout) == ["lib/app", "lib/multi"], out.stderr
    raw = subprocess.run([sys.executable, "-m", "regcopy", "manifest", f"{host}/lib/app:v1", "--authfile",
                          str(empty_authfile)], capture_output=True, timeout=60, check=True).stdout
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == digest  # byte for byte
    pretty = cli("manifest", f"{host}/lib/multi:v1", "--platform", "linux/arm64", "--pretty", authfile=empty_authfile)
    assert json.loads(pretty.stdout)["mediaType"] == regcopy.manifest.OCI_MANIFEST
    info = json.loads(cli("inspect", f"{host}/lib/app:v1", "-o", "json", authfile=empty_authfile).stdout)
    assert info["digest"] == digest and info["labels"] == {"kind": "oci"}
    tagged = cli("tag", f"{host}/lib/app:v1", "prod", authfile=empty_authfile)
    assert tagged.returncode == 0 and digest in tagged.stdout
    # v1 shares prod's digest: listed, and nothing is deleted without --yes.
    refused = cli("delete", f"{host}/lib/app:prod", authfile=empty_authfile)
    assert refused.returncode == 2 and "also tagged v1" in refused.stderr and "--yes" in refused.stderr
    assert cli("digest", f"{host}/lib/app:prod", authfile=empty_authfile).stdout.strip() == digest
    preview = cli("delete", "--dry-run", f"{host}/lib/app:prod", authfile=empty_authfile)
    assert preview.returncode == 0 and "would delete" in preview.stdout and "prod, v1" in preview.stdout
    assert cli("digest", f"{host}/lib/app:v1", authfile=empty_authfile).stdout.strip() == digest  # still there
    deleted = cli("delete", "--yes", f"{host}/lib/app:prod", authfile=empty_authfile)
    assert deleted.returncode == 0, deleted.stderr
    assert "prod, v1" in deleted.stdout  # the user is told that every tag on the digest went
    missing = cli("inspect", f"{host}/lib/app:v1", authfile=empty_authfile)
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
