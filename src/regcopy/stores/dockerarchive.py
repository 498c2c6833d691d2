"""``docker-archive``: the ``docker save`` / ``docker load`` tar, single-platform images.

Owns the docker-archive format. An archive is read through its OCI layout when it has one (docker ≥ 25
writes ``index.json`` and ``blobs/`` besides ``manifest.json``; digests preserved). A classic archive
has no manifest, so one is synthesised (Docker schema 2, config bytes verbatim, layers gzip-compressed
once into temp files unless already gzip): those digests are new, and
:attr:`DockerArchiveStore.synthesized` says so. Writing spools like every archive store
(:mod:`regcopy.stores.archive`) and writes ``manifest.json``, ``repositories``, configs and layers on
commit.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import anyio

from regcopy.convert import not_an_image
from regcopy.digest import Digest
from regcopy.errors import InvalidReference, StoreError
from regcopy.manifest import DOCKER_CONFIG, DOCKER_MANIFEST, OCI_CONFIG, OCI_MANIFEST, Descriptor, Manifest
from regcopy.reference import Reference
from regcopy.stores.archive import _Archive
from regcopy.stores.base import close_stream
from regcopy.stores.layers import PreparedLayer, prepare_layer
from regcopy.stores.layout import CHUNK, LayoutReader, blob_name
from regcopy.stores.tarfiles import TarEntry, TarFiles, TarMember, index_tar, member_key, range_chunks, write_tar

__all__ = ("DockerArchiveStore",)

log = logging.getLogger(__name__)

_MAX_CONFIG: Final = 16 * 1024 * 1024
_MAX_METADATA: Final = 16 * 1024 * 1024
_LAYER_JOBS: Final = 4


@dataclass(frozen=True, slots=True)
class _DockerEntry:
    """One ``manifest.json`` entry of a docker-archive."""

    config: str
    repo_tags: tuple[str, ...]
    layers: tuple[str, ...]


def _parse_docker_manifest(data: bytes, where: str) -> list[_DockerEntry]:
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise StoreError(f"{where}: not valid JSON ({str(exc)[:120]})") from exc
    if not isinstance(obj, list):
        raise StoreError(f"{where}: must be a JSON list")
    out = []
    for i, item in enumerate(obj):
        config = item.get("Config") if isinstance(item, dict) else None
        tags = (item.get("RepoTags") or []) if isinstance(item, dict) else None
        layers = item.get("Layers") if isinstance(item, dict) else None
        if not isinstance(config, str) or not isinstance(tags, list) or not isinstance(layers, list) \
                or not all(isinstance(x, str) for x in (*tags, *layers)):
            raise StoreError(f"{where}: entry {i} needs Config (string), RepoTags and Layers (string lists)")
        out.append(_DockerEntry(config, tuple(tags), tuple(layers)))
    return out


def _normal_tag(text: str) -> str | None:
    """``repo:tag`` in canonical form (registry, library/), or None when not a docker reference."""
    try:
        ref = Reference.parse(text)
    except InvalidReference:
        return None
    return None if ref.digest is not None else f"{ref.name}:{ref.tag}"


def _familiar(text: str) -> str:
    """``repo:tag`` as ``docker save`` writes RepoTags (``alpine:3.20``, not ``docker.io/library/…``)."""
    ref = Reference.parse(text)
    if ref.digest is not None:
        raise StoreError(f"docker-archive tags cannot name a digest: {text!r}")
    name = ref.name.removeprefix("docker.io/")
    if name.startswith("library/") and name.count("/") == 1:
        name = name.removeprefix("library/")
    return f"{name}:{ref.tag}"


_LayerSource = TarMember | Path | bytes


def _diff_ids(config: bytes, entry: _DockerEntry, where: str) -> dict[str, tuple[int, Digest]]:
    """Layer member name → (its first position, the diff_id the config gives it).

    c/image (docker/internal/tarfile/src.go ``prepareLayerData``) refuses the same checks: a config
    without ``rootfs``, a count that differs from ``Layers``, one file for two diff_ids.
    """
    try:
        obj = json.loads(config)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise StoreError(f"{where}: the image config is not valid JSON ({str(exc)[:120]})") from exc
    rootfs = obj.get("rootfs") if isinstance(obj, dict) else None
    ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise StoreError(f"{where}: the image config has no rootfs.diff_ids; it is not a container image")
    if len(ids) != len(entry.layers):
        raise StoreError(f"{where}: {len(entry.layers)} layers in manifest.json, {len(ids)} diff_ids in the config")
    out: dict[str, tuple[int, Digest]] = {}
    for position, (name, text) in enumerate(zip(entry.layers, ids, strict=True)):
        try:
            diff_id = Digest.parse(text)
        except InvalidReference as exc:
            raise StoreError(f"{where}: rootfs.diff_ids[{position}]: {exc.reason}") from exc
        first = out.setdefault(member_key(name), (position, diff_id))
        if first[1] != diff_id:
            raise StoreError(f"{where}: layer file {name!r} is used for two different diff_ids")
    return out


@dataclass(slots=True)
class _Written:
    manifest: Manifest
    tags: list[str] = field(default_factory=list)


class DockerArchiveStore(_Archive):
    """A ``docker-archive:`` tar (``docker save`` / ``docker load`` format), single-platform images.

    :param path: the archive file
    :param ref: ``repo:tag`` or ``@N`` selecting an image when reading; the RepoTag when writing
    :param writable: open for writing (a new archive; an existing file is replaced on commit)
    """

    transport = "docker-archive"

    def __init__(self, path: str | os.PathLike[str], ref: str | None = None, *, writable: bool = False) -> None:
        super().__init__(path, ref, writable=writable)
        self._files: TarFiles | None = None
        self._entries: list[_DockerEntry] | None = None
        self._oci: LayoutReader | None = None
        self._resolved: dict[int, Manifest] = {}
        self._manifests: dict[Digest, Manifest] = {}
        self._blobs: dict[Digest, _LayerSource] = {}
        self._layers: dict[str, PreparedLayer] = {}
        self._tmpdir: Path | None = None
        self._lock = anyio.Lock()
        self._written: dict[Digest, _Written] = {}
        self._last_untagged: Digest | None = None

    async def open(self) -> None:
        """Index the archive (reading) or create the spool (writing). :raises StoreError: unreadable"""
        if self.writable:
            if self.ref is not None and self.ref.startswith("@"):
                raise StoreError(f"{self.name}: '{self.ref}' selects a source image; a destination needs repo:tag")
            await self._open_spool()
            return
        members = await anyio.to_thread.run_sync(index_tar, self.path)
        files = self._files = TarFiles(self.path, members)
        if "index.json" in members and "oci-layout" in members:
            self._oci = LayoutReader(files, self.name)
            await self._oci.load()
        if "manifest.json" in members:
            self._entries = _parse_docker_manifest(await files.read("manifest.json", _MAX_METADATA),
                                                   files.where("manifest.json"))
        elif self._oci is None:
            raise StoreError(f"{files.where('manifest.json')}: missing, {self._display} is not a docker-archive")
        self.synthesized = self._oci is None

    async def aclose(self) -> None:
        """Remove the spool and the compressed-layer temp files."""
        tmpdir, self._tmpdir = self._tmpdir, None
        with anyio.CancelScope(shield=True):
            await super().aclose()
            if tmpdir is not None:
                await anyio.to_thread.run_sync(lambda: shutil.rmtree(tmpdir, ignore_errors=True))

    # -- source
    async def default_identifier(self) -> str:
        """The location's ref, else ``@0`` when the archive holds exactly one image."""
        if self.ref is not None:
            return self.ref
        if self._entries is None:
            return self._oci_reader().default_ref()
        if len(self._entries) != 1:
            tags = ", ".join(t for e in self._entries for t in e.repo_tags) or "untagged"
            raise StoreError(f"{self.name} holds {len(self._entries)} images ({tags}); name one as :repo:tag or :@N")
        return "@0"

    async def head(self, ref: str) -> Digest | None:
        if self._spool is not None:
            found = self._find_written(ref)
            return None if found is None else found.digest
        try:
            return (await self.resolve(ref)).digest
        except StoreError:
            return None

    async def resolve(self, ref: str) -> Manifest:
        digest = _as_digest(ref)
        if digest is not None:
            return await self.get_manifest(digest)
        if self._spool is not None:
            found = self._find_written(ref)
            if found is None:
                raise StoreError(f"{self.name}: no image {ref!r} written yet")
            return found
        if self._entries is None:
            return await self._oci_reader().resolve(ref)
        index = self._select(ref)
        async with self._lock:
            manifest = self._resolved.get(index)
            if manifest is None:
                manifest = await self._load(self._entries[index])
                self._resolved[index] = manifest
        self.synthesized = manifest.digest in self._manifests
        return manifest

    async def get_manifest(self, digest: Digest) -> Manifest:
        if digest in self._written:
            return self._written[digest].manifest
        if digest in self._manifests:
            return self._manifests[digest]
        if self._oci is not None:
            return await self._oci.manifest(digest)
        raise StoreError(f"{self.name}: no manifest {digest} (resolve the image first)")

    async def open_blob(self, desc: Descriptor) -> AsyncIterator[bytes]:
        chunks = self._spool.open_blob(desc) if self._spool is not None else self._blob_chunks(desc)
        try:
            async for chunk in chunks:
                yield chunk
        finally:
            await close_stream(chunks)  # its open file is closed in this task

    def _blob_chunks(self, desc: Descriptor) -> AsyncIterator[bytes]:
        source = self._blobs.get(desc.digest)
        if source is None:
            if self._oci is None:
                raise StoreError(f"{self.name}: no blob {desc.digest} (resolve the image first)")
            return self._oci.open_blob(desc)
        if isinstance(source, bytes):
            return _one(source)
        if isinstance(source, Path):
            return range_chunks(source, 0, desc.size)
        return range_chunks(self.path, source.offset, source.size)

    async def list_tags(self) -> list[str]:
        if self._spool is not None:
            return sorted({t for _, tags in self._images() for t in tags})
        if self._entries is None:
            return self._oci_reader().tags()
        return sorted({t for e in self._entries for t in e.repo_tags})

    def _oci_reader(self) -> LayoutReader:
        assert self._oci is not None  # open() refuses an archive with neither manifest.json nor a layout
        return self._oci

    def _select(self, ref: str) -> int:
        assert self._entries is not None
        if ref.startswith("@"):
            if not ref[1:].isdigit() or int(ref[1:]) >= len(self._entries):
                raise StoreError(f"{self.name}: no image {ref} (the archive holds {len(self._entries)})")
            return int(ref[1:])
        want = _normal_tag(ref)
        for i, entry in enumerate(self._entries):
            if want is not None and want in {_normal_tag(t) for t in entry.repo_tags}:
                return i
        known = ", ".join(t for e in self._entries for t in e.repo_tags) or "none"
        raise StoreError(f"{self.name}: no image tagged {ref!r} (RepoTags: {known})")

    async def _load(self, entry: _DockerEntry) -> Manifest:
        assert self._files is not None
        config = await self._files.read(entry.config, _MAX_CONFIG)
        found = await self._oci_image(Digest.of(config)) if self._oci is not None else None
        return found if found is not None else await self._synthesize(entry, config)

    async def _oci_image(self, config: Digest) -> Manifest | None:
        """The image manifest of the archive's OCI layout with this config, all its blobs present."""
        reader = self._oci_reader()
        pending = [Descriptor.from_json(e) for e in reader.entries]
        while pending:
            desc = pending.pop(0)
            if not desc.is_manifest or await reader.files.size(blob_name(desc.digest)) is None:
                continue  # docker's containerd store lists whole indexes with only one platform present
            manifest = await reader.manifest(desc.digest, desc.media_type, desc.size)
            pending.extend(manifest.children())
            if manifest.config is not None and manifest.config.digest == config and await self._complete(manifest):
                return manifest
        return None

    async def _complete(self, manifest: Manifest) -> bool:
        reader = self._oci_reader()
        return all([await reader.files.size(blob_name(b.digest)) == b.size for b in manifest.blobs()])

    async def _synthesize(self, entry: _DockerEntry, config: bytes) -> Manifest:
        """An image manifest for a classic entry: config verbatim, layers as gzip or zstd blobs whose
        uncompressed bytes match the config's diff_ids. Docker schema 2, as ``docker load`` would push
        it, unless a layer is zstd, which only an OCI manifest can type (c/image refuses zstd in schema 2)."""
        assert self._files is not None
        diff_ids = _diff_ids(config, entry, self._files.where(entry.config))
        if self._tmpdir is None:
            self._tmpdir = Path(await anyio.to_thread.run_sync(lambda: tempfile.mkdtemp(prefix="regcopy-layers-")))
        limiter = anyio.CapacityLimiter(_LAYER_JOBS)
        try:
            async with anyio.create_task_group() as tg:
                for name, (position, diff_id) in diff_ids.items():
                    tg.start_soon(self._prepare_layer, name, position, diff_id, limiter)
        except BaseExceptionGroup as group:
            raise _first_error(group) from None
        config_digest = Digest.of(config)
        self._blobs[config_digest] = config
        layers = [self._layers[member_key(name)] for name in entry.layers]
        oci = any(layer.compression == "zstd" for layer in layers)
        obj: dict[str, Any] = {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST if oci else DOCKER_MANIFEST,
            "config": {"mediaType": OCI_CONFIG if oci else DOCKER_CONFIG, "size": len(config),
                       "digest": str(config_digest)},
            "layers": [{"mediaType": layer.media_type(oci=oci), "size": layer.size, "digest": str(layer.digest)}
                       for layer in layers],
        }
        for layer in layers:
            self._blobs[layer.digest] = layer.source
        manifest = Manifest.parse(json.dumps(obj, indent=3).encode())
        self._manifests[manifest.digest] = manifest
        return manifest

    async def _prepare_layer(self, name: str, position: int, diff_id: Digest,
                             limiter: anyio.CapacityLimiter) -> None:
        assert self._files is not None and self._tmpdir is not None
        key = member_key(name)
        if key not in self._layers:
            member = self._files.member(name)
            where = f"{self._display}: layer {position + 1} ({name})"
            self._layers[key] = await anyio.to_thread.run_sync(
                lambda: prepare_layer(self.path, member, self._tmpdir or Path(), where=where, diff_id=diff_id,
                                      checkpoint=anyio.from_thread.check_cancelled), limiter=limiter)

    # -- destination
    def _images(self) -> list[tuple[Manifest, list[str]]]:
        """Written images with their RepoTags; the location's ``repo:tag`` goes to the last image put
        without a tag (the root of that copy), unless another image holds it."""
        default = _familiar(self.ref) if self.ref is not None else None
        if default is not None and any(default in w.tags for w in self._written.values()):
            default = None  # an explicit tag took it
        return [(w.manifest, [*w.tags, default] if default is not None and d == self._last_untagged else w.tags)
                for d, w in self._written.items()]

    def _find_written(self, ref: str) -> Manifest | None:
        want = _normal_tag(ref)
        return next((m for m, tags in self._images() if want in {_normal_tag(t) for t in tags}), None)

    def _repo_tag(self, tag: str) -> str | None:
        """The RepoTag for ``tag``: a bare tag joins the location's repository."""
        if ":" in tag or "/" in tag:
            return _familiar(tag)
        if self.ref is None:
            log.warning("%s: tag %r has no repository; the image is written without RepoTags", self.name, tag)
            return None
        return _familiar(f"{Reference.parse(self.ref).name}:{tag}")

    def admit(self, manifests: Sequence[Manifest]) -> None:
        """Refuse, before a blob is copied, what ``docker load`` and ``podman load`` cannot load: a
        multi-platform index, or an artifact (an SBOM, a signature: c/image says "rootFS is not set")."""
        root = manifests[-1]
        if root.is_index:
            raise StoreError(f"{self.name}: a docker-archive holds single-platform images, and {root.digest.short}"
                             " is a multi-platform index; pass --platform to pick one")
        for manifest in manifests:
            why = not_an_image(manifest)
            if why is not None:
                raise StoreError(f"{self.name}: {why}; a docker-archive holds container images only")

    async def put_manifest(self, manifest: Manifest, tag: str | None) -> None:
        self._writer()
        if manifest.is_index:
            for child in manifest.children():  # its platforms were put untagged just before: drop them
                if (written := self._written.get(child.digest)) is not None and not written.tags:
                    del self._written[child.digest]
            self._last_untagged = None
            raise StoreError(f"{self.name}: a docker-archive holds single-platform images, and {manifest.digest.short}"
                             " is a multi-platform index; pass --platform to pick one")
        written = self._written.setdefault(manifest.digest, _Written(manifest))
        repo_tag = self._repo_tag(tag) if tag is not None else None
        if tag is None:
            self._last_untagged = manifest.digest
        elif repo_tag is not None:
            for other in self._written.values():  # a tag names one image
                other.tags[:] = [t for t in other.tags if t != repo_tag]
            written.tags.append(repo_tag)

    async def commit(self) -> None:
        """Write ``manifest.json``, ``repositories``, configs (``<hex>.json``) and layers (``<hex>.tar``).

        Layer files hold the layer blobs as copied (usually gzip): ``docker load`` and c/image
        (``skopeo copy docker-archive:…``) both decompress them (c/image tarfile/src.go).
        """
        spool = self._writer()
        manifest_json: list[dict[str, Any]] = []
        repositories: dict[str, dict[str, str]] = {}
        files: dict[str, Path] = {}
        for m, tags in self._images():
            if m.config is None:
                raise StoreError(f"{self.name}: {m.digest.short} has no config; it is not a container image")
            for blob in (m.config, *m.layers):
                if not await spool.has_blob(blob):
                    raise StoreError(f"{self.name}: blob {blob.digest.short} of {m.digest.short} was not copied"
                                     " (a foreign layer?)")
            names = [f"{layer.digest.hex}.tar" for layer in m.layers]
            manifest_json.append({"Config": f"{m.config.digest.hex}.json", "RepoTags": tags, "Layers": names})
            files[f"{m.config.digest.hex}.json"] = spool.root / blob_name(m.config.digest)
            files.update((n, spool.root / blob_name(layer.digest)) for n, layer in zip(names, m.layers, strict=True))
            for t in tags:  # legacy: repository → tag → top layer id (docker load reads manifest.json first)
                repo, _, tag = t.rpartition(":")
                repositories.setdefault(repo, {})[tag] = m.layers[-1].digest.hex if m.layers else ""
        entries: list[TarEntry] = [
            ("manifest.json", json.dumps(manifest_json, separators=(",", ":")).encode()),
            ("repositories", json.dumps(repositories, separators=(",", ":")).encode()),
            *sorted(files.items()),
        ]
        await anyio.to_thread.run_sync(write_tar, self.path, entries, anyio.from_thread.check_cancelled)


def _as_digest(ref: str) -> Digest | None:
    try:
        return Digest.parse(ref)
    except InvalidReference:
        return None


async def _one(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), CHUNK):
        yield data[start:start + CHUNK]


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first error of a fail-fast group that is not a sibling's cancellation (so callers can
    catch :class:`StoreError` itself, docs/architecture.md#concurrency-and-cancellation)."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        exc = pending.pop(0)
        if isinstance(exc, BaseExceptionGroup):
            pending[:0] = exc.exceptions
        else:
            leaves.append(exc)
    cancelled = anyio.get_cancelled_exc_class()
    return next((e for e in leaves if not isinstance(e, cancelled)), leaves[0])
