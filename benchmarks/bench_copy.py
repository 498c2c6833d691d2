"""Side-by-side benchmark: ``regcopy copy --all-tags`` versus ``skopeo copy --all`` per tag.

Corpus (generated, deterministic): eight tags of one repository — six images sharing three base
layers, a three-platform index, and one image with a 1 GiB poorly compressible layer.

Settings:

* ``loopback``: both registries on 127.0.0.1. The destination registry's ingest is the limit on
  this 2-core machine, so it is measured too (parallel monolithic PUTs of the unique blobs with a
  plain aiohttp client) and each tool's time is reported as a ratio to it.
* ``wan``: the copier reaches both registries through :mod:`wan_proxy` (40 ms round trip, a
  full-duplex link capped at ``--mbit`` each way, shared by both registries); the reference time is
  unique bytes / link bandwidth.

Every run starts from an empty destination registry. Per tool: wall seconds, ratio, bytes uploaded
(sum of the sizes of completed blob uploads in the destination's access log), requests (access-log
lines on both registries), CPU seconds and peak RSS of the tool's process (``os.wait4``). Results go
to ``benchmarks/results/copy-<setting>.json`` and a table on stdout.

    .venv/bin/python benchmarks/bench_copy.py [--setting loopback|wan|both] [--big-mib 1024]
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from wan_proxy import WanProxy  # noqa: E402

from servers import skopeo  # noqa: E402
from servers.images import ImageSpec, IndexSpec, LayerSpec, layout_contents, write_layout  # noqa: E402
from servers.registry import RegistryServer  # noqa: E402

MIB = 1024 * 1024
REPO = "bench/app"
RESULTS = ROOT / "benchmarks" / "results"


def corpus(big_mib: int) -> dict[str, ImageSpec | IndexSpec]:
    """Six apps on shared bases, a three-platform index, and one huge layer."""
    b1 = LayerSpec(40 * MIB, "bench-base-1", "random")
    b2 = LayerSpec(20 * MIB, "bench-base-2", "text")
    b3 = LayerSpec(10 * MIB, "bench-base-3", "random")
    out: dict[str, ImageSpec | IndexSpec] = {}
    for i in range(6):
        bases = [b1, b2] if i % 2 == 0 else [b1, b3]
        out[f"app-{i}"] = ImageSpec(layers=[*bases, LayerSpec((8 + 2 * i) * MIB, f"bench-app-{i}", "random")])
    out["multi"] = IndexSpec(children=[
        ImageSpec(layers=[b1, LayerSpec(15 * MIB, f"bench-multi-{arch}", "random")], arch=arch)
        for arch in ("amd64", "arm64", "s390x")
    ])
    out["big"] = ImageSpec(layers=[b3, LayerSpec(big_mib * MIB, "bench-big", "random")])
    return out


@dataclass
class Run:
    """One tool's run in one setting."""

    tool: str
    seconds: float
    ratio: float = 0.0
    bytes_uploaded: int = 0
    unique_bytes: int = 0
    requests: int = 0
    cpu_seconds: float = 0.0
    peak_rss_mib: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Proc:
    seconds: float
    cpu: float
    rss_kib: int


def compile_sources() -> None:
    """Write the bytecode of this tree's regcopy before measuring it.

    An installed regcopy has its bytecode (pip compiles on install); with ``PYTHONDONTWRITEBYTECODE``
    set and none written, every run would compile all of src/ again (about 0.1 s of CPU per process
    on this machine), which the CPU column would count as copying work.
    """
    compileall.compile_dir(ROOT / "src", quiet=1)


def run_measured(cmd: Sequence[str], env: dict[str, str] | None = None) -> Proc:
    """Run a command, returning wall time, its CPU seconds and peak RSS.

    Measured by GNU time, which forks the tool from its own small process: ``ru_maxrss`` of a child
    forked from this (large) driver would start at the driver's RSS.
    """
    with tempfile.NamedTemporaryFile("r", suffix=".time") as stats:
        started = time.monotonic()
        proc = subprocess.run(["/usr/bin/time", "-q", "-f", "%U %S %M", "-o", stats.name, *cmd],
                              capture_output=True, text=True, env=env, check=False)
        seconds = time.monotonic() - started
        if proc.returncode != 0:
            raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
        user, system, rss = stats.read().split()[-3:]
    return Proc(seconds, float(user) + float(system), int(rss))


def uploaded_bytes(server: RegistryServer, sizes: dict[str, int]) -> int:
    total = 0
    for entry in server.access_log():
        if entry.method == "PUT" and "/blobs/uploads/" in entry.path and entry.status == 201:
            for digest in parse_qs(urlsplit(entry.path).query).get("digest", []):
                total += sizes.get(digest, 0)
    return total


def requests(*servers: RegistryServer) -> int:
    return sum(len(s.access_log()) for s in servers)


async def ingest_limit(host: str, layout: Path, digests: list[str], jobs: int = 8) -> float:
    """Seconds to PUT every unique blob monolithically, ``jobs`` at a time, with a plain client."""
    sem = asyncio.Semaphore(jobs)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=300)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def put(digest: str) -> None:
            path = layout / "blobs" / "sha256" / digest.split(":", 1)[1]
            async with sem:
                async with session.post(f"http://{host}/v2/ingest/blobs/uploads/") as resp:
                    assert resp.status == 202, resp.status
                    location = resp.headers["Location"]
                sep = "&" if "?" in location else "?"
                with path.open("rb") as f:
                    async with session.put(f"{location}{sep}digest={digest}", data=f,
                                           headers={"Content-Length": str(path.stat().st_size)}) as resp:
                        assert resp.status == 201, (resp.status, await resp.text())

        started = time.monotonic()
        await asyncio.gather(*(put(d) for d in digests))
        return time.monotonic() - started


@contextmanager
def wan_pair(src: RegistryServer, dst: RegistryServer, rtt: float, mbit: float) -> Iterator[tuple[str, str]]:
    """Two WAN proxies sharing one full-duplex link, run on their own loop in a thread."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    proxies: list[WanProxy] = []

    async def start() -> None:
        rate = mbit * 1e6 / 8
        a = WanProxy(0, "127.0.0.1", src.port, rtt=rtt, bandwidth_bps=rate, per_direction=True)
        b = WanProxy(0, "127.0.0.1", dst.port, rtt=rtt, bandwidth_bps=rate, per_direction=True)
        # One link between the copier and "the internet": both registries share its two directions.
        b.link_up, b.link_down = a.link_up, a.link_down
        await a.start()
        await b.start()
        proxies.extend([a, b])
        ready.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(start()), loop.run_forever()), daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield f"127.0.0.1:{proxies[0].port}", f"127.0.0.1:{proxies[1].port}"
    finally:
        async def stop() -> None:
            for p in proxies:
                await p.stop()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def bench(setting: str, layout: Path, tags: list[str], work: Path, args: argparse.Namespace) -> list[Run]:
    sizes: dict[str, int] = {}
    for tag in tags:
        sizes.update(layout_contents(layout, tag).all_digests)
    blobs = {d for tag in tags for d in layout_contents(layout, tag).blobs}
    unique = sum(sizes[d] for d in blobs)
    env = {**os.environ, "HOME": str(work), "DOCKER_CONFIG": str(work / "docker")}
    authfile = work / "auth.json"
    authfile.write_text('{"auths": {}}')
    src = RegistryServer(work / f"{setting}-src", "http").start()
    runs: list[Run] = []
    try:
        for tag in tags:
            skopeo.seed(src, layout, tag, REPO, tag)
        print(f"[{setting}] seeded {len(tags)} tags, {unique / MIB:.0f} MiB of unique blobs", flush=True)
        if setting == "loopback":
            dst = RegistryServer(work / f"{setting}-ingest", "http").start()
            try:
                seconds = asyncio.run(ingest_limit(dst.host, layout, sorted(blobs)))
            finally:
                dst.stop()
                shutil.rmtree(dst.workdir, ignore_errors=True)
            reference = seconds
            runs.append(Run("ingest-limit", seconds, 1.0, unique, unique))
        else:
            reference = unique / (args.mbit * 1e6 / 8)
            runs.append(Run("link-bandwidth", reference, 1.0, unique, unique))
        for tool in args.tools.split(","):
            dst = RegistryServer(work / f"{setting}-{tool}", "http").start()
            try:
                baseline = requests(src, dst)  # the source's log already holds seeding and other runs
                with (wan_pair(src, dst, args.rtt_ms / 1000, args.mbit) if setting == "wan"
                      else _direct(src, dst)) as (src_host, dst_host):
                    proc = _run_tool(tool, src_host, dst_host, tags, authfile, env, args)
                made = requests(src, dst) - baseline
                for tag in tags:  # what was written is what the source has (skopeo checks digests)
                    assert skopeo.inspect_digest(dst, f"{REPO}:{tag}") == skopeo.inspect_digest(src, f"{REPO}:{tag}")
                run = Run(tool, proc.seconds, proc.seconds / reference, uploaded_bytes(dst, sizes), unique,
                          made, proc.cpu, proc.rss_kib / 1024)
                runs.append(run)
                print(f"[{setting}] {tool}: {run.seconds:.1f}s ratio {run.ratio:.2f}", flush=True)
            finally:
                dst.stop()
                shutil.rmtree(dst.workdir, ignore_errors=True)  # tmpfs: give the memory back
    finally:
        src.stop()
    return runs


@contextmanager
def _direct(src: RegistryServer, dst: RegistryServer) -> Iterator[tuple[str, str]]:
    yield src.host, dst.host


def _run_tool(tool: str, src: str, dst: str, tags: list[str], authfile: Path, env: dict[str, str],
              args: argparse.Namespace) -> Proc:
    if tool == "regcopy":
        cmd = [str(ROOT / ".venv/bin/regcopy"), "copy", "--all-tags", f"{src}/{REPO}", f"{dst}/{REPO}",
               "--insecure-registry", src, "--insecure-registry", dst, "--jobs", str(args.jobs),
               "--images", str(args.images), "--progress", "none", "-o", "json", "--authfile", str(authfile)]
        return run_measured(cmd, env)
    total = Proc(0.0, 0.0, 0)
    for tag in tags:  # skopeo copies one image per invocation
        cmd = ["skopeo", "copy", "--all", "--preserve-digests", "--authfile", str(authfile),
               "--src-tls-verify=false", "--dest-tls-verify=false",
               f"docker://{src}/{REPO}:{tag}", f"docker://{dst}/{REPO}:{tag}"]
        p = run_measured(cmd, env)
        total = Proc(total.seconds + p.seconds, total.cpu + p.cpu, max(total.rss_kib, p.rss_kib))
    return total


def table(setting: str, runs: list[Run]) -> str:
    ref = runs[0]
    lines = [
        f"\n{setting}: reference = {ref.tool} {ref.seconds:.2f}s, unique {ref.unique_bytes / MIB:.0f} MiB",
        f"{'tool':15} {'seconds':>8} {'ratio':>6} {'uploaded MiB':>12} {'requests':>8} {'cpu s':>6} {'rss MiB':>8}",
    ]
    lines.extend(
        f"{r.tool:15} {r.seconds:8.2f} {r.ratio:6.2f} {r.bytes_uploaded / MIB:12.0f} {r.requests:8d} "
        f"{r.cpu_seconds:6.1f} {r.peak_rss_mib:8.1f}"
        for r in runs
    )
    tools = {r.tool: r for r in runs}
    if "regcopy" in tools and "skopeo" in tools:
        lines.append(f"skopeo / regcopy wall-time ratio: {tools['skopeo'].seconds / tools['regcopy'].seconds:.2f}x")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--setting", choices=["loopback", "wan", "both"], default="both")
    parser.add_argument("--big-mib", type=int, default=1024, help="size of the big layer (MiB)")
    parser.add_argument("--rtt-ms", type=float, default=40.0)
    parser.add_argument("--mbit", type=float, default=1000.0)
    parser.add_argument("--jobs", type=int, default=6, help="regcopy --jobs")
    parser.add_argument("--images", type=int, default=8, help="regcopy --images")
    parser.add_argument("--tools", default="regcopy,skopeo", help="comma-separated: regcopy,skopeo")
    parser.add_argument("--workdir", type=Path, default=Path("/dev/shm") if Path("/dev/shm").is_dir() else None,
                        help="where registry storage lives (default tmpfs: disk writeback noise swamps the ratios)")
    parser.add_argument("--cache", type=Path, default=ROOT / "benchmarks" / ".cache")
    parser.add_argument("--commit", default="", help="the commit measured (recorded in the results)")
    args = parser.parse_args()
    compile_sources()
    args.cache.mkdir(parents=True, exist_ok=True)
    layout = args.cache / f"layout-{args.big_mib}"
    specs = corpus(args.big_mib)
    print("generating corpus (cached)...", flush=True)
    write_layout(layout, specs, cache_dir=args.cache / "layers")
    tags = list(specs)
    RESULTS.mkdir(parents=True, exist_ok=True)
    settings = ["loopback", "wan"] if args.setting == "both" else [args.setting]
    with tempfile.TemporaryDirectory(prefix="regcopy-bench-", dir=args.workdir) as tmp:
        for setting in settings:
            load = Path("/proc/loadavg").read_text().split()[:3]  # other work on the machine skews the ratios
            runs = bench(setting, layout, tags, Path(tmp), args)
            out = RESULTS / f"copy-{setting}.json"
            out.write_text(json.dumps({"setting": setting, "args": {k: str(v) for k, v in vars(args).items()},
                                       "loadavg_before": load, "runs": [asdict(r) for r in runs]}, indent=2))
            print(table(setting, runs), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
