"""``regcopy sync --src dir`` / ``--dest dir`` against ``skopeo sync`` itself: the same directory names
(``DEST/app:tag``, ``--scoped``: ``DEST/host/ns/app:tag``), the same manifests, and trees skopeo wrote
read back into a registry with the same digests. Before: ``--src dir`` was a usage error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import Seeder  # type: ignore[import-not-found]
from servers import skopeo
from servers.registry import RegistryServer

pytestmark = pytest.mark.skopeo


def _regcopy(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "regcopy", "sync", "--progress", "none", "--src-tls-verify=false",
           "--dest-tls-verify=false", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def _tree(root: Path) -> dict[str, bytes]:
    """Image directory (relative path) → its manifest.json bytes."""
    return {p.parent.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("manifest.json"))}


def _seed(server: RegistryServer, seed: Seeder) -> dict[str, str]:
    return {"v1": seed(server, "oci", "ns/app", "v1"), "v2": seed(server, "multi", "ns/app", "v2")}


@pytest.mark.parametrize("scoped", [False, True], ids=["basename", "scoped"])
def test_dest_dir_writes_what_skopeo_writes(http_registry: RegistryServer, seed: Seeder, tmp_path: Path,
                                            scoped: bool) -> None:
    _seed(http_registry, seed)
    flags = ["--all", *(["--scoped"] if scoped else [])]
    source = f"{http_registry.host}/ns/app"
    skopeo.run_skopeo("sync", "--src", "docker", "--dest", "dir", "--src-tls-verify=false", *flags, source,
                      str(tmp_path / "skopeo"))
    done = _regcopy("--src", "docker", "--dest", "dir", *flags, source, str(tmp_path / "regcopy"))
    assert done.returncode == 0, done.stderr
    ours, theirs = _tree(tmp_path / "regcopy"), _tree(tmp_path / "skopeo")
    prefix = f"{http_registry.host}/ns/" if scoped else ""
    assert sorted(ours) == sorted(theirs) == [f"{prefix}app:v1", f"{prefix}app:v2"]
    assert ours == theirs  # the same root manifests, byte for byte
    again = _regcopy("--src", "docker", "--dest", "dir", *flags, source, str(tmp_path / "regcopy"))
    assert again.returncode == 0, again.stderr  # skopeo refuses to overwrite; regcopy finds it up to date
    assert _tree(tmp_path / "regcopy") == theirs


@pytest.mark.parametrize("scoped", [False, True], ids=["basename", "scoped"])
def test_src_dir_reads_what_skopeo_wrote(http_registry: RegistryServer, seed: Seeder, tmp_path: Path,
                                         scoped: bool) -> None:
    """With --scoped the directory path below the tree names the repository (``org/app:v1`` →
    ``DEST/org/app:v1``; a host:port in it is no docker name, for skopeo either), without it its last part."""
    digests = _seed(http_registry, seed)
    flags = ["--all", *(["--scoped"] if scoped else [])]
    tree = tmp_path / "tree"
    skopeo.run_skopeo("sync", "--src", "docker", "--dest", "dir", "--src-tls-verify=false", "--all",
                      f"{http_registry.host}/ns/app", str(tree / "org"))
    skopeo.run_skopeo("sync", "--src", "dir", "--dest", "docker", "--dest-tls-verify=false", *flags, str(tree),
                      f"{http_registry.host}/by-skopeo")
    done = _regcopy("--src", "dir", "--dest", "docker", *flags, str(tree), f"{http_registry.host}/by-regcopy")
    assert done.returncode == 0, done.stderr
    below = "org/app" if scoped else "app"
    for tag, digest in digests.items():
        assert skopeo.inspect_digest(http_registry, f"by-skopeo/{below}:{tag}") == digest
        assert skopeo.inspect_digest(http_registry, f"by-regcopy/{below}:{tag}") == digest
    assert skopeo.list_tags(http_registry, f"by-regcopy/{below}") == ["v1", "v2"]


def test_dir_to_dir_is_refused_as_skopeo_does(tmp_path: Path) -> None:
    done = _regcopy("--src", "dir", "--dest", "dir", str(tmp_path), str(tmp_path / "out"))
    assert done.returncode == 2 and "dir to dir" in done.stderr and "Traceback" not in done.stderr
