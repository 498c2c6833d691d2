"""The event schema (``regcopy.events``): docs/events.md documents exactly :data:`SCHEMA`, every typed event
has a record of its schema, and the writer throttles ``blob.progress`` without losing a byte."""

from __future__ import annotations

import io
import json
import re
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regcopy import progress as p
from regcopy.events import COMMON, SCHEMA, VERSION, EventWriter, record

DOC = Path(__file__).resolve().parents[2] / "docs" / "events.md"

# One of each event type, as the library makes them.
SAMPLES: list[p.Event] = [
    p.ImageStarted("s/a:1", "d/a:1", 3, 300),
    p.ImageDone("s/a:1", "d/a:1", "sha256:" + "a" * 64, None),
    p.ImageDone("s/a:1", "d/a:1", None, "boom"),
    p.ImageDeferred("s/a:1", "d/a:1", "pull reserve reached"),
    p.BlobStarted("d/a", "sha256:" + "b" * 64, 100),
    p.BlobProgress("d/a", "sha256:" + "b" * 64, 10),
    p.BlobDone("d/a", "sha256:" + "b" * 64, 100),
    p.BlobMounted("d/a", "sha256:" + "b" * 64, 100, "d/other"),
    p.BlobSkipped("d/a", "sha256:" + "b" * 64, 100),
    p.ManifestPushed("d/a", "sha256:" + "c" * 64, "1"),
    p.Retrying("d", "GET", "http://d/v2/", 1, 0.5, "HTTP 503"),
    p.RateLimitPaused("d", 2.0, "Retry-After"),
    p.PullReserveReached("docker.io", 10, 10, 100, 21600.0),
    p.ConcurrencyChanged("d", 16, 8, "HTTP 429"),
    p.RunSummary({"copied": 1}, 300, 1.5, {"d": {"requests": 9}}),
]


def documented() -> dict[str, tuple[str, ...]]:
    """The record types of the docs' table, with their fields in order."""
    out: dict[str, tuple[str, ...]] = {}
    for line in DOC.read_text().splitlines():
        match = re.match(r"^\| `([a-z]+\.[a-z_.]+)` \| ([^|]*) \|", line)
        if match:
            out[match.group(1)] = tuple(re.findall(r"`([a-z_]+)`", match.group(2)))
    return out


def test_the_docs_document_exactly_the_schema() -> None:
    assert documented() == dict(SCHEMA)
    common = re.findall(r"^\| `([a-z_]+)` \|", DOC.read_text().split("## Record types")[0], re.MULTILINE)
    assert tuple(common) == COMMON
    assert f'"version": {VERSION}' in DOC.read_text()


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: type(e).__name__)
def test_every_event_has_a_record_of_its_schema(event: p.Event) -> None:
    line = record(event)
    assert tuple(line) == COMMON + SCHEMA[line["type"]]
    assert line["version"] == VERSION
    assert datetime.fromisoformat(line["time"].replace("Z", "+00:00")).tzinfo is not None
    json.dumps(line)  # JSON-ready


def test_every_schema_type_has_an_event() -> None:
    assert {record(e)["type"] for e in SAMPLES} == set(SCHEMA)


def test_the_image_of_an_event_is_the_copy_it_belongs_to() -> None:
    token = p.current_image.set("d/a:1")
    try:
        inside = p.BlobStarted("d/a", "sha256:x", 1)
    finally:
        p.current_image.reset(token)
    assert record(inside)["image"] == "d/a:1"
    assert record(p.BlobStarted("d/a", "sha256:x", 1))["image"] is None


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 10_000), st.floats(0, 2)), min_size=1, max_size=60))
def test_progress_lines_are_throttled_and_add_up(chunks: list[tuple[int, float]]) -> None:
    out, clock = io.StringIO(), Clock()
    writer = EventWriter(out, progress_interval=1.0, clock=clock)
    digest = "sha256:" + "d" * 64
    writer(p.BlobStarted("d/a", digest, sum(n for n, _ in chunks), image="d/a:1"))
    for size, pause in chunks:
        clock.now += pause
        writer(p.BlobProgress("d/a", digest, size, image="d/a:1"))
    writer(p.BlobDone("d/a", digest, sum(n for n, _ in chunks), image="d/a:1"))
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    progress = [line for line in lines if line["type"] == "blob.progress"]
    assert sum(line["bytes"] for line in progress) == sum(n for n, _ in chunks)
    assert progress[-1]["sent"] == sum(n for n, _ in chunks)
    assert [line["type"] for line in lines][-1] == "blob.done"
    # At most one line per interval, plus the last one before blob.done.
    span = sum(pause for _, pause in chunks)
    assert len(progress) <= int(span) + 2
