"""What a sync run reports: one :class:`ImageReport` per image and the run's :class:`SyncReport`.

Owns the ``--report`` document and the counting every phase of :mod:`regcopy.sync.scheduler` shares
(:func:`record_failure`, :func:`count_blob`). Reports print addresses as text (``str`` of the values).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Literal

from regcopy.errors import PullLimitReached
from regcopy.ledger import BlobAction
from regcopy.retention import PruneReport
from regcopy.sync.model import ImageJob

__all__ = ("ImageReport", "Status", "SyncReport", "count_blob", "record_failure")

Status = Literal["copied", "up-to-date", "failed", "planned", "deferred"]
"""``deferred``: not started because its source's pull reserve was reached; a re-run does it."""


@dataclass(slots=True)
class ImageReport:
    """The outcome of one image (one line of ``--report``)."""

    entry: str
    source: str
    target: str
    status: Status
    source_digest: str | None = None
    target_digest: str | None = None
    blobs_uploaded: int = 0
    blobs_mounted: int = 0
    blobs_skipped: int = 0
    bytes_uploaded: int = 0
    retries: int = 0
    attempts: int = 0
    seconds: float = 0.0
    error: str | None = None
    note: str | None = None
    served_by: list[str] | None = None
    referrers: dict[str, object] | None = None
    """What the image's referrers came to (copied, present, left behind by a platform subset; a dry
    run: found and to copy), when the entry carries referrers."""

    @classmethod
    def of(cls, job: ImageJob, status: Status, source_digest: str | None = None,
           target_digest: str | None = None) -> ImageReport:
        """A report of ``job`` with ``status`` and digests (counts filled later)."""
        return cls(job.entry, str(job.source), str(job.target), status, source_digest, target_digest)

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict of every field."""
        return {k: getattr(self, k) for k in self.__slots__}


@dataclass(slots=True)
class SyncReport:
    """The outcome of a run; filled progressively, so an interrupted run still reports what it did."""

    dry_run: bool = False
    images: list[ImageReport] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False
    deletions: PruneReport | None = None
    """What ``delete_extra`` deleted (or would delete, in a dry run); None when no entry asks for it."""
    hosts: dict[str, dict[str, object]] = field(default_factory=dict)
    """Per host what the run's requests met: requests, retries, 429s, pulls (manifest GETs), concurrency,
    the pull quota (docs/events.md)."""

    @property
    def failed(self) -> list[ImageReport]:
        """Images that failed (after the retry)."""
        return [r for r in self.images if r.status == "failed"]

    @property
    def deferred(self) -> list[ImageReport]:
        """Images left for a later run (a pull reserve was reached)."""
        return [r for r in self.images if r.status == "deferred"]

    @property
    def ok(self) -> bool:
        """No failure or deferred image, no discovery or deletion error, not interrupted."""
        deletions_ok = self.deletions is None or self.deletions.ok
        return not self.failed and not self.deferred and not self.errors and not self.interrupted and deletions_ok

    def counts(self) -> dict[str, int]:
        """Images per status."""
        out: dict[str, int] = defaultdict(int)
        for r in self.images:
            out[r.status] += 1
        return dict(out)

    @property
    def out_of_sync(self) -> list[ImageReport]:
        """Images a dry run would copy."""
        return [r for r in self.images if r.status == "planned"]

    @property
    def extra_tags(self) -> int:
        """Tags ``delete_extra`` would delete (dry run) or deleted."""
        if self.deletions is None:
            return 0
        totals = self.deletions.totals()
        return totals["would_delete"] + totals["deleted"]

    def totals(self) -> dict[str, int]:
        """Counts per status and summed transfer figures."""
        out: dict[str, int] = defaultdict(int)
        for r in self.images:
            out[r.status] += 1
            out["blobs_uploaded"] += r.blobs_uploaded
            out["blobs_mounted"] += r.blobs_mounted
            out["blobs_skipped"] += r.blobs_skipped
            out["bytes_uploaded"] += r.bytes_uploaded
            for key in ("copied", "to_copy"):
                value = (r.referrers or {}).get(key)
                if isinstance(value, int):
                    out[f"referrers_{key}"] += value
        return dict(out)

    def to_json(self) -> dict[str, object]:
        """The ``--report`` document."""
        out: dict[str, object] = {
            "dry_run": self.dry_run, "interrupted": self.interrupted, "seconds": round(self.seconds, 3),
            "totals": self.totals(), "errors": self.errors, "images": [r.to_json() for r in self.images],
        }
        if self.deletions is not None:
            out["deletions"] = self.deletions.to_json()
        out["hosts"] = self.hosts
        return out


def record_failure(report: SyncReport, job: ImageJob, exc: BaseException, attempts: int = 1) -> None:
    """Record ``job`` as failed with ``exc`` (deferred when its source's pull reserve was reached);
    cancellation and KeyboardInterrupt are re-raised, not recorded."""
    if not isinstance(exc, Exception):
        raise exc
    if isinstance(exc, PullLimitReached):
        left = ImageReport.of(job, "deferred")
        left.note, left.attempts = str(exc), attempts - 1
        report.images.append(left)
        return
    failed = ImageReport.of(job, "failed")
    failed.error, failed.attempts = str(exc) or type(exc).__name__, attempts
    report.images.append(failed)


def count_blob(image: ImageReport, action: BlobAction, size: int) -> None:
    """Count one blob's decision in ``image``."""
    if action == "skipped":
        image.blobs_skipped += 1
    elif action == "mounted":
        image.blobs_mounted += 1
    else:
        image.blobs_uploaded += 1
        image.bytes_uploaded += size
