"""Static scale-out: `regcopy sync PLAN --shards 4` as four concurrent processes with
JOB_COMPLETION_INDEX 0-3 against real registries, with and without the Redis ledger; and the
command line's refusals (fast)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from scale_helpers import blob_puts, blob_sizes, corpus, env_with, regcopy, verify_all, write_plan

from servers.redis_server import RedisServer
from servers.registry import RegistryServer


def _shards(plan: Path, tmp: Path, authfile: Path, *extra: str) -> list[dict[str, Any]]:
    procs = [subprocess.Popen(regcopy("sync", str(plan), "--shards", "4", "--report", str(tmp / "report.json"),
                                      "--authfile", str(authfile), "--progress", "none", *extra),
                              env=env_with(JOB_COMPLETION_INDEX=str(i)), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(4)]
    for p in procs:
        _out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    return [json.loads((tmp / f"report.shard-{i}-of-4.json").read_text()) for i in range(4)]


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("ledger", [False, True], ids=["no-ledger", "ledger"])
def test_four_static_shards_are_disjoint_and_complete(
    ledger: bool, scale_source: RegistryServer, registry_factory: Any, redis_server: RedisServer,
    scale_layout: tuple[Path, dict[str, str]], tmp_path: Path, empty_authfile: Path,
) -> None:
    dst = registry_factory("http")
    layout, digests = scale_layout
    plan = write_plan(tmp_path / "plan.yaml", scale_source, dst)
    extra = ("--ledger", redis_server.url) if ledger else ()
    reports = _shards(plan, tmp_path, empty_authfile, *extra)
    sources = [{i["source"] for i in r["images"]} for r in reports]
    for a in range(4):
        for b in range(a + 1, 4):
            assert not sources[a] & sources[b], "two shards copied the same image"
    assert sum(len(s) for s in sources) == len(corpus())  # the union is the whole plan
    assert all(sources), "every shard got a part of 21 repositories"
    verify_all(dst, digests)
    merged = subprocess.run(regcopy("report", "merge", *(str(tmp_path / f"report.shard-{i}-of-4.json")
                                                         for i in range(4)), "--to", str(tmp_path / "all.json")),
                            capture_output=True, text=True)
    assert merged.returncode == 0, merged.stderr
    doc = json.loads((tmp_path / "all.json").read_text())
    summary = doc["scale"]["registries"][f"registry:{dst.host}"]
    puts = blob_puts(dst)
    sizes = blob_sizes(layout)
    sent = sum(sizes[d] * n for d, n in puts.items())
    assert summary["bytes_uploaded"] == sent and summary["unique_bytes"] == sum(sizes.values())
    assert summary["duplicate_uploads"] == sum(n - 1 for n in puts.values())  # the report says what happened
    print(f"ledger={ledger}: bytes uploaded / unique bytes = {summary['ratio']}")
    if ledger:
        assert summary["ratio"] == 1.0 and max(puts.values()) == 1


def test_shards_without_an_index_is_a_usage_error(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("sync: [{source: 127.0.0.1:1/a, target: 127.0.0.1:2/b}]\n")
    env = env_with()
    env.pop("JOB_COMPLETION_INDEX", None)
    done = subprocess.run(regcopy("sync", str(plan), "--shards", "4"), capture_output=True, text=True, env=env)
    assert done.returncode == 2 and "JOB_COMPLETION_INDEX" in done.stderr and "Traceback" not in done.stderr
    bad = subprocess.run(regcopy("sync", str(plan), "--shards", "4"), capture_output=True, text=True,
                         env=env_with(JOB_COMPLETION_INDEX="4"))
    assert bad.returncode == 2 and "not a shard" in bad.stderr
    mixed = subprocess.run(regcopy("sync", str(plan), "--shard", "0/2", "--redis", "redis://127.0.0.1:1"),
                           capture_output=True, text=True)
    assert mixed.returncode == 2 and "do not mix" in mixed.stderr


def test_report_merge_command(tmp_path: Path) -> None:
    a = {"dry_run": False, "interrupted": False, "seconds": 1, "errors": [], "images": [
        {"entry": "e", "source": "s/a:1", "target": "d/a:1", "status": "copied", "bytes_uploaded": 5,
         "blobs_uploaded": 1}], "uploaded_blobs": {"registry:d": {"sha256:x": [5, 1]}}}
    b = {**a, "images": [{"entry": "e", "source": "s/b:1", "target": "d/b:1", "status": "failed", "error": "boom"}]}
    (tmp_path / "a.json").write_text(json.dumps(a))
    (tmp_path / "b.json").write_text(json.dumps(b))
    (tmp_path / "bad.json").write_text("{not json")
    done = subprocess.run(regcopy("report", "merge", str(tmp_path / "a.json"), str(tmp_path / "b.json"),
                                  "--to", str(tmp_path / "m.json")), capture_output=True, text=True)
    assert done.returncode == 1  # the merged report has a failure
    assert "FAILED  s/b:1 -> d/b:1: boom" in done.stdout and "1 duplicate uploads" in done.stdout
    merged = json.loads((tmp_path / "m.json").read_text())
    assert merged["totals"]["copied"] == 1 and merged["scale"]["registries"]["registry:d"]["ratio"] == 2.0
    bad = subprocess.run(regcopy("report", "merge", str(tmp_path / "bad.json")), capture_output=True, text=True)
    assert bad.returncode == 2 and "bad.json" in bad.stderr and "Traceback" not in bad.stderr


def test_status_of_an_unknown_run(redis_server: RedisServer) -> None:
    done = subprocess.run(regcopy("status", "--redis", redis_server.url, "nope"), capture_output=True, text=True)
    assert done.returncode == 2 and "no run 'nope'" in done.stderr
