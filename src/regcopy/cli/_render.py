"""What the CLI shows: progress renderers and the text of results.

Progress: the live display of :mod:`regcopy.cli._live` on a TTY, periodic plain lines otherwise. Both
are reporters (synchronous callables taking progress events) that aggregate byte counts and never
block: rich redraws on its own thread, the plain renderer prints at most every ``interval``. Results:
:func:`copy_summary`, :func:`prune_table` and :func:`sync_summary`, the text form of ``-o text``;
:func:`referrer_tree_text` for ``regcopy referrers``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from types import TracebackType
from typing import TYPE_CHECKING, TextIO, TypeVar

from regcopy.cli._live import LiveRenderer
from regcopy.errors import CopyFailed
from regcopy.events import EventWriter
from regcopy.progress import (
    BlobDone,
    BlobMounted,
    BlobProgress,
    BlobSkipped,
    BlobStarted,
    Event,
    ImageDone,
    ImageStarted,
    Reporter,
    RunSummary,
)

if TYPE_CHECKING:  # the result types only for annotations
    from regcopy.artifacts import Attached, ReferrerTree
    from regcopy.engine import CopyResult
    from regcopy.retention import PruneReport
    from regcopy.sync import SyncReport

__all__ = (
    "LiveRenderer", "PlainRenderer", "copy_summaries", "copy_summary", "host_lines", "make_renderer",
    "progress_reporter", "prune_table", "sync_summary", "tee",
)

T = TypeVar("T")


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


def tee(*reporters: Reporter | None) -> Reporter | None:
    """One reporter handing each event to every given one (None when none is given)."""
    given = [r for r in reporters if r is not None]
    if not given:
        return None
    if len(given) == 1:
        return given[0]

    def both(event: Event) -> None:
        for reporter in given:
            reporter(event)

    return both


@contextmanager
def progress_reporter(mode: str, events: str | None = None) -> Iterator[Reporter | None]:
    """A command's reporter for the block: the progress display of ``mode`` and the ``--events`` writer
    (a file, or stdout for ``-``), either or both.

    :raises ConfigError: the events file cannot be written
    """
    writer = EventWriter.open(events) if events else None
    renderer = make_renderer(mode)
    with ExitStack() as stack:
        for part in (writer, renderer):
            if part is not None:
                stack.enter_context(part)
        yield tee(renderer, writer)


@contextmanager
def copy_summaries(reporter: Reporter | None) -> Iterator[Callable[[T], T]]:
    """Collect ``regcopy copy``'s results (``done(result)`` returns its argument) and hand ``reporter`` the
    run's summary when the block ends, however it ends: a copy's own events end with its image's, the
    command's run ends here (docs/events.md, ``run.summary``)."""
    started = time.monotonic()
    results: list[CopyResult] = []
    failed = 0

    def done(value: T) -> T:
        results.extend(value if isinstance(value, list) else [value])  # type: ignore[list-item]
        return value

    try:
        yield done
    except CopyFailed as exc:
        failed = len(exc.errors)
        raise
    except BaseException:
        failed = 1
        raise
    finally:
        if reporter is not None:
            images: dict[str, int] = {"failed": failed} if failed else {}
            for r in results:
                state = "up-to-date" if r.up_to_date else "copied"
                images[state] = images.get(state, 0) + 1
            reporter(RunSummary(images, sum(r.bytes_uploaded for r in results), round(time.monotonic() - started, 3),
                                results[0].hosts if results else {}))


def make_renderer(mode: str, stream: TextIO = sys.stderr) -> PlainRenderer | LiveRenderer | None:
    """``auto`` picks the live display on a TTY and plain lines otherwise; ``none`` renders nothing."""
    if mode == "none":
        return None
    if mode == "tty" or (mode == "auto" and stream.isatty()):
        return LiveRenderer()
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


def host_lines(hosts: dict[str, dict[str, object]]) -> list[str]:
    """One line per host whose requests met something worth telling: pulls, retries, throttling."""
    out = []
    for host, h in sorted(hosts.items()):
        notes = [f"{h.get('requests', 0)} requests", f"{h.get('pulls', 0)} pulls"]
        notes += [f"{h[k]} {label}" for k, label in (("retries", "retries"), ("throttled", "429s"),
                                                     ("unavailable", "503s"), ("timeouts", "time-outs"),
                                                     ("resets", "resets")) if h.get(k)]
        c = h.get("concurrency")
        if isinstance(c, dict) and c.get("changes"):
            notes.append(f"concurrency {c['limit']} (from {c['min']} to {c['max']})")
        q = h.get("pull_quota")
        if isinstance(q, dict) and q.get("remaining") is not None:
            notes.append(f"{q['remaining']} pulls left" + (" (reserve reached)" if q.get("stopped") else ""))
        out.append(f"HOST    {host}: " + ", ".join(notes))
    return out


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
        elif r.status == "deferred":
            lines.append(f"LEFT    {r.source} -> {r.target}: {r.note}")
    lines.extend(f"ERROR   {e}" for e in report.errors)
    if report.deletions is not None:
        word = "EXTRA  " if report.dry_run else "deleted"
        for repo in report.deletions.repositories:
            gone = repo.would_delete if report.dry_run else repo.deleted
            lines.extend(f"{word} {repo.repository}:{d.tag} ({d.reason})" for d in gone)
            lines.extend(f"ERROR   {e}" for e in repo.errors)
        lines.extend(f"ERROR   {e}" for e in report.deletions.errors)
    lines.extend(host_lines(report.hosts))
    if report.deferred:
        lines.append(f"{len(report.deferred)} images left for a later run (pull reserve reached): run the same "
                     "command again once the registry's quota window has passed; the run journal skips what is done")
    verb = "would upload" if report.dry_run else "uploaded"
    lines.append(
        f"{t.get('copied', 0)} copied, {t.get('up-to-date', 0)} up to date, {t.get('planned', 0)} to copy, "
        f"{t.get('failed', 0)} failed, {t.get('deferred', 0)} left; {verb} {t.get('blobs_uploaded', 0)} blobs "
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
