"""Dynamic scale-out against real parts: `regcopy worker` processes on a real redis-server, real 2.8.2
registries, skopeo to seed and verify, real signals (SIGKILL, SIGSTOP, SIGTERM) and a Redis restart."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from scale_helpers import (
    Workers,
    blob_puts,
    blob_sizes,
    corpus,
    run_keys,
    submit,
    verify_all,
    wait_for,
    write_plan,
)

from servers.redis_server import RedisServer
from servers.registry import RegistryServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]


def test_four_workers_copy_everything_and_put_each_blob_once(
    scale_source: RegistryServer, registry_factory: Any, redis_server: RedisServer, workers: Workers,
    scale_layout: tuple[Path, dict[str, str]], tmp_path: Path, empty_authfile: Path,
) -> None:
    dst = registry_factory("http")
    layout, digests = scale_layout
    workers.start(4, "--images", "4")
    plan = write_plan(tmp_path / "plan.yaml", scale_source, dst)
    report = tmp_path / "report.json"
    done = submit(plan, redis_server, empty_authfile, "--report", str(report), "--run", "four")
    assert done.returncode == 0, done.stderr + workers.logs()
    verify_all(dst, digests)
    puts = blob_puts(dst)
    assert puts and max(puts.values()) == 1, {d: n for d, n in puts.items() if n > 1}
    assert set(puts) == set(blob_sizes(layout))  # every blob of the corpus, once
    doc = json.loads(report.read_text())
    assert doc["totals"]["copied"] == len(corpus()) and not doc["errors"]
    summary = doc["scale"]["registries"][f"registry:{dst.host}"]
    assert summary["ratio"] == 1.0 and summary["duplicate_uploads"] == 0
    keys = run_keys(redis_server, "four")
    assert int(keys["meta"]["units"]) == len(keys[":done"]) == len(corpus())  # one unit per repository


def test_resubmitting_a_finished_plan_moves_no_blob(
    scale_source: RegistryServer, registry_factory: Any, redis_server: RedisServer, workers: Workers,
    tmp_path: Path, empty_authfile: Path,
) -> None:
    dst = registry_factory("http")
    workers.start(2)
    plan = write_plan(tmp_path / "plan.yaml", scale_source, dst)
    assert submit(plan, redis_server, empty_authfile).returncode == 0, workers.logs()
    before = len(dst.access_log())
    again = submit(plan, redis_server, empty_authfile, "--report", str(tmp_path / "again.json"))
    assert again.returncode == 0, again.stderr
    assert "0 units enqueued" in again.stderr
    new = dst.access_log()[before:]
    writes = [f"{e.method} {e.route}" for e in new if e.method in ("POST", "PATCH", "PUT", "DELETE")]
    assert writes == []
    assert {e.method for e in new} <= {"GET", "HEAD"}  # tag lists and HEADs, as a one-process no-op
    doc = json.loads((tmp_path / "again.json").read_text())
    assert doc["totals"]["up-to-date"] == len(corpus()) and doc["totals"].get("copied", 0) == 0


def _lease_holder(redis: RedisServer, digest: str) -> int | None:
    import subprocess

    out = subprocess.run(["redis-cli", "-p", str(redis.port), "--scan", "--pattern", f"regcopy:lease:*:{digest}"],
                         capture_output=True, text=True).stdout.split()
    for key in out:
        value = subprocess.run(["redis-cli", "-p", str(redis.port), "GET", key], capture_output=True,
                               text=True).stdout.strip()
        if value:
            return int(value.split(":")[1])
    return None


def test_sigkill_of_the_worker_holding_the_largest_upload(
    scale_source: RegistryServer, registry_factory: Any, redis_server: RedisServer, workers: Workers,
    scale_layout: tuple[Path, dict[str, str]], tmp_path: Path, empty_authfile: Path,
) -> None:
    from servers.faulty_proxy import Fault, FaultyProxy

    dst = registry_factory("http")
    layout, digests = scale_layout
    big = max(blob_sizes(layout).items(), key=lambda kv: kv[1])[0]
    procs = workers.start(2, "--lease-seconds", "5")
    with FaultyProxy(scale_source.url) as proxy:
        # The big blob's first download stalls half way: its upload is open, its lease held.
        proxy.add(Fault(method="GET", path=f"/blobs/{big}", stall_after_bytes=(12 * 1024 * 1024, 60), times=1))
        plan = write_plan(tmp_path / "plan.yaml", proxy.host, dst, repos="data/.*")
        result: dict[str, Any] = {}
        thread = threading.Thread(target=lambda: result.update(
            done=submit(plan, redis_server, empty_authfile, "--report", str(tmp_path / "r.json"), "--run", "kill")))
        thread.start()
        wait_for(lambda: _lease_holder(redis_server, big) is not None, 60, "a worker takes the big blob's lease")
        holder = _lease_holder(redis_server, big)
        victim = next(p for p in procs if p.pid == holder)
        victim.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        unit = wait_for(lambda: run_keys(redis_server, "kill")[":attempts"], 10, "attempts recorded")
        assert unit >= 0
        redelivery = wait_for(lambda: any(int(n) >= 2 for n in run_keys(redis_server, "kill")[":attempts"].values()),
                              60, "the unit is redelivered to the other worker", interval=0.2)
        print(f"redelivered {time.monotonic() - killed:.1f} s after SIGKILL (polled {redelivery:.1f} s)")
        thread.join(180)
    done = result["done"]
    assert done.returncode == 0, done.stderr + workers.logs()
    verify_all(dst, digests, repos=["data/big"])
    puts = blob_puts(dst)
    assert puts[big] <= 2  # at most one extra upload of that blob
    doc = json.loads((tmp_path / "r.json").read_text())
    summary = doc["scale"]["registries"][f"registry:{dst.host}"]
    assert summary["duplicate_uploads"] == sum(n - 1 for n in puts.values())  # reported as the registry saw it


def _complete_or_absent(dst: RegistryServer, repo: str, tag: str, problems: list[str]) -> None:
    """If ``repo:tag`` exists on ``dst``, every blob its manifest names must be there too."""
    import urllib.error
    import urllib.request

    accept = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"
    try:
        req = urllib.request.Request(f"{dst.url}/v2/{repo}/manifests/{tag}", headers={"Accept": accept})
        with urllib.request.urlopen(req, timeout=5) as resp:
            manifest = json.loads(resp.read())
    except urllib.error.HTTPError:
        return  # not tagged yet
    for desc in [manifest["config"], *manifest["layers"]]:
        req = urllib.request.Request(f"{dst.url}/v2/{repo}/blobs/{desc['digest']}", method="HEAD")
        try:
            urllib.request.urlopen(req, timeout=5).close()
        except urllib.error.HTTPError as exc:
            problems.append(f"{repo}:{tag} tagged while {desc['digest']} answers {exc.code}")


def test_sigstop_past_the_lease_then_sigcont(
    scale_source: RegistryServer, registry_factory: Any, redis_server: RedisServer, workers: Workers,
    scale_layout: tuple[Path, dict[str, str]], tmp_path: Path, empty_authfile: Path,
) -> None:
    from servers.faulty_proxy import Fault, FaultyProxy

    dst = registry_factory("http")
    layout, digests = scale_layout
    big = max(blob_sizes(layout).items(), key=lambda kv: kv[1])[0]
    procs = workers.start(2, "--lease-seconds", "3", "--heartbeat-timeout", "4")
    problems: list[str] = []
    stop = threading.Event()

    def watch() -> None:  # no tag may ever point at a partial image
        while not stop.is_set():
            _complete_or_absent(dst, "m/data/big", "v1", problems)
            time.sleep(0.05)

    with FaultyProxy(scale_source.url) as proxy:
        proxy.add(Fault(method="GET", path=f"/blobs/{big}", stall_after_bytes=(12 * 1024 * 1024, 3), times=1))
        plan = write_plan(tmp_path / "plan.yaml", proxy.host, dst, repos="data/.*")
        result: dict[str, Any] = {}
        threading.Thread(target=watch, daemon=True).start()
        thread = threading.Thread(target=lambda: result.update(
            done=submit(plan, redis_server, empty_authfile, "--report", str(tmp_path / "r.json"), "--run", "stop")))
        thread.start()
        wait_for(lambda: _lease_holder(redis_server, big) is not None, 60, "a worker takes the big blob's lease")
        victim = next(p for p in procs if p.pid == _lease_holder(redis_server, big))
        victim.send_signal(signal.SIGSTOP)
        try:
            wait_for(lambda: any(int(n) >= 2 for n in run_keys(redis_server, "stop")[":attempts"].values()),
                     60, "the stopped worker's unit is redelivered", interval=0.2)
            wait_for(lambda: len(run_keys(redis_server, "stop")[":done"]) == 1, 120, "the other worker finishes")
        finally:
            victim.send_signal(signal.SIGCONT)
        thread.join(180)
        wait_for(lambda: blob_puts(dst)[big] >= 2, 60, "the resumed worker finishes its own upload too")
    stop.set()
    done = result["done"]
    assert done.returncode == 0, done.stderr + workers.logs()
    assert problems == []
    verify_all(dst, digests, repos=["data/big"])
    assert blob_puts(dst)[big] == 2  # the stopped worker's upload went on after SIGCONT: a duplicate
    uploads = run_keys(redis_server, "stop")[":uploads"]
    assert int(uploads[f"registry:{dst.host}|{big}"]) == 2  # ... and it is counted


def test_redis_restarted_mid_run(
    scale_source: RegistryServer, registry_factory: Any, redis_server: RedisServer, workers: Workers,
    scale_layout: tuple[Path, dict[str, str]], tmp_path: Path, empty_authfile: Path,
) -> None:
    dst = registry_factory("http")
    _layout, digests = scale_layout
    workers.start(2, "--images", "1", "--units", "1")
    plan = write_plan(tmp_path / "plan.yaml", scale_source, dst)
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.update(
        done=submit(plan, redis_server, empty_authfile, "--report", str(tmp_path / "r.json"), "--run", "bounce")))
    thread.start()
    wait_for(lambda: len(run_keys(redis_server, "bounce")[":done"]) >= 2, 120, "a few units done")
    redis_server.restart(down_for=2.0)
    thread.join(300)
    done = result["done"]
    assert done.returncode == 0, done.stderr + workers.logs()
    verify_all(dst, digests)
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["totals"]["copied"] + doc["totals"].get("up-to-date", 0) == len(corpus())
    assert not doc["errors"] and not any(i["status"] == "failed" for i in doc["images"])


def test_sigterm_hands_the_unit_back(
    scale_source: RegistryServer, registry_factory: Any, redis_server: RedisServer, workers: Workers,
    scale_layout: tuple[Path, dict[str, str]], tmp_path: Path, empty_authfile: Path,
) -> None:
    from servers.faulty_proxy import Fault, FaultyProxy

    dst = registry_factory("http", delete=True)
    layout, digests = scale_layout
    big = max(blob_sizes(layout).items(), key=lambda kv: kv[1])[0]
    (first,) = workers.start(1)
    with FaultyProxy(scale_source.url) as proxy:
        proxy.add(Fault(method="GET", path=f"/blobs/{big}", stall_after_bytes=(12 * 1024 * 1024, 60), times=1))
        plan = write_plan(tmp_path / "plan.yaml", proxy.host, dst, repos="data/.*")
        result: dict[str, Any] = {}
        thread = threading.Thread(target=lambda: result.update(
            done=submit(plan, redis_server, empty_authfile, "--run", "term")))
        thread.start()
        wait_for(lambda: _lease_holder(redis_server, big) is not None, 60, "the worker takes the big blob's lease")
        first.send_signal(signal.SIGTERM)
        assert first.wait(30) == 143
        wait_for(lambda: _lease_holder(redis_server, big) is None, 5, "the lease is released, not left to expire")
        workers.start(1)
        thread.join(180)
    assert result["done"].returncode == 0, result["done"].stderr + workers.logs()
    verify_all(dst, digests, repos=["data/big"])
    assert "handed back" in workers.logs()
    deletes = [e for e in dst.access_log() if e.method == "DELETE" and "/blobs/uploads/" in e.path]
    assert deletes, "the aborted upload session was cancelled"


def test_a_long_unit_on_a_live_worker_is_never_redelivered(
    scale_source: RegistryServer, registry_factory: Any, redis_server: RedisServer, workers: Workers,
    scale_layout: tuple[Path, dict[str, str]], tmp_path: Path, empty_authfile: Path,
) -> None:
    """A unit busy for four times the heartbeat timeout stays with its worker while an idle worker polls
    the queue (and would take a redelivered unit at once)."""
    import subprocess

    from scale_helpers import regcopy

    from servers.faulty_proxy import Fault, FaultyProxy

    dst = registry_factory("http")
    _layout, digests = scale_layout
    big = max(blob_sizes(scale_layout[0]).items(), key=lambda kv: kv[1])[0]
    workers.start(1, "--heartbeat-timeout", "3", "--units", "1")
    with FaultyProxy(scale_source.url) as proxy:
        proxy.add(Fault(method="GET", path=f"/blobs/{big}", stall_after_bytes=(12 * 1024 * 1024, 12), times=1))
        plan = write_plan(tmp_path / "plan.yaml", proxy.host, dst, repos="data/.*")
        detached = submit(plan, redis_server, empty_authfile, "--detach", "--run", "long")
        assert detached.returncode == 0 and detached.stdout.strip() == "long", detached.stderr
        wait_for(lambda: _lease_holder(redis_server, big) is not None, 60, "the worker takes the big blob's lease")
        workers.start(1, "--heartbeat-timeout", "3")  # idle, polling: it would take a redelivered unit
        status = subprocess.run(regcopy("status", "--redis", redis_server.url, "long", "-o", "json"),
                                capture_output=True, text=True)
        assert status.returncode == 0 and json.loads(status.stdout)["finished"] is False
        final = subprocess.run(regcopy("status", "--redis", redis_server.url, "long", "--wait",
                                       "--report", str(tmp_path / "r.json")), capture_output=True, text=True,
                               timeout=120)
    assert final.returncode == 0, final.stderr + workers.logs()
    assert {int(n) for n in run_keys(redis_server, "long")[":attempts"].values()} == {1}  # never redelivered
    assert max(blob_puts(dst).values()) == 1
    verify_all(dst, digests, repos=["data/big"])
    assert json.loads((tmp_path / "r.json").read_text())["totals"]["copied"] == 1
