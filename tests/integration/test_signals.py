"""Real signals to real ``python -m regcopy`` processes in mid-copy: SIGTERM (and SIGINT) cancel the
run, which cleans up (temp files, spools, upload sessions), writes its report and exits 128 + the
signal; a SIGKILLed run's leftovers are removed by the next run, a live writer's are not.

Every copy reads its source through a :class:`FaultyProxy` that stalls a blob mid-body, so the
signal lands while bytes are in flight; each test waits for a concrete sign of that (a temp file
holding at least 1 MiB, a PATCH in the registry's access log, a session the spec registry holds)
instead of sleeping.
"""

from __future__ import annotations

import hashlib
import json
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import manifest_puts  # type: ignore[import-not-found]
from servers import skopeo
from servers.faulty_proxy import Fault, FaultyProxy
from servers.registry import RegistryServer
from servers.spec_registry import SpecRegistry

MB = 1 << 20
STALL = Fault(method="GET", path=r"/v2/src/big/blobs/", stall_after_bytes=(2_000_000, 120), times=-1)
DIGEST = re.compile(r"[0-9a-f]{64}")


@pytest.fixture
def source(http_registry: RegistryServer, seed: Any) -> Iterator[FaultyProxy]:
    """The ``big`` sample (a 3 MB and a 700 KB layer) as ``src/big:v1`` and a small image as
    ``src/small:v1``, read through a proxy that stalls the big layer after 2 MB."""
    seed(http_registry, "big", "src/big", "v1")
    seed(http_registry, "oci", "src/small", "v1")
    with FaultyProxy(http_registry.url) as proxy:
        proxy.add(STALL)
        yield proxy


def regcopy(authfile: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "regcopy", *args[:1], "--progress", "none", "--authfile", str(authfile), *args[1:]]


def start(cmd: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(what: str, ready: Callable[[], bool], proc: subprocess.Popen[str], timeout: float = 60) -> None:
    """Poll ``ready`` until it holds; fail with the process's output if it ended first."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"regcopy ended ({proc.returncode}) before {what}: {proc.communicate()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"no sign of {what} within {timeout}s: {proc.communicate()}")
        time.sleep(0.05)


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> str:
    """Send ``sig``; the process must end within 30 s (it cleans up first). Returns stderr."""
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert "Traceback" not in err, err
    return err


def extras(directory: Path, expected: set[str]) -> dict[str, int]:
    """Entries of ``directory`` beyond ``expected`` (and non-digest files under ``blobs/``), with sizes."""
    found: dict[str, int] = {}
    for path in directory.iterdir() if directory.exists() else []:
        if path.name not in expected:
            found[path.name] = sum(p.stat().st_size for p in [path, *path.rglob("*")] if p.is_file())
    for path in (directory / "blobs").glob("*/*"):
        if not DIGEST.fullmatch(path.name):
            found[str(path.relative_to(directory))] = path.stat().st_size
    return found


def in_flight(directory: Path, expected: set[str]) -> Callable[[], bool]:
    return lambda: sum(extras(directory, expected).values()) >= MB


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


LAYOUT = {"oci-layout", "index.json", "blobs"}


@pytest.mark.parametrize(("kind", "sig"), [("oci", signal.SIGTERM), ("oci", signal.SIGINT),
                                           ("oci-archive", signal.SIGTERM), ("docker-archive", signal.SIGTERM)])
def test_signal_mid_copy_to_a_local_store_cleans_up_and_keeps_the_old_target(
    source: FaultyProxy, tmp_path: Path, empty_authfile: Path, kind: str, sig: int
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    if kind == "oci":
        target, old, watched, expected = f"oci:{out}/t:new", f"oci:{out}/t:old", out / "t", LAYOUT
    else:
        ref = ":x/app:v1" if kind == "docker-archive" else ""
        target = old = f"{kind}:{out}/t.tar{ref}"
        watched, expected = out, {"t.tar"}
    first = subprocess.run(regcopy(empty_authfile, "copy", f"{source.host}/src/small:v1", old),
                           capture_output=True, text=True, timeout=60, check=False)
    assert first.returncode == 0, first.stderr
    kept = out / "t" / "index.json" if kind == "oci" else out / "t.tar"
    before = sha(kept)

    proc = start(regcopy(empty_authfile, "copy", f"{source.host}/src/big:v1", target))
    wait_for("a temp file holding 1 MiB", in_flight(watched, expected), proc)
    err = stop(proc, sig)

    assert proc.returncode == 128 + sig, err
    assert f"interrupted ({signal.Signals(sig).name})" in err
    assert extras(watched, expected) == {}  # no temp file, no spool, no partial archive
    assert sha(kept) == before  # the old index.json or archive, untouched
    if kind == "oci":
        for blob in (out / "t" / "blobs").glob("*/*"):  # what did land is whole
            assert sha(blob) == blob.name
        check = subprocess.run(regcopy(empty_authfile, "copy", f"oci:{out}/t:old", f"oci:{tmp_path}/check"),
                               capture_output=True, text=True, timeout=60, check=False)
        assert check.returncode == 0, check.stderr


def _uploads(server: RegistryServer, repo: str) -> list[Path]:
    """Upload sessions 2.8.2 still holds for ``repo`` (a folder with a ``startedat`` file)."""
    root = server.root / "docker" / "registry" / "v2" / "repositories" / repo / "_uploads"
    return [s for s in root.glob("*") if (s / "startedat").exists()]


def test_sigterm_mid_chunked_upload_deletes_the_session(
    source: FaultyProxy, dst: RegistryServer, empty_authfile: Path
) -> None:
    """Between two PATCHes (the second chunk waits for the stalled source), 2.8.2 accepts the DELETE."""
    proc = start(regcopy(empty_authfile, "copy", "--upload", "chunked", "--chunk-size", str(MB),
                         f"{source.host}/src/big:v1", f"{dst.host}/d/big:v1"))
    wait_for("a PATCH", lambda: any(e.method == "PATCH" and "/d/big/" in e.path for e in dst.access_log()), proc)
    assert _uploads(dst, "d/big")  # the session is open now
    patch = next(e for e in dst.access_log() if e.method == "PATCH" and "/d/big/" in e.path)
    session = patch.path.split("?")[0]  # the chunked session; the small blobs' own (monolithic) may race to a 404
    err = stop(proc)

    assert proc.returncode == 143, err
    delete = dst.wait_for_access(lambda e: e.method == "DELETE" and e.path.split("?")[0] == session)
    assert delete.status == 204
    assert _uploads(dst, "d/big") == []
    with pytest.raises(urllib.error.HTTPError) as gone:  # the session's Location is dead
        urllib.request.urlopen(f"{dst.url}{delete.path}", timeout=10)
    assert gone.value.code == 404
    assert not manifest_puts(dst)


def test_sigterm_mid_streamed_upload_closes_the_session_on_a_spec_registry(
    source: FaultyProxy, empty_authfile: Path
) -> None:
    """A PATCH cut mid-body: a registry following the spec keeps the session, and regcopy's DELETE
    closes it (2.8.2 cannot be told, registry-quirks.md)."""
    with SpecRegistry() as spec:
        proc = start(regcopy(empty_authfile, "copy", f"{source.host}/src/big:v1", f"{spec.host}/d/big:v1"))
        wait_for("a session holding 1 MiB", lambda: max(spec.open_sessions().values(), default=0) >= MB, proc)
        err = stop(proc)
        assert proc.returncode == 143, err
        assert spec.open_sessions() == {}
        assert [r for r in spec.requests if r.method == "DELETE"]


def test_sigterm_mid_sync_writes_an_interrupted_report_and_the_journal(
    http_registry: RegistryServer, dst: RegistryServer, seed: Any, tmp_path: Path, empty_authfile: Path
) -> None:
    for sample, repo in [("shared-a", "apps/a"), ("shared-b", "apps/b"), ("multi", "apps/multi")]:
        seed(http_registry, sample, repo, "v1")
    report, state = tmp_path / "report.json", tmp_path / "report.json.state"
    with FaultyProxy(http_registry.url) as proxy:
        proxy.add(Fault(method="GET", path=r"/v2/apps/multi/blobs/", stall=120, times=-1))
        plan = tmp_path / "plan.yaml"
        plan.write_text(yaml.safe_dump({"registries": {dst.host: {"tls": "http"}, proxy.host: {"tls": "http"}},
                                        "sync": [{"source": f"{proxy.host}/apps", "target": f"{dst.host}/m",
                                                  "type": "namespace"}]}))
        proc = start(regcopy(empty_authfile, "sync", str(plan), "--report", str(report)))
        wait_for("two images tagged", lambda: len(manifest_puts(dst)) >= 2, proc)
        err = stop(proc)
    assert proc.returncode == 143, err
    data = json.loads(report.read_text())
    assert data["interrupted"] is True
    copied = {i["target"] for i in data["images"] if i["status"] == "copied"}
    assert len(copied) >= 2 and not any("/multi" in t for t in copied)
    journalled = {json.loads(line)["image"]["target"] for line in state.read_text().splitlines()
                  if '"image"' in line}
    assert copied <= journalled  # a re-run skips them
    assert not any("/m/multi/manifests/" in p for p in manifest_puts(dst))  # no partial image tagged


def test_a_second_sigterm_during_cleanup_exits_at_once_without_a_traceback(
    source: FaultyProxy, dst: RegistryServer, empty_authfile: Path
) -> None:
    """The cleanup's DELETE hangs (a proxy stalls it 60 s): the second signal ends the process now."""
    with FaultyProxy(dst.url) as front:
        front.add(Fault(method="DELETE", stall=60, times=-1))
        proc = start(regcopy(empty_authfile, "copy", "--upload", "chunked", "--chunk-size", str(MB),
                             f"{source.host}/src/big:v1", f"{front.host}/d/big:v1"))
        wait_for("a PATCH", lambda: any(r.method == "PATCH" for r in front.requests), proc)
        proc.send_signal(signal.SIGTERM)
        wait_for("the cleanup's DELETE", lambda: any(r.method == "DELETE" for r in front.requests), proc)
        began = time.monotonic()
        err = stop(proc)
        assert time.monotonic() - began < 20  # not the 60 s stall
    assert proc.returncode == 143, err
    assert "interrupted again" in err


def _copy(authfile: Path, src: str, dst: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(regcopy(authfile, "copy", src, dst), capture_output=True, text=True, timeout=60,
                          check=False)


def test_sigkill_leftovers_are_swept_by_the_next_run_but_a_live_writers_are_not(
    source: FaultyProxy, http_registry: RegistryServer, tmp_path: Path, empty_authfile: Path
) -> None:
    layout = tmp_path / "shared"
    # A killed run leaves its temp file (SIGKILL cannot be handled).
    killed = start(regcopy(empty_authfile, "copy", f"{source.host}/src/big:v1", f"oci:{layout}:killed"))
    wait_for("the first writer's temp file", in_flight(layout, LAYOUT), killed)
    killed.send_signal(signal.SIGKILL)
    killed.communicate(timeout=30)
    leftovers = extras(layout, LAYOUT)
    assert sum(leftovers.values()) >= MB

    # A live writer into the same layout, stalled mid-blob.
    live = start(regcopy(empty_authfile, "copy", f"{source.host}/src/big:v1", f"oci:{layout}:live"))
    try:
        def stalled() -> set[str]:  # the live writer's temp file of the stalled layer (smaller ones come and go)
            return {n for n, size in extras(layout, LAYOUT).items() if n not in leftovers and size >= MB}

        wait_for("the live writer's temp file", lambda: bool(stalled()), live)
        mine = {name: (layout / name).stat().st_ino for name in stalled()}

        # A third run writes into the same layout while the live one is still busy.
        third = _copy(empty_authfile, f"{http_registry.host}/src/small:v1", f"oci:{layout}:third")
        assert third.returncode == 0, third.stderr
        assert live.poll() is None
        after = extras(layout, LAYOUT)
        assert not set(leftovers) & set(after)  # the killed run's leftovers are gone
        assert {name: (layout / name).stat().st_ino for name in mine} == mine  # the live writer's are not
    finally:
        err = stop(live)
    assert live.returncode == 143, err
    assert extras(layout, LAYOUT) == {}
    index = json.loads((layout / "index.json").read_text())
    assert [e["annotations"]["org.opencontainers.image.ref.name"] for e in index["manifests"]] == ["third"]
    check = _copy(empty_authfile, f"oci:{layout}:third", f"oci:{tmp_path}/check")
    assert check.returncode == 0, check.stderr


def test_sigkill_mid_archive_write_then_a_rerun_removes_the_spool(
    source: FaultyProxy, http_registry: RegistryServer, tmp_path: Path, empty_authfile: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "other.tar.keep").write_bytes(b"not ours")
    killed = start(regcopy(empty_authfile, "copy", f"{source.host}/src/big:v1", f"oci-archive:{out}/a.tar"))
    wait_for("a spool holding 1 MiB", in_flight(out, {"other.tar.keep"}), killed)
    killed.send_signal(signal.SIGKILL)
    killed.communicate(timeout=30)
    assert sum(extras(out, {"other.tar.keep"}).values()) >= MB

    rerun = _copy(empty_authfile, f"{http_registry.host}/src/small:v1", f"oci-archive:{out}/a.tar")
    assert rerun.returncode == 0, rerun.stderr
    assert extras(out, {"other.tar.keep", "a.tar"}) == {}
    assert (out / "other.tar.keep").read_bytes() == b"not ours"
    skopeo.run_skopeo("inspect", "--raw", f"oci-archive:{out}/a.tar")


def test_sigterm_mid_prune_writes_an_interrupted_report(
    http_registry: RegistryServer, seed: Any, tmp_path: Path, empty_authfile: Path
) -> None:
    seed(http_registry, "oci", "lib/app", "1.0.0")
    report = tmp_path / "report.json"
    with FaultyProxy(http_registry.url) as proxy:
        proxy.add(Fault(method="GET", path=r"/v2/lib/app/tags/list", stall=120, times=-1))
        plan = tmp_path / "prune.yaml"
        plan.write_text(yaml.safe_dump({"registries": {proxy.host: {"tls": "http"}},
                                        "prune": [{"repository": f"{proxy.host}/lib/app", "keep_latest": 1}]}))
        proc = start([sys.executable, "-m", "regcopy", "prune", str(plan), "--report", str(report),
                      "--authfile", str(empty_authfile)])
        wait_for("the tags list request", lambda: any("/tags/list" in r.path for r in proxy.requests), proc)
        err = stop(proc)
    assert proc.returncode == 143, err
    data = json.loads(report.read_text())
    assert data["interrupted"] is True and data["ok"] is False
