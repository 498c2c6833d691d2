"""``regcopy sync --state``: a run killed with SIGKILL and started again does not redo finished images."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from servers import skopeo
from servers.faulty_proxy import Fault, FaultyProxy
from servers.registry import RegistryServer


def _fill(server: RegistryServer, seed: Any) -> None:
    for sample, repo in [("shared-a", "apps/a"), ("shared-b", "apps/b"), ("multi", "apps/multi"),
                         ("oci", "apps/one"), ("docker", "apps/two")]:
        seed(server, sample, repo, "v1")


def _images(state: Path) -> list[dict[str, Any]]:
    out = []
    for line in state.read_text().splitlines() if state.exists() else []:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line being written right now
        if "image" in record:
            out.append(record["image"])
    return out


def _sync(plan: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "regcopy", "sync", str(plan), "--progress", "none", *extra]


def test_sigkill_then_rerun_skips_journalled_images_and_finishes(
    http_registry: RegistryServer, registry_factory: Any, seed: Any, tmp_path: Path, empty_authfile: Path
) -> None:
    _fill(http_registry, seed)
    dst = registry_factory("http")
    report, state = tmp_path / "report.json", tmp_path / "report.json.state"
    with FaultyProxy(http_registry.url) as proxy:
        stall = proxy.add(Fault(method="GET", path=r"/v2/apps/multi/blobs/", stall=120, times=-1))
        plan = tmp_path / "plan.yaml"
        plan.write_text(yaml.safe_dump({"registries": {dst.host: {"tls": "http"}, proxy.host: {"tls": "http"}},
                                        "sync": [{"source": f"{proxy.host}/apps", "target": f"{dst.host}/m",
                                                  "type": "namespace"}]}))
        proc = subprocess.Popen(_sync(plan, "--report", str(report), "--authfile", str(empty_authfile)),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and len(_images(state)) < 4:
                time.sleep(0.05)  # every image but the stalled one is journalled
            assert len(_images(state)) == 4, proc.stderr.read() if proc.poll() is not None else "timeout"
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        finished = {(i["source"], i["target"]) for i in _images(state)}
        assert all("/multi" not in target for _, target in finished)

        proxy.remove(stall)
        seen = len(dst.access_log())
        rerun = subprocess.run(_sync(plan, "--report", str(report), "--authfile", str(empty_authfile)),
                               capture_output=True, text=True, timeout=120, check=False)
        assert rerun.returncode == 0, rerun.stderr
        assert "resuming the interrupted run" in rerun.stderr
        later = dst.access_log()[seen:]
        # A run that completed leaves a journal the next run starts afresh from.
        again = subprocess.run(_sync(plan, "--state", str(state), "--authfile", str(empty_authfile)),
                               capture_output=True, text=True, timeout=120, check=False)
        assert again.returncode == 0 and "resuming" not in again.stderr, again.stderr
    data = json.loads(report.read_text())  # the re-run's report (the last run wrote none)
    by_pair = {(i["source"], i["target"]): i for i in data["images"]}
    assert set(by_pair) == finished | {(s, t) for s, t in by_pair if "/multi" in t}
    for pair in finished:  # skipped on the journal's word, not re-checked
        assert by_pair[pair]["status"] == "up-to-date" and "journal" in by_pair[pair]["note"]
    assert [i["status"] for i in data["images"] if "/multi" in i["target"]] == ["copied"]
    # The re-run sent nothing at all about the journalled images to the destination.
    for _, target in finished:
        repo = target.split("/", 1)[1].rsplit(":", 1)[0]
        assert not [e for e in later if e.path.startswith(f"/v2/{repo}/manifests/")], repo
    for _, target in sorted(finished | {("", f"{dst.host}/m/multi:v1")}):
        skopeo.verify(dst, target.split("/", 1)[1])


def test_sigkill_mid_upload_then_rerun_resumes_the_open_session(
    http_registry: RegistryServer, seed: Any, tmp_path: Path, empty_authfile: Path
) -> None:
    """On a registry that keeps a cut PATCH's bytes (docs/protocol.md#upload-sessions; not 2.8.2), the journal
    hands the killed run's session back and the re-run sends only the rest of the blob."""
    from urllib.parse import parse_qs, urlsplit

    from servers.spec_registry import SpecRegistry

    seed(http_registry, "big", "apps/big", "v1")
    state = tmp_path / "run.state"
    with SpecRegistry() as spec, FaultyProxy(http_registry.url) as source:
        # The 3 MiB layer's download stalls after 2 MB: the upload it feeds is mid-PATCH when killed.
        stall = source.add(Fault(method="GET", path=r"/v2/apps/big/blobs/", stall_after_bytes=(2_000_000, 120),
                                 times=-1))
        plan = tmp_path / "plan.yaml"
        plan.write_text(yaml.safe_dump({"registries": {spec.host: {"tls": "http"}, source.host: {"tls": "http"}},
                                        "sync": [{"source": f"{source.host}/apps/big", "target": f"{spec.host}/big"}]}))
        proc = subprocess.Popen(_sync(plan, "--state", str(state), "--authfile", str(empty_authfile)),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and max(spec.open_sessions().values(), default=0) < 1_500_000:
                time.sleep(0.05)
            held = max(spec.open_sessions().values(), default=0)
            assert held >= 1_500_000, proc.stderr.read() if proc.poll() is not None else "timeout"
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=30)
        assert '"session"' in state.read_text()  # the open session is journalled with its Location

        source.remove(stall)
        rerun = subprocess.run(_sync(plan, "--state", str(state), "--authfile", str(empty_authfile)),
                               capture_output=True, text=True, timeout=120, check=False)
        assert rerun.returncode == 0, rerun.stderr
        committed = {parse_qs(urlsplit(r.path).query)["digest"][0] for r in spec.requests
                     if r.method == "PUT" and "digest=" in r.path}
        layer = max(committed, key=spec.blob_bytes)
        size = len(spec.blob(layer))
        assert size > 3_000_000
        # The layer crossed once: the bytes the killed run delivered were not sent again.
        assert spec.blob_bytes(layer) < 1.15 * size, (spec.blob_bytes(layer), size)
        assert held < spec.blob_bytes(layer)
        skopeo.verify(spec, "big:v1")
