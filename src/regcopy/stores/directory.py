"""skopeo's ``dir:`` transport: one image per directory, and a tree of them for ``sync --src/--dest dir``.

Owns the format c/image's ``directory`` transport writes (containers-transports(5); c/image
``directory/directory_transport.go``, ``directory_dest.go``): a ``version`` file reading
``Directory Transport Version: 1.1``, ``manifest.json`` holding the root manifest's exact bytes,
``<hex>.manifest.json`` for each manifest of an index, and every config and layer under its bare hex
digest. Signatures (``signature-N``) are neither read nor written. A ``dir:`` has no tags: it holds
exactly one image, whose identifier is its root digest.

As a sync source or target (``tree=True``) a directory is a tree of such image directories, named as
skopeo sync names them: ``ROOT/app:v1``, or ``ROOT/host/ns/app:v1`` with ``--scoped``; an image
directory's path relative to the root is its ref (``app:v1``: tag ``v1`` of repository ``app``; a
name without ``:`` is tag ``latest``, as skopeo's docker reference defaults it).

Writing spools blobs and manifests into a locked temp layout beside the target, as the archive stores
do (:mod:`regcopy.stores.archive`), and on :meth:`DirectoryStore.commit` builds each image directory
beside its place (blobs hard-linked from the spool, else copied; fsynced) and swaps it in, so a reader
never sees a half-written image. An existing directory is replaced only when it is empty or a
``dir:`` image already (c/image refuses the same: "not a containers image directory").
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

import anyio

from regcopy.digest import Digest
from regcopy.errors import InvalidReference, RegcopyError, StoreError
from regcopy.manifest import MAX_MANIFEST_SIZE, Descriptor, Manifest
from regcopy.stores.archive import _Archive
from regcopy.stores.base import close_stream
from regcopy.stores.layout import DirFiles, LayoutStore, blob_name, fsync_dir
from regcopy.stores.scratch import ScratchArea

__all__ = ("DIR_VERSION", "DirectoryStore", "ImageDir", "tree_ref")

DIR_VERSION: Final = b"Directory Transport Version: 1.1\n"
_VERSION_FILE: Final = "version"
_MANIFEST_FILE: Final = "manifest.json"


def tree_ref(relative: str) -> str:
    """The ref of an image directory at ``relative`` (``ns/app:v1``), ``:latest`` added to a bare name."""
    last = relative.rsplit("/", 1)[-1]
    return relative if ":" in last else f"{relative}:latest"


class ImageDir:
    """The read side of one ``dir:`` image directory: root, child manifests (verified) and blobs."""

    def __init__(self, path: Path, name: str) -> None:
        self.path = path
        self.name = name
        self.files = DirFiles(path)
        self._root: Manifest | None = None

    async def root(self) -> Manifest:
        """``manifest.json``, parsed. :raises StoreError: missing or not a manifest"""
        if self._root is None:
            data = await self.files.read(_MANIFEST_FILE, MAX_MANIFEST_SIZE)
            try:
                self._root = Manifest.parse(data)
            except RegcopyError as exc:
                raise StoreError(f"{self.files.where(_MANIFEST_FILE)}: {exc}") from exc
        return self._root

    async def manifest(self, digest: Digest) -> Manifest:
        """The root or a child manifest by digest, verified."""
        root = await self.root()
        if digest == root.digest:
            return root
        name = f"{digest.hex}.manifest.json"
        data = await self.files.read(name, MAX_MANIFEST_SIZE)
        try:
            return Manifest.parse(data, digest=digest)
        except RegcopyError as exc:
            raise StoreError(f"{self.files.where(name)}: {exc}") from exc

    async def has_blob(self, desc: Descriptor) -> bool:
        return await self.files.size(desc.digest.hex) == desc.size

    async def open_blob(self, desc: Descriptor) -> AsyncIterator[bytes]:
        """A blob's bytes, after checking it exists with the descriptor's size."""
        size = await self.files.size(desc.digest.hex)
        if size != desc.size:
            what = "missing" if size is None else f"{size} bytes, the descriptor says {desc.size}"
            raise StoreError(f"{self.files.where(desc.digest.hex)}: blob {what}")
        chunks = self.files.chunks(desc.digest.hex)
        try:
            async for chunk in chunks:
                yield chunk
        finally:
            await close_stream(chunks)


class DirectoryStore(_Archive):
    """A ``dir:`` image directory (``tree=False``) or a tree of them (``tree=True``, sync).

    :param path: the image directory, or the tree's root
    :param writable: open for writing (images are replaced on commit)
    :param tree: a tree of image directories named by ref, as skopeo sync reads and writes them
    """

    transport = "dir"

    def __init__(self, path: str | os.PathLike[str], *, writable: bool = False, tree: bool = False) -> None:
        super().__init__(path, None, writable=writable)
        self.tree = tree
        self._images: dict[str, ImageDir] = {}
        self._blob_homes: dict[Digest, ImageDir] = {}
        self._written: dict[str, Digest] = {}
        self._last: Digest | None = None

    async def open(self) -> None:
        """Find the image(s) (reading) and make the spool (writing). :raises StoreError: not a ``dir:``"""
        exists = await anyio.Path(self.path).is_dir()
        if self.tree:
            found = await anyio.to_thread.run_sync(_find_images, self.path) if exists else {}
            self._images = {ref: ImageDir(self.path / rel, f"{self.name}/{rel}") for ref, rel in found.items()}
        elif exists and await anyio.Path(self.path / _MANIFEST_FILE).is_file():
            self._images = {"": ImageDir(self.path, self.name)}
        if self.writable:
            await self._open_spool()
        elif not self._images:
            what = "holds no dir: image" if self.tree else "is not a dir: image (no manifest.json)"
            raise StoreError(f"{self._display} {what}")

    # -- source
    async def default_identifier(self) -> str:
        """The image's root digest (a ``dir:`` has no tags); a tree's only image's ref."""
        if not self.tree:
            return str((await self._one().root()).digest)
        if len(self._images) != 1:
            raise StoreError(f"{self.name} holds {len(self._images)} images; name one")
        return next(iter(self._images))

    def _one(self) -> ImageDir:
        image = self._images.get("")
        if image is None:
            raise StoreError(f"{self.name}: no image written yet")
        return image

    async def _image(self, ref: str) -> ImageDir:
        """The image directory a ref or digest names."""
        if not self.tree:
            image = self._one()
            digest = _as_digest(ref)
            if digest is not None and digest != (await image.root()).digest:
                raise StoreError(f"{self.name} holds {(await image.root()).digest}, not {digest}")
            return image
        found = self._images.get(ref) or self._images.get(tree_ref(ref))
        if found is None:
            raise StoreError(f"{self.name}: no image {ref!r} (images: {', '.join(sorted(self._images)) or 'none'})")
        return found

    async def head(self, ref: str) -> Digest | None:
        if ref in self._written:
            return self._written[ref]
        try:
            return (await (await self._image(ref)).root()).digest
        except StoreError:
            return None

    async def resolve(self, ref: str) -> Manifest:
        if self._spool is not None and ref in self._written:
            return await self._spool.get_manifest(self._written[ref])
        image = await self._image(ref)
        root = await image.root()
        self._home(image, root)
        return root

    def _home(self, image: ImageDir, manifest: Manifest) -> None:
        for desc in (*manifest.blobs(), *manifest.children()):
            self._blob_homes.setdefault(desc.digest, image)

    async def get_manifest(self, digest: Digest) -> Manifest:
        image = self._blob_homes.get(digest) or (self._one() if not self.tree else None)
        if image is None:
            raise StoreError(f"{self.name}: no manifest {digest} (resolve the image first)")
        manifest = await image.manifest(digest)
        self._home(image, manifest)
        return manifest

    def open_blob(self, desc: Descriptor) -> AsyncIterator[bytes]:
        image = self._blob_homes.get(desc.digest) or (self._one() if not self.tree else None)
        if image is None:
            raise StoreError(f"{self.name}: no blob {desc.digest} (resolve the image first)")
        return image.open_blob(desc)

    async def list_tags(self) -> list[str]:
        """A tree's image refs (``app:v1``); a single ``dir:`` has none."""
        return sorted({*self._images, *self._written} - {""}) if self.tree else []

    # -- destination
    @property
    def repository(self) -> str:
        return ""

    async def put_manifest(self, manifest: Manifest, tag: str | None) -> None:
        """Spool the manifest; a tagged one (the root of a copy) becomes an image on commit."""
        spool = self._writer()
        await spool.put_manifest(manifest, None)
        if self.tree and tag is not None:
            _check_tree_ref(self.name, tag)
            self._written[tag] = manifest.digest
        self._last = manifest.digest

    async def commit(self) -> None:
        """Build each image written since the last commit beside its place and swap it in."""
        spool = self._writer()
        targets = {self.path / ref: digest for ref, digest in self._written.items()} if self.tree else (
            {self.path: self._last} if self._last is not None else {})
        for path, digest in targets.items():
            root = await spool.get_manifest(digest)
            files = await _image_files(spool, root)
            await anyio.to_thread.run_sync(_install, path, root, files)
            self._images[self._ref_of(path)] = ImageDir(path, self.name)
        self._written.clear()
        self._last = None

    def _ref_of(self, path: Path) -> str:
        return tree_ref(path.relative_to(self.path).as_posix()) if self.tree else ""


def _as_digest(ref: str) -> Digest | None:
    try:
        return Digest.parse(ref)
    except InvalidReference:
        return None


def _check_tree_ref(where: str, ref: str) -> None:
    parts = ref.split("/")
    if ref.startswith("/") or any(p in ("", ".", "..") or p.startswith(".") or "\0" in p for p in parts):
        raise StoreError(f"{where}: {ref!r} cannot name an image directory (empty, hidden or '..' parts)")
    if ":" not in parts[-1]:
        raise StoreError(f"{where}: {ref!r} has no repository name; images in a dir tree are NAME:TAG")


def _find_images(root: Path) -> dict[str, str]:
    """ref → path relative to ``root`` of every image directory (one holding ``manifest.json``) under
    ``root``, not descending into an image (skopeo sync ``imagesToCopyFromDir``); hidden entries, such
    as regcopy's own temp directories, are skipped. Blocking."""
    found: dict[str, str] = {}
    for current, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if _MANIFEST_FILE in files:
            dirs.clear()
            relative = Path(current).relative_to(root).as_posix()
            found[tree_ref(Path(root).name if relative == "." else relative)] = relative
    return found


async def _image_files(spool: LayoutStore, root: Manifest) -> dict[str, Path]:
    """File name in the image directory → its source in the spool, for the root's whole graph."""
    files: dict[str, Path] = {}
    pending = [root]
    while pending:
        manifest = pending.pop()
        if manifest is not root:
            files[f"{manifest.digest.hex}.manifest.json"] = spool.root / blob_name(manifest.digest)
        for blob in manifest.blobs():
            files[blob.digest.hex] = spool.root / blob_name(blob.digest)
        pending.extend([await spool.get_manifest(child.digest) for child in manifest.children()])
    return files


def _install(path: Path, root: Manifest, files: dict[str, Path]) -> None:
    """Build the image directory beside ``path`` and swap it in (blocking)."""
    _refuse_foreign(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = ScratchArea.beside(path)
    new = scratch.new_dir()
    try:
        for name, source in files.items():
            _link_or_copy(source, new.path / name)
        (new.path / _MANIFEST_FILE).write_bytes(root.data)
        (new.path / _VERSION_FILE).write_bytes(DIR_VERSION)
        for child in new.path.iterdir():
            os.chmod(child, 0o644)  # mkdtemp's 0700 and hard-linked spool files: shared as c/image writes them
        os.chmod(new.path, 0o755)
        fsync_dir(new.path)
        _swap(new.path, path, scratch)
        fsync_dir(path.parent)
    except BaseException:
        new.discard()
        raise
    new.close()


def _refuse_foreign(path: Path) -> None:
    if not path.is_dir() or not any(path.iterdir()):
        if path.exists() and not path.is_dir():
            raise StoreError(f"{path}: exists and is not a directory")
        return
    version = path / _VERSION_FILE
    if not version.is_file() or not version.read_bytes().startswith(b"Directory Transport Version: "):
        raise StoreError(f"{path}: not empty and not a dir: image; refusing to overwrite it")


def _swap(new: Path, path: Path, scratch: ScratchArea) -> None:
    if not path.exists():
        os.rename(new, path)
        return
    old = scratch.new_dir()
    try:
        os.replace(path, old.path)  # onto the empty temp directory
        os.rename(new, path)
    finally:
        shutil.rmtree(old.path, ignore_errors=True)
        old.discard()


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
        with open(target, "rb") as f:
            os.fsync(f.fileno())
