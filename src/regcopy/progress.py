"""Progress events and reporters: small frozen dataclasses handed to a synchronous callable.

The engine emits events around the bytes it moves, so stores never see reporters (docs/architecture.md#layers);
each host's shared limits (``registry/limits.py``) emit what happens to its requests: retries, rate-limit
pauses, concurrency changes, a pull reserve reached. A reporter must not block; the CLI's renderers and
its ``--events`` writer (``events.py``, docs/events.md) are reporters, and so is any service's metrics hook.

Every event carries ``at`` (``time.time()`` when it was made) and ``image``: the destination of the image
copy it belongs to, taken from :data:`current_image`, which the engine sets for the tasks of each copy
(None for what belongs to no image, such as a sync's discovery).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TypeAlias

__all__ = (
    "BlobDone",
    "BlobMounted",
    "BlobProgress",
    "BlobSkipped",
    "BlobStarted",
    "Broadcast",
    "ConcurrencyChanged",
    "Event",
    "ImageDeferred",
    "ImageDone",
    "ImageStarted",
    "ManifestPushed",
    "PullReserveReached",
    "RateLimitPaused",
    "Reporter",
    "Retrying",
    "RunSummary",
    "current_image",
    "null_reporter",
)

current_image: ContextVar[str | None] = ContextVar("regcopy_current_image", default=None)
"""The image (its destination, as reports name it) that the running task works for."""


def _image() -> str | None:
    return current_image.get()


@dataclass(frozen=True, slots=True)
class ImageStarted:
    """An image copy began: ``source`` → ``destination``, with the blob count and bytes it may move."""

    source: str
    destination: str
    blobs: int
    total_bytes: int
    at: float = field(default_factory=time.time, compare=False)
    image: str | None = field(default_factory=_image)


@dataclass(frozen=True, slots=True)
class BlobStarted:
    """A blob transfer began (``size`` bytes will cross the wire)."""

    destination: str
    digest: str
    size: int
    at: float = field(default_factory=time.time, compare=False)
    image: str | None = field(default_factory=_image)


@dataclass(frozen=True, slots=True)
class BlobProgress:
    """``delta`` more bytes of a blob were sent."""

    destination: str
    digest: str
    delta: int
    at: float = field(default_factory=time.time, compare=False)
    image: str | None = field(default_factory=_image)


@dataclass(frozen=True, slots=True)
class BlobDone:
    """A blob was uploaded (``size`` bytes sent)."""

    destination: str
    digest: str
    size: int
    at: float = field(default_factory=time.time, compare=False)
    image: str | None = field(default_factory=_image)


@dataclass(frozen=True, slots=True)
class BlobSkipped:
    """A blob was already present on the destination."""

    destination: str
    digest: str
    size: int
    at: float = field(default_factory=time.time, compare=False)
    image: str | None = field(default_factory=_image)


@dataclass(frozen=True, slots=True)
class BlobMounted:
    """A blob was mounted from another repository of the destination registry."""

    destination: str
    digest: str
    size: int
    from_repository: str
    at: float = field(default_factory=time.time, compare=False)
    image: str | None = field(default_factory=_image)


@dataclass(frozen=True, slots=True)
class ManifestPushed:
    """A manifest was pushed (``tag`` None when pushed by digest)."""

    destination: str
    digest: str
    tag: str | None
    at: float = field(default_factory=time.time, compare=False)
    image: str | None = field(default_factory=_image)


@dataclass(frozen=True, slots=True)
class Retrying:
    """A request failed and will be sent again after ``delay`` seconds (``attempt`` counts from 1)."""

    registry: str
    method: str
    url: str
    attempt: int
    delay: float
    reason: str
    at: float = field(default_factory=time.time, compare=False)
    image: str | None = field(default_factory=_image)


@dataclass(frozen=True, slots=True)
class RateLimitPaused:
    """Every request to ``registry`` waits ``seconds`` (a 429's ``Retry-After``, or the backoff)."""

    registry: str
    seconds: float
    reason: str
    at: float = field(default_factory=time.time, compare=False)
    image: str | None = field(default_factory=_image)


@dataclass(frozen=True, slots=True)
class ConcurrencyChanged:
    """The adaptive limit of requests in flight to ``registry`` went from ``old`` to ``new``."""

    registry: str
    old: int
    new: int
    reason: str
    at: float = field(default_factory=time.time, compare=False)
    image: str | None = field(default_factory=_image)


@dataclass(frozen=True, slots=True)
class PullReserveReached:
    """``registry`` has no more pulls to spend above its reserve: no new manifest GET starts there.

    ``limit`` and ``window`` (seconds) are the registry's quota when it said (Docker Hub's
    ``ratelimit-limit: 100;w=21600``).
    """

    registry: str
    remaining: int
    reserve: int
    limit: int | None
    window: float | None
    at: float = field(default_factory=time.time, compare=False)
    image: str | None = field(default_factory=_image)


@dataclass(frozen=True, slots=True)
class ImageDone:
    """An image copy ended; ``error`` is None on success (``up_to_date`` when nothing was written)."""

    source: str
    destination: str
    digest: str | None
    error: str | None
    up_to_date: bool = False
    at: float = field(default_factory=time.time, compare=False)
    image: str | None = field(default_factory=_image)


@dataclass(frozen=True, slots=True)
class ImageDeferred:
    """An image was not started and is left for a later run (its source's pull reserve was reached)."""

    source: str
    destination: str
    reason: str
    at: float = field(default_factory=time.time, compare=False)
    image: str | None = field(default_factory=_image)


@dataclass(frozen=True, slots=True)
class RunSummary:
    """A run ended: images per state, blob bytes sent, seconds, and per host what its requests met
    (requests, retries, 429s, pulls, concurrency; see docs/events.md)."""

    images: Mapping[str, int]
    bytes_uploaded: int
    seconds: float
    hosts: Mapping[str, Mapping[str, object]]
    at: float = field(default_factory=time.time, compare=False)
    image: str | None = None


Event: TypeAlias = (
    ImageStarted | BlobStarted | BlobProgress | BlobDone | BlobSkipped | BlobMounted | ManifestPushed
    | Retrying | RateLimitPaused | ConcurrencyChanged | PullReserveReached | ImageDone | ImageDeferred | RunSummary
)
Reporter: TypeAlias = Callable[[Event], None]


def null_reporter(event: Event) -> None:
    """A reporter that ignores everything (the library is silent by default)."""


class Broadcast:
    """One reporter that hands each event to every reporter added, in the order added.

    A client's hosts emit through one broadcast; each run adds its reporter for its own duration.
    Runs may nest or overlap with the same reporter (``copy_all_tags`` runs ``copy``s): it stays
    until its last run removes it, and gets each event once.
    """

    def __init__(self) -> None:
        self._reporters: list[Reporter] = []

    def add(self, reporter: Reporter) -> None:
        """Start handing events to ``reporter``."""
        self._reporters.append(reporter)

    def remove(self, reporter: Reporter) -> None:
        """Stop handing events to ``reporter`` for one of its runs (added twice: it stays once)."""
        if reporter in self._reporters:
            self._reporters.remove(reporter)

    def __call__(self, event: Event) -> None:
        told: list[Reporter] = []
        for reporter in list(self._reporters):
            if reporter not in told:
                told.append(reporter)
                reporter(event)
