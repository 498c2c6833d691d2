"""Progress renderers for the CLI: a rich live display on a TTY, periodic plain lines otherwise.

Both renderers are reporters (synchronous callables taking progress events) that aggregate byte
counts and never block: rich redraws on its own thread, the plain renderer prints at most every
``interval``. Also the text tree of ``regcopy referrers``.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

from regcopy.artifacts import Attached, ReferrerTree
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

__all__ = ("PlainRenderer", "RichRenderer", "make_renderer")


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
        self.totals = _Totals()
        self.progress = Progress(
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
