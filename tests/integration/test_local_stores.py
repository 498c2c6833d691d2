"""Local stores against real registries and skopeo: layouts and archives in both directions.

regcopy's stores sit on the local side, a ``Client.registry_store`` on the registry side, and
``regcopy.engine.copy_image`` moves the bytes; skopeo (c/image) is the independent reader and writer.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

import regcopy
from conftest import make_client  # type: ignore[import-not-found]
from regcopy.engine import CopyResult, copy_image
from regcopy.manifest import Platform
from regcopy.reference import LocalLocation
from regcopy.stores.dockerarchive import DockerArchiveStore
from regcopy.stores.local import local_identifier, open_local
from servers import skopeo
from servers.registry import RegistryServer

pytestmark = pytest.mark.skopeo


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def _pull(server: RegistryServer, ref: str, location: str, tag: str | None, **kw: Any) -> CopyResult:
    """Registry ``repo:tag`` → local ``location`` with the engine."""
    repo, _, src_tag = ref.rpartition(":")
    loc = LocalLocation.parse(location)
    async with make_client(server) as client, open_local(loc, writable=True) as dst:
        src = client.registry_store(regcopy.Repository.parse(f"{server.host}/{repo}"))
        return await copy_image(src, dst, src_tag, target_tag=tag, **kw)


async def _push(location: str, server: RegistryServer, ref: str) -> tuple[CopyResult, bool]:
    """Local ``location`` → registry ``repo:tag``; also says whether the manifest was synthesised."""
    repo, _, tag = ref.rpartition(":")
    loc = LocalLocation.parse(location)
    async with make_client(server) as client, open_local(loc, writable=False) as src:
        dst = client.registry_store(regcopy.Repository.parse(f"{server.host}/{repo}"), writable=True)
        result = await copy_image(src, dst, await local_identifier(loc, src), target_tag=tag)
        return result, isinstance(src, DockerArchiveStore) and src.synthesized


def _skopeo_digest(location: str) -> str:
    return _sha(skopeo.run_skopeo("inspect", "--raw", location).stdout)


def _config_digest(raw: bytes) -> str:
    return str(json.loads(raw)["config"]["digest"])


@pytest.mark.parametrize("sample", ["multi", "docker"])
async def test_registry_layout_archive_registry_keeps_digests(
    sample: str, http_registry: RegistryServer, seed: Any, tmp_path: Path
) -> None:
    digest = seed(http_registry, sample, "src/app")
    layout, archive = tmp_path / "layout", tmp_path / "app.tar"
    assert (await _pull(http_registry, f"src/app:{sample}", f"oci:{layout}:{sample}", sample)).digest == digest
    # A multi-platform index is one top-level entry; its children are reachable from it.
    index = json.loads((layout / "index.json").read_text())
    assert [e["digest"] for e in index["manifests"]] == [digest]
    if sample == "docker":
        # Docker schema 2 bytes are kept (digests preserved, as ggcr and regclient do); c/image only
        # looks at OCI-typed index.json entries (oci/layout/reference.go getManifestDescriptor), so
        # skopeo cannot see this image, while skopeo itself would have converted it to OCI.
        with pytest.raises(skopeo.SkopeoError, match="no descriptor found"):
            _skopeo_digest(f"oci:{layout}:{sample}")
    else:
        assert _skopeo_digest(f"oci:{layout}:{sample}") == digest

    async with open_local(LocalLocation.parse(f"oci:{layout}:{sample}"), writable=False) as src, \
            open_local(LocalLocation.parse(f"oci-archive:{archive}:{sample}"), writable=True) as dst:
        assert (await copy_image(src, dst, sample, target_tag=sample)).digest == digest

    result, synthesized = await _push(f"oci-archive:{archive}:{sample}", http_registry, f"dst/app:{sample}")
    assert result.digest == result.source_digest == digest and not synthesized
    skopeo.verify(http_registry, f"dst/app:{sample}", digest)


async def test_skopeo_reads_what_regcopy_writes(
    http_registry: RegistryServer, seed: Any, tmp_path: Path
) -> None:
    digest = seed(http_registry, "oci", "src/app")
    multi = seed(http_registry, "multi", "src/app")
    raw = skopeo.inspect_raw(http_registry, "src/app:oci")
    layout, oci_tar, docker_tar = tmp_path / "layout", tmp_path / "oci.tar", tmp_path / "docker.tar"
    await _pull(http_registry, "src/app:oci", f"oci:{layout}:repo:v1", "repo:v1")  # c/image image names
    await _pull(http_registry, "src/app:multi", f"oci-archive:{oci_tar}:multi", "multi")
    await _pull(http_registry, "src/app:oci", f"docker-archive:{docker_tar}:example/app:v1", None)
    arm = await _pull(http_registry, "src/app:multi", f"docker-archive:{tmp_path / 'arm.tar'}:arm:1", None,
                      platforms=[Platform.parse("linux/arm64")])

    assert _skopeo_digest(f"oci:{layout}:repo:v1") == digest
    dest = http_registry.skopeo_flags("dest")
    skopeo.run_skopeo("copy", "--all", *dest, f"oci-archive:{oci_tar}:multi",
                      skopeo.docker_ref(http_registry, "from-skopeo/oci-archive:multi"))
    skopeo.verify(http_registry, "from-skopeo/oci-archive:multi", multi)

    # c/image reads gzip layer files in a docker-archive (it decompresses them, tarfile/src.go) and
    # builds its own manifest: a new digest, the same config.
    skopeo.run_skopeo("copy", *dest, f"docker-archive:{docker_tar}",
                      skopeo.docker_ref(http_registry, "from-skopeo/docker-archive:v1"))
    pushed = skopeo.verify(http_registry, "from-skopeo/docker-archive:v1")
    assert _config_digest(pushed) == _config_digest(raw)
    with tarfile.open(docker_tar) as tar:
        member = tar.extractfile("manifest.json")
        assert member is not None
        assert json.load(member)[0]["RepoTags"] == ["example/app:v1"]
    skopeo.run_skopeo("inspect", f"docker-archive:{docker_tar}:example/app:v1")  # c/image finds it by RepoTag
    arm_raw = skopeo.run_skopeo("inspect", "--raw", f"docker-archive:{tmp_path / 'arm.tar'}:arm:1").stdout
    assert _config_digest(arm_raw) == _config_digest(skopeo.inspect_raw(http_registry, f"src/app@{arm.digest}"))


async def test_regcopy_reads_what_skopeo_writes(
    http_registry: RegistryServer, seed: Any, tmp_path: Path
) -> None:
    oci_digest = seed(http_registry, "oci", "src/app")
    seed(http_registry, "docker", "src/app")
    src = http_registry.skopeo_flags("src")
    layout, oci_tar, docker_tar = tmp_path / "layout", tmp_path / "oci.tar", tmp_path / "docker.tar"
    multi = seed(http_registry, "multi", "src/app")
    skopeo.run_skopeo("copy", *src, skopeo.docker_ref(http_registry, "src/app:oci"), f"oci:{layout}:tag")
    skopeo.run_skopeo("copy", "--all", *src, skopeo.docker_ref(http_registry, "src/app:multi"), f"oci:{layout}:multi")
    skopeo.run_skopeo("copy", *src, skopeo.docker_ref(http_registry, "src/app:oci"), f"oci-archive:{oci_tar}:tag")
    skopeo.run_skopeo("copy", *src, skopeo.docker_ref(http_registry, "src/app:docker"),
                      f"docker-archive:{docker_tar}:example/app:v1")

    for location, repo in [(f"oci:{layout}:tag", "from-layout"), (f"oci-archive:{oci_tar}", "from-oci-archive")]:
        result, synthesized = await _push(location, http_registry, f"{repo}/app:tag")
        assert result.digest == oci_digest and not synthesized
        skopeo.verify(http_registry, f"{repo}/app:tag", oci_digest)

    result, _ = await _push(f"oci:{layout}:multi", http_registry, "from-layout/app:multi")
    assert result.digest == multi
    skopeo.verify(http_registry, "from-layout/app:multi", multi)

    # A classic docker-archive has no manifest: regcopy builds a schema 2 one (new digest, same config).
    result, synthesized = await _push(f"docker-archive:{docker_tar}:example/app:v1", http_registry,
                                      "from-docker-archive/app:v1")
    assert synthesized and result.digest == result.source_digest
    pushed = skopeo.verify(http_registry, "from-docker-archive/app:v1", result.digest)
    assert json.loads(pushed)["mediaType"] == regcopy.manifest.DOCKER_MANIFEST
    assert _config_digest(pushed) == _config_digest(skopeo.inspect_raw(http_registry, "src/app:docker"))
