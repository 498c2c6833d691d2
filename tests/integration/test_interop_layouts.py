"""``format=`` (``--format oci|v2s2``) against the tools that read OCI layouts: umoci and skopeo.

umoci and c/image's ``oci:`` transport read only OCI-typed manifests in a layout: a Docker schema 2
image copied as is can be listed, not unpacked, and ``umoci gc`` deletes its config and layers (it
does not follow a Docker-typed manifest). Converted with ``format="oci"`` the same image unpacks, keeps
its blobs through ``umoci gc`` and goes back to a registry with skopeo. ``preserve_digests`` refuses
every copy that would change digests, before writing anything.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import regcopy
from conftest import Seeder, make_client  # type: ignore[import-not-found]
from servers import skopeo
from servers.oci_tools import ToolError, run_umoci, umoci_available
from servers.registry import RegistryServer

pytestmark = pytest.mark.skopeo
needs_umoci = pytest.mark.skipif(not umoci_available(), reason="umoci is not installed (scripts/setup.sh)")


def _blobs(layout: Path) -> set[str]:
    return {p.name for p in (layout / "blobs" / "sha256").iterdir()}


async def _export(server: RegistryServer, ref: str, location: str, **kwargs: object) -> regcopy.CopyResult:
    async with make_client(server) as client:
        return await client.copy(f"{server.host}/{ref}", location, **kwargs)  # type: ignore[arg-type]


@needs_umoci
async def test_a_docker_image_exported_with_format_oci_unpacks_and_survives_umoci_gc(
        http_registry: RegistryServer, seed: Seeder, tmp_path: Path) -> None:
    source_digest = seed(http_registry, "docker", "interop/docker", "v1")
    layout = tmp_path / "layout"
    result = await _export(http_registry, "interop/docker:v1", f"oci:{layout}:v1", format="oci")
    assert result.new_digest and result.source_digest == source_digest and result.digest != source_digest
    index = json.loads((layout / "index.json").read_bytes())
    assert [(e["mediaType"], e["digest"]) for e in index["manifests"]] == [
        ("application/vnd.oci.image.manifest.v1+json", result.digest)]

    assert run_umoci("ls", "--layout", str(layout)).split() == ["v1"]
    run_umoci("unpack", "--rootless", "--image", f"{layout}:v1", str(tmp_path / "bundle"))
    assert (tmp_path / "bundle" / "rootfs").is_dir() and any((tmp_path / "bundle" / "rootfs").iterdir())
    before = _blobs(layout)
    run_umoci("gc", "--layout", str(layout))
    assert _blobs(layout) == before  # every blob is reachable through OCI-typed manifests

    # skopeo (c/image's oci: transport) reads it back; the config and layers are the original ones.
    skopeo.run_skopeo("copy", *http_registry.skopeo_flags("dest"), f"oci:{layout}:v1",
                      skopeo.docker_ref(http_registry, "interop/back:v1"))
    original = json.loads(skopeo.inspect_raw(http_registry, "interop/docker:v1"))
    back = json.loads(skopeo.inspect_raw(http_registry, "interop/back:v1"))
    assert back["config"]["digest"] == original["config"]["digest"]
    assert [x["digest"] for x in back["layers"]] == [x["digest"] for x in original["layers"]]


@needs_umoci
async def test_without_format_umoci_cannot_unpack_and_gc_deletes_the_blobs(
        http_registry: RegistryServer, seed: Seeder, tmp_path: Path) -> None:
    """What the README warns about: digests preserved, but the layout is only for Docker-aware readers."""
    source_digest = seed(http_registry, "docker", "interop/docker", "v1")
    layout = tmp_path / "layout"
    result = await _export(http_registry, "interop/docker:v1", f"oci:{layout}:v1")
    assert result.digest == source_digest and not result.new_digest
    with pytest.raises(ToolError, match=r"not implemented: application/vnd\.docker\.distribution\.manifest\.v2"):
        run_umoci("unpack", "--rootless", "--image", f"{layout}:v1", str(tmp_path / "bundle"))
    run_umoci("gc", "--layout", str(layout))
    assert _blobs(layout) == {source_digest.split(":", 1)[1]}  # config and layers deleted


async def test_a_docker_list_exported_with_format_oci_is_read_by_skopeo(
        http_registry: RegistryServer, seed: Seeder, tmp_path: Path) -> None:
    """c/image's oci: transport skips index.json entries that are not OCI-typed ("no descriptor found");
    converted, the whole list and its children go back to a registry with ``skopeo copy --all``."""
    seed(http_registry, "dockerlist", "interop/list", "v1")
    plain, converted = tmp_path / "plain", tmp_path / "converted"
    await _export(http_registry, "interop/list:v1", f"oci:{plain}:v1")
    with pytest.raises(skopeo.SkopeoError):
        skopeo.run_skopeo("copy", "--all", *http_registry.skopeo_flags("dest"), f"oci:{plain}:v1",
                          skopeo.docker_ref(http_registry, "interop/plain:v1"))
    result = await _export(http_registry, "interop/list:v1", f"oci:{converted}:v1", format="oci")
    skopeo.run_skopeo("copy", "--all", "--preserve-digests", *http_registry.skopeo_flags("dest"),
                      f"oci:{converted}:v1", skopeo.docker_ref(http_registry, "interop/converted:v1"))
    index = json.loads(skopeo.verify(http_registry, "interop/converted:v1", result.digest))
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert {m["mediaType"] for m in index["manifests"]} == {"application/vnd.oci.image.manifest.v1+json"}


async def test_format_v2s2_between_registries_keeps_every_blob(http_registry: RegistryServer, seed: Seeder) -> None:
    seed(http_registry, "multi", "interop/multi", "v1")
    result = await _export(http_registry, "interop/multi:v1", f"{http_registry.host}/interop/v2s2:v1", format="v2s2")
    assert result.new_digest
    converted = json.loads(skopeo.verify(http_registry, "interop/v2s2:v1", result.digest))
    original = json.loads(skopeo.inspect_raw(http_registry, "interop/multi:v1"))
    assert converted["mediaType"] == "application/vnd.docker.distribution.manifest.list.v2+json"
    assert [m["platform"] for m in converted["manifests"]] == [m["platform"] for m in original["manifests"]]
    for new, old in zip(converted["manifests"], original["manifests"], strict=True):
        child = json.loads(skopeo.inspect_raw(http_registry, f"interop/v2s2@{new['digest']}"))
        was = json.loads(skopeo.inspect_raw(http_registry, f"interop/multi@{old['digest']}"))
        assert child["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
        assert child["config"]["mediaType"] == "application/vnd.docker.container.image.v1+json"
        assert [x["digest"] for x in child["layers"]] == [x["digest"] for x in was["layers"]]


async def test_format_already_met_changes_nothing(http_registry: RegistryServer, seed: Seeder) -> None:
    digest = seed(http_registry, "oci", "interop/oci", "v1")
    result = await _export(http_registry, "interop/oci:v1", f"{http_registry.host}/interop/same:v1", format="oci",
                           preserve_digests=True)
    assert result.digest == digest and not result.new_digest


@pytest.mark.parametrize(("sample", "kwargs", "why"), [
    ("docker", {"format": "oci"}, "converted to another format"),
    ("multi", {"platforms": ["linux/amd64", "linux/arm64"]}, "a platform subset of the index is a new index"),
])
async def test_preserve_digests_refuses_before_writing(http_registry: RegistryServer, seed: Seeder, tmp_path: Path,
                                                       sample: str, kwargs: dict[str, object], why: str) -> None:
    seed(http_registry, sample, "interop/src", "v1")
    with pytest.raises(regcopy.DigestsNotPreserved, match=why):
        await _export(http_registry, "interop/src:v1", f"oci:{tmp_path / 'out'}:v1", preserve_digests=True, **kwargs)
    assert not (tmp_path / "out").exists()


async def test_preserve_digests_refuses_a_classic_docker_archive(tmp_path: Path) -> None:
    from servers.docker_archives import ArchiveLayer, layer_tar, write_classic_archive

    archive = write_classic_archive(tmp_path / "a.tar", [ArchiveLayer(layer_tar({"f": b"x"}))])
    async with regcopy.Client() as client:
        with pytest.raises(regcopy.DigestsNotPreserved, match="built by regcopy"):
            await client.copy(f"docker-archive:{archive.path}", f"oci:{tmp_path / 'out'}:v1", preserve_digests=True)
    assert not (tmp_path / "out").exists()
