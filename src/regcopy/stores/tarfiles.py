"""Tar access without extraction: index a tar once, serve its files as byte ranges, write one sequentially.

Owns reading an uncompressed tar (:func:`index_tar` in a worker thread: member → data offset and size,
symlinks and hard links resolved, truncation detected; :class:`TarFiles` serves members as
:class:`~regcopy.stores.layout.LayoutFiles`) and writing one (:func:`write_tar`: pinned headers, a temp
file beside the target locked as scratch, fsynced and renamed into place, stoppable between 1 MiB
pieces). Both archive stores build on it (:mod:`regcopy.stores.archive`,
:mod:`regcopy.stores.dockerarchive`).
"""

from __future__ import annotations

import os
import posixpath
import tarfile
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

import anyio

from regcopy.errors import StoreError
from regcopy.stores.layout import CHUNK, fsync_dir
from regcopy.stores.scratch import ScratchArea

__all__ = (
    "GZIP_MAGIC",
    "TarEntry",
    "TarFiles",
    "TarMember",
    "index_tar",
    "member_key",
    "range_chunks",
    "write_tar",
)

GZIP_MAGIC: Final = b"\x1f\x8b"


@dataclass(frozen=True, slots=True)
class TarMember:
    """Where a regular file's data lies in an uncompressed tar."""

    offset: int
    size: int


def member_key(name: str) -> str:
    """A member name as the index keys it: normalised, without a leading slash."""
    return posixpath.normpath("/" + name).lstrip("/")


def index_tar(path: Path) -> dict[str, TarMember]:
    """Index a tar's regular files by normalised name, links resolved (blocking: run in a thread).

    :raises StoreError: missing, compressed, not a tar, or truncated (a member or the end marker cut off)
    """
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below; tarfile does not own it
    except OSError as exc:
        raise StoreError(f"{path}: cannot open archive ({exc.strerror})") from exc
    with f:
        if f.read(2) == GZIP_MAGIC:
            raise StoreError(f"{path}: the archive is gzip-compressed; decompress it first (gunzip)")
        f.seek(0)
        files, links, end = _scan(f, path)
        size = os.fstat(f.fileno()).st_size
        for name, member in files.items():
            if member.offset + member.size > size:
                raise StoreError(f"{path}: truncated archive ({name} ends past the end of the file)")
        # Every tar writer ends with zero blocks (POSIX: two 512-byte blocks); a cut exactly between
        # members leaves a well-formed prefix that only this check catches.
        f.seek(end)
        marker = f.read(512)
        if len(marker) < 512 or marker.strip(b"\0"):
            raise StoreError(f"{path}: truncated archive (no end-of-archive marker after the last member)")
    for name in links:
        target = _follow(name, files, links)
        if target is not None:
            files[name] = target
    return files


def _scan(f: IO[bytes], path: Path) -> tuple[dict[str, TarMember], dict[str, str], int]:
    files: dict[str, TarMember] = {}
    links: dict[str, str] = {}
    try:
        with tarfile.open(fileobj=f, mode="r:") as tar:
            for m in tar:  # headers only: iteration seeks over the data
                name = member_key(m.name)
                if m.isreg():
                    files[name] = TarMember(m.offset_data, m.size)
                    links.pop(name, None)
                elif m.issym():
                    links[name] = member_key(posixpath.join(posixpath.dirname(name), m.linkname))
                elif m.islnk():
                    links[name] = member_key(m.linkname)
            end = tar.offset
    except (tarfile.TarError, EOFError) as exc:
        if "unexpected end of data" in str(exc):  # tarfile's check that the previous member's data is whole
            raise StoreError(f"{path}: truncated archive (a member's data is cut off)") from exc
        raise StoreError(f"{path}: not a readable tar archive ({exc})") from exc
    return files, links, end


def _follow(name: str, files: dict[str, TarMember], links: dict[str, str]) -> TarMember | None:
    for _ in range(16):  # bounded: a link loop resolves to nothing
        name = links.get(name, name)
        if name in files:
            return files[name]
        if name not in links:
            return None
    return None


def _read_range(path: Path, offset: int, size: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read(size)
    if len(data) != size:
        raise StoreError(f"{path}: truncated archive (the file shrank while reading)")
    return data


async def range_chunks(path: Path, offset: int, size: int) -> AsyncIterator[bytes]:
    """``size`` bytes of ``path`` from ``offset``, in :data:`~regcopy.stores.layout.CHUNK` pieces."""
    async with await anyio.open_file(path, "rb") as f:
        await f.seek(offset)
        left = size
        while left:
            chunk = await f.read(min(CHUNK, left))
            if not chunk:
                raise StoreError(f"{path}: truncated archive (the file shrank while reading)")
            left -= len(chunk)
            yield chunk


class TarFiles:
    """:class:`regcopy.stores.layout.LayoutFiles` over an indexed tar: files are byte ranges of it."""

    def __init__(self, path: Path, members: dict[str, TarMember]) -> None:
        self.path = path
        self.members = members

    def where(self, name: str) -> str:
        return f"{self.path}:{name}"

    async def size(self, name: str) -> int | None:
        member = self.members.get(member_key(name))
        return None if member is None else member.size

    def member(self, name: str) -> TarMember:
        """The member ``name``. :raises StoreError: not in the archive"""
        member = self.members.get(member_key(name))
        if member is None:
            raise StoreError(f"{self.where(name)}: missing from the archive")
        return member

    async def read(self, name: str, limit: int) -> bytes:
        member = self.member(name)
        if member.size > limit:
            raise StoreError(f"{self.where(name)}: {member.size} bytes is more than the {limit}-byte limit")
        return await anyio.to_thread.run_sync(_read_range, self.path, member.offset, member.size)

    def chunks(self, name: str) -> AsyncIterator[bytes]:
        member = self.member(name)
        return range_chunks(self.path, member.offset, member.size)


TarEntry = tuple[str, Path | bytes | None]
"""An archive entry to write: name and a file to copy, literal bytes, or None for a directory."""


def write_tar(target: Path, entries: Sequence[TarEntry], checkpoint: Callable[[], None] = lambda: None) -> None:
    """Write ``entries`` as an uncompressed tar to a temp file beside ``target``, then rename (blocking).

    Headers are pinned (mtime 0, root owner, 0644/0755) so equal content gives equal archives.

    :param checkpoint: called before every 1 MiB piece; what it raises (a cancellation) stops the
        write and removes the temp file, leaving ``target`` untouched
    """
    claim = ScratchArea.beside(target).new_file()
    try:
        with os.fdopen(os.dup(claim.fd), "wb") as out:
            with tarfile.TarFile(fileobj=out, mode="w", format=tarfile.PAX_FORMAT, copybufsize=CHUNK) as tar:
                for name, content in entries:
                    checkpoint()
                    _add(tar, name, content, checkpoint)
            out.flush()
            os.fchmod(out.fileno(), 0o644)
            os.fsync(out.fileno())
        os.replace(claim.path, target)
        fsync_dir(target.parent)
    except BaseException:
        claim.discard()
        raise
    claim.close()


def _add(tar: tarfile.TarFile, name: str, content: Path | bytes | None, checkpoint: Callable[[], None]) -> None:
    info = tarfile.TarInfo(name)
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "root", "root"
    if content is None:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
    elif isinstance(content, bytes):
        info.size, info.mode = len(content), 0o644
        tar.addfile(info, _BytesReader(content))
    else:
        info.size, info.mode = content.stat().st_size, 0o644
        with open(content, "rb") as f:
            tar.addfile(info, _Checked(f, checkpoint))


class _Checked:
    """A file object whose every read first calls ``checkpoint`` (tarfile copies in CHUNK reads)."""

    def __init__(self, f: IO[bytes], checkpoint: Callable[[], None]) -> None:
        self._f = f
        self._checkpoint = checkpoint

    def read(self, n: int = -1) -> bytes:
        self._checkpoint()
        return self._f.read(n)


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)

    def read(self, n: int = -1) -> bytes:
        n = len(self._data) if n < 0 else n
        out, self._data = bytes(self._data[:n]), self._data[n:]
        return out
