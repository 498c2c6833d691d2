"""Benchmark: how close ``regcopy copy --limit-rate RATE`` lands to RATE, on loopback.

Corpus (generated, deterministic): one image with a 256 MiB poorly compressible layer. Both
registries on 127.0.0.1; every run starts from an empty destination registry.

Runs: regcopy uncapped and skopeo (which has no bandwidth cap) as the reference of what the machine
does, then regcopy with each ``--limit-rate`` cap. For each capped run two rates are reported:

* ``transfer_rate``: the big layer's bytes over the time from its ``blob.started`` to its
  ``blob.done`` event (``--events``: the cap's own figure, without process start and manifests);
* ``wall_rate``: all blob bytes over the whole process's wall time.

and ``deviation``: ``transfer_rate / cap - 1``. Also CPU seconds and peak RSS (GNU time).
Results go to ``benchmarks/results/limits-rate-loopback.json`` and a table on stdout.

    flock /work/bench.lock .venv/bin/python benchmarks/bench_limit_rate.py [--caps 20M,50M,100M] [--mib 256]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "src"))

from bench_copy import run_measured  # noqa: E402

from regcopy.settings import parse_byte_rate  # noqa: E402
from servers import skopeo  # noqa: E402
from servers.images import ImageSpec, LayerSpec, layout_contents, write_layout  # noqa: E402
from servers.registry import RegistryServer  # noqa: E402

MIB = 1024 * 1024
REPO = "bench/capped"
TAG = "v1"
RESULTS = ROOT / "benchmarks" / "results"


@dataclass
class Run:
    """One run: the tool, its cap (bytes/s, 0 = none) and what it measured."""

    tool: str
    cap: int
    seconds: float
    blob_bytes: int
    wall_rate: float
    transfer_rate: float = 0.0
    deviation: float | None = None
    cpu_seconds: float = 0.0
    peak_rss_mib: float = 0.0


def _stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def transfer_rate(events: Path, size: int) -> float:
    """Bytes per second of the blob of ``size`` bytes, from its started and done events."""
    started = done = None
    for line in events.read_text().splitlines():
        record = json.loads(line)
        if record["type"] == "blob.started" and record["size"] == size:
            started = _stamp(record["time"])
        elif record["type"] == "blob.done" and record["size"] == size:
            done = _stamp(record["time"])
    if started is None or done is None or done <= started:
        raise RuntimeError(f"no blob.started/blob.done pair for the {size}-byte blob in {events}")
    return size / (done - started)


def one(tool: str, cap: int, src: RegistryServer, work: Path, env: dict[str, str], authfile: Path,
        blob_bytes: int, big: int) -> Run:
    dst = RegistryServer(work / f"{tool}-{cap}", "http").start()
    events = work / f"events-{tool}-{cap}.jsonl"
    try:
        if tool == "skopeo":
            cmd = ["skopeo", "copy", "--preserve-digests", "--authfile", str(authfile), "--src-tls-verify=false",
                   "--dest-tls-verify=false", f"docker://{src.host}/{REPO}:{TAG}", f"docker://{dst.host}/{REPO}:{TAG}"]
        else:
            cmd = [sys.executable, "-m", "regcopy", "copy", f"{src.host}/{REPO}:{TAG}", f"{dst.host}/{REPO}:{TAG}",
                   "--insecure-registry", src.host, "--insecure-registry", dst.host, "--progress", "none",
                   "--authfile", str(authfile), "--events", str(events), "-o", "json"]
            if cap:
                cmd += ["--limit-rate", str(cap)]
        proc = run_measured(cmd, env)
        assert skopeo.inspect_digest(dst, f"{REPO}:{TAG}") == skopeo.inspect_digest(src, f"{REPO}:{TAG}")
        run = Run(tool, cap, round(proc.seconds, 3), blob_bytes, round(blob_bytes / proc.seconds),
                  cpu_seconds=round(proc.cpu, 2), peak_rss_mib=round(proc.rss_kib / 1024, 1))
        if tool == "regcopy":
            run.transfer_rate = round(transfer_rate(events, big))
            if cap:
                run.deviation = round(run.transfer_rate / cap - 1, 4)
        return run
    finally:
        dst.stop()
        shutil.rmtree(dst.workdir, ignore_errors=True)


def table(runs: list[Run]) -> str:
    lines = [f"{'tool':8} {'cap MiB/s':>9} {'seconds':>8} {'transfer MiB/s':>14} {'wall MiB/s':>10} "
             f"{'deviation':>9} {'cpu s':>6} {'rss MiB':>8}"]
    for r in runs:
        dev = f"{r.deviation * 100:+.1f} %" if r.deviation is not None else "-"
        lines.append(f"{r.tool:8} {r.cap / MIB:9.0f} {r.seconds:8.2f} {r.transfer_rate / MIB:14.1f} "
                     f"{r.wall_rate / MIB:10.1f} {dev:>9} {r.cpu_seconds:6.1f} {r.peak_rss_mib:8.1f}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--caps", default="20M,50M,100M", help="comma-separated --limit-rate values")
    parser.add_argument("--mib", type=int, default=256, help="size of the layer (MiB)")
    parser.add_argument("--workdir", type=Path, default=Path("/dev/shm") if Path("/dev/shm").is_dir() else None)
    parser.add_argument("--cache", type=Path, default=ROOT / "benchmarks" / ".cache")
    args = parser.parse_args()
    caps = [parse_byte_rate(c) for c in args.caps.split(",")]
    layout = args.cache / f"layout-capped-{args.mib}"
    write_layout(layout, {TAG: ImageSpec(layers=[LayerSpec(args.mib * MIB, "bench-capped", "random")])},
                 cache_dir=args.cache / "layers")
    contents = layout_contents(layout, TAG)
    blob_bytes = sum(d.size for d in contents.blobs.values())
    big = max(d.size for d in contents.blobs.values())  # the layer as stored (gzip of random bytes: a bit more)
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="regcopy-bench-", dir=args.workdir) as tmp:
        work = Path(tmp)
        env = {**os.environ, "HOME": str(work), "DOCKER_CONFIG": str(work / "docker"), "PYTHONPATH": str(ROOT / "src")}
        authfile = work / "auth.json"
        authfile.write_text('{"auths": {}}')
        src = RegistryServer(work / "src", "http").start()
        try:
            skopeo.seed(src, layout, TAG, REPO, TAG)
            for tool, cap in [("skopeo", 0), ("regcopy", 0), *(("regcopy", c) for c in caps)]:
                runs.append(one(tool, cap, src, work, env, authfile, blob_bytes, big))
                print(table(runs[-1:]).splitlines()[-1], flush=True)
        finally:
            src.stop()
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "limits-rate-loopback.json"
    out.write_text(json.dumps({"setting": "loopback", "layer_mib": args.mib, "blob_bytes": blob_bytes,
                               "args": {k: str(v) for k, v in vars(args).items()},
                               "runs": [asdict(r) for r in runs]}, indent=2))
    print("\n" + table(runs), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
