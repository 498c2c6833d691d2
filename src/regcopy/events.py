"""The event stream of ``--events FILE|-``: every progress event as one JSON object per line.

Owns the versioned schema (:data:`SCHEMA`, documented field by field in docs/events.md, which a test
checks against this module and against real runs), the mapping of each typed event of
:mod:`regcopy.progress` to its record (:func:`record`), and :class:`EventWriter`, a reporter that writes
records as lines. A library caller gets the same events as typed values through its reporter; this
module is only their JSON form.

Every record has ``version`` (:data:`VERSION`), ``time`` (UTC, ISO 8601 with milliseconds), ``type``
and ``image`` (the destination of the image it belongs to, or null). ``blob.progress`` is throttled:
at most one line per blob per ``progress_interval`` seconds, and one more with the rest just before
its ``blob.done``, so the ``bytes`` of a blob's progress lines add up to what was sent.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import IO, Any, Final

from regcopy.errors import ConfigError
from regcopy.progress import (
    BlobDone,
    BlobMounted,
    BlobProgress,
    BlobSkipped,
    BlobStarted,
    ConcurrencyChanged,
    Event,
    ImageDeferred,
    ImageDone,
    ImageStarted,
    ManifestPushed,
    PullReserveReached,
    RateLimitPaused,
    Retrying,
    RunSummary,
)

__all__ = ("COMMON", "SCHEMA", "VERSION", "EventWriter", "record")

VERSION: Final = 1
"""The schema version every record carries; a change to a record's fields gets a new one."""

COMMON: Final = ("version", "time", "type", "image")
"""The fields of every record."""

SCHEMA: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType({
    "image.started": ("source", "destination", "blobs", "bytes"),
    "image.done": ("source", "destination", "digest", "up_to_date"),
    "image.failed": ("source", "destination", "error"),
    "image.deferred": ("source", "destination", "reason"),
    "blob.started": ("destination", "digest", "size"),
    "blob.progress": ("destination", "digest", "bytes", "sent"),
    "blob.done": ("destination", "digest", "size"),
    "blob.mounted": ("destination", "digest", "size", "from"),
    "blob.skipped": ("destination", "digest", "size"),
    "manifest.pushed": ("destination", "digest", "tag"),
    "request.retrying": ("registry", "method", "url", "attempt", "delay", "reason"),
    "ratelimit.paused": ("registry", "seconds", "reason"),
    "ratelimit.reserve": ("registry", "remaining", "reserve", "limit", "window"),
    "concurrency.changed": ("registry", "old", "new", "reason"),
    "run.summary": ("images", "bytes_uploaded", "seconds", "hosts"),
})
"""Each record type and its fields besides :data:`COMMON`, in the order written."""


def _image(e: ImageStarted | ImageDone | ImageDeferred) -> dict[str, Any]:
    return {"source": e.source, "destination": e.destination}


def _fields(event: Event) -> tuple[str, dict[str, Any]]:
    """The type and the fields of ``event``'s record (without the common ones)."""
    match event:
        case ImageStarted():
            return "image.started", {**_image(event), "blobs": event.blobs, "bytes": event.total_bytes}
        case ImageDone(error=None):
            return "image.done", {**_image(event), "digest": event.digest, "up_to_date": event.up_to_date}
        case ImageDone():
            return "image.failed", {**_image(event), "error": event.error}
        case ImageDeferred():
            return "image.deferred", {**_image(event), "reason": event.reason}
        case BlobStarted() | BlobDone() | BlobSkipped():
            kind = {BlobStarted: "started", BlobDone: "done", BlobSkipped: "skipped"}[type(event)]
            return f"blob.{kind}", {"destination": event.destination, "digest": event.digest, "size": event.size}
        case BlobMounted():
            return "blob.mounted", {"destination": event.destination, "digest": event.digest, "size": event.size,
                                    "from": event.from_repository}
        case BlobProgress():
            return "blob.progress", {"destination": event.destination, "digest": event.digest,
                                     "bytes": event.delta, "sent": event.delta}
        case ManifestPushed():
            return "manifest.pushed", {"destination": event.destination, "digest": event.digest, "tag": event.tag}
        case _:
            return _host_fields(event)


def _host_fields(event: Event) -> tuple[str, dict[str, Any]]:
    """The records of what happens to a host's requests, and the run's summary."""
    match event:
        case Retrying():
            return "request.retrying", {"registry": event.registry, "method": event.method, "url": event.url,
                                        "attempt": event.attempt, "delay": event.delay, "reason": event.reason}
        case RateLimitPaused():
            return "ratelimit.paused", {"registry": event.registry, "seconds": event.seconds, "reason": event.reason}
        case PullReserveReached():
            return "ratelimit.reserve", {"registry": event.registry, "remaining": event.remaining,
                                         "reserve": event.reserve, "limit": event.limit, "window": event.window}
        case ConcurrencyChanged():
            return "concurrency.changed", {"registry": event.registry, "old": event.old, "new": event.new,
                                           "reason": event.reason}
        case RunSummary():
            return "run.summary", {"images": dict(event.images), "bytes_uploaded": event.bytes_uploaded,
                                   "seconds": event.seconds, "hosts": {k: dict(v) for k, v in event.hosts.items()}}
    raise TypeError(f"not a progress event: {type(event).__name__}")


def record(event: Event) -> dict[str, Any]:
    """The JSON-ready record of one event (:data:`COMMON` fields first, then :data:`SCHEMA`'s)."""
    kind, fields = _fields(event)
    stamp = datetime.fromtimestamp(event.at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {"version": VERSION, "time": stamp, "type": kind, "image": event.image, **fields}


class EventWriter:
    """A reporter writing each event as one JSON line to ``stream`` (flushed per line).

    :param progress_interval: seconds between two ``blob.progress`` lines of one blob
    :param clock: the monotonic clock the throttling reads
    """

    def __init__(self, stream: IO[str], *, progress_interval: float = 1.0, owns: bool = False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._stream = stream
        self._owns = owns
        self._interval = progress_interval
        self._clock = clock
        self._pending: dict[tuple[str | None, str, str], _Pending] = {}

    @classmethod
    def open(cls, target: str, **kwargs: Any) -> EventWriter:
        """A writer to the file ``target`` (created or truncated), or to stdout for ``-``.

        :raises ConfigError: the file cannot be opened for writing
        """
        if target == "-":
            return cls(sys.stdout, **kwargs)
        try:
            handle = Path(target).open("w", encoding="utf-8")  # noqa: SIM115 - closed by close()
        except OSError as exc:
            raise ConfigError(f"--events {target}: cannot write: {exc.strerror or exc}") from None
        return cls(handle, owns=True, **kwargs)

    def __call__(self, event: Event) -> None:
        if isinstance(event, BlobProgress):
            self._progress(event)
            return
        if isinstance(event, BlobDone):
            self._flush(event.image, event.destination, event.digest)
        self._write(record(event))

    def _progress(self, event: BlobProgress) -> None:
        key = (event.image, event.destination, event.digest)
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = _Pending(self._clock() - self._interval)
        pending.bytes += event.delta
        pending.sent += event.delta
        pending.last_event = event
        if self._clock() - pending.written >= self._interval:
            self._emit(key, pending)

    def _flush(self, image: str | None, destination: str, digest: str) -> None:
        """The progress not yet written of a blob that is done."""
        pending = self._pending.pop((image, destination, digest), None)
        if pending is not None and pending.bytes:
            self._emit(None, pending)

    def _emit(self, key: tuple[str | None, str, str] | None, pending: _Pending) -> None:
        assert pending.last_event is not None
        line = record(pending.last_event)
        line["bytes"], line["sent"] = pending.bytes, pending.sent
        self._write(line)
        pending.bytes, pending.written = 0, self._clock()

    def _write(self, data: Mapping[str, Any]) -> None:
        self._stream.write(json.dumps(data, separators=(",", ":"), default=str) + "\n")
        self._stream.flush()

    def close(self) -> None:
        """Write the progress still pending, and close the file (never stdout)."""
        for pending in list(self._pending.values()):
            if pending.bytes:
                self._emit(None, pending)
        self._pending.clear()
        if self._owns:
            self._stream.close()

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class _Pending:
    """A blob's progress since its last line."""

    __slots__ = ("bytes", "last_event", "sent", "written")

    def __init__(self, written: float) -> None:
        self.bytes = 0
        self.sent = 0
        self.written = written
        self.last_event: BlobProgress | None = None
