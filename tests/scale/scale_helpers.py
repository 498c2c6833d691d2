"""Scale-out test harness: a corpus of repositories sharing base layers, seeded with skopeo into a real
2.8.2 registry; `regcopy worker` processes (real processes, real signals); the run's Redis records;
the destination's access log read per blob digest."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from servers import skopeo
from servers.images import ImageSpec, LayerSpec, layout_contents, write_layout
from servers.redis_server import RedisServer
from servers.registry import RegistryServer

KB, MB = 1024, 1024 * 1024
BASE = LayerSpec(2 * MB, "scale-base", "random")
RUNTIME = LayerSpec(1 * MB, "scale-runtime", "random")
BIG = LayerSpec(24 * MB, "scale-big", "random")
REPOS = [f"team{i % 4}/svc{i}" for i in range(20)]


def corpus() -> dict[str, tuple[str, ImageSpec]]:
    """layout tag → (repository:tag, spec): 20 repositories on two shared layers, and one big image."""
    out = {f"svc{i}": (f"{repo}:v1", ImageSpec(layers=[BASE, RUNTIME, LayerSpec(64 * KB + i, f"scale-{i}")]))
           for i, repo in enumerate(REPOS)}
    out["big"] = ("data/big:v1", ImageSpec(layers=[BASE, BIG]))
    return out


@pytest.fixture(scope="session")
def scale_layout(tmp_path_factory: pytest.TempPathFactory, image_cache_dir: Path) -> tuple[Path, dict[str, str]]:
    layout = tmp_path_factory.mktemp("scale") / "layout"
    return layout, write_layout(layout, {tag: spec for tag, (_, spec) in corpus().items()}, cache_dir=image_cache_dir)


@pytest.fixture
def scale_source(registry_factory: Any, scale_layout: tuple[Path, dict[str, str]]) -> RegistryServer:
    """A registry holding the corpus (pushed by skopeo)."""
    layout, digests = scale_layout
    src = registry_factory("http")
    for tag, (target, _) in corpus().items():
        repo, _, rtag = target.partition(":")
        assert skopeo.seed(src, layout, tag, repo, rtag) == digests[tag]
    return src


def blob_sizes(layout: Path) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for tag in corpus():
        contents = layout_contents(layout, tag)
        sizes.update({d.digest: d.size for d in contents.blobs.values()})
    return sizes


def write_plan(path: Path, src: RegistryServer | str, dst: RegistryServer, *, repos: str | None = None) -> Path:
    src_host = src if isinstance(src, str) else src.host
    entry: dict[str, Any] = {"source": src_host, "target": f"{dst.host}/m", "type": "registry"}
    if repos:
        entry["repos"] = {"allow": [repos]}
    path.write_text(yaml.safe_dump({"registries": {src_host: {"tls": "http"}, dst.host: {"tls": "http"}},
                                    "sync": [entry]}))
    return path


def regcopy(*args: str) -> list[str]:
    return [sys.executable, "-m", "regcopy", *args]


def blob_puts(server: RegistryServer) -> Counter[str]:
    """Completed blob uploads per digest (``PUT …/blobs/uploads/…?digest=`` answered 201)."""
    out: Counter[str] = Counter()
    for e in server.access_log():
        if e.method == "PUT" and "/blobs/uploads/" in e.path and e.status == 201:
            out.update(parse_qs(urlsplit(e.path).query).get("digest", []))
    return out


def verify_all(dst: RegistryServer, digests: dict[str, str], repos: list[str] | None = None) -> None:
    """skopeo pulls every image of the corpus from ``dst`` (under ``m/``) and checks every byte."""
    for tag, (target, _) in corpus().items():
        repo = target.split(":")[0]
        if repos is None or repo in repos:
            skopeo.verify(dst, f"m/{target}", digests[tag])


class Workers:
    """``regcopy worker`` processes on one Redis; logs in ``workdir``; all stopped at the end."""

    def __init__(self, redis: RedisServer, workdir: Path, authfile: Path, *extra: str) -> None:
        self.redis, self.workdir, self.authfile, self.extra = redis, workdir, authfile, extra
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, n: int = 1, *extra: str) -> list[subprocess.Popen[bytes]]:
        started = []
        for _ in range(n):
            log = open(self.workdir / f"worker-{len(self.procs)}.log", "wb")  # noqa: SIM115 - closed by the process
            cmd = regcopy("worker", "--redis", self.redis.url, "--authfile", str(self.authfile), "-v",
                          *self.extra, *extra)
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
            log.close()
            self.procs.append(proc)
            started.append(proc)
        return started

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}"
                         for p in sorted(self.workdir.glob("worker-*.log")))

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.terminate()
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


@pytest.fixture
def empty_authfile(tmp_path: Path) -> Path:
    """An auth file with no entries, so the developer's own credentials are never read."""
    path = tmp_path / "empty-auth.json"
    path.write_text(json.dumps({"auths": {}}))
    return path


@pytest.fixture
def workers(redis_server: RedisServer, tmp_path: Path, empty_authfile: Path) -> Iterator[Workers]:
    w = Workers(redis_server, tmp_path, empty_authfile)
    try:
        yield w
    finally:
        w.stop()


def submit(plan: Path, redis: RedisServer, authfile: Path, *extra: str, timeout: float = 180,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(regcopy("sync", str(plan), "--redis", redis.url, "--authfile", str(authfile),
                                  "--progress", "none", *extra),
                          capture_output=True, text=True, timeout=timeout, env=env)


def run_keys(redis: RedisServer, run: str) -> dict[str, Any]:
    """The run's Redis hashes, decoded (through redis-cli: the test reads Redis as an operator would)."""
    out: dict[str, Any] = {}
    for suffix in ("", ":done", ":attempts", ":progress", ":uploads"):
        raw = subprocess.run(["redis-cli", "-p", str(redis.port), "--json", "HGETALL", f"regcopy:run:{run}{suffix}"],
                             capture_output=True, text=True, check=True).stdout
        out[suffix or "meta"] = json.loads(raw) if raw.strip() else {}
    return out


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.1) -> float:
    """Poll ``predicate`` until true; returns the seconds it took. AssertionError after ``timeout``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout}s")


def env_with(**extra: str) -> dict[str, str]:
    return {**os.environ, **extra}
