"""The run journal of ``regcopy sync --state FILE``: what a killed run had finished, so a re-run skips it.

Owns one append-only JSON-lines file. Records, one per line:

* ``{"journal": "regcopy-sync", "version": 1, "started": T}`` — the header of a run;
* ``{"image": {"source": S, "target": D, "source_digest": ..., "target_digest": ...}}`` — an image
  whose root manifest (and tag) is on the target, written only after the tag PUT succeeded;
* ``{"session": {"storage": ..., "repository": ..., "digest": ..., "location": ...}}`` — an upload
  session opened, or its newest ``Location``; ``{"closed": {...}}`` — committed or cancelled;
* ``{"complete": true}`` — the run ended without failures; the next run starts a fresh journal;
* ``{"known": {...}}`` — an image record with ``platforms`` of an earlier, completed run, carried into
  the fresh journal as what the target was known to hold: the target's digest of a platform subset is
  one no source HEAD shows, so a re-sync compares HEADs against it instead of fetching the manifests
  (docs/architecture.md, "Bulk sync"). It never makes a run skip an image without asking.

A journal whose run did not complete is *resumed*: its finished images are skipped without a single request
(the incremental check would find them up to date anyway, at the price of two HEADs each), and its open
upload sessions are offered back to the store, which asks the registry how much of each it holds
(docs/architecture.md#resumable-uploads). Records are flushed line by line without ``fsync``: the kernel
keeps what a SIGKILLed process wrote; after a power loss a lost tail only means redoing that work. A torn
last line (killed mid-write) or a corrupt line is ignored for the same reason: the journal can make a run
skip work, never make it skip something unfinished — an image is journalled only once it is done. The writes
are a few hundred bytes into the page cache, so they stay on the event loop thread.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import IO, Any, Final

from regcopy.digest import Digest
from regcopy.errors import ConfigError
from regcopy.planfile import short

__all__ = ("SyncJournal",)

log = logging.getLogger(__name__)

_MAGIC: Final = "regcopy-sync"
_VERSION: Final = 1


class SyncJournal:
    """A run journal backed by one file; use :meth:`open` (or ``with SyncJournal.open(path) as j``)."""

    def __init__(self, path: Path, handle: IO[str], images: dict[tuple[str, str], dict[str, Any]],
                 sessions: dict[tuple[str, str, str], str], resumed: bool,
                 known: dict[tuple[str, str], dict[str, Any]] | None = None) -> None:
        self.path = path
        self._handle: IO[str] | None = handle
        self._images = images
        self._sessions = sessions
        self._known = known if known is not None else {}
        self.resumed = resumed
        """Whether an interrupted run's journal was found (its records are in effect)."""

    # -- life
    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> SyncJournal:
        """Load the journal at ``path`` (resuming an interrupted run) or start a new one.

        :raises ConfigError: the file exists but is not a regcopy journal, or has a newer version
        """
        path = Path(path)
        images: dict[tuple[str, str], dict[str, Any]] = {}
        sessions: dict[tuple[str, str, str], str] = {}
        known: dict[tuple[str, str], dict[str, Any]] = {}
        resumed = False
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            text = ""
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read the sync journal: {exc}") from None
        if text.strip():
            resumed = _load(path, text, images, sessions, known)
        if not resumed:
            images.clear()
            sessions.clear()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = path.open("a" if resumed else "w", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot write the sync journal: {exc}") from None
        journal = cls(path, handle, images, sessions, resumed, known)
        if not resumed:
            journal._write({"journal": _MAGIC, "version": _VERSION, "started": round(time.time(), 3)})
            for record in known.values():
                journal._write({"known": record})
        elif text and not text.endswith("\n"):
            handle.write("\n")  # a torn last line stays torn, and the next record starts cleanly
        return journal

    def __enter__(self) -> SyncJournal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the file (records already written stay)."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def complete(self) -> None:
        """The run ended with nothing left to do: the next run starts afresh."""
        self._write({"complete": True})
        self._images.clear()
        self._sessions.clear()

    # -- images
    def finished(self, source: str, target: str) -> dict[str, Any] | None:
        """The record of an image an interrupted run finished (``source``/``target`` as reported), or None."""
        return self._images.get((source, target))

    def image_done(self, source: str, target: str, source_digest: str | None, target_digest: str | None,
                   platforms: tuple[str, ...] = ()) -> None:
        """Record an image whose target holds the root manifest (and tag) now (``platforms``: the subset
        the target holds, when the plan names one)."""
        record: dict[str, Any] = {"source": source, "target": target, "source_digest": source_digest,
                                  "target_digest": target_digest}
        if platforms:
            record["platforms"] = list(platforms)
        self._images[(source, target)] = record
        if platforms:
            self._known[(source, target)] = record
        self._write({"image": record})

    def known(self, source: str, target: str, platforms: tuple[str, ...] = ()) -> tuple[str, str] | None:
        """The source and target digests a run recorded for this image and platform subset (this run, an
        interrupted one, or the last completed one), or None."""
        record = self._known.get((source, target))
        if record is None or tuple(record.get("platforms") or ()) != tuple(platforms):
            return None
        src, dst = record.get("source_digest"), record.get("target_digest")
        return (src, dst) if isinstance(src, str) and isinstance(dst, str) else None

    # -- upload sessions (the stores' UploadJournal protocol)
    def session_for(self, storage_id: str, repository: str, digest: Digest) -> str | None:
        """The newest ``Location`` of a session an earlier run left open for this blob, if any."""
        return self._sessions.get((storage_id, repository, str(digest)))

    def session_opened(self, storage_id: str, repository: str, digest: Digest, location: str) -> None:
        """A session was opened (or moved to a new ``Location``)."""
        key = (storage_id, repository, str(digest))
        if self._sessions.get(key) == location:
            return
        self._sessions[key] = location
        self._write({"session": _session(key, location)})

    session_moved = session_opened

    def session_closed(self, storage_id: str, repository: str, digest: Digest) -> None:
        """A session was committed or cancelled: nothing to resume."""
        key = (storage_id, repository, str(digest))
        if self._sessions.pop(key, None) is not None:
            self._write({"closed": _session(key, None)})

    # -- internals
    def _write(self, record: dict[str, Any]) -> None:
        if self._handle is None:
            return
        self._handle.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._handle.flush()


def _session(key: tuple[str, str, str], location: str | None) -> dict[str, Any]:
    storage, repository, digest = key
    out: dict[str, Any] = {"storage": storage, "repository": repository, "digest": digest}
    if location is not None:
        out["location"] = location
    return out


def _load(path: Path, text: str, images: dict[tuple[str, str], dict[str, Any]],
          sessions: dict[tuple[str, str, str], str], known: dict[tuple[str, str], dict[str, Any]]) -> bool:
    """Replay ``text`` into ``images``, ``sessions`` and ``known``; returns whether the run is unfinished."""
    lines = text.split("\n")
    try:
        header = json.loads(lines[0])
    except (ValueError, RecursionError):  # ValueError: bad JSON, or an integer past Python's 4300 digits
        header = None
    if not isinstance(header, dict) or header.get("journal") != _MAGIC:
        raise ConfigError(f"{path}: not a regcopy sync journal (refusing to overwrite it)")
    if header.get("version") != _VERSION:
        shown = short(header.get("version"))
        raise ConfigError(f"{path}: sync journal version {shown}; this regcopy reads {_VERSION}")
    unfinished = True
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            unfinished = _apply(record, images, sessions, unfinished)
            _remember(record, known)
        except (KeyError, TypeError, ValueError, RecursionError):  # JSONDecodeError is a ValueError
            # A torn line from a killed run (the last one) or damage: that record is lost, which
            # at worst redoes its work.
            log.warning("%s:%d: ignoring an unreadable journal record", path, number)
    return unfinished


def _remember(record: dict[str, Any], known: dict[tuple[str, str], dict[str, Any]]) -> None:
    """Keep an image or known record of a platform subset as what its target held (without ``platforms``
    the HEADs alone decide, so nothing needs remembering)."""
    image = record.get("image") or record.get("known")
    if isinstance(image, dict) and isinstance(image.get("source"), str) and isinstance(image.get("target"), str) \
            and image.get("platforms"):
        known[(image["source"], image["target"])] = dict(image)


def _apply(record: Any, images: dict[tuple[str, str], dict[str, Any]],
           sessions: dict[tuple[str, str, str], str], unfinished: bool) -> bool:
    if not isinstance(record, dict):
        raise TypeError("record is not an object")
    if record.get("complete") is True:
        images.clear()
        sessions.clear()
        return False
    if "image" in record:
        image = record["image"]
        source, target = image["source"], image["target"]
        if not isinstance(source, str) or not isinstance(target, str):
            raise TypeError("image record without source/target")
        images[(source, target)] = dict(image)
    elif "session" in record or "closed" in record:
        data = record.get("session") or record["closed"]
        key = (str(data["storage"]), str(data["repository"]), str(Digest.parse(str(data["digest"]))))
        if "session" in record:
            sessions[key] = str(data["location"])
        else:
            sessions.pop(key, None)
    return unfinished or bool(record)
