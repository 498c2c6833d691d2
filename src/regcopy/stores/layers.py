"""Layer files of a classic docker-archive as registry blobs: compression by magic bytes, diff_id checks.

Owns what a layer member of a ``docker save`` / ``podman save`` tar is and how it becomes a blob. A
member may be a plain tar (``docker save``), gzip (older podman, umoci) or zstd (podman with zstd
layers); the name says nothing (``<hex>.tar``, ``<hex>/layer.tar``), so the first bytes decide
(:func:`sniff`, as c/image ``pkg/compression`` ``DetectCompression`` does). A gzip or zstd member keeps
its bytes; a plain tar is gzip-compressed once into a temp file. Whatever the input, the uncompressed
bytes must hash to the config's ``rootfs.diff_ids`` entry for that layer (image-spec config.md,
"rootfs"), so a layer that would not apply on ``podman pull`` or ``docker load`` is refused here, with
the layer named, instead of being copied. zstd is checked when a decoder is present (the standard
library's ``compression.zstd`` on Python 3.14, else the ``zstandard`` package: the ``regcopy[zstd]``
extra); without one a zstd layer is kept unchecked, which the log says.

Blocking functions: call them in a worker thread. Memory stays at one :data:`CHUNK` per layer.
"""

from __future__ import annotations

import gzip
import importlib
import io
import logging
import os
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final, Literal, Protocol

from regcopy.convert import OCI_LAYER_ZSTD
from regcopy.digest import Digest, Hasher
from regcopy.errors import StoreError
from regcopy.manifest import DOCKER_LAYER, OCI_LAYER
from regcopy.stores.layout import CHUNK
from regcopy.stores.tarfiles import TarMember

__all__ = (
    "Compression",
    "PreparedLayer",
    "prepare_layer",
    "sniff",
    "zstd_decoder_available",
)

log = logging.getLogger(__name__)

Compression = Literal["gzip", "zstd", "none", "bzip2", "xz"]

# c/image pkg/compression/compression.go: the magic numbers it recognises.
_MAGIC: Final[tuple[tuple[bytes, Compression], ...]] = (
    (b"\x1f\x8b", "gzip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
)
_GZIP_LEVEL: Final = 6  # what docker and c/image use (Go's gzip.DefaultCompression)


def sniff(head: bytes) -> Compression:
    """The compression of a stream starting with ``head`` (at least 6 bytes when the stream has them)."""
    return next((kind for magic, kind in _MAGIC if head.startswith(magic)), "none")


@dataclass(frozen=True, slots=True)
class PreparedLayer:
    """A layer member as a blob: its digest and size, where its bytes are, and its compression.

    :ivar source: the member itself (gzip or zstd kept as is) or a temp file (a plain tar, gzipped)
    :ivar compression: of the blob: ``gzip`` or ``zstd``
    :ivar checked: the uncompressed bytes were hashed and matched the diff_id
    """

    digest: Digest
    size: int
    source: TarMember | Path
    compression: Literal["gzip", "zstd"]
    checked: bool

    def media_type(self, *, oci: bool) -> str:
        """The blob's layer media type in an OCI (``oci=True``) or Docker schema 2 manifest."""
        if self.compression == "zstd":
            return OCI_LAYER_ZSTD  # Docker schema 2 has no zstd type (c/image refuses it there too)
        return OCI_LAYER if oci else DOCKER_LAYER


def _zstd_module() -> Any:
    for name in ("compression.zstd", "zstandard"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


def zstd_decoder_available() -> bool:
    """Whether zstd layers can be decompressed here (to check their diff_ids)."""
    return _zstd_module() is not None


class _Bounded:
    """The ``size`` bytes of a file from its current position, as a readable file object."""

    def __init__(self, f: IO[bytes], size: int, checkpoint: Callable[[], None]) -> None:
        self._f = f
        self._left = size
        self._checkpoint = checkpoint

    def read(self, n: int = -1, /) -> bytes:
        self._checkpoint()
        n = self._left if n < 0 else min(n, self._left)
        data = self._f.read(n) if n else b""
        self._left -= len(data)
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        """Nothing to release: the caller owns the file."""

    def seek(self, offset: int, whence: int = 0, /) -> int:
        raise io.UnsupportedOperation("a layer member is read once, front to back")


class _Reader(Protocol):
    def read(self, n: int, /) -> bytes: ...

    def close(self) -> None: ...


def _decompressed(kind: Compression, raw: _Bounded) -> _Reader | None:
    """A reader of the uncompressed bytes, or None when this machine cannot decompress ``kind``."""
    if kind == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    module = _zstd_module() if kind == "zstd" else None
    if module is None:
        return None
    if module.__name__ == "zstandard":
        reader: _Reader = module.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
        return reader
    zstd_file: _Reader = module.ZstdFile(raw, mode="rb")
    return zstd_file


def _check(where: str, actual: Digest, diff_id: Digest | None) -> None:
    if diff_id is not None and actual != diff_id:
        raise StoreError(f"{where}: its uncompressed bytes hash to {actual}, but the image config's"
                         f" rootfs.diff_ids says {diff_id}; the archive is corrupt or its layers are mislabelled")


def prepare_layer(archive: Path, member: TarMember, tmpdir: Path, *, where: str, diff_id: Digest | None,
                  checkpoint: Callable[[], None] = lambda: None) -> PreparedLayer:
    """A layer member as a blob, checked against ``diff_id`` (blocking: call in a worker thread).

    :param where: names the layer in errors (``archive.tar: layer 2 (abc/layer.tar)``)
    :param diff_id: the config's ``rootfs.diff_ids`` entry for this layer (None: nothing to check)
    :param checkpoint: called before every piece, so a cancellation stops a long layer
    :raises StoreError: bzip2 or xz (no registry media type holds them), a corrupt stream, or a diff_id mismatch
    """
    with open(archive, "rb") as f:
        f.seek(member.offset)
        kind = sniff(f.read(8))
        f.seek(member.offset)
        if kind in ("bzip2", "xz"):
            raise StoreError(f"{where}: {kind}-compressed; registries hold gzip, zstd or plain tar layers"
                             " (recompress it with gzip first)")
        if kind == "gzip" or kind == "zstd":
            return _keep(f, member, kind, where, diff_id, checkpoint)
        return _gzip_plain(f, member.size, tmpdir, where, diff_id, checkpoint)


def _keep(f: IO[bytes], member: TarMember, kind: Literal["gzip", "zstd"], where: str, diff_id: Digest | None,
          checkpoint: Callable[[], None]) -> PreparedLayer:
    """A compressed member kept byte for byte: its digest, and its diff_id checked when decodable."""
    hasher = Hasher()
    for chunk in _pieces(_Bounded(f, member.size, checkpoint)):
        hasher.update(chunk)
    checked = False
    if diff_id is not None:
        f.seek(member.offset)
        reader = _decompressed(kind, _Bounded(f, member.size, checkpoint))
        if reader is None:
            log.info("%s: zstd layer kept without checking its diff_id (install regcopy[zstd] to check it)", where)
        else:
            _check(where, _uncompressed_digest(reader, where, kind), diff_id)
            checked = True
    return PreparedLayer(hasher.digest(), hasher.size, member, kind, checked)


def _uncompressed_digest(reader: _Reader, where: str, kind: str) -> Digest:
    uncompressed = Hasher()
    module = _zstd_module()
    # gzip.BadGzipFile is an OSError, a truncated stream an EOFError; zstd decoders raise their ZstdError.
    errors: tuple[type[BaseException], ...] = (OSError, EOFError, ValueError, zlib.error)
    if module is not None:
        errors += (module.ZstdError,)
    try:
        try:
            for chunk in _pieces(reader):
                uncompressed.update(chunk)
        finally:
            reader.close()
    except errors as exc:
        raise StoreError(f"{where}: not a valid {kind} stream ({exc})") from exc
    return uncompressed.digest()


def _gzip_plain(f: IO[bytes], size: int, tmpdir: Path, where: str, diff_id: Digest | None,
                checkpoint: Callable[[], None]) -> PreparedLayer:
    """A plain tar member gzip-compressed into a temp file in ``tmpdir``, its input hashed as the diff_id."""
    fd, tmp = tempfile.mkstemp(dir=tmpdir, suffix=".tar.gz")
    try:
        with os.fdopen(fd, "wb") as out:
            hashing = _HashingFile(out)
            uncompressed = Hasher()
            with gzip.GzipFile(filename="", mode="wb", fileobj=hashing, compresslevel=_GZIP_LEVEL, mtime=0) as gz:
                for chunk in _pieces(_Bounded(f, size, checkpoint)):
                    uncompressed.update(chunk)
                    gz.write(chunk)
        _check(where, uncompressed.digest(), diff_id)
    except BaseException:
        os.unlink(tmp)
        raise
    return PreparedLayer(hashing.hasher.digest(), hashing.hasher.size, Path(tmp), "gzip", diff_id is not None)


class _HashingFile:
    """A write-only file object that hashes what passes to the real file."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.hasher = Hasher()

    def write(self, data: bytes) -> int:
        self.hasher.update(data)
        return self.out.write(data)

    def flush(self) -> None:
        self.out.flush()


def _pieces(f: _Reader | _Bounded) -> Iterator[bytes]:
    while chunk := f.read(CHUNK):
        yield chunk
