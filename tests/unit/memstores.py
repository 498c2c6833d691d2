"""In-memory stores for unit tests: a Source over dicts, a registry-like storage of repositories with a
Destination that can or cannot mount, and builders of real OCI images (real sha256 digests)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio

from regcopy.digest import Digest
from regcopy.errors import ManifestNotFound, StoreError
from regcopy.manifest import OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST, Descriptor, Manifest
from regcopy.stores.base import BlobOpener, Origin

# --- stores over dicts ------------------------------------------------------------------


class MemSource:
    """A Source over dicts: manifests by digest, tags, blobs (served in small chunks)."""

    def __init__(self, name: str = "src/repo", chunk: int = 5) -> None:
        self.name = name
        self.origin: Origin | None = None
        self.synthesized = False
        self.served_by: list[str] | None = None
        self.manifests: dict[Digest, Manifest] = {}
        self.tags: dict[str, Digest] = {}
        self.blobs: dict[Digest, bytes] = {}
        self.chunk = chunk
        self.opened: list[Digest] = []

    def add_blob(self, data: bytes) -> Digest:
        d = Digest.of(data)
        self.blobs[d] = data
        return d

    def add_manifest(self, data: bytes, tag: str | None = None) -> Manifest:
        m = Manifest.parse(data)
        self.manifests[m.digest] = m
        if tag:
            self.tags[tag] = m.digest
        return m

    async def head(self, ref: str) -> Digest | None:
        return self.tags.get(ref) or (Digest.parse(ref) if ref.startswith("sha256:") else None)

    async def resolve(self, ref: str) -> Manifest:
        digest = self.tags.get(ref) or (Digest.parse(ref) if ref.startswith("sha256:") else None)
        if digest is None or digest not in self.manifests:
            raise ManifestNotFound(f"{ref} not found")
        return self.manifests[digest]

    async def get_manifest(self, digest: Digest) -> Manifest:
        if digest not in self.manifests:
            raise ManifestNotFound(f"{digest} not found")
        return self.manifests[digest]

    async def open_blob(self, desc: Descriptor) -> AsyncIterator[bytes]:
        self.opened.append(desc.digest)
        data = self.blobs[desc.digest]
        for i in range(0, len(data), self.chunk):
            await anyio.lowlevel.checkpoint()
            yield data[i : i + self.chunk]

    async def list_tags(self) -> list[str]:
        return sorted(self.tags)


@dataclass
class MemStorage:
    """One blob storage (a registry) with several repositories, and a log of writes."""

    blobs: dict[str, dict[Digest, bytes]] = field(default_factory=dict)
    manifests: dict[str, dict[Digest, bytes]] = field(default_factory=dict)
    tags: dict[str, dict[str, Digest]] = field(default_factory=dict)
    log: list[tuple[str, ...]] = field(default_factory=list)


class MemDestination:
    """A Destination writing into one repository of a MemStorage.

    Like a registry, it refuses a manifest whose blobs or child manifests are missing, and only
    commits a blob after its opener was read to the end without error.
    """

    def __init__(self, storage: MemStorage, repository: str = "dst/repo", *, storage_id: str = "registry:mem",
                 fail_blob: Digest | None = None) -> None:
        self.storage = storage
        self.repository = repository
        self.storage_id = storage_id
        self.name = f"mem/{repository}"
        self.shares_blobs = False  # a registry: each repository holds its own blobs
        self.fail_blob = fail_blob
        for table in (storage.blobs, storage.manifests, storage.tags):
            table.setdefault(repository, {})

    @property
    def repo_blobs(self) -> dict[Digest, bytes]:
        return self.storage.blobs[self.repository]

    async def has_blob(self, desc: Descriptor) -> bool:
        return desc.digest in self.repo_blobs

    async def put_blob(self, desc: Descriptor, opener: BlobOpener) -> int:
        self.storage.log.append(("put_blob", self.repository, str(desc.digest)))
        if desc.digest == self.fail_blob:
            raise StoreError(f"disk full while writing {desc.digest.short}")
        data = b"".join([chunk async for chunk in opener()])
        self.repo_blobs[desc.digest] = data
        return len(data)

    async def head(self, ref: str) -> Digest | None:
        return self.storage.tags[self.repository].get(ref)

    async def put_manifest(self, manifest: Manifest, tag: str | None) -> None:
        for d in manifest.blobs():
            if d.digest not in self.repo_blobs:
                raise AssertionError(f"manifest pushed before its blob {d.digest.short}")
        for d in manifest.children():
            if d.digest not in self.storage.manifests[self.repository]:
                raise AssertionError(f"index pushed before its child {d.digest.short}")
        self.storage.log.append(("put_manifest", self.repository, str(manifest.digest), tag or ""))
        self.storage.manifests[self.repository][manifest.digest] = manifest.data
        if tag:
            self.storage.tags[self.repository][tag] = manifest.digest

    async def list_tags(self) -> list[str]:
        return sorted(self.storage.tags[self.repository])


class MemMountingDestination(MemDestination):
    """A MemDestination that can also mount blobs from other repositories of its storage."""

    async def mount_blob(self, desc: Descriptor, from_repository: str) -> bool:
        self.storage.log.append(("mount_blob", self.repository, str(desc.digest), from_repository))
        data = self.storage.blobs.get(from_repository, {}).get(desc.digest)
        if data is None:
            return False
        self.repo_blobs[desc.digest] = data
        return True


# --- image builders (real sha256 digests) -----------------------------------------------------


def descriptor(data: bytes, media_type: str, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(data).hexdigest(), "size": len(data),
            **extra}


def add_image(src: MemSource, layers: list[bytes], *, arch: str = "amd64", tag: str | None = None) -> Manifest:
    config = json.dumps({"architecture": arch, "os": "linux", "rootfs": {"type": "layers"}}).encode()
    src.add_blob(config)
    for layer in layers:
        src.add_blob(layer)
    body = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(config, OCI_CONFIG),
            "layers": [descriptor(layer, OCI_LAYER) for layer in layers]}
    return src.add_manifest(json.dumps(body, indent=2).encode(), tag)


def add_index(src: MemSource, children: list[tuple[Manifest, dict[str, str] | None]], *, tag: str | None = None
              ) -> Manifest:
    entries = []
    for child, platform in children:
        entry = descriptor(child.data, child.media_type)
        if platform is not None:
            entry["platform"] = platform
        entries.append(entry)
    body = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
    return src.add_manifest(json.dumps(body).encode(), tag)


def linux(arch: str, variant: str | None = None) -> dict[str, str]:
    p = {"os": "linux", "architecture": arch}
    if variant:
        p["variant"] = variant
    return p


