"""Resumable uploads: what a blob upload cut at 90 % costs.

One image with one big poorly compressible layer (default 1 GiB; ``--size-mib``) is pushed by the
``regcopy copy`` CLI from an OCI layout through :class:`FaultyProxy`, which cuts the layer's PATCH
after ``--cut`` of its bytes (default 0.9), into:

* ``spec``: :class:`servers.spec_registry.SpecRegistry` (in this process), which keeps the bytes of a
  cut PATCH: regcopy asks the upload status and sends only the rest;
* ``2.8.2``: distribution 2.8.2, which cancels the session (docs/registry-quirks.md): regcopy starts afresh.

Each target also gets a clean run (no cut) as the reference. Per run: wall seconds, upload-body bytes
the proxy forwarded to the registry (every PATCH/PUT/POST to ``/blobs/uploads/``) as a ratio to the
blob size, bytes re-sent, and regcopy's CPU seconds and peak RSS (GNU time). The pushed image is
checked (the spec registry's stored blob hashes to its digest; skopeo inspects 2.8.2). Registry
storage lives on tmpfs (``--workdir``). Results go to ``benchmarks/results/resume.json`` (``resume-chunked.json``
with ``--upload chunked``) and stdout.

    .venv/bin/python benchmarks/bench_resume.py [--size-mib 1024] [--cut 0.9] [--upload stream|chunked]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_copy import run_measured  # noqa: E402

from servers import skopeo  # noqa: E402
from servers.faulty_proxy import Fault, FaultyProxy  # noqa: E402
from servers.images import ImageSpec, LayerSpec, layout_contents, write_layout  # noqa: E402
from servers.registry import RegistryServer  # noqa: E402
from servers.spec_registry import SpecRegistry  # noqa: E402

MIB = 1024 * 1024
REPO = "bench/resume"
RESULTS = ROOT / "benchmarks" / "results"


@dataclass
class Run:
    """One push of the image into one target."""

    target: str
    cut: bool
    seconds: float
    blob_size: int
    bytes_sent: int
    cpu_seconds: float
    peak_rss_mib: float
    registry_received: int | None = None  # the spec registry's own count for the big blob

    @property
    def ratio(self) -> float:
        return self.bytes_sent / self.blob_size

    @property
    def resent(self) -> float:
        """Bytes sent beyond one copy of every blob, as a fraction of the big blob."""
        return self.ratio - 1.0


@contextmanager
def target(name: str, work: Path) -> Iterator[tuple[str, SpecRegistry | RegistryServer]]:
    if name == "spec":
        with SpecRegistry(work / f"spec-{os.urandom(4).hex()}") as spec:
            yield spec.url, spec
    else:
        server = RegistryServer(work / f"dist-{os.urandom(4).hex()}", "http").start()
        try:
            yield server.url, server
        finally:
            server.stop()


def push(name: str, cut: bool, layout: Path, work: Path, args: argparse.Namespace) -> Run:
    contents = layout_contents(layout, "big")
    big = max(contents.blobs.values(), key=lambda d: d.size)
    total = sum(d.size for d in contents.blobs.values())
    env = {**os.environ, "HOME": str(work), "DOCKER_CONFIG": str(work / "docker")}
    authfile = work / "auth.json"
    authfile.write_text('{"auths": {}}')
    with target(name, work) as (url, server), FaultyProxy(url) as proxy:
        if cut:
            at = int(big.size * args.cut)
            # Chunked: cut the PATCH that carries byte `at`, inside it (the big blob's PATCHes come first:
            # the others are small enough to go monolithic).
            skip, at = divmod(at, args.chunk_size) if args.upload == "chunked" else (0, at)
            proxy.add(Fault(method="PATCH", path=r"/blobs/uploads/", skip=skip, request_reset_after_bytes=at))
        cmd = [str(ROOT / ".venv/bin/regcopy"), "copy", f"oci:{layout}:big", f"{proxy.host}/{REPO}:v1",
               "--insecure-registry", proxy.host, "--upload", args.upload, "--chunk-size", str(args.chunk_size),
               "--progress", "none", "-o", "json",
               "--authfile", str(authfile)]
        proc = run_measured(cmd, env)
        sent = sum(r.request_bytes for r in proxy.requests if "/blobs/uploads/" in r.path)
        received = None
        if isinstance(server, SpecRegistry):
            received = server.blob_bytes(big.digest)
            stored = server.root / "blobs" / big.digest.split(":", 1)[1]
            assert _sha256(stored) == big.digest, "the spec registry holds a wrong blob"
            assert server.tags[REPO]["v1"] == contents.root.digest
        else:
            assert skopeo.inspect_digest(server, f"{REPO}:v1") == contents.root.digest
    # Bytes beyond one copy of each blob are re-sent bytes of the big one (the small ones are not cut).
    return Run(name, cut, round(proc.seconds, 2), big.size, sent - (total - big.size), round(proc.cpu, 2),
               round(proc.rss_kib / 1024, 1), received)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(4 * MIB):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def table(runs: list[Run]) -> str:
    lines = [f"{'target':7} {'cut':>4} {'seconds':>8} {'sent/blob':>9} {'re-sent':>8} {'cpu s':>6} {'rss MiB':>8}"]
    lines.extend(
        f"{r.target:7} {'yes' if r.cut else 'no':>4} {r.seconds:8.2f} {r.ratio:9.3f} {r.resent:8.1%} "
        f"{r.cpu_seconds:6.1f} {r.peak_rss_mib:8.1f}"
        for r in runs
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="size of the big layer (MiB)")
    parser.add_argument("--cut", type=float, default=0.9, help="fraction of the layer's PATCH sent before the cut")
    parser.add_argument("--upload", choices=["stream", "chunked"], default="stream", help="regcopy --upload")
    parser.add_argument("--chunk-size", type=int, default=16 * MIB, help="regcopy --chunk-size")
    parser.add_argument("--targets", default="spec,2.8.2", help="comma-separated: spec,2.8.2")
    parser.add_argument("--workdir", type=Path, default=Path("/dev/shm") if Path("/dev/shm").is_dir() else None,
                        help="where registry storage lives (default tmpfs)")
    parser.add_argument("--cache", type=Path, default=ROOT / "benchmarks" / ".cache")
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    layout = args.cache / f"resume-layout-{args.size_mib}"
    print("generating the image (cached)...", flush=True)
    # Same layer spec as bench_copy's big layer, so the layer cache is shared.
    write_layout(layout, {"big": ImageSpec(layers=[LayerSpec(args.size_mib * MIB, "bench-big", "random")])},
                 cache_dir=args.cache / "layers")
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="regcopy-bench-resume-", dir=args.workdir) as tmp:
        for name in args.targets.split(","):
            for cut in (False, True):
                run = push(name, cut, layout, Path(tmp), args)
                runs.append(run)
                print(f"{name} cut={cut}: {run.seconds:.1f}s, sent {run.ratio:.3f}x the blob", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / ("resume.json" if args.upload == "stream" else f"resume-{args.upload}.json")
    out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                               "runs": [{**asdict(r), "ratio": r.ratio, "resent": r.resent} for r in runs]},
                              indent=2))
    print(table(runs), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
