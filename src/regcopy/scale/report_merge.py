"""Many reports of one migration → one report of the same schema (``regcopy report merge``).

Static shards and dynamic units each write a :class:`~regcopy.sync.SyncReport` document; the merge
concatenates their images (one line per image: a success wins over a failure, as a redelivered unit's
second try does), keeps each distinct error once (every shard reports a catalog it could not read),
sums the deletions, and takes the longest ``seconds``. Each part may carry ``uploaded_blobs``
(``{storage: {digest: [size, count]}}``, collected by :class:`UploadTally`); the merge sums them and
says, per destination registry, bytes uploaded against unique bytes and which blobs went more than
once (``scale``). Pure: documents in, a document out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from regcopy.errors import ConfigError
from regcopy.progress import BlobDone
from regcopy.retention import Decision, PruneReport, RepositoryReport
from regcopy.sync import ImageReport, SyncReport

__all__ = ("UploadTally", "UploadedBlobs", "add_uploads", "merge_reports", "upload_summary")

UploadedBlobs = dict[str, dict[str, list[int]]]
"""storage → digest → ``[size, uploads]``."""

_RANK = {"copied": 3, "up-to-date": 3, "planned": 2, "failed": 1}


class UploadTally:
    """A progress reporter that counts completed uploads per (storage, digest); chain it in front of another."""

    def __init__(self, then: Any = None) -> None:
        self.blobs: UploadedBlobs = {}
        self._then = then

    def __call__(self, event: object) -> None:
        if isinstance(event, BlobDone):
            storage = "registry:" + event.destination.split("/", 1)[0]
            entry = self.blobs.setdefault(storage, {}).setdefault(event.digest, [event.size, 0])
            entry[1] += 1
        if self._then is not None:
            self._then(event)


def merge_reports(parts: Sequence[Mapping[str, Any]], *, names: Sequence[str] | None = None) -> dict[str, Any]:
    """One report from ``parts`` (report documents), with a ``scale`` section.

    :param names: what to call each part in errors (file names)
    :raises ConfigError: a part is not a sync report
    """
    names = list(names or (f"report {i + 1}" for i in range(len(parts))))
    if not parts:
        raise ConfigError("no report to merge")
    report = SyncReport()
    images: dict[tuple[str, str], ImageReport] = {}
    deletions: list[Mapping[str, Any]] = []
    uploads: UploadedBlobs = {}
    for name, part in zip(names, parts, strict=True):
        _check(name, part)
        try:
            _add(report, images, deletions, uploads, name, part)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"{name}: not a regcopy sync report ({type(exc).__name__}: {str(exc)[:100]})") from None
    report.images = sorted(images.values(), key=lambda r: (r.target, r.source))
    if deletions:
        report.deletions = _deletions(deletions)
    out = report.to_json()
    out["uploaded_blobs"] = uploads
    out["scale"] = {"parts": len(parts), "registries": upload_summary(uploads)}
    return out


def _add(report: SyncReport, images: dict[tuple[str, str], ImageReport], deletions: list[Mapping[str, Any]],
         uploads: UploadedBlobs, name: str, part: Mapping[str, Any]) -> None:
    report.dry_run = report.dry_run or bool(part.get("dry_run"))
    report.interrupted = report.interrupted or bool(part.get("interrupted"))
    report.seconds = max(report.seconds, float(part.get("seconds") or 0))
    report.errors.extend(str(e) for e in part.get("errors", []) if str(e) not in report.errors)
    for raw in part["images"]:
        image = _image(name, raw)
        key = (image.source, image.target)
        old = images.get(key)
        if old is None or _RANK.get(image.status, 0) >= _RANK.get(old.status, 0):
            images[key] = image
    if part.get("deletions") is not None:
        deletions.append(_deletions([part["deletions"]]).to_json())
    add_uploads(uploads, part.get("uploaded_blobs") or {})


def add_uploads(into: UploadedBlobs, more: Mapping[str, Mapping[str, Sequence[int]]]) -> None:
    """Sum ``more`` into ``into``."""
    for storage, blobs in more.items():
        mine = into.setdefault(str(storage), {})
        for digest, pair in blobs.items():
            size, count = pair
            entry = mine.setdefault(str(digest), [int(size), 0])
            entry[1] += int(count)


def upload_summary(uploads: UploadedBlobs) -> dict[str, dict[str, Any]]:
    """Per destination storage: bytes uploaded ÷ unique bytes, and the blobs uploaded more than once."""
    out: dict[str, dict[str, Any]] = {}
    for storage, blobs in sorted(uploads.items()):
        sent = sum(size * count for size, count in blobs.values())
        unique = sum(size for size, _ in blobs.values())
        dupes = {d: count for d, (_, count) in blobs.items() if count > 1}
        out[storage] = {
            "bytes_uploaded": sent, "unique_bytes": unique,
            "ratio": round(sent / unique, 4) if unique else 1.0,
            "duplicate_uploads": sum(c - 1 for c in dupes.values()), "duplicates": dict(sorted(dupes.items())),
        }
    return out


def _check(name: str, part: Mapping[str, Any]) -> None:
    if not isinstance(part, Mapping) or not isinstance(part.get("images"), list):
        raise ConfigError(f"{name}: not a regcopy sync report (no images list)")
    if not isinstance(part.get("errors", []), list):
        raise ConfigError(f"{name}: not a regcopy sync report (errors is not a list)")


def _image(name: str, raw: Any) -> ImageReport:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{name}: an image entry is not an object")
    fields = {k: raw[k] for k in ImageReport.__slots__ if k in raw}
    image = ImageReport(**fields)
    if image.status not in _RANK or not isinstance(image.source, str) or not isinstance(image.target, str):
        raise ConfigError(f"{name}: an image entry has no valid source, target and status")
    counts = (image.blobs_uploaded, image.blobs_mounted, image.blobs_skipped, image.bytes_uploaded)
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in counts):
        raise ConfigError(f"{name}: an image entry has counts that are not integers")
    return image


def _deletions(parts: Iterable[Mapping[str, Any]]) -> PruneReport:
    out = PruneReport(dry_run=False)
    for part in parts:
        out.dry_run = out.dry_run or bool(part.get("dry_run"))
        out.interrupted = out.interrupted or bool(part.get("interrupted"))
        out.seconds = max(out.seconds, float(part.get("seconds") or 0))
        out.errors.extend(e for e in part.get("errors", []) if e not in out.errors)
        out.repositories.extend(_repository(r) for r in part.get("repositories", []))
    return out


def _repository(raw: Mapping[str, Any]) -> RepositoryReport:
    def decisions(key: str) -> list[Decision]:
        return [Decision(d["tag"], d["digest"], d["reason"]) for d in raw.get(key, [])]

    return RepositoryReport(raw["repository"], raw.get("rule"), decisions("kept"), decisions("deleted"),
                            decisions("would_delete"), decisions("skipped"), list(raw.get("manifests_deleted", [])),
                            list(raw.get("errors", [])))
