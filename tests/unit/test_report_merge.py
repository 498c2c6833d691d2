"""Merging shard and unit reports (regcopy.scale.report_merge): same schema out, duplicates shown."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from regcopy.errors import ConfigError
from regcopy.progress import BlobDone, BlobMounted
from regcopy.scale.report_merge import UploadTally, merge_reports
from regcopy.sync import ImageReport, SyncReport


def part(*images: ImageReport, errors: tuple[str, ...] = (), seconds: float = 1.0, **extra: Any) -> dict[str, Any]:
    report = SyncReport(images=list(images), errors=list(errors), seconds=seconds)
    return {**report.to_json(), **extra}


def img(source: str, status: str = "copied", **kw: Any) -> ImageReport:
    return ImageReport("sync[0]", f"src/{source}", f"dst/{source}", status, **kw)  # type: ignore[arg-type]


def test_shards_merge_into_one_report_of_the_same_schema() -> None:
    a = part(img("a:1", bytes_uploaded=10, blobs_uploaded=1), img("a:2", "up-to-date"), errors=("catalog x",),
             seconds=3)
    b = part(img("b:1", "failed", error="boom"), errors=("catalog x", "listing b"), seconds=5)
    merged = merge_reports([a, b])
    single = SyncReport().to_json()
    assert set(single) <= set(merged)  # every key a report has, so readers of reports read this one
    assert [i["source"] for i in merged["images"]] == ["src/a:1", "src/a:2", "src/b:1"]
    assert merged["totals"] == {"copied": 1, "up-to-date": 1, "failed": 1, "blobs_uploaded": 1,
                                "blobs_mounted": 0, "blobs_skipped": 0, "bytes_uploaded": 10}
    assert merged["errors"] == ["catalog x", "listing b"]
    assert merged["seconds"] == 5 and merged["scale"]["parts"] == 2
    json.dumps(merged)


def test_a_success_wins_over_a_failure_of_the_same_image() -> None:
    first = part(img("a:1", "failed", error="worker killed"))
    second = part(img("a:1", "copied", attempts=2))
    for order in ([first, second], [second, first]):
        merged = merge_reports(order)
        assert [(i["status"], i["error"]) for i in merged["images"]] == [("copied", None)]


def test_uploads_per_registry_and_duplicates() -> None:
    tally_a, tally_b = UploadTally(), UploadTally()
    seen: list[object] = []
    chained = UploadTally(seen.append)
    for tally in (tally_a, tally_b, chained):
        tally(BlobDone("reg:5000/team/a", "sha256:base", 100))
        tally(BlobMounted("reg:5000/team/b", "sha256:base", 100, "team/a"))  # a mount is not an upload
    tally_b(BlobDone("reg:5000/team/c", "sha256:app", 7))
    assert len(seen) == 2  # a chained tally hands every event on
    merged = merge_reports([part(uploaded_blobs=tally_a.blobs), part(uploaded_blobs=tally_b.blobs)])
    summary = merged["scale"]["registries"]["registry:reg:5000"]
    assert summary == {"bytes_uploaded": 207, "unique_bytes": 107, "ratio": round(207 / 107, 4),
                       "duplicate_uploads": 1, "duplicates": {"sha256:base": 2}}
    assert merged["uploaded_blobs"]["registry:reg:5000"]["sha256:base"] == [100, 2]


def test_deletions_are_summed() -> None:
    deletion = {"dry_run": True, "interrupted": False, "seconds": 1, "errors": ["cap"],
                "repositories": [{"repository": "r1", "rule": None, "kept": [], "deleted": [],
                                  "would_delete": [{"tag": "old", "digest": "sha256:1", "reason": "not in the source"}],
                                  "skipped": [], "manifests_deleted": [], "errors": []}]}
    other = json.loads(json.dumps(deletion))
    other["repositories"][0]["repository"] = "r2"
    merged = merge_reports([part(deletions=deletion), part(deletions=other), part()])
    assert merged["deletions"]["totals"]["would_delete"] == 2 and merged["deletions"]["errors"] == ["cap"]


@pytest.mark.parametrize("bad", [
    {}, {"images": "x"}, {"images": [1]}, {"images": [{"source": "a"}]}, {"images": [], "errors": "x"},
    {"images": [{"entry": "e", "source": "a", "target": "b", "status": "weird"}]},
    {"images": [], "uploaded_blobs": {"s": {"d": "x"}}}, [],
])
def test_a_part_that_is_not_a_report_is_a_clear_error(bad: Any) -> None:
    with pytest.raises(ConfigError, match=r"shard-7\.json"):
        merge_reports([part(), bad], names=["shard-0.json", "shard-7.json"])


def test_nothing_to_merge() -> None:
    with pytest.raises(ConfigError, match="no report"):
        merge_reports([])


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                           lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
                           max_leaves=12)


@given(st.dictionaries(st.sampled_from(["images", "errors", "uploaded_blobs", "deletions", "seconds", "x"]),
                       json_values, max_size=5))
def test_any_json_is_merged_or_refused_clearly(doc: dict[str, Any]) -> None:
    try:
        merged = merge_reports([doc])
    except ConfigError as exc:
        assert str(exc).startswith("report 1: ")
        return
    json.dumps(merged)
    assert len(merged["images"]) <= len(doc["images"])
    assert sum(merged["totals"].get(s, 0) for s in ("copied", "up-to-date", "failed", "planned")) == len(
        merged["images"])
