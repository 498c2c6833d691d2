"""Docker Hub's pull limits, emulated by a proxy in front of a real 2.8.2 (``servers.quota_proxy.HubProxy``):
``ratelimit-remaining`` read and kept above the reserve, 429 TOOMANYREQUESTS, pulls counted per host,
HEADs before GETs so that what is up to date costs no pull, and a stopped run resumed from its journal.

Manifest GETs are counted by the proxies (at the source: the pulls Hub would count; at the destination
too, for the no-op re-sync), never inferred from regcopy's own report.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

import regcopy
from conftest import make_client  # type: ignore[import-not-found]
from regcopy.progress import Event, ImageDeferred, PullReserveReached
from regcopy.sync import SyncOptions, parse_plan
from servers import skopeo
from servers.faulty_proxy import FaultyProxy
from servers.quota_proxy import HubProxy
from servers.registry import RegistryServer

REPOS = ("a", "b", "c", "d", "e", "f")


def _http(*hosts: str, **fields: Any) -> dict[str, regcopy.RegistrySettings]:
    return {h: regcopy.RegistrySettings(scheme="http", retries=2, backoff=0.05, **fields) for h in hosts}


def _manifest_gets(proxy: FaultyProxy) -> list[str]:
    return [r.path for r in proxy.requests if r.method == "GET" and "/manifests/" in r.path]


@pytest.fixture
def hub(http_registry: RegistryServer, seed: Any) -> tuple[RegistryServer, dict[str, str]]:
    """Six one-manifest images (``hub/<x>:v1``) and the multi-platform index ``hub/multi:v1``."""
    digests = {f"hub/{r}": seed(http_registry, "oci" if i % 2 else "docker", f"hub/{r}", "v1")
               for i, r in enumerate(REPOS)}
    digests["hub/multi"] = seed(http_registry, "multi", "hub/multi", "v1")
    return http_registry, digests


async def test_copy_of_an_up_to_date_image_costs_no_pull(
    hub: tuple[RegistryServer, dict[str, str]], registry_factory: Any,
) -> None:
    """``copy`` HEADs the source tag and the destination tag before any GET: the second copy of the
    same image GETs no manifest at the source, and says how many pulls each copy cost. The image in
    place is planned from the destination (preflight.py): one GET there, by the digest it holds, to
    find the referrers of what it holds."""
    src, digests = hub
    dst = registry_factory("http")
    with HubProxy(src.url) as proxy, FaultyProxy(dst.url) as dst_proxy:
        async with make_client(settings=_http(proxy.host, dst_proxy.host)) as client:
            first = await client.copy(f"{proxy.host}/hub/a:v1", f"{dst_proxy.host}/copied/a:v1")
            pulls_first = proxy.pulls
            proxy.clear(faults=False)
            dst_proxy.clear(faults=False)
            second = await client.copy(f"{proxy.host}/hub/a:v1", f"{dst_proxy.host}/copied/a:v1")
        print(f"\npulls: first copy {pulls_first}, second copy {proxy.pulls - pulls_first}")
        assert not first.up_to_date and second.up_to_date
        assert pulls_first == 1 and first.hosts[proxy.host]["pulls"] == 1
        assert proxy.pulls == pulls_first, "the up-to-date copy pulled"
        assert _manifest_gets(proxy) == []
        assert _manifest_gets(dst_proxy) == [f"/v2/copied/a/manifests/{digests['hub/a']}"]
        assert second.hosts[proxy.host]["pulls"] == 0
        heads = [r.path for r in proxy.requests + dst_proxy.requests if r.method == "HEAD"]
        assert sorted(heads) == ["/v2/copied/a/manifests/v1", "/v2/hub/a/manifests/v1"]
        quota = first.hosts[proxy.host]["pull_quota"]
        assert quota == {"limit": 100, "remaining": 99, "window": 21600.0, "reserve": 0, "stopped": False}
    skopeo.verify(dst, "copied/a:v1", digests["hub/a"])


def _plan_file(tmp_path: Path, src: str, dst: str, **registries: Any) -> Path:
    plan = {"version": 1, "registries": {src: {"tls": "http", **registries}, dst: {"tls": "http"}},
            "sync": [{"source": f"{src}/hub/{r}", "target": f"{dst}/mirror/{r}", "tags": {"exact": ["v1"]}}
                     for r in REPOS]}
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan))
    return path


def _regcopy(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "regcopy", *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd)


def test_pull_reserve_stops_new_pulls_and_a_rerun_finishes_from_the_journal(
    hub: tuple[RegistryServer, dict[str, str]], registry_factory: Any, tmp_path: Path,
) -> None:
    """Five pulls left, a reserve of two: three images are pulled and copied, the other three are left
    (listed, exit 1) without a single GET; after the window, the same command copies only those three."""
    src, digests = hub
    dst = registry_factory("http")
    with HubProxy(src.url, remaining=5) as proxy:
        plan = _plan_file(tmp_path, proxy.host, dst.host, pull_reserve=2)
        report_path = tmp_path / "report.json"
        out = _regcopy("sync", str(plan), "--report", str(report_path), "--progress", "none", cwd=tmp_path)
        assert out.returncode == 1, out.stderr
        assert "pull reserve" in out.stderr and "no new pulls" in out.stderr
        report = json.loads(report_path.read_text())
        states = {i["target"]: i["status"] for i in report["images"]}
        assert sorted(states.values()) == ["copied"] * 3 + ["deferred"] * 3, states
        assert out.stdout.count("LEFT    ") == 3 and "3 images left for a later run" in out.stdout
        assert proxy.pulls == 3 and proxy.refused == 0 and proxy.remaining == 2  # the reserve kept
        host = report["hosts"][proxy.host]
        assert host["pulls"] == 3 and host["pull_quota"]["stopped"] is True
        assert host["pull_quota"]["remaining"] == 2
        copied = {t for t, s in states.items() if s == "copied"}

        proxy.reset()  # a new window
        proxy.clear(faults=False)
        again = _regcopy("sync", str(plan), "--report", str(report_path), "--progress", "none", cwd=tmp_path)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "resuming" in again.stderr
        rerun = json.loads(report_path.read_text())
        assert sorted(i["status"] for i in rerun["images"]) == ["copied"] * 3 + ["up-to-date"] * 3
        done_before = [i for i in rerun["images"] if i["target"] in copied]
        assert all("journal" in (i["note"] or "") for i in done_before)
        assert proxy.pulls == 3  # only the three left
        touched = {r.path.split("/")[3] for r in proxy.requests if "/manifests/" in r.path}
        assert touched == {t.rsplit("/", 1)[1].split(":")[0] for t in states if t not in copied}
    for r in REPOS:
        skopeo.verify(dst, f"mirror/{r}:v1", digests[f"hub/{r}"])


async def test_toomanyrequests_stops_pulls_without_retrying_them(
    hub: tuple[RegistryServer, dict[str, str]], registry_factory: Any,
) -> None:
    """The headers say 50 are left but the account has 2 (a quota shared with another client): the
    third GET meets Hub's 429 TOOMANYREQUESTS with ``ratelimit-remaining: 0``. That pull is not retried
    (the window is hours), no other pull starts, and the images are deferred, not failed."""
    src, _ = hub
    dst = registry_factory("http")
    events: list[Event] = []
    with HubProxy(src.url, remaining=2, lie=48) as proxy:
        plan = parse_plan({"version": 1, "sync": [
            {"source": f"{proxy.host}/hub/{r}", "target": f"{dst.host}/mirror/{r}", "tags": {"exact": ["v1"]}}
            for r in REPOS]})
        async with make_client(settings=_http(proxy.host, dst.host)) as client:
            report = await client.sync(plan, options=SyncOptions(probes=1), reporter=events.append)
        gets = _manifest_gets(proxy)
    assert proxy.pulls == 2 and proxy.refused == 1 and len(gets) == 3, gets
    states = sorted(i.status for i in report.images)
    assert states == ["copied"] * 2 + ["deferred"] * 4, report.to_json()
    assert not report.ok and not report.failed
    reached = [e for e in events if isinstance(e, PullReserveReached)]
    assert len(reached) == 1 and reached[0].remaining == 0 and reached[0].registry == proxy.host
    assert len([e for e in events if isinstance(e, ImageDeferred)]) == 4
    assert all("TOOMANYREQUESTS" not in (i.error or "") for i in report.images)
    # A spent quota is no overload: no pause of the host, no cut of its concurrency (blob GETs go on).
    host = report.hosts[proxy.host]
    assert host["paused_seconds"] == 0 and host["throttled"] == 1
    assert host["concurrency"]["changes"] == 0  # type: ignore[index]


def _platform_plan(tmp_path: Path, src: str, dst: str, repo: str) -> Path:
    plan = {"version": 1, "registries": {src: {"tls": "http"}, dst: {"tls": "http"}},
            "sync": [{"source": f"{src}/hub/{repo}", "target": f"{dst}/plat/{repo}", "tags": {"exact": ["v1"]},
                      "platforms": ["linux/amd64", "linux/arm64"]}]}
    path = tmp_path / f"{repo}.yaml"
    path.write_text(yaml.safe_dump(plan))
    return path


@pytest.mark.parametrize("repo", ["multi", "a"], ids=["index-source", "image-source"])
def test_noop_resync_with_platforms_costs_no_manifest_get(
    hub: tuple[RegistryServer, dict[str, str]], registry_factory: Any, tmp_path: Path, repo: str,
) -> None:
    """A re-sync of a plan with ``platforms`` GETs no manifest anywhere: the index source's subset digest
    is the one the journal recorded (the target's HEAD agrees); an image source's is its own."""
    src, _ = hub
    dst = registry_factory("http")
    with HubProxy(src.url) as proxy, FaultyProxy(dst.url) as dst_proxy:
        plan = _platform_plan(tmp_path, proxy.host, dst_proxy.host, repo)
        state = tmp_path / "run.state"
        first = _regcopy("sync", str(plan), "--state", str(state), "-o", "json", "--progress", "none", cwd=tmp_path)
        assert first.returncode == 0, first.stderr
        assert [i["status"] for i in json.loads(first.stdout)["images"]] == ["copied"]
        first_pulls = proxy.pulls
        proxy.clear(faults=False)
        dst_proxy.clear(faults=False)
        again = _regcopy("sync", str(plan), "--state", str(state), "-o", "json", "--progress", "none", cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        report = json.loads(again.stdout)
        print(f"\n{repo}: pulls on the first sync {first_pulls}, on the no-op re-sync {proxy.pulls - first_pulls}")
        assert [i["status"] for i in report["images"]] == ["up-to-date"]
        assert _manifest_gets(proxy) == [] and _manifest_gets(dst_proxy) == []
        assert proxy.pulls == first_pulls and report["hosts"][proxy.host]["pulls"] == 0
        assert [r.method for r in proxy.requests if "/manifests/" in r.path] == ["HEAD"]
