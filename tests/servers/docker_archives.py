"""Classic docker-archives (``docker save`` / ``podman save`` without an OCI layout) built by hand.

This module owns archives whose layer files are compressed the way other tools write them: plain tar
(``docker save``), gzip (umoci, older podman) and zstd (podman with zstd layers), each under
``<hex>/layer.tar`` as docker's legacy format names it, with a config whose ``rootfs.diff_ids`` are
the sha256 of the uncompressed tars (or deliberately wrong ones). Deterministic bytes: tar headers
pinned, gzip ``mtime=0``.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import zstandard

__all__ = ("ArchiveLayer", "ClassicArchive", "compress", "layer_tar", "write_classic_archive")

Kind = Literal["none", "gzip", "zstd", "bzip2"]


def layer_tar(files: dict[str, bytes]) -> bytes:
    """An uncompressed layer tar of regular files (pinned metadata)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def compress(data: bytes, kind: Kind) -> bytes:
    """``data`` as ``kind`` would store it."""
    if kind == "gzip":
        return gzip.compress(data, mtime=0)
    if kind == "zstd":
        return zstandard.ZstdCompressor(level=3).compress(data)
    if kind == "bzip2":
        return bz2.compress(data)
    return data


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class ArchiveLayer:
    """One layer: its uncompressed tar and how the archive stores it."""

    tar: bytes
    kind: Kind = "none"

    @property
    def diff_id(self) -> str:
        return _sha(self.tar)

    @property
    def stored(self) -> bytes:
        return compress(self.tar, self.kind)


@dataclass(frozen=True)
class ClassicArchive:
    """What was written: the archive, its config bytes and each layer's stored bytes."""

    path: Path
    config: bytes
    layers: tuple[ArchiveLayer, ...]

    @property
    def config_digest(self) -> str:
        return _sha(self.config)


def write_classic_archive(path: Path, layers: Sequence[ArchiveLayer], repo_tag: str = "interop/app:v1", *,
                          diff_ids: Sequence[str] | None = None, labels: dict[str, str] | None = None
                          ) -> ClassicArchive:
    """A classic docker-archive at ``path`` holding one image made of ``layers``.

    :param diff_ids: the config's rootfs.diff_ids (default: the true ones)
    """
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
        "config": {"Env": ["PATH=/usr/bin"], "Cmd": ["/bin/sh"], "Labels": labels or {}},
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids or [layer.diff_id for layer in layers])},
    }, separators=(",", ":")).encode()
    config_name = f"{hashlib.sha256(config).hexdigest()}.json"
    names = [f"{hashlib.sha256(layer.stored).hexdigest()}/layer.tar" for layer in layers]
    manifest = [{"Config": config_name, "RepoTags": [repo_tag], "Layers": names}]
    members = {"manifest.json": json.dumps(manifest).encode(), config_name: config}
    members.update((name, layer.stored) for name, layer in zip(names, layers, strict=True))
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return ClassicArchive(path, config, tuple(layers))
