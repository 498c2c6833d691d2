"""What the CLI shows: progress renderers and the text of results.

Progress: a rich live display on a TTY, periodic plain lines otherwise. Both are reporters
(synchronous callables taking progress events) that aggregate byte counts and never block: rich
redraws on its own thread, the plain renderer prints at most every ``interval``. Results:
:func:`copy_summary`, :func:`prune_table` and :func:`sync_summary`, the text form of ``-o text``;
:func:`referrer_tree_text` for ``regcopy referrers``.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TYPE_CHECKING, TextIO

from regcopy.progress import (
    BlobDone,
    BlobMounted,
    BlobProgress,
    BlobSkipped,
    BlobStarted,
    Event,
    ImageDone,
    ImageStarted,
)

if TYPE_CHECKING:  # rich only for a live display, the result types only for annotations: `sync -o json` loads none
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from regcopy.artifacts import Attached, ReferrerTree
    from regcopy.engine import CopyResult
    from regcopy.retention import PruneReport
    from regcopy.sync import SyncReport

__all__ = ("PlainRenderer", "RichRenderer", "copy_summary", "make_renderer", "prune_table", "sync_summary")


class _Totals:
    def __init__(self) -> None:
        self.total = 0
        self.sent = 0
        self.uploaded = self.mounted = self.skipped = 0
        self.images_done = self.images_failed = self.images_total = 0
        self.active: set[str] = set()
        self.started = time.monotonic()

    def apply(self, event: Event) -> None:
        if isinstance(event, ImageStarted):
            self.images_total += 1
            self.total += event.total_bytes
        elif isinstance(event, BlobStarted):
            self.active.add(event.digest)
        elif isinstance(event, BlobProgress):
            self.sent += event.delta
        elif isinstance(event, BlobDone):
            self.active.discard(event.digest)
            self.uploaded += 1
        elif isinstance(event, BlobMounted):
            self.mounted += 1
            self.total -= event.size
        elif isinstance(event, BlobSkipped):
            self.skipped += 1
            self.total -= event.size
        elif isinstance(event, ImageDone):
            if event.error:
                self.images_failed += 1
            else:
                self.images_done += 1

    def line(self) -> str:
        secs = max(time.monotonic() - self.started, 1e-6)
        rate = self.sent / secs / 1e6
        return (
            f"images {self.images_done}/{self.images_total} failed {self.images_failed} | "
            f"blobs up {self.uploaded} mounted {self.mounted} skipped {self.skipped} active {len(self.active)} | "
            f"{self.sent / 1e6:.1f}/{max(self.total, self.sent) / 1e6:.1f} MB {rate:.1f} MB/s"
        )


class PlainRenderer:
    """Prints a status line to ``stream`` at most every ``interval`` seconds (CI logs, pipes)."""

    def __init__(self, stream: TextIO = sys.stderr, interval: float = 5.0) -> None:
        self.stream = stream
        self.interval = interval
        self.totals = _Totals()
        self._last = time.monotonic()

    def __call__(self, event: Event) -> None:
        self.totals.apply(event)
        now = time.monotonic()
        if isinstance(event, ImageDone) and event.error:
            print(f"FAILED {event.source} -> {event.destination}: {event.error}", file=self.stream, flush=True)
        if now - self._last >= self.interval:
            self._last = now
            print(self.totals.line(), file=self.stream, flush=True)

    def __enter__(self) -> PlainRenderer:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        print(self.totals.line(), file=self.stream, flush=True)


class RichRenderer:
    """A live rich display: overall bytes and rate, images done/failed, active blobs."""

    def __init__(self, console: Console | None = None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TransferSpeedColumn,
        )

        self.totals = _Totals()
        self.progress: Progress = Progress(
            TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
            TimeElapsedColumn(), console=console or Console(stderr=True), transient=False,
        )
        self.task: TaskID = self.progress.add_task("copying", total=None)

    def __call__(self, event: Event) -> None:
        self.totals.apply(event)
        t = self.totals
        desc = (f"images {t.images_done}/{t.images_total} (failed {t.images_failed}) "
                f"blobs ↑{t.uploaded} ⇄{t.mounted} ={t.skipped} active {len(t.active)}")
        self.progress.update(self.task, completed=t.sent, total=max(t.total, t.sent) or None, description=desc)

    def __enter__(self) -> RichRenderer:
        self.progress.start()
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.progress.stop()


def make_renderer(mode: str, stream: TextIO = sys.stderr) -> PlainRenderer | RichRenderer | None:
    """``auto`` picks rich on a TTY and plain lines otherwise; ``none`` renders nothing."""
    if mode == "none":
        return None
    if mode == "tty" or (mode == "auto" and stream.isatty()):
        return RichRenderer()
    return PlainRenderer(stream)


# ------------------------------------------------------------------------------------- results


def copy_summary(r: CopyResult) -> str:
    """One line per copied image."""
    state = "up to date" if r.up_to_date else "copied"
    note = ""
    if r.new_digest:
        why = "platform subset" if r.platforms else "manifest built from a docker-archive"
        note = f" (new digest: {why})"
    refs = r.referrers or {}
    carried = f", {refs['copied']} referrers copied, {refs['present']} present" if refs.get("found") else ""
    notes = "".join(f"\n  note: {line}" for line in refs.get("notes", ()))  # type: ignore[attr-defined]
    return (f"{state} {r.source} -> {r.destination} {r.digest}{note}: {r.blobs_uploaded} uploaded "
            f"({r.bytes_uploaded} bytes), {r.blobs_mounted} mounted, {r.blobs_skipped} skipped, "
            f"{r.manifests_pushed} manifests{carried}, {r.retries} retries, {r.seconds:.2f}s{notes}")


def prune_table(report: PruneReport, show_kept: bool) -> str:
    """A table of what a prune run did or would do, then errors and totals."""
    rows: list[tuple[str, ...]] = []
    for r in report.repositories:
        groups = [("deleted", r.deleted), ("would delete", r.would_delete), ("skipped", r.skipped)]
        if show_kept:
            groups.append(("kept", r.kept))
        rows.extend((r.repository, d.tag, d.digest[:19], action, d.reason) for action, ds in groups for d in ds)
    lines = []
    if rows:
        head = ("REPOSITORY", "TAG", "DIGEST", "ACTION", "REASON")
        widths = [max(len(row[i]) for row in (head, *rows)) for i in range(4)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row[:4], widths, strict=True)) + "  " + row[4]
                 for row in (head, *rows)]
    lines.extend(f"ERROR   {e}" for e in report.errors)
    lines.extend(f"ERROR   {e}" for r in report.repositories for e in r.errors)
    t = report.totals()
    gone = f"{t['would_delete']} would be deleted (dry run: pass --yes to delete)" if report.dry_run \
        else f"{t['deleted']} deleted ({t['manifests_deleted']} manifests)"
    lines.append(f"{t['repositories']} repositories: {gone}, {t['kept']} kept, {t['skipped']} skipped, "
                 f"{t['errors']} errors in {report.seconds:.1f}s")
    return "\n".join(lines)


def sync_summary(report: SyncReport) -> str:
    """A line per image copied, planned or failed, per extra tag, per error, then the totals."""
    t = report.totals()
    lines = []
    for r in report.images:
        if r.status == "failed":
            lines.append(f"FAILED  {r.source} -> {r.target}: {r.error}")
        elif r.status == "planned":
            lines.append(f"PLAN    {r.source} -> {r.target}: upload {r.blobs_uploaded} ({r.bytes_uploaded} bytes), "
                         f"mount {r.blobs_mounted}, skip {r.blobs_skipped}")
        elif r.status == "copied":
            lines.append(f"copied  {r.source} -> {r.target} {r.target_digest}")
    lines.extend(f"ERROR   {e}" for e in report.errors)
    if report.deletions is not None:
        word = "EXTRA  " if report.dry_run else "deleted"
        for repo in report.deletions.repositories:
            gone = repo.would_delete if report.dry_run else repo.deleted
            lines.extend(f"{word} {repo.repository}:{d.tag} ({d.reason})" for d in gone)
            lines.extend(f"ERROR   {e}" for e in repo.errors)
        lines.extend(f"ERROR   {e}" for e in report.deletions.errors)
    verb = "would upload" if report.dry_run else "uploaded"
    lines.append(
        f"{t.get('copied', 0)} copied, {t.get('up-to-date', 0)} up to date, {t.get('planned', 0)} to copy, "
        f"{t.get('failed', 0)} failed; {verb} {t.get('blobs_uploaded', 0)} blobs "
        f"({t.get('bytes_uploaded', 0)} bytes), mounted {t.get('blobs_mounted', 0)}, "
        f"skipped {t.get('blobs_skipped', 0)} in {report.seconds:.1f}s"
    )
    return "\n".join(lines)


def referrer_tree_text(tree: ReferrerTree) -> str:
    """``regcopy referrers`` as a tree: the image, its children (by platform), and what refers to each."""
    lines = [f"{tree.reference} {tree.digest} ({tree.media_type})"]
    for digest, platform, found in tree.subjects:
        if digest == tree.digest:
            _branch(lines, found, "")
            continue
        lines.append(f"{platform or 'child'} {digest}")
        _branch(lines, found, "  ")
    if not tree.count():
        lines.append("no referrers")
    return "\n".join(lines)


def _branch(lines: list[str], found: list[Attached], indent: str) -> None:
    for i, item in enumerate(found):
        last = i == len(found) - 1
        how = f"tag {item.tag}" if item.tag else item.via
        lines.append(f"{indent}{'└── ' if last else '├── '}{item.digest} {item.artifact_type or '-'} ({how})")
        _branch(lines, item.children, indent + ("    " if last else "│   "))
