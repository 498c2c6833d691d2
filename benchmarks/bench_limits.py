"""Benchmark: what the per-host limits save, recorded (docs/benchmarks.md, "Limits").

Two scenarios, the same as the tests that assert them (tests/integration/test_limits.py,
tests/integration/test_hub_limits.py), here measured and written down:

* ``adaptive``: a sync of eight sample images to three namespaces of one destination behind
  ``servers.quota_proxy.CapacityProxy`` (it serves K requests at once and answers 429 to any request
  arriving while K are in flight). Adaptive concurrency (AIMD from a ceiling of 32) against a fixed
  limit of 32, a fresh destination registry for each run, ``--rounds`` times each. Recorded per run:
  429s, requests served, the proxy's peak in-flight count, the host's concurrency limit at the end,
  its lowest and highest, its changes, the wall time. Results: ``benchmarks/results/limits-adaptive.json``.
* ``pulls``: Docker Hub's pull accounting, emulated by ``servers.quota_proxy.HubProxy`` in front of the
  source (every manifest GET is a pull, HEADs are free). ``regcopy sync`` of a plan with ``platforms``
  (an index source and a one-image source), then the same command again (a no-op); and ``regcopy copy``
  of one image twice. Recorded: pulls of each run and manifest GETs / HEADs on both sides in the
  second run. Results: ``benchmarks/results/limits-pulls.json``.

    flock /work/bench.lock .venv/bin/python benchmarks/bench_limits.py [--rounds 3] [--only adaptive|pulls]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))

import regcopy  # noqa: E402
from regcopy.sync import SyncOptions, parse_plan  # noqa: E402
from servers import skopeo  # noqa: E402
from servers.faulty_proxy import FaultyProxy  # noqa: E402
from servers.images import write_layout  # noqa: E402
from servers.quota_proxy import CapacityProxy, HubProxy  # noqa: E402
from servers.registry import RegistryServer  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
K = 6  # requests the capacity proxy serves at once (as in the test)
CEILING = 32
SAMPLES = ("oci", "docker", "multi", "dockerlist", "nested", "shared-a", "shared-b", "big")


def _samples() -> dict[str, Any]:
    """The integration tests' sample images (tests/integration/conftest.py), one definition."""
    spec = importlib.util.spec_from_file_location("integration_conftest", ROOT / "tests/integration/conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return dict(module.SAMPLES)


def _settings(**fields: Any) -> regcopy.RegistrySettings:
    return regcopy.RegistrySettings(scheme="http", retries=10, backoff=0.05, backoff_max=1.0, **fields)


async def _mirror(src: RegistryServer, dst_host: str, adaptive: bool) -> tuple[Any, float]:
    plan = parse_plan({"version": 1, "sync": [
        {"source": f"{src.host}/lim", "target": f"{dst_host}/mirror{i or ''}", "type": "namespace"}
        for i in range(3)]})
    settings = {src.host: _settings(), dst_host: _settings(max_concurrency=CEILING, adaptive=adaptive)}
    started = time.monotonic()
    async with regcopy.Client(settings=settings, authfile=os.environ["REGCOPY_BENCH_AUTHFILE"]) as client:
        report = await client.sync(plan, options=SyncOptions(images=16, blob_jobs=6, blobs=64))
    return report, time.monotonic() - started


def adaptive_runs(work: Path, layout: Path, rounds: int) -> list[dict[str, Any]]:
    src = RegistryServer(work / "src", "http").start()
    runs: list[dict[str, Any]] = []
    try:
        digests = {s: skopeo.seed(src, layout, s, f"lim/{s}", "v1") for s in SAMPLES}
        for n in range(rounds):
            for adaptive in (True, False):
                dst = RegistryServer(work / f"dst-{n}-{adaptive}", "http").start()
                try:
                    with CapacityProxy(dst.url, K) as proxy:
                        report, seconds = asyncio.run(_mirror(src, proxy.host, adaptive))
                        host = report.hosts[proxy.host]
                        run = {"mode": "adaptive" if adaptive else "fixed", "round": n, "ok": report.ok,
                               "http_429": proxy.refused, "served": proxy.served, "proxy_peak_in_flight": proxy.peak,
                               "throttled_counted": host["throttled"], "concurrency": host["concurrency"],
                               "seconds": round(seconds, 2)}
                    for i in range(3):  # exact: every image where it belongs, digests as the source's
                        for s, digest in digests.items():
                            skopeo.verify(dst, f"mirror{i or ''}/{s}:v1", digest)
                finally:
                    dst.stop()
                    shutil.rmtree(dst.workdir, ignore_errors=True)
                runs.append(run)
                print(json.dumps(run), flush=True)
    finally:
        src.stop()
    return runs


def _regcopy(*args: str, cwd: Path) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "regcopy", *args, "-o", "json", "--progress", "none"],
                          capture_output=True, text=True, timeout=300, cwd=cwd)
    if proc.returncode != 0:
        raise RuntimeError(f"regcopy {' '.join(args)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


def _manifest_calls(proxy: FaultyProxy, method: str) -> int:
    return sum(1 for r in proxy.requests if r.method == method and "/manifests/" in r.path)


def _second_run(hub: HubProxy, dst: FaultyProxy, first_pulls: int, report: dict[str, Any]) -> dict[str, Any]:
    status = [i["status"] for i in report["images"]] if "images" in report else \
        ["up-to-date" if report["up_to_date"] else "copied"]
    return {"pulls_first_run": first_pulls, "pulls_second_run": hub.pulls - first_pulls, "second_run_status": status,
            "second_run_source_manifest_gets": _manifest_calls(hub, "GET"),
            "second_run_source_manifest_heads": _manifest_calls(hub, "HEAD"),
            "second_run_destination_manifest_gets": _manifest_calls(dst, "GET"),
            "second_run_destination_manifest_heads": _manifest_calls(dst, "HEAD")}


def pull_runs(work: Path, layout: Path) -> list[dict[str, Any]]:
    src = RegistryServer(work / "hub", "http").start()
    runs: list[dict[str, Any]] = []
    try:
        skopeo.seed(src, layout, "multi", "hub/multi", "v1")
        skopeo.seed(src, layout, "oci", "hub/a", "v1")
        for case, repo in (("sync-platforms-index-source", "multi"), ("sync-platforms-image-source", "a"),
                           ("copy-image", "a")):
            dst = RegistryServer(work / f"dst-{case}", "http").start()
            try:
                with HubProxy(src.url) as hub, FaultyProxy(dst.url) as dst_proxy:
                    if case.startswith("sync"):
                        plan = work / f"{case}.yaml"
                        plan.write_text(yaml.safe_dump({
                            "version": 1, "registries": {hub.host: {"tls": "http"}, dst_proxy.host: {"tls": "http"}},
                            "sync": [{"source": f"{hub.host}/hub/{repo}", "target": f"{dst_proxy.host}/plat/{repo}",
                                      "tags": {"exact": ["v1"]}, "platforms": ["linux/amd64", "linux/arm64"]}]}))
                        args = ("sync", str(plan), "--state", str(work / f"{case}.state"))
                    else:
                        args = ("copy", f"{hub.host}/hub/{repo}:v1", f"{dst_proxy.host}/copied/{repo}:v1",
                                "--insecure-registry", hub.host, "--insecure-registry", dst_proxy.host)
                    _regcopy(*args, cwd=work)
                    first = hub.pulls
                    hub.clear(faults=False)
                    dst_proxy.clear(faults=False)
                    run = {"case": case, **_second_run(hub, dst_proxy, first, _regcopy(*args, cwd=work))}
            finally:
                dst.stop()
                shutil.rmtree(dst.workdir, ignore_errors=True)
            runs.append(run)
            print(json.dumps(run), flush=True)
    finally:
        src.stop()
    return runs


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode in ("adaptive", "fixed"):
        mine = [r for r in runs if r["mode"] == mode]
        out[mode] = {"http_429": sorted(r["http_429"] for r in mine),
                     "final_limit": sorted(r["concurrency"]["limit"] for r in mine),
                     "lowest_limit": sorted(r["concurrency"]["min"] for r in mine),
                     "seconds": sorted(r["seconds"] for r in mine)}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=3, help="runs of each mode in the adaptive scenario")
    parser.add_argument("--only", choices=("adaptive", "pulls"))
    parser.add_argument("--workdir", type=Path, default=Path("/dev/shm") if Path("/dev/shm").is_dir() else None)
    parser.add_argument("--cache", type=Path, default=ROOT / "benchmarks" / ".cache")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="regcopy-bench-", dir=args.workdir) as tmp:
        work = Path(tmp)
        # Never the developer's credentials: an empty auth file and a HOME of our own.
        (work / "auth.json").write_text('{"auths": {}}')
        os.environ.update({"HOME": str(work), "DOCKER_CONFIG": str(work / "docker"),
                           "REGISTRY_AUTH_FILE": str(work / "auth.json"),
                           "REGCOPY_BENCH_AUTHFILE": str(work / "auth.json"), "PYTHONPATH": str(ROOT / "src")})
        layout = work / "samples"
        write_layout(layout, _samples(), cache_dir=args.cache / "layers")
        if args.only in (None, "adaptive"):
            runs = adaptive_runs(work, layout, args.rounds)
            (RESULTS / "limits-adaptive.json").write_text(json.dumps({
                "setting": "loopback", "capacity_k": K, "ceiling": CEILING, "images": len(SAMPLES), "copies": 3,
                "summary": _summary(runs), "runs": runs}, indent=2))
        if args.only in (None, "pulls"):
            (RESULTS / "limits-pulls.json").write_text(json.dumps({
                "setting": "loopback", "platforms": ["linux/amd64", "linux/arm64"],
                "runs": pull_runs(work, layout)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
