"""Units of work for a migration spread over many workers: pure functions, no I/O.

A unit is what one worker takes at a time: the images of one source repository, except that an image
whose planned bytes exceed a threshold is a unit of its own (so one huge image never drags its
repository's other tags along, and it starts early). Units run biggest first (longest processing time
first: the largest transfer must not be the run's tail). Blobs are never units: shared layers are
deduplicated by the blob ledger, not by the queue (docs/scale-out.md, "Units").

Static shards split a plan without talking to each other: :func:`shard_of` is a stable hash of the
source repository, the same in every process and every Python (``hash()`` is salted per process).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

__all__ = ("DEFAULT_BIG_IMAGE", "Unit", "make_units", "parse_shard", "shard_of")

T = TypeVar("T")

DEFAULT_BIG_IMAGE: Final = 1 << 30
"""Planned bytes above which an image is a unit of its own (1 GiB)."""


@dataclass(frozen=True, slots=True)
class Unit(Generic[T]):
    """Images a worker copies together.

    :ivar id: stable over processes: the same images give the same id (a re-submission finds it)
    :ivar key: the source repository the images come from
    :ivar images: the images, in their given order
    :ivar bytes: planned bytes of all its images
    """

    id: str
    key: str
    images: tuple[T, ...]
    bytes: int


def shard_of(key: str, shards: int) -> int:
    """The shard (0 … ``shards``-1) that owns the source repository ``key``; the same everywhere."""
    if shards < 1:
        raise ValueError("shards must be at least 1")
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % shards


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` → ``(I, N)`` with 0 ≤ I < N.

    :raises ValueError: not two integers separated by ``/``, or out of range (the message says which)
    """
    index, sep, count = text.strip().partition("/")
    if not sep or not index.strip().isdigit() or not count.strip().isdigit():
        raise ValueError(f"{text!r} is not a shard: expected I/N, e.g. 0/4")
    i, n = int(index), int(count)
    if n < 1 or i >= n:
        raise ValueError(f"shard {text!r} out of range: I must be 0 to N-1 and N at least 1")
    return i, n


def make_units(
    images: Iterable[T], *, key: Callable[[T], str], size: Callable[[T], int], ident: Callable[[T], str],
    big: int = DEFAULT_BIG_IMAGE,
) -> list[Unit[T]]:
    """Group ``images`` into units: one per ``key`` (source repository), an image over ``big`` bytes
    alone; biggest unit first (ties by key, then id, so every process orders them alike).

    :param key: an image's source repository
    :param size: an image's planned bytes
    :param ident: a stable text naming the image (its source and target references and digest)
    """
    groups: dict[str, list[T]] = {}
    alone: list[T] = []
    for image in images:
        if size(image) > big:
            alone.append(image)
        else:
            groups.setdefault(key(image), []).append(image)
    units = [_unit(k, members, size, ident) for k, members in groups.items()]
    units.extend(_unit(key(image), [image], size, ident) for image in alone)
    return sorted(units, key=lambda u: (-u.bytes, u.key, u.id))


def _unit(key: str, members: list[T], size: Callable[[T], int], ident: Callable[[T], str]) -> Unit[T]:
    ordered = sorted(members, key=lambda m: (-size(m), ident(m)))
    h = hashlib.sha256()
    for name in sorted(ident(m) for m in ordered):
        h.update(name.encode("utf-8") + b"\n")
    return Unit(h.hexdigest()[:16], key, tuple(ordered), sum(size(m) for m in ordered))
