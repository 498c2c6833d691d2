"""``regcopy sync`` and ``client.sync`` against real registries: plans, dedup, incremental, dry run,
interruption, failures, and skopeo-compatible naming checked against skopeo itself."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml

import regcopy
from conftest import (  # type: ignore[import-not-found]
    blob_uploads,
    free_loopback_address,
    make_client,
    manifest_puts,
    settings_for,
)
from regcopy.progress import Event, ImageDone
from regcopy.sync import SyncOptions, SyncReport, parse_plan
from servers import skopeo
from servers.faulty_proxy import Fault, FaultyProxy
from servers.registry import RegistryServer

WRITES = ("PUT", "POST", "PATCH", "DELETE")


def writes(server: RegistryServer) -> list[str]:
    return [f"{e.method} {e.route}" for e in server.access_log() if e.method in WRITES]


def _fill(server: RegistryServer, seed: Any) -> RegistryServer:
    for sample, repo in [("shared-a", "apps/a"), ("shared-b", "apps/b"), ("multi", "apps/multi"),
                         ("oci", "tools/one"), ("docker", "tools/two")]:
        seed(server, sample, repo, "v1.0.0")
    seed(server, "shared-a", "apps/a", "v1.2.0")
    seed(server, "shared-b", "apps/a", "latest")
    return server


@pytest.fixture
def source(http_registry: RegistryServer, seed: Any) -> RegistryServer:
    """A source registry with two namespaces: apps/* sharing base layers, and tools/*."""
    return _fill(http_registry, seed)


@pytest.fixture
def portless_source(registry_factory: Any, seed: Any) -> RegistryServer:
    """The same content on a port-less name (127.x.y.z:80): skopeo's --scoped cannot name a
    destination after a source registry with a port (``host:port`` is no valid path component)."""
    return _fill(registry_factory("http", bind_host=free_loopback_address(), port=80), seed)


def plan_for(src: RegistryServer, dst: RegistryServer, **entry: Any) -> regcopy.sync.SyncPlan:
    base = {"source": f"{src.host}/apps", "target": f"{dst.host}/mirror", "type": "namespace"}
    return parse_plan({"version": 1, "sync": [{**base, **entry}]})


async def run(src: RegistryServer, dst: RegistryServer, plan: Any, **options: Any) -> SyncReport:
    async with make_client(src, dst) as client:
        return await client.sync(plan, options=SyncOptions(**options))


async def test_namespace_sync_copies_everything_and_uploads_each_blob_once(
    source: RegistryServer, registry_factory: Any
) -> None:
    dst = registry_factory("http")
    report = await run(source, dst, plan_for(source, dst))
    assert report.ok, report.to_json()
    assert sorted((r.target, r.status) for r in report.images) == sorted([
        (f"{dst.host}/mirror/a:latest", "copied"), (f"{dst.host}/mirror/a:v1.0.0", "copied"),
        (f"{dst.host}/mirror/a:v1.2.0", "copied"), (f"{dst.host}/mirror/b:v1.0.0", "copied"),
        (f"{dst.host}/mirror/multi:v1.0.0", "copied"),
    ])
    counts = Counter(blob_uploads(dst))
    assert counts and max(counts.values()) == 1, counts  # every blob crossed the wire once
    assert report.totals()["blobs_mounted"] > 0
    for r in report.images:
        repo_tag = r.target.split("/", 1)[1]
        skopeo.verify(dst, repo_tag, r.source_digest)
    # The source was read at most once per blob.
    gets = Counter(e.route for e in source.access_log() if e.method == "GET" and "/blobs/" in e.route)
    assert max(gets.values()) == 1


async def test_resync_writes_nothing_and_heads_only_shared_tags(
    source: RegistryServer, registry_factory: Any
) -> None:
    dst = registry_factory("http")
    plan = plan_for(source, dst)
    await run(source, dst, plan)
    before = len(dst.access_log())
    report = await run(source, dst, plan)
    assert report.ok and {r.status for r in report.images} == {"up-to-date"}
    new = dst.access_log()[before:]
    assert not [e for e in new if e.method in WRITES]
    assert {e.method for e in new} <= {"GET", "HEAD"}
    # Destination manifests are only HEADed (never GET: on Docker Hub a GET is a counted pull).
    assert not [e for e in new if e.method == "GET" and "/manifests/" in e.route]


async def test_dry_run_plans_exactly_what_the_run_then_moves(
    source: RegistryServer, registry_factory: Any, sample_layout: tuple[Path, dict[str, str]]
) -> None:
    from servers.images import layout_contents

    dst = registry_factory("http")
    plan = plan_for(source, dst)
    dry = await run(source, dst, plan, dry_run=True)
    assert writes(dst) == []
    assert {r.status for r in dry.images} == {"planned"} and len(dry.out_of_sync) == 5
    real = await run(source, dst, plan)
    for key in ("blobs_uploaded", "blobs_mounted", "bytes_uploaded"):
        assert dry.totals()[key] == real.totals()[key], key
    # ... and the registry's own log agrees on the bytes that crossed the wire.
    sizes: dict[str, int] = {}
    for tag in ("shared-a", "shared-b", "multi"):
        sizes.update(layout_contents(sample_layout[0], tag).all_digests)
    assert sum(sizes[d] for d in blob_uploads(dst)) == dry.totals()["bytes_uploaded"] > 0


async def test_tag_filters_in_a_plan(source: RegistryServer, registry_factory: Any) -> None:
    dst = registry_factory("http")
    report = await run(source, dst, plan_for(source, dst, source=f"{source.host}/apps/a", target=f"{dst.host}/m/a",
                                             type="repository", tags={"semver": ">=1.1", "deny": ["latest"]}))
    assert [r.target for r in report.images] == [f"{dst.host}/m/a:v1.2.0"]


async def test_whole_registry_with_catalog_pagination_and_repo_filters(
    registry_factory: Any, seed: Any
) -> None:
    src = registry_factory("http", extra_config={"catalog": {"maxentries": 2}})
    for i in range(5):
        seed(src, "oci", f"team{i}/svc", "v1")
    dst = registry_factory("http")
    plan = parse_plan({"sync": [{"source": src.host, "target": f"{dst.host}/all", "type": "registry",
                                 "repos": {"allow": ["team[0-3]/.*"], "deny": ["team2/.*"]}}]})
    settings = settings_for(src, dst)
    settings[src.host] = regcopy.RegistrySettings(scheme="http")
    async with make_client(src, dst, settings=settings) as client:
        t = client.transport(src.host)
        report = await client.sync(plan)
        assert t.stats["requests"] > 0
    assert sorted(r.target for r in report.images) == [f"{dst.host}/all/team{i}/svc:v1" for i in (0, 1, 3)]
    assert len([e for e in src.access_log() if e.route == "/v2/_catalog"]) >= 3


async def test_catalog_forbidden_is_reported(registry_factory: Any) -> None:
    acl = {"alice": {"password": "secret", "access": {"*": ["pull", "push"]}}}
    src = registry_factory("token", acl=acl)
    dst = registry_factory("http")
    report = await run(src, dst, parse_plan({"sync": [{"source": src.host, "target": dst.host, "type": "registry"}]}))
    assert not report.ok and report.errors and "catalog" in report.errors[0]


async def test_a_failing_image_does_not_stop_the_others_and_is_retried_once(
    source: RegistryServer, registry_factory: Any
) -> None:
    dst = registry_factory("http")
    with FaultyProxy(source.url) as proxy:
        fault = proxy.add(Fault(method="GET", path=r"/v2/apps/b/manifests/", status=404, times=-1,
                                body=b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"gone"}]}'))
        plan = parse_plan({"sync": [{"source": f"{proxy.host}/apps/b", "target": f"{dst.host}/m/b"},
                                    {"source": f"{proxy.host}/apps/a", "target": f"{dst.host}/m/a",
                                     "tags": {"exact": ["v1.0.0"]}}]})
        settings = regcopy.RegistrySettings(scheme="http", retries=0)
        async with regcopy.Client(settings={proxy.host: settings, dst.host: settings},
                                  credentials=regcopy.StaticCredentials({})) as client:
            report = await client.sync(plan)
    statuses = {r.target: r.status for r in report.images}
    assert statuses == {f"{dst.host}/m/a:v1.0.0": "copied", f"{dst.host}/m/b:v1.0.0": "failed"}
    failed = report.failed[0]
    assert "gone" in (failed.error or "") and fault.hits >= 1
    assert not any("/m/b/" in p for p in manifest_puts(dst))


async def test_interrupted_sync_leaves_no_partial_tag_and_resumes(
    source: RegistryServer, registry_factory: Any
) -> None:
    dst = registry_factory("http")
    plan = plan_for(source, dst)
    done = anyio.Event()
    report = SyncReport()

    def reporter(event: Event) -> None:
        if isinstance(event, ImageDone) and event.error is None:
            done.set()

    async with make_client(source, dst) as client, anyio.create_task_group() as tg:
        tg.start_soon(lambda: client.sync(plan, options=SyncOptions(images=1), reporter=reporter, report=report))
        await done.wait()
        tg.cancel_scope.cancel()
    assert report.interrupted
    # Every tag that exists points at a complete image.
    for repo in ("mirror/a", "mirror/b", "mirror/multi"):
        for tag in skopeo.list_tags(dst, repo) if _exists(dst, repo) else []:
            skopeo.verify(dst, f"{repo}:{tag}")
    resumed = await run(source, dst, plan)
    assert resumed.ok and len(resumed.images) == 5
    assert {r.status for r in resumed.images} <= {"copied", "up-to-date"}


def _exists(server: RegistryServer, repo: str) -> bool:
    try:
        skopeo.list_tags(server, repo)
    except AssertionError:
        return False
    return True


# ------------------------------------------------------------------------------------------- CLI


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "regcopy", "sync", *args], capture_output=True, text=True,
                          timeout=300, check=False)


def test_cli_plan_dry_run_report_and_exit_codes(
    source: RegistryServer, registry_factory: Any, tmp_path: Path, empty_authfile: Path
) -> None:
    dst = registry_factory("http")
    plan = tmp_path / "plan.yaml"
    registries = {dst.host: {"tls": "http"}, source.host: {"tls": "http"}}
    plan.write_text(yaml.safe_dump({"version": 1, "registries": registries,
                                    "sync": [{"source": f"{source.host}/tools", "target": f"{dst.host}/t",
                                              "type": "namespace"}]}))
    check = cli(str(plan), "--dry-run", "--authfile", str(empty_authfile))
    assert check.returncode == 1, check.stderr
    assert "PLAN" in check.stdout and "to copy" in check.stdout
    report = tmp_path / "report.json"
    out = cli(str(plan), "--report", str(report), "--progress", "plain", "--authfile", str(empty_authfile))
    assert out.returncode == 0, out.stderr
    data = json.loads(report.read_text())
    assert data["totals"]["copied"] == 2 and not data["errors"]
    first = data["images"][0]
    for key in ("source", "target", "source_digest", "target_digest", "blobs_uploaded", "blobs_mounted",
                "blobs_skipped", "bytes_uploaded", "retries", "seconds", "error"):
        assert key in first
    again = cli(str(plan), "--check", "--authfile", str(empty_authfile))
    assert again.returncode == 0, again.stdout + again.stderr


def test_cli_invalid_plan_names_file_entry_and_key(tmp_path: Path) -> None:
    plan = tmp_path / "bad.yaml"
    plan.write_text(yaml.safe_dump({"sync": [{"source": "a.example/x", "target": "b.example/y",
                                              "tags": {"allow": ["("]}}]}))
    out = cli(str(plan))
    assert out.returncode == 2
    assert str(plan) in out.stderr and "sync[0]" in out.stderr and "tags.allow[0]" in out.stderr


# ----------------------------------------------------------------------------- skopeo drop-in naming


def test_command_line_flags_win_over_a_plans_registries(
    source: RegistryServer, registry_factory: Any, tmp_path: Path, empty_authfile: Path
) -> None:
    """One precedence rule (docs/architecture.md, "Settings resolution"): defaults, then the plan's
    ``registries:``, then the flags. The plan says https for a plain-http source; ``--src-tls-verify=false``
    says otherwise, and wins."""
    dst = registry_factory("http")
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump({
        "registries": {source.host: {"tls": "https", "max_concurrency": 2}, dst.host: {"tls": "http"}},
        "sync": [{"source": f"{source.host}/apps/a", "target": f"{dst.host}/m/a", "tags": {"exact": ["v1.0.0"]}}],
    }))
    common = (str(plan), "--authfile", str(empty_authfile), "--progress", "none", "-o", "json")
    refused = cli(*common)
    assert refused.returncode == 1, refused.stderr
    totals = json.loads(refused.stdout)["totals"]
    assert totals["failed"] == 1 and "copied" not in totals  # https to a plain-http registry
    assert not _exists(dst, "m/a")
    won = cli(*common, "--src-tls-verify=false")
    assert won.returncode == 0, won.stderr
    assert json.loads(won.stdout)["totals"]["copied"] == 1
    skopeo.verify(dst, "m/a:v1.0.0")


def _catalog(server: RegistryServer) -> dict[str, list[str]]:
    import urllib.request

    with urllib.request.urlopen(f"{server.url}/v2/_catalog", context=server.ssl_context()) as resp:
        repos = json.loads(resp.read())["repositories"]
    return {repo: skopeo.list_tags(server, repo) for repo in repos}


@pytest.mark.parametrize("scoped", [False, True])
def test_skopeo_docker_mode_names_like_skopeo(
    scoped: bool, portless_source: RegistryServer, registry_factory: Any, tmp_path: Path, empty_authfile: Path
) -> None:
    source = portless_source
    by_skopeo, by_regcopy = registry_factory("http"), registry_factory("http")
    extra = ["--scoped"] if scoped else []
    common = ["--src", "docker", "--dest", "docker", "--all", "--src-tls-verify=false", "--dest-tls-verify=false",
              *extra]
    src = f"{source.ref_host}/apps/a"
    skopeo.run_skopeo("sync", *common, src, f"{by_skopeo.host}/mirror", authfile=empty_authfile)
    out = cli(*common, "--authfile", str(empty_authfile), src, f"{by_regcopy.host}/mirror")
    assert out.returncode == 0, out.stderr
    assert _catalog(by_regcopy) == _catalog(by_skopeo)
    assert _catalog(by_regcopy)  # and it is not empty


@pytest.mark.parametrize("scoped", [False, True])
def test_skopeo_yaml_mode_names_like_skopeo(
    scoped: bool, portless_source: RegistryServer, registry_factory: Any, tmp_path: Path, empty_authfile: Path
) -> None:
    source = portless_source
    by_skopeo, by_regcopy = registry_factory("http"), registry_factory("http")
    spec = tmp_path / "sync.yaml"
    # (skopeo 1.9.3 predates images-by-semver, so the comparison leaves it out; regcopy supports it.)
    spec.write_text(yaml.safe_dump({source.ref_host: {
        "tls-verify": False,
        "images": {"apps/a": ["v1.0.0", "latest"], "tools/one": []},
        "images-by-tag-regex": {"apps/a": r"^v1\.2"},
    }}))
    extra = ["--scoped"] if scoped else []
    common = ["--src", "yaml", "--dest", "docker", "--all", "--dest-tls-verify=false", *extra]
    skopeo.run_skopeo("sync", *common, str(spec), f"{by_skopeo.host}/m", authfile=empty_authfile)
    out = cli(*common, "--authfile", str(empty_authfile), str(spec), f"{by_regcopy.host}/m")
    assert out.returncode == 0, out.stderr
    assert _catalog(by_regcopy) == _catalog(by_skopeo)


def test_cli_ctrl_c_stops_cleanly_writes_the_report_and_a_rerun_resumes(
    source: RegistryServer, registry_factory: Any, tmp_path: Path, empty_authfile: Path
) -> None:
    import signal
    import time

    dst = registry_factory("http")
    with FaultyProxy(source.url) as proxy:
        # One image's blobs stall: the run is still busy with it when Ctrl-C comes.
        proxy.add(Fault(method="GET", path=r"/v2/apps/multi/blobs/", stall=60, times=-1))
        plan = tmp_path / "plan.yaml"
        registries = {dst.host: {"tls": "http"}, proxy.host: {"tls": "http"}}
        plan.write_text(yaml.safe_dump({"registries": registries, "sync": [
            {"source": f"{proxy.host}/apps", "target": f"{dst.host}/m", "type": "namespace"}]}))
        report = tmp_path / "report.json"
        proc = subprocess.Popen([sys.executable, "-m", "regcopy", "sync", str(plan), "--report", str(report),
                                 "--progress", "none", "--authfile", str(empty_authfile)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(
                e.method == "PUT" and "/manifests/" in e.path for e in dst.access_log()):
            time.sleep(0.1)  # wait until at least one image is complete
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    data = json.loads(report.read_text())
    assert data["interrupted"] is True
    assert not any("/m/multi/manifests/" in p for p in manifest_puts(dst))  # no partial image tagged
    for repo in ("m/a", "m/b"):
        if _exists(dst, repo):
            for tag in skopeo.list_tags(dst, repo):
                skopeo.verify(dst, f"{repo}:{tag}")
    # The proxy is gone; the same mirror straight from the source resumes and finishes.
    resumed = cli(str(_direct_plan(tmp_path, source, dst)), "--authfile", str(empty_authfile), "--progress", "none")
    assert resumed.returncode == 0, resumed.stderr
    skopeo.verify(dst, "m/multi:v1.0.0")


def _direct_plan(tmp_path: Path, source: RegistryServer, dst: RegistryServer) -> Path:
    plan = tmp_path / "direct.yaml"
    registries = {dst.host: {"tls": "http"}, source.host: {"tls": "http"}}
    plan.write_text(yaml.safe_dump({"registries": registries, "sync": [
        {"source": f"{source.host}/apps", "target": f"{dst.host}/m", "type": "namespace"}]}))
    return plan
