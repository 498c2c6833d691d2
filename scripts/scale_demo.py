"""Scale-out demo: one plan, two worker processes, one blob ledger (docs/scale-out.md).

1. start a redis-server (append-only, its own directory) and two plain-http registries;
2. push 12 repositories sharing two base layers to the source with skopeo;
3. start two ``regcopy worker --redis URL`` processes;
4. ``regcopy sync PLAN --redis URL``: plan, enqueue the units, show progress, write the merged report;
5. verify every image with skopeo and count blob uploads in the destination's access log (one each);
6. submit the plan again: every image is up to date, nothing is enqueued.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.servers import skopeo  # noqa: E402
from tests.servers.images import ImageSpec, LayerSpec, write_layout  # noqa: E402
from tests.servers.redis_server import RedisServer  # noqa: E402
from tests.servers.registry import RegistryServer  # noqa: E402

MB = 1024 * 1024
REPOS = [f"team{i % 3}/svc{i}" for i in range(12)]


def step(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def main() -> int:
    base, runtime = LayerSpec(6 * MB, "scale-demo-base"), LayerSpec(3 * MB, "scale-demo-runtime", "text")
    specs = {f"svc{i}": ImageSpec(layers=[base, runtime, LayerSpec(MB + i, f"scale-demo-{i}")]) for i in range(12)}
    with tempfile.TemporaryDirectory(prefix="regcopy-scale-demo-") as tmp:
        work = Path(tmp)
        step("start redis-server and two registries")
        redis = RedisServer(work / "redis").start()
        src = RegistryServer(work / "src").start()
        dst = RegistryServer(work / "dst").start()
        workers: list[subprocess.Popen[bytes]] = []
        try:
            print(f"redis {redis.url}, source {src.host}, destination {dst.host}")
            step("push 12 repositories sharing two base layers with skopeo")
            digests = write_layout(work / "layout", specs, cache_dir=work / "cache")
            for i, repo in enumerate(REPOS):
                skopeo.seed(src, work / "layout", f"svc{i}", repo, "v1")
            plan = work / "plan.yaml"
            plan.write_text(json.dumps({"registries": {src.host: {"tls": "http"}, dst.host: {"tls": "http"}},
                                        "sync": [{"source": src.host, "target": f"{dst.host}/mirror",
                                                  "type": "registry"}]}))
            auth = work / "auth.json"
            auth.write_text('{"auths": {}}')
            step("two workers: regcopy worker --redis URL")
            for n in range(2):
                log = open(work / f"worker-{n}.log", "wb")  # noqa: SIM115 - the process owns it
                workers.append(subprocess.Popen([sys.executable, "-m", "regcopy", "worker", "--redis", redis.url,
                                                 "--authfile", str(auth)], stdout=log, stderr=subprocess.STDOUT))
            step("regcopy sync PLAN --redis URL (plan, enqueue, wait, merged report)")
            report = work / "report.json"
            cmd = [sys.executable, "-m", "regcopy", "sync", str(plan), "--redis", redis.url, "--authfile", str(auth),
                   "--report", str(report), "--progress", "plain"]
            subprocess.run(cmd, check=True)
            step("verify with skopeo; count blob uploads in the destination's access log")
            for i, repo in enumerate(REPOS):
                skopeo.verify(dst, f"mirror/{repo}:v1", digests[f"svc{i}"])
            puts = Counter(d for e in dst.access_log() if e.method == "PUT" and "/blobs/uploads/" in e.path
                           and e.status == 201 for d in parse_qs(urlsplit(e.path).query).get("digest", []))
            doc = json.loads(report.read_text())
            print(f"{len(REPOS)} images verified; {len(puts)} blobs uploaded, the most any blob was uploaded: "
                  f"{max(puts.values())}; report: {doc['scale']['registries']}")
            assert max(puts.values()) == 1
            step("submit again: nothing to do")
            again = subprocess.run(cmd, check=True, capture_output=True, text=True)
            print(again.stderr.strip().splitlines()[0])
        finally:
            for w in workers:
                w.send_signal(signal.SIGTERM)
            for w in workers:
                w.wait(30)
            dst.stop()
            src.stop()
            redis.stop()
    print("\nscale-out demo OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
