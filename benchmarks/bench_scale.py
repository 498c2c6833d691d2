"""Scale-out benchmark: one process against 1, 2 and 4 dynamic workers and 4 static shards.

Part ``corpus`` (loopback, real 2.8.2 registries, a real redis-server): the sync corpus of
:mod:`bench_sync` (40 repositories on four shared base layers, indexes, one big image; every layer at
1/``--scale`` of its size, the big one ``--big-mib``) copied into an
empty registry by: one process (``regcopy sync PLAN``), 1/2/4 ``regcopy worker``s with a submitter
(``sync --redis``), and 4 static shards (``--shards 4``, concurrent) without and with ``--ledger``.
Per run: wall seconds, bytes uploaded ÷ unique bytes (destination access log), requests per image
(both access logs) against one process, Redis commands per image (``INFO stats``), peak RSS of each
worker (``VmHWM``) and of the submitter (GNU time).

Part ``many`` (an in-process registry, :class:`CatalogRegistry`): N small repositories (one image
each) discovered and copied by 4 workers, then a no-op re-sync of the same plan: requests and Redis
commands per image, submitter peak RSS and seconds.

Results: ``benchmarks/results/scale-corpus.json`` and ``scale-many.json``; run only under the
machine-wide lock (``flock /work/bench.lock``). On 2 cores no speed-up from more workers is expected:
the registries, the workers and the submitter share the same two cores.

    .venv/bin/python benchmarks/bench_scale.py [--part corpus|many|both] [--big-mib 256] [--repos 10000]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_sync
from bench_copy import MIB, ROOT, run_measured, uploaded_bytes
from bench_sync import corpus

from servers import skopeo
from servers.images import layout_contents, write_layout
from servers.redis_server import RedisServer
from servers.registry import RegistryServer
from servers.spec_registry import SpecRegistry

RESULTS = ROOT / "benchmarks" / "results"
PY = [sys.executable, "-m", "regcopy"]


def redis_commands(redis: RedisServer) -> int:
    out = subprocess.run(["redis-cli", "-p", str(redis.port), "INFO", "stats"], capture_output=True, text=True,
                         check=True).stdout
    return int(next(line.split(":")[1] for line in out.splitlines() if line.startswith("total_commands_processed")))


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def plan_file(path: Path, src: str, dst: str) -> Path:
    path.write_text(yaml.safe_dump({"registries": {src: {"tls": "http"}, dst: {"tls": "http"}},
                                    "sync": [{"source": src, "target": f"{dst}/m", "type": "registry"}]}))
    return path


def start_workers(n: int, redis: RedisServer, authfile: Path, work: Path) -> list[subprocess.Popen[bytes]]:
    procs = []
    for i in range(n):
        with open(work / f"worker-{i}.log", "wb") as log:
            procs.append(subprocess.Popen([*PY, "worker", "--redis", redis.url, "--authfile", str(authfile)],
                                          stdout=log, stderr=subprocess.STDOUT))
    return procs


def stop_workers(procs: list[subprocess.Popen[bytes]]) -> list[float]:
    rss = [round(peak_rss_mib(p.pid), 1) for p in procs]
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        p.wait(60)
    return rss


# ------------------------------------------------------------------------------------------ corpus


def corpus_part(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    # bench_sync's corpus (same repositories, tags, indexes and sharing) with every layer 1/scale its size:
    # six runs of the full 2 GiB corpus would take most of an hour on 2 cores.
    bench_sync.MIB = MIB // args.scale
    images = corpus(args.big_mib * args.scale)  # the big layer keeps --big-mib
    bench_sync.MIB = MIB
    layout = args.cache / f"scale-layout-{args.big_mib}-{args.scale}"
    write_layout(layout, {tag: spec for tag, (_, spec) in images.items()}, cache_dir=args.cache / "layers")
    sizes: dict[str, int] = {}
    blobs: set[str] = set()
    for tag in images:
        contents = layout_contents(layout, tag)
        sizes.update(contents.all_digests)
        blobs |= set(contents.blobs)
    unique = sum(sizes[d] for d in blobs)
    authfile = work / "auth.json"
    authfile.write_text('{"auths": {}}')
    src = RegistryServer(work / "src", "http").start()
    try:
        for tag, (target, _) in images.items():
            repo, _, rtag = target.partition(":")
            skopeo.seed(src, layout, tag, repo, rtag)
        print(f"seeded {len(images)} images, {unique / MIB:.0f} MiB unique", flush=True)
        runs = [one_run(mode, src, images, sizes, unique, authfile, work)
                for mode in ("single", "dynamic-1", "dynamic-2", "dynamic-4", "static-4", "static-4-ledger")]
    finally:
        src.stop()
    base = runs[0]
    for r in runs:
        r["requests_vs_single"] = round(r["requests_per_image"] / base["requests_per_image"], 3)
        r["seconds_vs_single"] = round(r["seconds"] / base["seconds"], 3)
    return {"images": len(images), "unique_bytes": unique, "runs": runs}


def one_run(mode: str, src: RegistryServer, images: dict[str, Any], sizes: dict[str, int], unique: int,
            authfile: Path, work: Path) -> dict[str, Any]:
    dst = RegistryServer(work / f"dst-{mode}", "http").start()
    redis = RedisServer(work / f"redis-{mode}").start()
    plan = plan_file(work / f"plan-{mode}.yaml", src.host, dst.host)
    src_before = len(src.access_log())
    commands_before = redis_commands(redis)
    out: dict[str, Any] = {"mode": mode}
    try:
        started = time.monotonic()
        if mode == "single":
            proc = run_measured([*PY, "sync", str(plan), "--progress", "none", "--authfile", str(authfile)])
            out["peak_rss_mib"] = {"process": round(proc.rss_kib / 1024, 1)}
        elif mode.startswith("dynamic"):
            workers = start_workers(int(mode.split("-")[1]), redis, authfile, work)
            proc = run_measured([*PY, "sync", str(plan), "--redis", redis.url, "--progress", "none",
                                 "--authfile", str(authfile), "--run", mode])
            out["peak_rss_mib"] = {"submitter": round(proc.rss_kib / 1024, 1), "workers": stop_workers(workers)}
        else:
            ledger = ["--ledger", redis.url] if mode.endswith("ledger") else []
            procs = [subprocess.Popen(["/usr/bin/time", "-q", "-f", "%M", "-o", str(work / f"{mode}-{i}.rss"),
                                       *PY, "sync", str(plan), "--shard", f"{i}/4", "--progress", "none",
                                       "--authfile", str(authfile), "--report", str(work / f"{mode}.json"), *ledger],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for i in range(4)]
            for p in procs:
                p.wait()
                assert p.returncode == 0, p.stderr.read() if p.stderr else ""
            out["peak_rss_mib"] = {"shards": [round(int((work / f"{mode}-{i}.rss").read_text().split()[-1]) / 1024, 1)
                                              for i in range(4)]}
        out["seconds"] = round(time.monotonic() - started, 2)
        for target, _ in images.values():
            assert skopeo.inspect_digest(dst, f"m/{target}") == skopeo.inspect_digest(src, target), target
        requests = len(src.access_log()) - src_before + len(dst.access_log())
        sent = uploaded_bytes(dst, sizes)
        out.update(requests=requests, requests_per_image=round(requests / len(images), 2),
                   bytes_uploaded=sent, bytes_ratio=round(sent / unique, 4),
                   redis_commands_per_image=round((redis_commands(redis) - commands_before) / len(images), 1))
        print(json.dumps(out), flush=True)
        return out
    finally:
        dst.stop()
        redis.stop()
        shutil.rmtree(dst.workdir, ignore_errors=True)


# ------------------------------------------------------------------------------------------- many


class CatalogRegistry(SpecRegistry):
    """The in-process spec registry with a paginated ``/v2/_catalog`` and direct seeding."""

    async def _route(self, request: Any, record: Any) -> Any:
        from aiohttp import web

        if request.path != "/v2/_catalog":
            return await super()._route(request, record)
        names = sorted(self.manifests)
        n = min(int(request.query.get("n", "1000")), 1000)
        last = request.query.get("last", "")
        page = [r for r in names if r > last][:n]
        headers = {}
        if len(page) == n and page[-1] != names[-1]:
            headers["Link"] = f'</v2/_catalog?n={n}&last={page[-1]}>; rel="next"'
        return web.json_response({"repositories": page}, headers=headers)

    def seed(self, repo: str, tag: str, blobs: list[bytes], manifest: bytes, media_type: str) -> None:
        (self.root / "blobs").mkdir(parents=True, exist_ok=True)
        for data in blobs:
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            (self.root / "blobs" / digest.split(":")[1]).write_bytes(data)
            self.blobs[digest] = len(data)
            self.links.setdefault(repo, set()).add(digest)
        digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        self.manifests.setdefault(repo, {})[digest] = (media_type, manifest)
        self.tags.setdefault(repo, {})[tag] = digest


def small_image(i: int) -> tuple[list[bytes], bytes]:
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"}, "n": i}).encode()
    layer = f"layer of repository {i}\n".encode() * 8

    def desc(data: bytes, mt: str) -> dict[str, Any]:
        return {"mediaType": mt, "digest": "sha256:" + hashlib.sha256(data).hexdigest(), "size": len(data)}

    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": desc(config, "application/vnd.oci.image.config.v1+json"),
                           "layers": [desc(layer, "application/vnd.oci.image.layer.v1.tar")]}).encode()
    return [config, layer], manifest


def many_part(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    authfile = work / "auth.json"
    authfile.write_text('{"auths": {}}')
    with CatalogRegistry(work / "many-src") as src, CatalogRegistry(work / "many-dst") as dst, \
            RedisServer(work / "many-redis") as redis:
        for i in range(args.repos):
            blobs, manifest = small_image(i)
            src.seed(f"org{i % 100}/repo{i}", "v1", blobs, manifest, "application/vnd.oci.image.manifest.v1+json")
        plan = plan_file(work / "many.yaml", src.host, dst.host)
        workers = start_workers(4, redis, authfile, work)
        out: dict[str, Any] = {"repositories": args.repos, "images": args.repos, "workers": 4}
        try:
            for phase in ("first", "noop"):
                before_src, before_dst = len(src.requests), len(dst.requests)
                before_cmds = redis_commands(redis)
                started = time.monotonic()
                proc = run_measured([*PY, "sync", str(plan), "--redis", redis.url, "--progress", "none",
                                     "--authfile", str(authfile), "--run", f"many-{phase}"])
                requests = len(src.requests) - before_src + len(dst.requests) - before_dst
                out[phase] = {"seconds": round(time.monotonic() - started, 1), "requests": requests,
                              "requests_per_image": round(requests / args.repos, 2),
                              "redis_commands_per_image": round((redis_commands(redis) - before_cmds) / args.repos, 2),
                              "submitter_peak_rss_mib": round(proc.rss_kib / 1024, 1),
                              "submitter_cpu_seconds": round(proc.cpu, 1)}
                print(phase, json.dumps(out[phase]), flush=True)
            assert len(dst.tags) == args.repos
        finally:
            out["worker_peak_rss_mib"] = stop_workers(workers)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--part", choices=["corpus", "many", "both"], default="both")
    parser.add_argument("--big-mib", type=int, default=256)
    parser.add_argument("--repos", type=int, default=10_000)
    parser.add_argument("--scale", type=int, default=8, help="corpus layers at 1/scale of bench_sync's sizes")
    parser.add_argument("--workdir", type=Path, default=Path("/dev/shm") if Path("/dev/shm").is_dir() else None)
    parser.add_argument("--cache", type=Path, default=ROOT / "benchmarks" / ".cache")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PYTHONPATH", str(ROOT / "src"))
    with tempfile.TemporaryDirectory(prefix="regcopy-bench-scale-", dir=args.workdir) as tmp:
        if args.part in ("corpus", "both"):
            doc = {"part": "corpus", "args": {k: str(v) for k, v in vars(args).items()},
                   **corpus_part(args, Path(tmp))}
            (RESULTS / "scale-corpus.json").write_text(json.dumps(doc, indent=2))
        if args.part in ("many", "both"):
            doc = {"part": "many", "args": {k: str(v) for k, v in vars(args).items()}, **many_part(args, Path(tmp))}
            (RESULTS / "scale-many.json").write_text(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
