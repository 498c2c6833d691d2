"""End-to-end demo: two real local registries, a sample set seeded by skopeo, copied by regcopy.

1. start a plain-http source registry and a token-auth https destination registry (test CA);
2. generate a sample set (three apps sharing base layers, one multi-arch index) and push it to the
   source with skopeo, an independent client;
3. copy every image with ``regcopy copy`` (shared layers cross the wire once, then are mounted);
4. copy again: everything is up to date, nothing is written;
5. verify every copied image with skopeo (digests equal, every blob pulled and checked).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.servers import skopeo  # noqa: E402
from tests.servers.images import ImageSpec, IndexSpec, LayerSpec, write_layout  # noqa: E402
from tests.servers.registry import RegistryServer  # noqa: E402

MB = 1024 * 1024


def sample_set() -> dict[str, ImageSpec | IndexSpec]:
    base = LayerSpec(size=8 * MB, seed="demo-base", content="random")
    runtime = LayerSpec(size=4 * MB, seed="demo-runtime", content="text")
    return {
        "web-v1": ImageSpec(layers=[base, runtime, LayerSpec(2 * MB, "web-1")], labels={"app": "web"}),
        "web-v2": ImageSpec(layers=[base, runtime, LayerSpec(2 * MB, "web-2")], labels={"app": "web"}),
        "worker-v1": ImageSpec(layers=[base, LayerSpec(3 * MB, "worker-1")], media="docker"),
        "multi-v1": IndexSpec(children=[
            ImageSpec(layers=[base, LayerSpec(1 * MB, "multi-amd64")], arch="amd64"),
            ImageSpec(layers=[base, LayerSpec(1 * MB, "multi-arm64")], arch="arm64", variant="v8"),
        ]),
    }


IMAGES = {  # layout tag -> repository:tag on the registries
    "web-v1": "apps/web:v1",
    "web-v2": "apps/web:v2",
    "worker-v1": "apps/worker:v1",
    "multi-v1": "apps/multi:v1",
}


def step(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def regcopy(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [str(ROOT / ".venv/bin/regcopy"), *args]
    print("$ regcopy " + " ".join(args), flush=True)
    return subprocess.run(cmd, check=True, text=True, capture_output=True)


async def copy_all(src: RegistryServer, dst: RegistryServer, auth: Path) -> list[dict[str, object]]:
    import regcopy

    assert dst.ca_pem_path is not None
    settings = {dst.host: regcopy.RegistrySettings(scheme="https", ca_file=str(dst.ca_pem_path))}
    async with regcopy.Client(authfile=str(auth), settings=settings) as client:
        results: dict[str, regcopy.CopyResult] = {}

        async def one(target: str) -> None:
            results[target] = await client.copy(f"{src.host}/{target}", f"{dst.host}/mirror/{target}")

        async with anyio.create_task_group() as tg:
            for target in IMAGES.values():
                tg.start_soon(one, target)
    return [results[t].to_json() for t in IMAGES.values()]


def unique_bytes(layout: Path) -> int:
    return sum(p.stat().st_size for p in (layout / "blobs" / "sha256").iterdir())


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="regcopy-demo-"))
    src = RegistryServer(work / "src", "http")
    dst = RegistryServer(work / "dst", "token")
    try:
        step("starting registries")
        src.start()
        dst.start()
        print(f"source:      {src.url}  (plain http, anonymous)")
        print(f"destination: {dst.url} (https with a test CA, Bearer token auth, realm {dst.token_server.realm})")

        step("generating the sample set and seeding the source with skopeo")
        layout = work / "layout"
        digests = write_layout(layout, sample_set(), cache_dir=work / "cache")
        for tag, target in IMAGES.items():
            repo, _, rtag = target.partition(":")
            skopeo.seed(src, layout, tag, repo, rtag)
            print(f"  {src.host}/{target}  {digests[tag]}")

        auth = work / "auth.json"
        import base64

        token = base64.b64encode(f"{dst.username}:{dst.password}".encode()).decode()
        auth.write_text(json.dumps({"auths": {dst.host: {"auth": token}}}))
        assert dst.cert_dir is not None

        step("copying with regcopy: one client, four images in parallel")
        print("  (library: async with regcopy.Client(...) as client: await client.copy(src, dst) per image)")
        started = time.monotonic()
        reports = anyio.run(copy_all, src, dst, auth)
        for report in reports:
            print(f"  {report['destination']}: uploaded {report['blobs_uploaded']} "
                  f"({report['bytes_uploaded'] / MB:.1f} MiB), mounted {report['blobs_mounted']}, "
                  f"skipped {report['blobs_skipped']}, {report['seconds']:.2f}s")
        total = sum(r["bytes_uploaded"] for r in reports)
        unique = unique_bytes(layout)
        print(f"  {total / MB:.1f} MiB uploaded for {unique / MB:.1f} MiB of unique blobs in "
              f"{time.monotonic() - started:.1f}s: every shared layer crossed the wire once, then was mounted")
        print("\nlast report (--output json):")
        print(json.dumps(reports[-1], indent=2, sort_keys=True))

        step("copying again with the CLI: nothing to do")
        for target in IMAGES.values():
            out = regcopy("copy", f"{src.host}/{target}", f"{dst.host}/mirror/{target}", "--authfile", str(auth),
                          "--dest-cert-dir", str(dst.cert_dir), "--progress", "none")
            print("  " + out.stdout.strip())

        step("verifying every copied image with skopeo")
        for tag, target in IMAGES.items():
            skopeo.verify(dst, f"mirror/{target}", digests[tag])
            print(f"  ok {dst.host}/mirror/{target} {digests[tag]}")
        step("done")
        return 0
    finally:
        dst.stop()
        src.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
