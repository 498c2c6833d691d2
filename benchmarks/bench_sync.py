"""Side-by-side benchmark: ``regcopy sync`` versus ``skopeo sync``, first run and no-op re-sync.

Corpus (generated, deterministic): 40 repositories with 2 to 5 tags each, built on four shared base layers,
every fifth repository a three-platform index, plus one repository holding a 1 GiB poorly
compressible layer; about 2 GiB of unique blobs. Both tools get the *same* skopeo sync YAML file
(regcopy accepts it as a drop-in: ``regcopy sync --src yaml --dest docker --all``).

Settings as in :mod:`bench_copy`: ``loopback`` (reference: the destination's ingest limit) and
``wan`` (40 ms round trip, 1 Gbit/s each way; reference: unique bytes / bandwidth). For each tool:
the first sync into an empty registry, then a no-op re-sync. Results go to
``benchmarks/results/sync-<setting>.json`` and a table on stdout.

    .venv/bin/python benchmarks/bench_sync.py [--setting loopback|wan|both] [--big-mib 1024]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_copy import (
    MIB,
    ROOT,
    Run,
    _direct,
    compile_sources,
    ingest_limit,
    requests,
    run_measured,
    table,
    uploaded_bytes,
    wan_pair,
)

from servers import skopeo
from servers.images import ImageSpec, IndexSpec, LayerSpec, layout_contents, write_layout
from servers.registry import RegistryServer

RESULTS = ROOT / "benchmarks" / "results"


def corpus(big_mib: int) -> dict[str, tuple[str, ImageSpec | IndexSpec]]:
    """layout tag → (repository:tag, spec)."""
    bases = [LayerSpec(30 * MIB, "sync-base-0", "random"), LayerSpec(20 * MIB, "sync-base-1", "text"),
             LayerSpec(12 * MIB, "sync-base-2", "random"), LayerSpec(8 * MIB, "sync-base-3", "random")]
    out: dict[str, tuple[str, ImageSpec | IndexSpec]] = {}
    for r in range(40):
        repo = f"team{r % 8}/svc{r}"
        for t in range(2 + r % 4):
            layers = [bases[r % 4], bases[(r + 1) % 4], LayerSpec((4 + (r + t) % 9) * MIB, f"s{r}-{t}", "random")]
            if r % 5 == 0:
                spec: ImageSpec | IndexSpec = IndexSpec(children=[
                    ImageSpec(layers=[*layers[:2], LayerSpec(3 * MIB, f"s{r}-{t}-{a}", "random")], arch=a)
                    for a in ("amd64", "arm64", "s390x")])
            else:
                spec = ImageSpec(layers=layers, labels={"repo": repo})
            out[f"{repo.replace('/', '-')}-v{t}"] = (f"{repo}:v1.{t}.0", spec)
    out["big"] = ("data/big:v1", ImageSpec(layers=[bases[0], LayerSpec(big_mib * MIB, "sync-big", "random")]))
    return out


def sync_yaml(path: Path, host: str, images: dict[str, tuple[str, ImageSpec | IndexSpec]]) -> None:
    repos = sorted({target.split(":")[0] for target, _ in images.values()})
    path.write_text(yaml.safe_dump({host: {"tls-verify": False, "images": {r: [] for r in repos}}}))


def bench(setting: str, layout: Path, images: dict[str, tuple[str, ImageSpec | IndexSpec]], work: Path,
          args: argparse.Namespace) -> list[Run]:
    sizes: dict[str, int] = {}
    blobs: set[str] = set()
    for tag in images:
        contents = layout_contents(layout, tag)
        sizes.update(contents.all_digests)
        blobs |= set(contents.blobs)
    unique = sum(sizes[d] for d in blobs)
    env = {**os.environ, "HOME": str(work), "DOCKER_CONFIG": str(work / "docker")}
    authfile = work / "auth.json"
    authfile.write_text('{"auths": {}}')
    src = RegistryServer(work / f"{setting}-src", "http").start()
    runs: list[Run] = []
    try:
        for tag, (target, _) in images.items():
            repo, _, rtag = target.partition(":")
            skopeo.seed(src, layout, tag, repo, rtag)
        print(f"[{setting}] seeded {len(images)} images, {unique / MIB:.0f} MiB unique", flush=True)
        if setting == "loopback":
            dst = RegistryServer(work / f"{setting}-ingest", "http").start()
            try:
                reference = asyncio.run(ingest_limit(dst.host, layout, sorted(blobs)))
            finally:
                dst.stop()
                shutil.rmtree(dst.workdir, ignore_errors=True)
            runs.append(Run("ingest-limit", reference, 1.0, unique, unique))
        else:
            reference = unique / (args.mbit * 1e6 / 8)
            runs.append(Run("link-bandwidth", reference, 1.0, unique, unique))
        for tool in args.tools.split(","):
            dst = RegistryServer(work / f"{setting}-{tool}", "http").start()
            try:
                with (wan_pair(src, dst, args.rtt_ms / 1000, args.mbit) if setting == "wan"
                      else _direct(src, dst)) as (src_host, dst_host):
                    spec = work / f"{setting}-{tool}.yaml"
                    sync_yaml(spec, src_host, images)
                    cmd = _command(tool, spec, dst_host, authfile, args)
                    baseline = requests(src, dst)  # the source's log already holds seeding and other runs
                    first = run_measured(cmd, env)
                    before = requests(src, dst)
                    noop = run_measured(cmd, env)
                    noop_requests = requests(src, dst) - before
                for target, _ in images.values():  # both tools: DEST/<base name of the repository>
                    name = f"m/{target.split('/', 1)[1]}"
                    assert skopeo.inspect_digest(dst, name) == skopeo.inspect_digest(src, target), name
                runs.append(Run(tool, first.seconds, first.seconds / reference, uploaded_bytes(dst, sizes), unique,
                                before - baseline, first.cpu, first.rss_kib / 1024,
                                {"noop_seconds": round(noop.seconds, 2), "noop_requests": noop_requests,
                                 "noop_cpu": round(noop.cpu, 2)}))
                print(f"[{setting}] {tool}: first {first.seconds:.1f}s, no-op {noop.seconds:.1f}s", flush=True)
            finally:
                dst.stop()
                shutil.rmtree(dst.workdir, ignore_errors=True)
    finally:
        src.stop()
    return runs


def _command(tool: str, spec: Path, dst: str, authfile: Path, args: argparse.Namespace) -> list[str]:
    # skopeo sync (not --scoped) puts an image at DEST/<last path component>: both tools get a
    # destination prefix "m" and the repository path's base name, e.g. m/svc3:v1.1.0.
    if tool == "regcopy":
        return [str(ROOT / ".venv/bin/regcopy"), "sync", "--src", "yaml", "--dest", "docker", "--all",
                "--dest-tls-verify=false", "--progress", "none", "--images", str(args.images),
                "--authfile", str(authfile), str(spec), f"{dst}/m"]
    return ["skopeo", "sync", "--src", "yaml", "--dest", "docker", "--all", "--preserve-digests",
            "--dest-tls-verify=false", "--authfile", str(authfile), str(spec), f"{dst}/m"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--setting", choices=["loopback", "wan", "both"], default="both")
    parser.add_argument("--big-mib", type=int, default=1024)
    parser.add_argument("--rtt-ms", type=float, default=40.0)
    parser.add_argument("--mbit", type=float, default=1000.0)
    parser.add_argument("--images", type=int, default=8, help="regcopy --images")
    parser.add_argument("--tools", default="regcopy,skopeo")
    parser.add_argument("--workdir", type=Path, default=Path("/dev/shm") if Path("/dev/shm").is_dir() else None)
    parser.add_argument("--cache", type=Path, default=ROOT / "benchmarks" / ".cache")
    args = parser.parse_args()
    compile_sources()
    images = corpus(args.big_mib)
    layout = args.cache / f"sync-layout-{args.big_mib}"
    print("generating corpus (cached)...", flush=True)
    write_layout(layout, {tag: spec for tag, (_, spec) in images.items()}, cache_dir=args.cache / "layers")
    RESULTS.mkdir(parents=True, exist_ok=True)
    settings = ["loopback", "wan"] if args.setting == "both" else [args.setting]
    with tempfile.TemporaryDirectory(prefix="regcopy-bench-", dir=args.workdir) as tmp:
        for setting in settings:
            runs = bench(setting, layout, images, Path(tmp), args)
            out = RESULTS / f"sync-{setting}.json"
            out.write_text(json.dumps({"setting": setting, "args": {k: str(v) for k, v in vars(args).items()},
                                       "runs": [asdict(r) for r in runs]}, indent=2))
            print(table(setting, runs), flush=True)
            for r in runs[1:]:
                print(f"{r.tool}: no-op re-sync {r.extra['noop_seconds']}s, {r.extra['noop_requests']} requests")
    return 0


if __name__ == "__main__":
    sys.exit(main())
