"""Classic docker-archives as other tools write them, imported into a real registry and checked by
skopeo and podman: layer compression by magic bytes (plain tar, gzip, zstd) and the config's diff_ids.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import anyio
import pytest
import zstandard

import regcopy
from conftest import Seeder, make_client  # type: ignore[import-not-found]
from servers import skopeo
from servers.docker_archives import ArchiveLayer, layer_tar, write_classic_archive
from servers.oci_tools import Podman, podman_works
from servers.registry import RegistryServer

pytestmark = pytest.mark.skopeo

OCI_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _layers() -> list[ArchiveLayer]:
    return [
        ArchiveLayer(layer_tar({"etc/os-release": b"ID=interop\n", "bin/base": b"b" * 4000}), "gzip"),
        ArchiveLayer(layer_tar({"usr/share/app/data": bytes(range(256)) * 64}), "zstd"),
        ArchiveLayer(layer_tar({"app/entry": b"#!/bin/sh\necho hi\n"}), "none"),
    ]


def _pull_dir(server: RegistryServer, ref: str, dest: Path) -> dict[str, object]:
    """skopeo copies ``ref`` into a ``dir:`` (blobs byte for byte); returns the manifest."""
    skopeo.run_skopeo("copy", *server.skopeo_flags("src"), skopeo.docker_ref(server, ref), f"dir:{dest}")
    manifest: dict[str, object] = json.loads((dest / "manifest.json").read_bytes())
    return manifest


async def test_zstd_layers_of_a_docker_archive_stay_zstd(http_registry: RegistryServer, tmp_path: Path) -> None:
    """A zstd layer file (podman's) is a zstd blob typed tar+zstd in an OCI manifest, not gzipped again;
    the gzip one keeps its bytes, the plain one is gzipped; each decompresses to its diff_id."""
    archive = write_classic_archive(tmp_path / "zstd.tar", _layers())
    async with make_client(http_registry) as client:
        result = await client.copy(f"docker-archive:{archive.path}", f"{http_registry.host}/interop/app:v1")
    assert result.new_digest  # a classic archive has no registry manifest: one was built

    manifest = _pull_dir(http_registry, "interop/app:v1", tmp_path / "pulled")
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["config"] == {"mediaType": "application/vnd.oci.image.config.v1+json",  # type: ignore[comparison-overlap]
                                  "size": len(archive.config), "digest": archive.config_digest}
    layers = manifest["layers"]
    assert isinstance(layers, list)
    assert [layer["mediaType"] for layer in layers] == [OCI_GZIP, OCI_ZSTD, OCI_GZIP]
    stored = [archive.layers[0].stored, archive.layers[1].stored]
    assert [layer["digest"] for layer in layers[:2]] == [_sha(b) for b in stored]  # kept byte for byte
    blobs = [(tmp_path / "pulled" / layer["digest"].split(":", 1)[1]).read_bytes() for layer in layers]
    assert blobs[1].startswith(ZSTD_MAGIC)
    import gzip
    uncompressed = [gzip.decompress(blobs[0]), zstandard.ZstdDecompressor().decompress(blobs[1]),
                    gzip.decompress(blobs[2])]
    assert [_sha(u) for u in uncompressed] == [layer.diff_id for layer in archive.layers]


async def test_plain_and_gzip_archive_keeps_docker_schema2(http_registry: RegistryServer, tmp_path: Path) -> None:
    """Without zstd the synthesised manifest stays Docker schema 2, as ``docker load`` then push makes it."""
    archive = write_classic_archive(tmp_path / "plain.tar", [_layers()[0], _layers()[2]])
    async with make_client(http_registry) as client:
        await client.copy(f"docker-archive:{archive.path}", f"{http_registry.host}/interop/plain:v1")
    manifest = json.loads(skopeo.inspect_raw(http_registry, "interop/plain:v1"))
    assert manifest["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert [layer["mediaType"] for layer in manifest["layers"]] == [DOCKER_GZIP, DOCKER_GZIP]


@pytest.mark.parametrize("bad", [0, 1, 2], ids=["gzip", "zstd", "plain"])
async def test_a_layer_that_does_not_match_its_diff_id_is_refused(http_registry: RegistryServer, tmp_path: Path,
                                                                  bad: int) -> None:
    """Whatever its compression, a layer whose uncompressed bytes differ from the config's diff_id is a
    StoreError naming that layer, and nothing is tagged."""
    layers = _layers()
    diff_ids = [layer.diff_id for layer in layers]
    diff_ids[bad] = _sha(b"not this layer")
    archive = write_classic_archive(tmp_path / "bad.tar", layers, diff_ids=diff_ids)
    async with make_client(http_registry) as client:
        with pytest.raises(regcopy.StoreError, match=rf"layer {bad + 1} .*rootfs.diff_ids"):
            await client.copy(f"docker-archive:{archive.path}", f"{http_registry.host}/interop/bad:v1")
    with pytest.raises(skopeo.SkopeoError):
        skopeo.inspect_raw(http_registry, "interop/bad:v1")


async def test_bzip2_layer_is_refused_by_name(http_registry: RegistryServer, tmp_path: Path) -> None:
    """No registry media type holds a bzip2 layer: a clear error, not a gzip of bzip2 bytes."""
    archive = write_classic_archive(tmp_path / "bz.tar", [ArchiveLayer(layer_tar({"a": b"a"}), "bzip2")])
    async with make_client(http_registry) as client:
        with pytest.raises(regcopy.StoreError, match="bzip2-compressed"):
            await client.copy(f"docker-archive:{archive.path}", f"{http_registry.host}/interop/bz:v1")


def test_skopeo_reads_the_same_zstd_archive(http_registry: RegistryServer, tmp_path: Path) -> None:
    """The reference: c/image accepts the hand-built archive (so it is a valid podman-style archive)."""
    archive = write_classic_archive(tmp_path / "zstd.tar", _layers())
    skopeo.run_skopeo("copy", *http_registry.skopeo_flags("dest"), f"docker-archive:{archive.path}",
                      skopeo.docker_ref(http_registry, "interop/by-skopeo:v1"))
    manifest = json.loads(skopeo.inspect_raw(http_registry, "interop/by-skopeo:v1"))
    assert manifest["config"]["digest"] == archive.config_digest


@pytest.mark.skipif(not podman_works(), reason="podman cannot run here (needs root and vfs storage)")
async def test_podman_pulls_what_regcopy_imported_from_a_zstd_archive(http_registry: RegistryServer,
                                                                      tmp_path: Path) -> None:
    """podman loads the hand-built archive itself, and pulls regcopy's import of it to the same layers
    (before the fix: "invalid tar header", the zstd bytes gzipped again)."""
    archive = write_classic_archive(tmp_path / "zstd.tar", _layers())
    async with make_client(http_registry) as client:
        await client.copy(f"docker-archive:{archive.path}", f"{http_registry.host}/interop/pod:v1")
    with Podman(tmp_path / "podman") as podman:
        podman.load(archive.path)
        image_id = podman.pull(f"{http_registry.host}/interop/pod:v1")
        inspected = json.loads(podman.run("image", "inspect", image_id))[0]
    assert inspected["RootFS"]["Layers"] == [layer.diff_id for layer in archive.layers]


# ------------------------------------------------------------------ artifacts are not docker-archive images


def _oras_push(server: RegistryServer, tmp_path: Path, ref: str) -> None:
    """``oras push`` of an SBOM file with oras-py: config ``application/vnd.unknown.config.v1+json``."""
    import oras.client  # the test extra

    sbom = tmp_path / "sbom.spdx.json"
    sbom.write_text('{"spdxVersion":"SPDX-2.3","name":"interop"}')
    client = oras.client.OrasClient(hostname=server.host, insecure=True)
    client.push(target=f"{server.host}/{ref}", files=[f"{sbom}:application/spdx+json"],
                disable_path_validation=True)


def _sbom_layout(root: Path) -> None:
    """An OCI 1.1 artifact (``artifactType``, the empty config) in a layout, tagged ``sbom``."""
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> str:
        (blobs / hashlib.sha256(data).hexdigest()).write_bytes(data)
        return _sha(data)

    content = b'{"bomFormat":"CycloneDX"}'
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.cyclonedx+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": put(b"{}"), "size": 2},
        "layers": [{"mediaType": "application/vnd.cyclonedx+json", "digest": put(content), "size": len(content)}],
    }).encode()
    entry = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": put(manifest),
             "size": len(manifest), "annotations": {"org.opencontainers.image.ref.name": "sbom"}}
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))


async def test_an_oras_artifact_is_refused_before_anything_is_written(http_registry: RegistryServer,
                                                                     tmp_path: Path) -> None:
    """skopeo refuses an artifact for docker-archive ("unsupported image-specific operation on
    artifact"); regcopy too, naming its config media type, and writes no file (before: exit 0 and an
    archive that podman load rejects with "rootFS is not set")."""
    _oras_push(http_registry, tmp_path, "art/sbom:v1")
    with pytest.raises(skopeo.SkopeoError, match="artifact"):
        skopeo.run_skopeo("copy", *http_registry.skopeo_flags("src"), skopeo.docker_ref(http_registry, "art/sbom:v1"),
                          f"docker-archive:{tmp_path / 'by-skopeo.tar'}:art/sbom:v1")
    target = tmp_path / "out.tar"
    async with make_client(http_registry) as client:
        with pytest.raises(regcopy.StoreError, match=r"artifact \(config media type application/vnd\.unknown"):
            await client.copy(f"{http_registry.host}/art/sbom:v1", f"docker-archive:{target}:art/sbom:v1")
    assert sorted([p.name async for p in anyio.Path(tmp_path).iterdir()]) == ["sbom.spdx.json"]  # no archive, no spool


async def test_an_oci_1_1_sbom_is_refused_naming_its_artifact_type(tmp_path: Path) -> None:
    _sbom_layout(tmp_path / "layout")
    async with regcopy.Client() as client:
        with pytest.raises(regcopy.StoreError, match=r"artifactType application/vnd\.cyclonedx\+json"):
            await client.copy(f"oci:{tmp_path / 'layout'}:sbom", f"docker-archive:{tmp_path / 'out.tar'}:x/sbom:v1")
    assert not (tmp_path / "out.tar").exists()


@pytest.mark.skipif(not podman_works(), reason="podman cannot run here (needs root and vfs storage)")
async def test_podman_loads_the_docker_archive_regcopy_writes(http_registry: RegistryServer, tmp_path: Path,
                                                              seed: Seeder) -> None:
    """The positive side of the refusal: a container image written to docker-archive loads in podman."""
    seed(http_registry, "oci", "interop/img", "v1")
    target = tmp_path / "img.tar"
    async with make_client(http_registry) as client:
        await client.copy(f"{http_registry.host}/interop/img:v1", f"docker-archive:{target}:interop/img:v1")
    with Podman(tmp_path / "podman") as podman:
        assert "interop/img:v1" in podman.load(target)
