"""examples/kubernetes cannot rot: their exact command lines and environment run here as local
processes against local registries and a local redis-server. Only what Kubernetes itself would
provide differs: the pod index (JOB_COMPLETION_INDEX), the values of the manifests' own env vars
(REDIS_URL, PLAN, REPORTS, REDIS_PORT, REDIS_DIR) and the registry hostnames in the plan."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from scale_helpers import Workers, blob_puts, corpus, env_with, verify_all

from servers.redis_server import RedisServer
from servers.registry import RegistryServer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "kubernetes"


def docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((EXAMPLES / name).read_text()) if d]


def container(doc: dict[str, Any]) -> dict[str, Any]:
    (c,) = doc["spec"]["template"]["spec"]["containers"]
    return c


def command(c: dict[str, Any], overrides: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """The container's argv with Kubernetes' $(VAR) expansion, and its env (values overridden)."""
    env = {e["name"]: overrides.get(e["name"], e["value"]) for e in c.get("env", [])}
    argv = [re.sub(r"\$\((\w+)\)", lambda m: env.get(m[1], m[0]), a) for a in [*c["command"], *c["args"]]]
    if argv[0] == "regcopy":
        argv = [sys.executable, "-m", "regcopy", *argv[1:]]
    return argv, env


def plan(tmp: Path, src: RegistryServer, dst: RegistryServer) -> Path:
    (cm,) = docs("plan-configmap.yaml")
    text = cm["data"]["plan.yaml"].replace("old-registry.internal:5000", src.host)
    text = text.replace("new-registry.internal:5000", dst.host)
    path = tmp / "plan.yaml"
    path.write_text(text)
    return path


def test_the_manifests_say_what_the_docs_promise() -> None:
    (job,) = docs("static-indexed-job.yaml")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] > 2 * spec["parallelism"]
    argv, _ = command(container(job), {})
    assert argv[argv.index("--shards") + 1] == str(spec["completions"])  # one shard per index
    redis, _service = docs("redis.yaml")
    args = container(redis)["args"]
    assert args[args.index("--appendonly") + 1] == "yes"  # a restarted Redis keeps the queue
    (workers,) = docs("workers.yaml")
    assert container(workers)["args"][0] == "worker"
    assert workers["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 30


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_static_indexed_job_runs_as_written(
    scale_source: RegistryServer, registry_factory: Any, redis_server: RedisServer,
    scale_layout: tuple[Path, dict[str, str]], tmp_path: Path, empty_authfile: Path,
) -> None:
    dst = registry_factory("http")
    (job,) = docs("static-indexed-job.yaml")
    over = {"PLAN": str(plan(tmp_path, scale_source, dst)), "REPORTS": str(tmp_path), "REDIS_URL": redis_server.url}
    argv, env = command(container(job), over)
    completions, parallelism = job["spec"]["completions"], job["spec"]["parallelism"]
    pending = list(range(completions))
    while pending:  # as the Job controller: `parallelism` pods at a time, each with its index
        batch, pending = pending[:parallelism], pending[parallelism:]
        procs = [subprocess.Popen([*argv, "--authfile", str(empty_authfile)],
                                  env=env_with(**env, JOB_COMPLETION_INDEX=str(i)),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in batch]
        for p in procs:
            _, err = p.communicate(timeout=300)
            assert p.returncode == 0, err
    reports = sorted(tmp_path.glob("report.shard-*.json"))
    assert len(reports) == completions
    merged = subprocess.run([sys.executable, "-m", "regcopy", "report", "merge", *map(str, reports), "-o", "json"],
                            capture_output=True, text=True)
    assert merged.returncode == 0, merged.stderr
    assert json.loads(merged.stdout)["totals"]["copied"] == len(corpus())
    verify_all(dst, scale_layout[1])
    assert max(blob_puts(dst).values()) == 1  # the manifest passes --ledger


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_dynamic_manifests_run_as_written(
    scale_source: RegistryServer, registry_factory: Any, tmp_path: Path, empty_authfile: Path,
    scale_layout: tuple[Path, dict[str, str]],
) -> None:
    dst = registry_factory("http")
    redis_doc, _service = docs("redis.yaml")
    redis = RedisServer(tmp_path / "redis-data")
    redis.port = free_port()
    argv, _env = command(container(redis_doc), {"REDIS_PORT": str(redis.port), "REDIS_DIR": str(redis.workdir)})
    redis.workdir.mkdir()
    # The pod's network is its own; here only the loopback address is added.
    server = subprocess.Popen([*argv, "--bind", "127.0.0.1"], stdout=subprocess.DEVNULL)
    try:
        assert _wait(redis.ping), "redis-server from redis.yaml did not start"
        url = f"redis://127.0.0.1:{redis.port}/0"
        (workers_doc,) = docs("workers.yaml")
        wargv, wenv = command(container(workers_doc), {"REDIS_URL": url})
        pool = Workers(redis, tmp_path, empty_authfile)
        procs = [subprocess.Popen([*wargv, "--authfile", str(empty_authfile)], env=env_with(**wenv),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for _ in range(workers_doc["spec"]["replicas"])]
        pool.procs.extend(procs)
        try:
            (job,) = docs("submitter-job.yaml")
            over = {"PLAN": str(plan(tmp_path, scale_source, dst)), "REPORTS": str(tmp_path), "REDIS_URL": url}
            sargv, senv = command(container(job), over)
            done = subprocess.run([*sargv, "--authfile", str(empty_authfile)], env=env_with(**senv),
                                  capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, done.stderr
            assert json.loads((tmp_path / "report.json").read_text())["totals"]["copied"] == len(corpus())
        finally:
            pool.stop()
        verify_all(dst, scale_layout[1])
    finally:
        server.terminate()
        server.wait(10)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(check: Any, timeout: float = 10) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False
