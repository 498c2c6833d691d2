"""The live display on a TTY: what a person watching a copy or a sync wants to see.

One row per image in flight (its state, bytes, rate and a bar), bars for the largest blobs in flight,
a totals line (images, bytes, rate, ETA, elapsed), a line per host that is being throttled (429
pauses, concurrency changes, the pull quota), and, when the run ends, a summary that stays on the
screen. Logs (``-v``) print above the display, never through it: while the display runs, the
``regcopy`` log handlers write through rich's stderr proxy.

:class:`LiveRenderer` is a reporter like every renderer: called on the event loop's thread, it only
updates state under a lock; rich redraws from its own thread, reading that state under the same lock.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Final, TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

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
    PullReserveReached,
    RateLimitPaused,
    Retrying,
    RunSummary,
)

__all__ = ("LiveRenderer", "human_bytes", "human_seconds")

_BLOB_BARS: Final = 4
_RATE_HALF_LIFE: Final = 3.0  # seconds: the displayed rates follow the last few seconds


def human_bytes(n: float) -> str:
    """``1.5 MB``-style sizes (powers of 1000, as rich's columns show them)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def human_seconds(s: float) -> str:
    """``0:01:05``."""
    s = max(0, int(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class _Rate:
    """An exponentially weighted rate of bytes per second."""

    def __init__(self, now: float) -> None:
        self.value = 0.0
        self._stamp = now
        self._bytes = 0
        self._measured = False

    def add(self, n: int, now: float) -> None:
        self._bytes += n
        elapsed = now - self._stamp
        if elapsed >= 0.25:
            sample = self._bytes / elapsed
            weight = 0.5 ** (elapsed / _RATE_HALF_LIFE) if self._measured else 0.0  # the first sample as is
            self.value = self.value * weight + sample * (1 - weight)
            self._bytes, self._stamp, self._measured = 0, now, True


@dataclass(slots=True)
class _Image:
    source: str
    destination: str
    total: int
    started: float
    rate: _Rate
    sent: int = 0
    state: str = "copying"
    blobs: int = 0
    blobs_done: int = 0
    ended: float | None = None
    error: str | None = None


@dataclass(slots=True)
class _Blob:
    image: str | None
    digest: str
    size: int
    sent: int = 0


@dataclass(slots=True)
class _State:
    started: float = field(default_factory=time.monotonic)
    images: dict[str, _Image] = field(default_factory=dict)
    finished: list[_Image] = field(default_factory=list)
    blobs: dict[tuple[str | None, str], _Blob] = field(default_factory=dict)
    hosts: dict[str, str] = field(default_factory=dict)
    total: int = 0
    sent: int = 0
    deferred: int = 0
    summary: RunSummary | None = None
    rate: _Rate = field(default_factory=lambda: _Rate(time.monotonic()))


class LiveRenderer:
    """The live display on stderr (see the module docstring); a reporter and a context manager."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._state = _State()
        self._lock = threading.Lock()
        self._live = Live(console=self.console, get_renderable=self._render, refresh_per_second=4,
                          transient=True, redirect_stdout=False, redirect_stderr=True)
        self._streams: list[tuple[logging.StreamHandler[TextIO], TextIO]] = []

    # ------------------------------------------------------------------ events
    def __call__(self, event: Event) -> None:
        with self._lock:
            self._apply(event, time.monotonic())

    def _apply(self, event: Event, now: float) -> None:
        st = self._state
        if isinstance(event, ImageStarted):
            st.images[event.destination] = _Image(event.source, event.destination, event.total_bytes, now,
                                                  _Rate(now), blobs=event.blobs)
            st.total += event.total_bytes
        elif isinstance(event, ImageDone):
            self._image_done(event, now)
        elif isinstance(event, ImageDeferred):
            st.deferred += 1
        elif isinstance(event, RunSummary):
            st.summary = event
        elif isinstance(event, BlobStarted | BlobProgress | BlobDone | BlobSkipped | BlobMounted):
            self._blob(event, now)
        else:
            self._host(event)

    def _image_done(self, event: ImageDone, now: float) -> None:
        st = self._state
        image = st.images.pop(event.destination, None)
        if image is None:
            return
        image.ended, image.error = now, event.error
        image.state = "failed" if event.error else "up to date" if event.up_to_date else "copied"
        st.finished.append(image)
        for key in [k for k, b in st.blobs.items() if b.image == event.destination]:
            del st.blobs[key]

    def _blob(self, event: BlobStarted | BlobProgress | BlobDone | BlobSkipped | BlobMounted, now: float) -> None:
        st = self._state
        image = st.images.get(event.image or "")
        key = (event.image, event.digest)
        if isinstance(event, BlobStarted):
            st.blobs[key] = _Blob(event.image, event.digest, event.size)
        elif isinstance(event, BlobProgress):
            st.sent += event.delta
            st.rate.add(event.delta, now)
            blob = st.blobs.get(key)
            if blob is not None:
                blob.sent += event.delta
            if image is not None:
                image.sent += event.delta
                image.rate.add(event.delta, now)
        else:
            st.blobs.pop(key, None)
            if image is not None:
                image.blobs_done += 1
            if isinstance(event, BlobSkipped | BlobMounted):
                st.total -= event.size  # will not cross the wire
                if image is not None:
                    image.total -= event.size
        if image is not None and image.blobs and image.blobs_done >= image.blobs:
            image.state = "pushing"

    def _host(self, event: Event) -> None:
        hosts = self._state.hosts
        if isinstance(event, RateLimitPaused):
            hosts[event.registry] = f"paused {event.seconds:.1f} s ({event.reason})"
        elif isinstance(event, ConcurrencyChanged):
            hosts[event.registry] = f"{event.new} requests in flight at most (was {event.old}: {event.reason})"
        elif isinstance(event, PullReserveReached):
            hosts[event.registry] = (f"pull reserve reached ({event.remaining} left, reserve {event.reserve}): "
                                     "no new pulls")
        elif isinstance(event, Retrying):
            hosts.setdefault(event.registry, f"retrying: {event.reason[:60]}")

    # ------------------------------------------------------------------ drawing
    def _render(self) -> RenderableType:
        with self._lock:
            return Group(*self._rows(), self._blob_bars(), *self._host_lines(), self._totals())

    def _rows(self) -> list[RenderableType]:
        st = self._state
        height = self.console.size.height
        room = max(3, height - _BLOB_BARS - len(st.hosts) - 4)
        images = sorted(st.images.values(), key=lambda i: i.started)
        table = Table.grid(padding=(0, 1), expand=True)
        table.add_column("state", width=9, no_wrap=True)
        table.add_column("image", ratio=1, no_wrap=True, overflow="ellipsis")
        table.add_column("bytes", justify="right", no_wrap=True)
        table.add_column("rate", justify="right", width=11, no_wrap=True)
        table.add_column("bar", width=16, no_wrap=True)
        for image in images[:room]:
            total = max(image.total, image.sent)
            table.add_row(Text(image.state, style="cyan"), image.destination,
                          f"{human_bytes(image.sent)}/{human_bytes(total)}", f"{human_bytes(image.rate.value)}/s",
                          ProgressBar(total=total or 1, completed=image.sent if total else 1, width=16))
        out: list[RenderableType] = [table]
        if len(images) > room:
            out.append(Text(f"… and {len(images) - room} more images in flight", style="dim"))
        return out

    def _blob_bars(self) -> RenderableType:
        table = Table.grid(padding=(0, 1))
        table.add_column(width=9, no_wrap=True)
        table.add_column(no_wrap=True)
        table.add_column(width=24, no_wrap=True)
        table.add_column(justify="right", no_wrap=True)
        biggest = sorted(self._state.blobs.values(), key=lambda b: -b.size)[:_BLOB_BARS]
        for blob in biggest:
            short = blob.digest.split(":")[-1][:12]
            table.add_row(Text("  blob", style="dim"), f"{short} {human_bytes(blob.size)}",
                          ProgressBar(total=blob.size or 1, completed=blob.sent, width=24),
                          f"{100 * blob.sent / (blob.size or 1):.0f}%")
        return table

    def _host_lines(self) -> list[RenderableType]:
        return [Text(f"{host}: {note}", style="yellow") for host, note in sorted(self._state.hosts.items())]

    def _totals(self) -> RenderableType:
        st = self._state
        now = time.monotonic()
        done = sum(1 for i in st.finished if i.state != "failed")
        failed = len(st.finished) - done
        total = max(st.total, st.sent)
        eta = (total - st.sent) / st.rate.value if st.rate.value > 0 else None
        parts = [f"images {done} done, {len(st.images)} in flight, {failed} failed",
                 f"{human_bytes(st.sent)}/{human_bytes(total)}", f"{human_bytes(st.rate.value)}/s",
                 f"ETA {human_seconds(eta) if eta is not None else '-:--:--'}",
                 f"elapsed {human_seconds(now - st.started)}"]
        return Text(" · ".join(parts), style="bold")

    # ------------------------------------------------------------------ summary
    def summary_lines(self) -> list[str]:
        """What stays on the screen when the display ends: every image's outcome, then the totals."""
        with self._lock:
            st = self._state
            lines = [_outcome(i) for i in st.finished]
            lines.extend(f"interrupted  {i.destination}" for i in st.images.values())
            seconds = time.monotonic() - st.started
            states: dict[str, int] = {}
            for i in st.finished:
                states[i.state] = states.get(i.state, 0) + 1
            if st.deferred:
                states["deferred"] = st.deferred
            counted = ", ".join(f"{n} {s}" for s, n in sorted(states.items())) or "no image"
            rate = st.sent / seconds if seconds > 0 else 0.0
            lines.append(f"done: {counted}; {human_bytes(st.sent)} sent in {human_seconds(seconds)} "
                         f"({human_bytes(rate)}/s)")
            return lines

    # ------------------------------------------------------------------ life
    def __enter__(self) -> LiveRenderer:
        self._live.start()
        # Log handlers made before the display write to the real stderr, through it: point them at
        # rich's proxy (sys.stderr now), which prints above the display.
        for handler in logging.getLogger("regcopy").handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream in (sys.__stderr__, self.console.file):
                old = handler.setStream(sys.stderr)
                if old is not None:
                    self._streams.append((handler, old))
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        for handler, stream in self._streams:
            handler.setStream(stream)
        self._streams.clear()
        self._live.stop()
        for line in self.summary_lines():
            self.console.print(line, highlight=False, soft_wrap=True)


def _outcome(image: _Image) -> str:
    seconds = (image.ended or image.started) - image.started
    mark = {"failed": "✗", "up to date": "="}.get(image.state, "✓")
    text = f"{mark} {image.state:<10} {image.destination}"
    if image.state == "copied":
        text += f"  {human_bytes(image.sent)} in {seconds:.1f} s"
    if image.error:
        text += f": {image.error[:200]}"
    return text
