"""Progress events and reporters: small frozen dataclasses handed to a synchronous callable.

The engine emits events around the bytes it moves, so stores never see reporters (docs/architecture.md#layers).
A reporter must not block; the CLI's renderers are reporters, and so is any service's metrics hook.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

__all__ = (
    "BlobDone",
    "BlobMounted",
    "BlobProgress",
    "BlobSkipped",
    "BlobStarted",
    "Event",
    "ImageDone",
    "ImageStarted",
    "ManifestPushed",
    "Reporter",
    "Retrying",
    "null_reporter",
)


@dataclass(frozen=True, slots=True)
class ImageStarted:
    """An image copy began: ``source`` → ``destination``, with the blob count and bytes it may move."""

    source: str
    destination: str
    blobs: int
    total_bytes: int


@dataclass(frozen=True, slots=True)
class BlobStarted:
    """A blob transfer began (``size`` bytes will cross the wire)."""

    destination: str
    digest: str
    size: int


@dataclass(frozen=True, slots=True)
class BlobProgress:
    """``delta`` more bytes of a blob were sent."""

    destination: str
    digest: str
    delta: int


@dataclass(frozen=True, slots=True)
class BlobDone:
    """A blob was uploaded (``size`` bytes sent)."""

    destination: str
    digest: str
    size: int


@dataclass(frozen=True, slots=True)
class BlobSkipped:
    """A blob was already present on the destination."""

    destination: str
    digest: str
    size: int


@dataclass(frozen=True, slots=True)
class BlobMounted:
    """A blob was mounted from another repository of the destination registry."""

    destination: str
    digest: str
    size: int
    from_repository: str


@dataclass(frozen=True, slots=True)
class ManifestPushed:
    """A manifest was pushed (``tag`` None when pushed by digest)."""

    destination: str
    digest: str
    tag: str | None


@dataclass(frozen=True, slots=True)
class Retrying:
    """A blob transfer failed and will be retried."""

    destination: str
    digest: str
    attempt: int
    error: str


@dataclass(frozen=True, slots=True)
class ImageDone:
    """An image copy ended; ``error`` is None on success."""

    source: str
    destination: str
    digest: str | None
    error: str | None


Event: TypeAlias = (
    ImageStarted | BlobStarted | BlobProgress | BlobDone | BlobSkipped | BlobMounted | ManifestPushed
    | Retrying | ImageDone
)
Reporter: TypeAlias = Callable[[Event], None]


def null_reporter(event: Event) -> None:
    """A reporter that ignores everything (the library is silent by default)."""
