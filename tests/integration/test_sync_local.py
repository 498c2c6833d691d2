"""Sync plans with local stores (docs/architecture.md#bulk-sync-sync): export many repositories into one OCI layout or
oci-archive for an air-gapped transfer, import them on the other side with the plan reversed."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import blob_uploads, make_client  # type: ignore[import-not-found]
from regcopy.sync import SyncOptions, parse_plan
from servers import skopeo
from servers.registry import RegistryServer

IMAGES = [("shared-a", "apps/a", "v1"), ("shared-b", "apps/b", "v1"), ("multi", "apps/multi", "v1"),
          ("shared-a", "apps/a", "v2"), ("oci", "tools/one", "v1")]


def _fill(server: RegistryServer, seed: Any) -> dict[str, str]:
    return {f"{repo}:{tag}": seed(server, sample, repo, tag) for sample, repo, tag in IMAGES}


def _registries(*servers: RegistryServer) -> dict[str, Any]:
    return {s.host: {"tls": "http"} for s in servers}


@pytest.mark.parametrize("transport, name", [("oci", "layout"), ("oci-archive", "export.tar")])
async def test_export_to_one_store_and_import_with_the_plan_reversed(
    transport: str, name: str, http_registry: RegistryServer, registry_factory: Any, seed: Any, tmp_path: Path
) -> None:
    digests = _fill(http_registry, seed)
    store = f"{transport}:{tmp_path / name}"
    export = parse_plan({"registries": _registries(http_registry), "sync": [
        {"source": f"{http_registry.host}/apps", "type": "namespace", "target": f"{store}:apps"},
        {"source": f"{http_registry.host}/tools/one", "target": f"{store}:tools/one"},
    ]})
    async with make_client(http_registry) as client:
        report = await client.sync(export, options=SyncOptions())
    assert report.ok and {r.status for r in report.images} == {"copied"} and len(report.images) == 5
    assert {r.target for r in report.images} == {f"{store}:{ref}" for ref in digests}

    # One store, every image by its full ref; shared blobs stored once; skopeo reads it.
    if transport == "oci":
        index = json.loads((tmp_path / name / "index.json").read_text())
        refs = {m["annotations"]["org.opencontainers.image.ref.name"]: m["digest"] for m in index["manifests"]}
        assert refs == digests
    for ref, digest in digests.items():
        raw = skopeo.run_skopeo("inspect", "--raw", f"{store}:{ref}").stdout
        assert hashlib.sha256(raw).hexdigest() == digest.removeprefix("sha256:")

    # The other side of the air gap: the same plan, source and target swapped.
    other = registry_factory("http")
    back = parse_plan({"registries": _registries(other), "sync": [
        {"source": f"{store}:apps", "type": "namespace", "target": f"{other.host}/apps"},
        {"source": f"{store}:tools/one", "target": f"{other.host}/tools/one"},
    ]})
    async with make_client(other) as client:
        report = await client.sync(back, options=SyncOptions())
        assert report.ok and len(report.images) == 5
        for ref, digest in digests.items():
            assert str(await client.digest(f"{other.host}/{ref}")) == digest
    for ref, digest in digests.items():
        skopeo.verify(other, ref, digest)
    # Each blob crossed once into the registry, the rest were mounted.
    assert max(Counter(blob_uploads(other)).values()) == 1
    async with make_client(other) as client:
        again = await client.sync(back, options=SyncOptions())
    assert again.ok and {r.status for r in again.images} == {"up-to-date"}


async def test_a_layout_target_is_incremental_and_keeps_other_images(
    http_registry: RegistryServer, seed: Any, tmp_path: Path
) -> None:
    digests = _fill(http_registry, seed)
    layout = tmp_path / "layout"
    skopeo.run_skopeo("copy", "--src-tls-verify=false", f"docker://{http_registry.host}/tools/one:v1",
                      f"oci:{layout}:keep-me")  # someone else's image in the same layout
    plan = parse_plan({"registries": _registries(http_registry), "sync": [
        {"source": f"{http_registry.host}", "type": "registry", "target": f"oci:{layout}"}]})
    async with make_client(http_registry) as client:
        first = await client.sync(plan, options=SyncOptions())
        assert first.ok and len(first.images) == 5
        second = await client.sync(plan, options=SyncOptions())
    assert {r.status for r in second.images} == {"up-to-date"}
    index = json.loads((layout / "index.json").read_text())
    names = sorted(m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"])
    assert names == sorted(["keep-me", *digests])
    # Every file under blobs/ is a complete, verified blob named by its digest: no temp file left.
    for blob in (layout / "blobs" / "sha256").iterdir():
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name


def test_cli_export_and_dry_run(http_registry: RegistryServer, seed: Any, tmp_path: Path,
                                empty_authfile: Path) -> None:
    _fill(http_registry, seed)
    layout = tmp_path / "out"
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump({"registries": _registries(http_registry), "sync": [
        {"source": f"{http_registry.host}/apps", "type": "namespace", "target": f"oci:{layout}"}]}))
    run = [sys.executable, "-m", "regcopy", "sync", str(plan), "--authfile", str(empty_authfile), "--progress", "none"]
    dry = subprocess.run([*run, "--dry-run"], capture_output=True, text=True, timeout=120, check=False)
    assert dry.returncode == 1 and "PLAN" in dry.stdout, dry.stderr  # out of sync, nothing written
    assert not (layout / "index.json").exists()
    done = subprocess.run(run, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert skopeo.run_skopeo("inspect", "--raw", f"oci:{layout}:a:v2").stdout


@pytest.mark.parametrize("entry, message", [
    ({"source": "oci:/x:apps/a:v1", "target": "r.example/a"}, "cannot carry a tag"),
    ({"source": "docker-archive:/x.tar:@0", "type": "namespace", "target": "r.example/a"}, "source index"),
    ({"source": "oci:", "target": "r.example/a"}, "empty path"),
    ({"source": "oci:/x", "type": "namespace", "target": "oci:/y:Bad Name"}, "invalid target"),
])
def test_bad_local_entries_are_config_errors(entry: dict[str, str], message: str) -> None:
    import regcopy

    with pytest.raises(regcopy.ConfigError, match=message):
        parse_plan({"sync": [entry]})
