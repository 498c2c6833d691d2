"""``ls``, ``digest``, ``manifest``, ``inspect`` and ``config`` over local locations, at the Client and
on the command line: an OCI layout, an oci-archive, a docker-archive and a ``dir:`` answer as the
registry they were exported from does (before: "locations are not supported yet", and ``regcopy ls
oci:DIR`` read ``oci:out`` as a host and port: "port 'out' must be a number")."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import regcopy
from conftest import Seeder, make_client  # type: ignore[import-not-found]
from servers import skopeo
from servers.registry import RegistryServer

pytestmark = pytest.mark.skopeo


async def _export_all(server: RegistryServer, tmp_path: Path) -> dict[str, str]:
    """The ``oci`` sample exported to every local kind; kind → location of the image."""
    layout, oci_tar, docker_tar, directory = (tmp_path / n for n in ("layout", "img.oci.tar", "img.tar", "dir"))
    locations = {
        "oci": f"oci:{layout}:ns/app:v1",
        "oci-archive": f"oci-archive:{oci_tar}:ns/app:v1",
        "docker-archive": f"docker-archive:{docker_tar}:ns/app:v1",
        "dir": f"dir:{directory}",
    }
    async with make_client(server) as client:
        for location in locations.values():
            await client.copy(f"{server.host}/q/app:v1", location)
        await client.copy(f"{server.host}/q/app:v1", f"oci:{layout}:other:v2")
    return locations


async def test_the_client_reads_every_local_kind_like_the_registry(http_registry: RegistryServer, seed: Seeder,
                                                                   tmp_path: Path) -> None:
    digest = seed(http_registry, "oci", "q/app", "v1")
    locations = await _export_all(http_registry, tmp_path)
    raw = skopeo.inspect_raw(http_registry, "q/app:v1")
    async with make_client(http_registry) as client:
        want_config = await client.config(f"{http_registry.host}/q/app:v1")
        want_info = await client.inspect(f"{http_registry.host}/q/app:v1")
        for kind, location in locations.items():
            if kind != "docker-archive":  # a classic docker-archive keeps no manifest: one is built on reading
                assert str(await client.digest(location)) == digest, kind
                assert (await client.manifest(location)).data == raw, kind
            assert await client.config(location) == want_config, kind
            info = await client.inspect(location)
            layers = [(layer.digest, layer.size) for layer in info.layers]
            assert layers == [(layer.digest, layer.size) for layer in want_info.layers], kind
            assert info.labels == want_info.labels, kind
        assert await client.tags(f"oci:{tmp_path / 'layout'}") == ["ns/app:v1", "other:v2"]
        assert await client.tags(f"oci:{tmp_path / 'layout'}:ns/app") == ["v1"]
        assert await client.tags(f"docker-archive:{tmp_path / 'img.tar'}") == ["ns/app:v1"]
        assert await client.tags(f"dir:{tmp_path / 'dir'}") == []
        with pytest.raises(regcopy.ManifestNotFound, match="layout:nope not found"):
            await client.digest(f"oci:{tmp_path / 'layout'}:nope")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "regcopy", *args], capture_output=True, text=True, timeout=120,
                          check=False)


async def test_the_verbs_take_local_locations(http_registry: RegistryServer, seed: Seeder, tmp_path: Path) -> None:
    digest = seed(http_registry, "oci", "q/app", "v1")
    locations = await _export_all(http_registry, tmp_path)
    listed = _cli("ls", f"oci:{tmp_path / 'layout'}")
    assert (listed.returncode, listed.stdout.split()) == (0, ["ns/app:v1", "other:v2"]), listed.stderr
    for kind, location in locations.items():
        if kind == "docker-archive":
            continue
        out = _cli("digest", location)
        assert (out.returncode, out.stdout.strip()) == (0, digest), out.stderr
    manifest = _cli("manifest", locations["dir"])
    assert manifest.returncode == 0 and json.loads(manifest.stdout)["config"]["mediaType"].endswith("config.v1+json")
    inspected = _cli("inspect", locations["docker-archive"])
    assert inspected.returncode == 0, inspected.stderr
    registry_config = _cli("config", f"{http_registry.host}/q/app:v1")
    assert registry_config.returncode == 0 and json.loads(registry_config.stdout)["config"]["Labels"]
    for kind, location in locations.items():
        config = _cli("config", location)
        assert (config.returncode, config.stdout) == (0, registry_config.stdout), (kind, config.stderr)
    missing = _cli("ls", f"oci:{tmp_path / 'absent'}")
    assert missing.returncode != 0 and "Traceback" not in missing.stderr and "absent" in missing.stderr
