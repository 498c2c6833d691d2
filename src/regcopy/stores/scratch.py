"""Temp items beside a local store's output: named for regcopy, owned by the live writer through
``flock``, and swept by a later run once their writer is gone.

Owns the names and the ownership of everything regcopy writes before it is final: a layout's temp
blob and metadata files, an archive's spool directory and its partial tar. Each item is created under
a regcopy name and locked (``flock(LOCK_EX)``) by the process writing it for as long as the item
exists. The kernel drops a lock when the process holding it dies, however it dies (SIGKILL, OOM
kill, power loss), so an item whose lock another process can take is a leftover: :meth:`ScratchArea.sweep`
removes it. A locked item belongs to a live writer (another regcopy, or another store of this one:
flock locks belong to open file descriptions, so they conflict inside one process too) and stays.
No pid is trusted (pids are reused, and a shared volume may be written from several machines).

Races are closed by checking identity after locking: a writer that finds its new item gone or
replaced once it holds the lock (a sweep removed it in between) makes another; a sweep that finds the
path no longer names the inode it locked leaves it alone. On a filesystem without working ``flock``
nothing is swept: ownership that cannot be proven is assumed.

Items regcopy wrote before it locked them (``.regcopy-tmp-*``, ``.NAME.spool-*``, ``.NAME.*.tmp``)
carry no lock; they are removed once nothing in them has changed for :data:`LEGACY_AGE`.

A sweep reads only direct children of its directory whose names are regcopy's, never follows a
symbolic link (a link, fifo or device with such a name is left alone) and never leaves the directory.
All functions block: call them in a worker thread.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = ("LEGACY_AGE", "PARTIAL", "SPOOL", "Claim", "ScratchArea", "Swept")

log = logging.getLogger(__name__)

PARTIAL: Final = "regcopy-partial-"
"""Name part of a temp file (a blob, ``index.json`` or a tar being written)."""
SPOOL: Final = "regcopy-spool-"
"""Name part of an archive's spool directory."""
LEGACY_AGE: Final = 24 * 3600.0
"""Seconds without a change after which an unlocked item of an older regcopy is a leftover."""
_CREATE_TRIES: Final = 8


@dataclass(frozen=True, slots=True)
class Swept:
    """What a sweep removed."""

    items: int = 0
    bytes: int = 0


class Claim:
    """A temp item this process created and holds locked; :meth:`close` releases the lock.

    :param path: the file or directory
    :param fd: the locked descriptor (a file's is open for reading and writing)
    """

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd

    def close(self) -> None:
        """Release the lock (idempotent). The item stays: renamed into place, or removed first."""
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def discard(self) -> None:
        """Remove the item, then release the lock (so no sweep ever sees it unlocked)."""
        try:
            if self.path.is_dir() and not self.path.is_symlink():
                shutil.rmtree(self.path, ignore_errors=True)
            else:
                self.path.unlink(missing_ok=True)
        finally:
            self.close()


class ScratchArea:
    """Where one store's temp items live: ``directory``, names starting with ``prefix``.

    :param directory: a layout's root, or the directory holding an archive
    :param prefix: ``"."`` for a layout, ``".NAME."`` beside archive ``NAME`` (so a sweep for one
        archive never touches another's items)
    :param legacy: full-match pattern of the unlocked names older regcopy versions used here
    """

    def __init__(self, directory: Path, prefix: str, legacy: re.Pattern[str] | None = None) -> None:
        self.directory = directory
        self.prefix = prefix
        self.legacy = legacy

    @classmethod
    def for_layout(cls, root: Path) -> ScratchArea:
        """A layout's temp items: ``.regcopy-partial-*`` in its root."""
        return cls(root, ".", re.compile(r"\.regcopy-tmp-[a-z0-9_]{8}"))

    @classmethod
    def beside(cls, target: Path) -> ScratchArea:
        """An archive's temp items: ``.NAME.regcopy-{partial,spool}-*`` in the archive's directory."""
        name = re.escape(target.name)
        legacy = re.compile(rf"\.{name}\.(spool-[a-z0-9_]{{8}}|[a-z0-9_]{{8}}\.tmp)")
        return cls(target.parent, f".{target.name}.", legacy)

    # -- creating
    def new_file(self) -> Claim:
        """A new, empty, locked temp file (mode 0600, open for reading and writing)."""
        return self._create(lambda: tempfile.mkstemp(dir=self.directory, prefix=self.prefix + PARTIAL))

    def new_dir(self) -> Claim:
        """A new, empty, locked temp directory (mode 0700)."""
        def make() -> tuple[int, str]:
            path = tempfile.mkdtemp(dir=self.directory, prefix=self.prefix + SPOOL)
            return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC), path
        return self._create(make)

    def _create(self, make: Callable[[], tuple[int, str]]) -> Claim:
        for _ in range(_CREATE_TRIES):
            fd, name = make()
            path = Path(name)
            locked = _lock(fd)
            if locked is None or (locked and _same(path, fd)):
                return Claim(path, fd)  # None: no locks here, so no sweep can prove it dead either
            # A sweep locked it between our create and our lock, and removes it: make another.
            os.close(fd)
        raise OSError(errno.EAGAIN, f"could not create a temp item in {self.directory}")

    # -- sweeping
    def owns(self, name: str) -> bool:
        """Whether ``name`` is one of this area's locked-item names."""
        return name.startswith((self.prefix + PARTIAL, self.prefix + SPOOL))

    def sweep(self, *, now: float | None = None) -> Swept:
        """Remove this area's items that no live process holds, and stale legacy ones."""
        items = size = 0
        try:
            entries = list(os.scandir(self.directory))
        except (FileNotFoundError, NotADirectoryError):
            return Swept()
        cutoff = (time.time() if now is None else now) - LEGACY_AGE
        for entry in entries:
            if self.owns(entry.name):
                removed = _remove_unowned(Path(entry.path))
            elif self.legacy is not None and self.legacy.fullmatch(entry.name):
                removed = _remove_stale(Path(entry.path), cutoff)
            else:
                continue
            if removed is not None:
                items, size = items + 1, size + removed
        if items:
            log.info("removed %d leftover(s) of interrupted runs (%d bytes) in %s", items, size, self.directory)
        return Swept(items, size)


def _lock(fd: int) -> bool | None:
    """Take ``fd``'s exclusive lock without waiting: True, False when another holds it, None when the
    filesystem cannot lock (then ownership cannot be proven either way)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:
        log.debug("flock on fd %d: %s", fd, exc)
        return None
    return True


def _same(path: Path, fd: int) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (not removed, not replaced)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    fst = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino)


def _remove_unowned(path: Path) -> int | None:
    """Remove ``path`` if nobody holds its lock; its size in bytes, or None when it stays."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        return None
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags | (os.O_DIRECTORY if stat.S_ISDIR(st.st_mode) else 0))
    except OSError:
        return None
    try:
        if _lock(fd) is not True or not _same(path, fd):
            return None
        return _remove(path, stat.S_ISDIR(st.st_mode))
    finally:
        os.close(fd)


def _remove_stale(path: Path, cutoff: float) -> int | None:
    """Remove a legacy item when nothing in it changed since ``cutoff``; its size, or None."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    is_dir = stat.S_ISDIR(st.st_mode)
    if not (stat.S_ISREG(st.st_mode) or is_dir) or _newest_mtime(path, st) > cutoff:
        return None
    return _remove(path, is_dir)


def _newest_mtime(path: Path, st: os.stat_result) -> float:
    newest = st.st_mtime
    if stat.S_ISDIR(st.st_mode):
        for top, dirs, files in os.walk(path):  # never follows links
            for name in (*dirs, *files):
                with contextlib.suppress(OSError):
                    newest = max(newest, os.lstat(os.path.join(top, name)).st_mtime)
    return newest


def _remove(path: Path, is_dir: bool) -> int:
    size = _size(path, is_dir)
    if is_dir:
        shutil.rmtree(path, ignore_errors=True)  # fd-based on Linux: links inside are not followed
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return size


def _size(path: Path, is_dir: bool) -> int:
    if not is_dir:
        with contextlib.suppress(OSError):
            return os.lstat(path).st_size
        return 0
    total = 0
    for top, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(top, name)).st_size
    return total
