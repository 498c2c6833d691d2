"""Fan-out benchmark: the sync corpus to three destination registries in one run (``targets:``) versus
three runs versus ``skopeo sync`` three times; and the no-op re-sync request count with referrers on.

Corpus: :func:`bench_sync.corpus` (``--big-mib`` sets its big layer), on a 2.8.2 source over loopback.
Per way of syncing: source bytes read (the sizes of blob GET answers in the source's access log)
÷ unique bytes (1.00: every blob crossed once), wall seconds (summed over runs), peak RSS (the
largest run). Every destination is checked digest for digest against the source.

Then referrers: every tenth image of the corpus is signed (a cosign-style ``.sig`` tag and an SBOM
attached with oras-py and listed in the fallback index, as a spec client without the API leaves
them). A sync to an empty 2.8.2 registry, then a no-op re-sync, counting requests on both
registries (access-log lines), with this tree's regcopy (referrers on) and with the tree given by
``--base`` (main before referrers: the same referrer tags are ordinary tags there). Results go to
``benchmarks/results/fanout-loopback.json``.

    flock /work/bench.lock .venv/bin/python benchmarks/bench_fanout.py [--big-mib 256] [--base DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_copy import MIB, ROOT, run_measured
from bench_sync import corpus

from servers import artifacts as A
from servers import skopeo
from servers.images import ImageSpec, IndexSpec, layout_contents, write_layout
from servers.registry import RegistryServer

RESULTS = ROOT / "benchmarks" / "results"
Images = dict[str, tuple[str, ImageSpec | IndexSpec]]


@dataclass
class Way:
    """One way of syncing the corpus to three destinations."""

    way: str
    runs: int
    seconds: float
    peak_rss_mib: float
    source_bytes_read: int
    unique_bytes: int
    read_ratio: float
    extra: dict[str, Any] = field(default_factory=dict)


def _regcopy(tree: Path, *args: str) -> list[str]:
    # PYTHONPATH (set in _env) picks the tree; the interpreter is the venv's.
    return [sys.executable, "-m", "regcopy", *args]


def _env(work: Path, tree: Path) -> dict[str, str]:
    return {**os.environ, "HOME": str(work), "DOCKER_CONFIG": str(work / "docker"), "PYTHONPATH": str(tree / "src")}


def source_bytes(src: RegistryServer, since: int) -> int:
    return sum(e.size for e in src.access_log()[since:] if e.method == "GET" and "/blobs/sha256:" in e.path)


def _plan(path: Path, src: str, targets: list[str]) -> None:
    entry: dict[str, Any] = {"source": src, "type": "registry"}
    if len(targets) == 1:
        entry["target"] = targets[0]
    else:
        entry["targets"] = targets
    # Loopback hosts race https and http on their own (docs/architecture.md, "The probe race").
    path.write_text(yaml.safe_dump({"sync": [entry]}))


def _check(src: RegistryServer, dst: RegistryServer, images: Images) -> None:
    for target, _ in images.values():
        repo, _, tag = target.partition(":")
        assert skopeo.inspect_digest(dst, f"m/{repo}:{tag}") == skopeo.inspect_digest(src, target), target


def fanout(src: RegistryServer, images: Images, unique: int, work: Path, authfile: Path) -> list[Way]:
    ways: list[Way] = []
    for way in ("regcopy-one-run", "regcopy-three-runs", "skopeo-three-runs"):
        dsts = [RegistryServer(work / f"{way}-{i}", "http").start() for i in range(3)]
        try:
            since = len(src.access_log())
            seconds, rss, runs = 0.0, 0, 0
            one_run = way == "regcopy-one-run"
            groups = [[f"{d.host}/m" for d in dsts]] if one_run else [[f"{d.host}/m"] for d in dsts]
            for i, targets in enumerate(groups):
                if way.startswith("skopeo"):
                    spec = work / f"{way}-{i}.yaml"
                    repos = sorted({t.split(":")[0] for t, _ in images.values()})
                    spec.write_text(yaml.safe_dump({src.host: {"tls-verify": False,
                                                               "images": {r: [] for r in repos}}}))
                    cmd = ["skopeo", "sync", "--src", "yaml", "--dest", "docker", "--all", "--preserve-digests",
                           "--dest-tls-verify=false", "--authfile", str(authfile), str(spec), targets[0]]
                else:
                    plan = work / f"{way}-{i}.yaml"
                    _plan(plan, src.host, targets)
                    cmd = _regcopy(ROOT, "sync", "--progress", "none", "--authfile", str(authfile), str(plan))
                proc = run_measured(cmd, _env(work, ROOT))
                seconds, rss, runs = seconds + proc.seconds, max(rss, proc.rss_kib), runs + 1
            read = source_bytes(src, since)
            if not way.startswith("skopeo"):
                for d in dsts:
                    _check(src, d, images)
            ways.append(Way(way, runs, round(seconds, 2), round(rss / 1024, 1), read, unique, round(read / unique, 3)))
            print(f"{way}: {seconds:.1f}s, read {read / unique:.2f}x unique, peak RSS {rss / 1024:.0f} MiB", flush=True)
        finally:
            for d in dsts:
                d.stop()
                shutil.rmtree(d.workdir, ignore_errors=True)
    return ways


def sign_some(src: RegistryServer, images: Images) -> int:
    """Sign every tenth image: a cosign ``.sig`` tag, and an SBOM in the fallback index."""
    signed = 0
    for i, (target, _) in enumerate(sorted(images.values(), key=lambda v: v[0])):
        if i % 10:
            continue
        repo, _, tag = target.partition(":")
        data = A.get_manifest(src.url, repo, tag)
        assert data is not None
        subject = A.Pushed("sha256:" + hashlib.sha256(data).hexdigest(), json.loads(data)["mediaType"], len(data), data)
        A.cosign_sign(src.url, repo, subject.digest)
        sbom = A.attach(src.host, repo, subject, "application/spdx+json", f'{{"image":"{target}"}}'.encode())
        A.add_to_fallback_index(src.url, repo, subject.digest, sbom)
        signed += 1
    return signed


def noop_requests(src: RegistryServer, work: Path, authfile: Path, tree: Path, name: str) -> dict[str, int]:
    """Requests of a first sync and of a no-op re-sync (both registries), with the regcopy of ``tree``."""
    dst = RegistryServer(work / f"noop-{name}", "http").start()
    try:
        plan = work / f"noop-{name}.yaml"
        _plan(plan, src.host, [f"{dst.host}/m"])
        cmd = _regcopy(tree, "sync", "--progress", "none", "--authfile", str(authfile), str(plan))
        counts = {}
        for phase in ("first", "noop"):
            before = len(src.access_log()) + len(dst.access_log())
            run_measured(cmd, _env(work, tree))
            counts[phase] = len(src.access_log()) + len(dst.access_log()) - before
        return counts
    finally:
        dst.stop()
        shutil.rmtree(dst.workdir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--big-mib", type=int, default=256)
    parser.add_argument("--base", type=Path, help="a worktree of main before referrers, for the no-op count")
    parser.add_argument("--workdir", type=Path, default=Path("/dev/shm") if Path("/dev/shm").is_dir() else None)
    parser.add_argument("--cache", type=Path, default=ROOT / "benchmarks" / ".cache")
    args = parser.parse_args()
    images = corpus(args.big_mib)
    layout = args.cache / f"sync-layout-{args.big_mib}"
    write_layout(layout, {tag: spec for tag, (_, spec) in images.items()}, cache_dir=args.cache / "layers")
    sizes: dict[str, int] = {}
    blobs: set[str] = set()
    for tag in images:
        contents = layout_contents(layout, tag)
        sizes.update(contents.all_digests)
        blobs |= set(contents.blobs)
    unique = sum(sizes[d] for d in blobs)
    with tempfile.TemporaryDirectory(prefix="regcopy-fanout-", dir=args.workdir) as tmp:
        work = Path(tmp)
        authfile = work / "auth.json"
        authfile.write_text('{"auths": {}}')
        src = RegistryServer(work / "src", "http").start()
        try:
            for tag, (target, _) in images.items():
                repo, _, rtag = target.partition(":")
                skopeo.seed(src, layout, tag, repo, rtag)
            print(f"seeded {len(images)} images, {unique / MIB:.0f} MiB unique", flush=True)
            ways = fanout(src, images, unique, work, authfile)
            signed = sign_some(src, images)
            counts = {"this tree (referrers on)": noop_requests(src, work, authfile, ROOT, "mine")}
            if args.base is not None:
                counts["main before referrers"] = noop_requests(src, work, authfile, args.base, "base")
        finally:
            src.stop()
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "fanout-loopback.json"
    out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "unique_bytes": unique,
                               "ways": [asdict(w) for w in ways], "signed_images": signed,
                               "requests": counts}, indent=2))
    print(json.dumps({"requests": counts, "signed_images": signed}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
