"""skopeo's ``dir:`` transport both ways, against skopeo itself and a real registry.

regcopy writes ``dir:`` directories that skopeo copies to a registry with the same digests, and reads
the ones skopeo wrote: ``version``, ``manifest.json`` (the root's exact bytes), ``<hex>.manifest.json``
for an index's children and bare-hex blobs (c/image ``directory/directory_transport.go``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import regcopy
from conftest import Seeder, make_client  # type: ignore[import-not-found]
from servers import skopeo
from servers.registry import RegistryServer

pytestmark = pytest.mark.skopeo

VERSION = "Directory Transport Version: 1.1\n"


def _files(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()}


@pytest.mark.parametrize("sample", ["oci", "docker", "multi"])
async def test_skopeo_copies_a_dir_regcopy_wrote_with_the_same_digests(http_registry: RegistryServer, seed: Seeder,
                                                                        tmp_path: Path, sample: str) -> None:
    digest = seed(http_registry, sample, "dir/src", "v1")
    target = tmp_path / "image"
    async with make_client(http_registry) as client:
        result = await client.copy(f"{http_registry.host}/dir/src:v1", f"dir:{target}")
    assert result.digest == digest and not result.new_digest
    raw = skopeo.inspect_raw(http_registry, "dir/src:v1")
    assert (target / "version").read_text() == VERSION
    assert (target / "manifest.json").read_bytes() == raw
    root = json.loads(raw)
    children = {m["digest"].split(":", 1)[1] + ".manifest.json" for m in root.get("manifests", [])}
    assert children <= _files(target)
    skopeo.run_skopeo("copy", "--all", "--preserve-digests", *http_registry.skopeo_flags("dest"), f"dir:{target}",
                      skopeo.docker_ref(http_registry, "dir/back:v1"))
    skopeo.verify(http_registry, "dir/back:v1", digest)


@pytest.mark.parametrize(("sample", "all_"), [("docker", False), ("multi", True)])
async def test_regcopy_reads_a_dir_skopeo_wrote(http_registry: RegistryServer, seed: Seeder, tmp_path: Path,
                                                 sample: str, all_: bool) -> None:
    digest = seed(http_registry, sample, "dir/src", "v1")
    written = tmp_path / "by-skopeo"
    skopeo.run_skopeo("copy", *(["--all"] if all_ else []), *http_registry.skopeo_flags("src"),
                      skopeo.docker_ref(http_registry, "dir/src:v1"), f"dir:{written}")
    async with make_client(http_registry) as client:
        assert await client.digest(f"dir:{written}") == regcopy.Digest.parse(digest)
        result = await client.copy(f"dir:{written}", f"{http_registry.host}/dir/from-skopeo:v1")
    assert result.digest == digest
    skopeo.verify(http_registry, "dir/from-skopeo:v1", digest)


async def test_a_dir_holds_one_image_and_an_unrelated_directory_is_refused(http_registry: RegistryServer,
                                                                           seed: Seeder, tmp_path: Path) -> None:
    """Like skopeo: an earlier ``dir:`` image is replaced whole (no stale blobs); a non-empty directory
    that is not one is left alone with an error."""
    seed(http_registry, "shared-a", "dir/a", "v1")
    seed(http_registry, "big", "dir/b", "v1")
    target = tmp_path / "image"
    async with make_client(http_registry) as client:
        await client.copy(f"{http_registry.host}/dir/a:v1", f"dir:{target}")
        second = await client.copy(f"{http_registry.host}/dir/b:v1", f"dir:{target}")
        manifest = json.loads((target / "manifest.json").read_bytes())
        expected = {"manifest.json", "version", *(d["digest"].split(":", 1)[1]
                                                 for d in (manifest["config"], *manifest["layers"]))}
        assert _files(target) == expected and regcopy.Digest.of((target / "manifest.json").read_bytes()) == \
            regcopy.Digest.parse(second.digest)
        assert not [p for p in _files(tmp_path) if p.startswith(".")]  # no temp directory left

        foreign = tmp_path / "precious"
        foreign.mkdir()
        (foreign / "notes.txt").write_text("keep me")
        with pytest.raises(regcopy.StoreError, match="not a dir: image; refusing to overwrite"):
            await client.copy(f"{http_registry.host}/dir/a:v1", f"dir:{foreign}")
    assert _files(foreign) == {"notes.txt"}


async def test_dir_with_format_oci_and_a_missing_dir(http_registry: RegistryServer, seed: Seeder,
                                                     tmp_path: Path) -> None:
    seed(http_registry, "docker", "dir/docker", "v1")
    async with make_client(http_registry) as client:
        result = await client.copy(f"{http_registry.host}/dir/docker:v1", f"dir:{tmp_path / 'oci'}", format="oci")
        with pytest.raises(regcopy.StoreError, match="is not a dir: image"):
            await client.copy(f"dir:{tmp_path / 'nothing'}", f"{http_registry.host}/dir/x:v1")
    assert json.loads((tmp_path / "oci" / "manifest.json").read_bytes())["mediaType"] == \
        "application/vnd.oci.image.manifest.v1+json"
    assert result.new_digest
