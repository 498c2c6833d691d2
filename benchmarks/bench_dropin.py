"""The skopeo drop-in: ``regcopy sync --src yaml`` run file after file, as a skopeo sync job runs, versus skopeo.

Corpus: :mod:`bench_sync`'s (40 repositories in the namespaces ``team0`` to ``team7`` and ``data``,
141 images, a 1 GiB layer), written as ``--files`` skopeo sync YAML files (default 7), each holding
whole namespaces (the nine namespaces dealt round-robin, so two files hold two), and synced by one
invocation per file, as a skopeo user's job does. Three modes, each into an empty registry, first
sync then a no-op re-sync:

* ``regcopy-files``: ``regcopy sync --src yaml --dest docker --all FILE DEST`` once per file;
* ``skopeo-files``: ``skopeo sync`` with the same arguments once per file;
* ``regcopy-plan``: one ``regcopy sync`` of one YAML file holding the whole corpus (the reference).

Settings as in :mod:`bench_copy`: ``loopback`` and ``wan`` (40 ms round trip, 1 Gbit/s each way,
:mod:`wan_proxy`). regcopy runs this checkout's sources with their bytecode compiled (as installed).
Results go to ``benchmarks/results/dropin-<setting>.json`` and a table on stdout.

    flock /work/bench.lock .venv/bin/python benchmarks/bench_dropin.py [--setting loopback|wan|both]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_copy import MIB, ROOT, Proc, _direct, requests, run_measured, uploaded_bytes, wan_pair
from bench_startup import compile_sources, regcopy_env
from bench_sync import _command, corpus, sync_yaml

from servers import skopeo
from servers.images import ImageSpec, IndexSpec, layout_contents, write_layout
from servers.registry import RegistryServer

RESULTS = ROOT / "benchmarks" / "results"
Images = dict[str, tuple[str, ImageSpec | IndexSpec]]
MODES = ("regcopy-files", "skopeo-files", "regcopy-plan")


def split_files(work: Path, host: str, images: Images, files: int, label: str) -> list[Path]:
    """One skopeo sync YAML per group of whole namespaces (dealt round-robin over ``files`` files)."""
    namespaces = sorted({target.split("/", 1)[0] for target, _ in images.values()})
    out = []
    for i in range(min(files, len(namespaces))):
        group = set(namespaces[i::files])
        subset = {tag: v for tag, v in images.items() if v[0].split("/", 1)[0] in group}
        path = work / f"{label}-{i}.yaml"
        sync_yaml(path, host, subset)
        out.append(path)
    return out


def run_all(cmds: list[list[str]], env: dict[str, str]) -> tuple[Proc, list[float]]:
    """Run the commands one after another: summed wall and CPU seconds, the largest peak RSS, each wall time."""
    total = Proc(0.0, 0.0, 0)
    each = []
    for cmd in cmds:
        p = run_measured(cmd, env)
        each.append(round(p.seconds, 3))
        total = Proc(total.seconds + p.seconds, total.cpu + p.cpu, max(total.rss_kib, p.rss_kib))
    return total, each


def one_mode(mode: str, setting: str, src: RegistryServer, images: Images, work: Path, authfile: Path,
             env: dict[str, str], args: argparse.Namespace, expected: dict[str, str],
             sizes: dict[str, int]) -> dict[str, Any]:
    tool = mode.split("-")[0]
    dst = RegistryServer(work / f"{setting}-{mode}", "http").start()
    try:
        with (wan_pair(src, dst, args.rtt_ms / 1000, args.mbit) if setting == "wan"
              else _direct(src, dst)) as (src_host, dst_host):
            if mode == "regcopy-plan":
                files = [work / f"{setting}-{mode}.yaml"]
                sync_yaml(files[0], src_host, images)
            else:
                files = split_files(work, src_host, images, args.files, f"{setting}-{mode}")
            cmds = [_command(tool, spec, dst_host, authfile, args) for spec in files]
            baseline = requests(src, dst)
            first, first_each = run_all(cmds, env)
            before = requests(src, dst)
            noop, noop_each = run_all(cmds, env)
            noop_requests = requests(src, dst) - before
        uploaded = uploaded_bytes(dst, sizes)  # blob uploads completed (the no-op uploads none)
        for target, digest in expected.items():  # every tool: DEST/<base name of the repository>, digests kept
            name = f"m/{target.split('/', 1)[1]}"
            assert skopeo.inspect_digest(dst, name) == digest, name
    finally:
        dst.stop()
        shutil.rmtree(dst.workdir, ignore_errors=True)
    print(f"[{setting}] {mode}: {len(cmds)} invocations, first {first.seconds:.2f}s, no-op {noop.seconds:.2f}s",
          flush=True)
    return {"mode": mode, "invocations": len(cmds),
            "first": {"seconds": round(first.seconds, 3), "requests": before - baseline,
                      "cpu_seconds": round(first.cpu, 2), "peak_rss_mib": round(first.rss_kib / 1024, 1),
                      "uploaded_mib": round(uploaded / MIB, 1), "each": first_each},
            "noop": {"seconds": round(noop.seconds, 3), "requests": noop_requests, "cpu_seconds": round(noop.cpu, 2),
                     "median_invocation_s": round(statistics.median(noop_each), 3), "each": noop_each}}


def bench(setting: str, layout: Path, images: Images, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    blobs: set[str] = set()
    sizes: dict[str, int] = {}
    for tag in images:
        contents = layout_contents(layout, tag)
        sizes.update(contents.all_digests)
        blobs |= set(contents.blobs)
    env = {**regcopy_env(), "HOME": str(work), "DOCKER_CONFIG": str(work / "docker")}
    load = Path("/proc/loadavg").read_text().split()[:3]
    authfile = work / "auth.json"
    authfile.write_text('{"auths": {}}')
    src = RegistryServer(work / f"{setting}-src", "http").start()
    try:
        for tag, (target, _) in images.items():
            repo, _, rtag = target.partition(":")
            skopeo.seed(src, layout, tag, repo, rtag)
        expected = {target: skopeo.inspect_digest(src, target) for target, _ in images.values()}
        print(f"[{setting}] seeded {len(images)} images", flush=True)
        modes = [one_mode(m, setting, src, images, work, authfile, env, args, expected, sizes)
                 for m in args.modes.split(",")]
    finally:
        src.stop()
        shutil.rmtree(src.workdir, ignore_errors=True)
    return {"setting": setting, "loadavg_before": load, "unique_mib": round(sum(sizes[d] for d in blobs) / MIB, 1),
            "modes": modes, "ratios": ratios(modes)}


def ratios(modes: list[dict[str, Any]]) -> dict[str, float]:
    by = {m["mode"]: m for m in modes}
    out: dict[str, float] = {}
    if "regcopy-files" in by and "skopeo-files" in by:
        out["noop_skopeo_over_regcopy_files"] = round(by["skopeo-files"]["noop"]["seconds"]
                                                      / by["regcopy-files"]["noop"]["seconds"], 2)
        out["first_skopeo_over_regcopy_files"] = round(by["skopeo-files"]["first"]["seconds"]
                                                       / by["regcopy-files"]["first"]["seconds"], 2)
    if "regcopy-files" in by and "regcopy-plan" in by:
        out["first_files_over_plan"] = round(by["regcopy-files"]["first"]["seconds"]
                                             / by["regcopy-plan"]["first"]["seconds"], 2)
        out["noop_files_over_plan"] = round(by["regcopy-files"]["noop"]["seconds"]
                                            / by["regcopy-plan"]["noop"]["seconds"], 2)
    return out


def commit() -> str:
    """The checkout's commit, ``+dirty`` when its sources differ from it."""
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "src"], capture_output=True, text=True)
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "") if head.returncode == 0 else "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--setting", choices=["loopback", "wan", "both"], default="both")
    parser.add_argument("--big-mib", type=int, default=1024)
    parser.add_argument("--files", type=int, default=7, help="skopeo YAML files (whole namespaces each)")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--rtt-ms", type=float, default=40.0)
    parser.add_argument("--mbit", type=float, default=1000.0)
    parser.add_argument("--images", type=int, default=8, help="regcopy --images")
    parser.add_argument("--workdir", type=Path, default=Path("/dev/shm") if Path("/dev/shm").is_dir() else None)
    parser.add_argument("--cache", type=Path, default=ROOT / "benchmarks" / ".cache")
    parser.add_argument("--commit", help="the commit measured, when this is not a git checkout (an export of one)")
    args = parser.parse_args()
    compile_sources()
    images = corpus(args.big_mib)
    layout = args.cache / f"sync-layout-{args.big_mib}"
    print("generating corpus (cached)...", flush=True)
    write_layout(layout, {tag: spec for tag, (_, spec) in images.items()}, cache_dir=args.cache / "layers")
    RESULTS.mkdir(parents=True, exist_ok=True)
    settings = ["loopback", "wan"] if args.setting == "both" else [args.setting]
    with tempfile.TemporaryDirectory(prefix="regcopy-dropin-", dir=args.workdir) as tmp:
        for setting in settings:
            result = bench(setting, layout, images, Path(tmp), args)
            result["args"] = {k: str(v) for k, v in vars(args).items()}
            result["commit"] = args.commit or commit()
            (RESULTS / f"dropin-{setting}.json").write_text(json.dumps(result, indent=2))
            for m in result["modes"]:
                print(f"{setting} {m['mode']:14} x{m['invocations']}: first {m['first']['seconds']:7.2f}s "
                      f"{m['first']['requests']:5d} req | no-op {m['noop']['seconds']:6.2f}s "
                      f"{m['noop']['requests']:4d} req", flush=True)
            print(f"{setting} ratios: {result['ratios']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
