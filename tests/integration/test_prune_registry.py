"""``regcopy prune`` and ``delete_tags`` against a real registry with deletes enabled.

A generated tag history (semver and other tags, distinct config ``created`` dates, protected tags, two
tags on one digest, indexes whose children are tagged too) is pushed with skopeo; what remains is read
back with ``client.tags`` and every kept tag (and every child of a kept index) must still resolve.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

import regcopy
from conftest import make_client  # type: ignore[import-not-found]
from regcopy.reference import Repository
from regcopy.retention import delete_tags, parse_prune, run_prune
from servers import skopeo
from servers.images import ImageSpec, IndexSpec, LayerSpec, Spec, write_layout
from servers.registry import RegistryServer

NOW = datetime(2024, 6, 1, tzinfo=UTC)
BASE = LayerSpec(4 * 1024, "prune-base")


def image(seed: str, created: str, arch: str = "amd64") -> ImageSpec:
    return ImageSpec(layers=[BASE, LayerSpec(1024, f"prune-{seed}")], arch=arch, created=created,
                     labels={"seed": seed})


CHILD_05 = image("05-amd64", "2020-01-01T00:00:00Z")
CHILD_20 = image("20-amd64", "2024-04-01T00:00:00Z")

# layout tag → spec; the pushed tags are in HISTORY.
SPECS: dict[str, Spec] = {
    "0.5.0": IndexSpec(children=[CHILD_05, image("05-arm64", "2020-01-01T00:00:00Z", "arm64")]),
    "amd64-0.5.0": CHILD_05,  # tagged child of an index that goes: both go, the index first
    "0.9.0": image("09", "2022-06-01T00:00:00Z"),
    "1.0.0": image("10", "2023-01-01T00:00:00Z"),
    "1.1.0": image("11", "2023-06-01T00:00:00Z"),
    "1.2.0": image("12", "2024-01-01T00:00:00Z"),
    "2.0.0": IndexSpec(children=[CHILD_20, image("20-arm64", "2024-04-01T00:00:00Z", "arm64")]),
    "amd64-2.0.0": CHILD_20,  # tagged child of a kept index: stays
    "release-1": image("rel", "2021-01-01T00:00:00Z"),
    "nightly-old": image("nightly-old", "2022-01-01T00:00:00Z"),
    "nightly": image("nightly", "2024-05-25T00:00:00Z"),
    "repro": image("repro", "1970-01-01T00:00:00Z"),  # a reproducible build's date: age unknown
}
# pushed tag → layout tag
HISTORY = {**{t: t for t in SPECS}, "stable": "1.0.0", "1.1": "1.1.0", "1.2": "1.2.0"}

RULE = {"keep_latest": 2, "older_than": "30d", "protect": ["stable", "release-.*"]}
GONE = ["0.5.0", "0.9.0", "1.1", "1.1.0", "amd64-0.5.0", "nightly-old"]
KEPT = ["1.0.0", "1.2", "1.2.0", "2.0.0", "amd64-2.0.0", "nightly", "release-1", "repro", "stable"]


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory, image_cache_dir: Path) -> tuple[Path, dict[str, str]]:
    """The layout and layout tag → digest."""
    layout = tmp_path_factory.mktemp("prune") / "layout"
    return layout, write_layout(layout, SPECS, cache_dir=image_cache_dir)


def push(server: RegistryServer, history: tuple[Path, dict[str, str]], repo: str,
         tags: dict[str, str] | None = None) -> dict[str, str]:
    """Push ``tags`` (pushed tag → layout tag; default HISTORY); returns pushed tag → digest."""
    layout, digests = history
    out = {}
    for tag, source in (tags or HISTORY).items():
        out[tag] = skopeo.seed(server, layout, source, repo, tag)
        assert out[tag] == digests[source]
    return out


async def assert_resolves(client: regcopy.Client, repo: str, expected: dict[str, str]) -> None:
    """Every tag resolves to its digest, and every child of an index still resolves by digest."""
    for tag, digest in expected.items():
        assert str(await client.digest(f"{repo}:{tag}")) == digest
        manifest = await client.manifest(f"{repo}@{digest}")
        for child in manifest.manifests:
            assert (await client.manifest(f"{repo}@{child.digest}")).digest == child.digest


async def test_prune_a_tag_history(delete_registry: RegistryServer, history: Any) -> None:
    repo = f"{delete_registry.host}/lib/app"
    digests = push(delete_registry, history, "lib/app")
    plan = parse_prune({"prune": [{"name": "app", "repository": repo, **RULE}]})
    async with make_client(delete_registry) as client:
        dry = await run_prune(client, plan, now=NOW)
        assert dry.dry_run and dry.ok
        assert await client.tags(repo) == sorted(HISTORY)  # a dry run deletes nothing
        out = dry.repositories[0]
        assert sorted(d.tag for d in out.would_delete) == GONE and not out.deleted
        why = {d.tag: d.reason for d in out.kept}
        assert why["1.0.0"].endswith("kept: shares digest with stable")
        assert why["amd64-2.0.0"].endswith("kept: child of kept index 2.0.0")
        assert why["stable"] == "protected: matches 'stable'"
        assert why["repro"] == "no creation time (older_than needs one)"
        assert why["nightly"] == "created 2024-05-25T00:00:00Z, not older than 30d"
        assert why["1.2"] == why["1.2.0"] == "latest 2 by semver (#2)"

        real = await run_prune(client, plan, now=NOW, dry_run=False)
        assert real.ok, real.to_json()
        out = real.repositories[0]
        assert sorted(d.tag for d in out.deleted) == GONE
        gone = {digests[t] for t in GONE}
        assert sorted(out.manifests_deleted) == sorted(gone)  # one DELETE per digest: 1.1 and 1.1.0 share one
        assert await client.tags(repo) == KEPT
        await assert_resolves(client, repo, {t: digests[t] for t in KEPT})
        for digest in gone:
            with pytest.raises(regcopy.ManifestNotFound):
                await client.manifest(f"{repo}@{digest}")
        again = await run_prune(client, plan, now=NOW, dry_run=False)
        assert again.ok and not again.repositories[0].deleted and await client.tags(repo) == KEPT
    deletes = [e for e in delete_registry.access_log() if e.method == "DELETE"]
    assert len(deletes) == len(gone) and all("/manifests/sha256:" in e.path for e in deletes)  # never by tag
    index = digests["0.5.0"]
    order = [e.path.rsplit("/", 1)[1] for e in deletes]
    assert order.index(index) < order.index(digests["amd64-0.5.0"])  # the index before its child


async def test_the_cap_takes_the_oldest_first(delete_registry: RegistryServer, history: Any) -> None:
    repo = f"{delete_registry.host}/lib/capped"
    digests = push(delete_registry, history, "lib/capped")
    plan = parse_prune({"prune": [{"repository": repo, **RULE, "cap": 3}]})
    async with make_client(delete_registry) as client:
        first = await run_prune(client, plan, now=NOW, dry_run=False)
        out = first.repositories[0]
        # By age: the 2020 index, then its child, then nightly-old (2022-01); 0.9.0 and 1.1.0 wait.
        assert sorted(out.manifests_deleted) == sorted({digests[t] for t in ("0.5.0", "amd64-0.5.0", "nightly-old")})
        assert sorted(d.tag for d in out.skipped) == ["0.9.0", "1.1", "1.1.0"]
        assert all(d.reason.endswith("the cap of 3 deletions was reached") for d in out.skipped)
        assert await client.tags(repo) == sorted([*KEPT, "0.9.0", "1.1", "1.1.0"])
        second = await run_prune(client, plan, now=NOW, dry_run=False, cap=1)  # the run's cap is lower
        assert [d.tag for d in second.repositories[0].deleted] == ["0.9.0"]
        assert await client.tags(repo) == sorted([*KEPT, "1.1", "1.1.0"])
        await assert_resolves(client, repo, {t: digests[t] for t in KEPT})


async def test_a_namespace_rule_through_the_catalog(delete_registry: RegistryServer, history: Any) -> None:
    host = delete_registry.host
    few = {"0.9.0": "0.9.0", "1.2.0": "1.2.0", "2.0.0": "2.0.0"}
    for repo in ("team/a", "team/b", "team/legacy", "other/c"):
        push(delete_registry, history, repo, few)
    plan = parse_prune({"prune": [
        {"name": "team", "namespace": f"{host}/team", "keep_latest": 1, "repos": {"deny": ["team/legacy"]}},
        {"name": "b", "repository": f"{host}/team/b", "keep_latest": 2},
    ]})
    async with make_client(delete_registry) as client:
        report = await run_prune(client, plan, dry_run=False)
        assert report.ok and [(r.repository, r.rule) for r in report.repositories] == [
            (f"{host}/team/a", "team"), (f"{host}/team/b", "b")]
        assert await client.tags(f"{host}/team/a") == ["2.0.0"]
        assert await client.tags(f"{host}/team/b") == ["1.2.0", "2.0.0"]
        assert await client.tags(f"{host}/team/legacy") == sorted(few)
        assert await client.tags(f"{host}/other/c") == sorted(few)


async def test_delete_tags_keeps_what_other_tags_still_need(delete_registry: RegistryServer, history: Any) -> None:
    repo = f"{delete_registry.host}/lib/extra"
    digests = push(delete_registry, history, "lib/extra")
    async with make_client(delete_registry) as client:
        store = client.registry_store(Repository.parse(repo), writable=True)
        extra = ["1.1.0", "1.2.0", "amd64-2.0.0", "0.5.0", "amd64-0.5.0", "release-1"]
        report = await delete_tags(store, extra, protect=["release-.*"], dry_run=False, reason="not in the source")
        out = report.repositories[0]
        assert report.ok and sorted(d.tag for d in out.deleted) == ["0.5.0", "amd64-0.5.0"]
        why = {d.tag: d.reason for d in out.kept}
        assert why["1.1.0"] == "not in the source; kept: shares digest with 1.1"
        assert why["amd64-2.0.0"] == "not in the source; kept: child of kept index 2.0.0"
        assert why["release-1"] == "protected: matches 'release-.*'"
        remaining = sorted(set(HISTORY) - {"0.5.0", "amd64-0.5.0"})
        assert await client.tags(repo) == remaining
        await assert_resolves(client, repo, {t: digests[t] for t in remaining})


async def test_deletes_disabled_is_an_error_in_the_report(http_registry: RegistryServer, history: Any) -> None:
    repo = f"{http_registry.host}/lib/app"
    push(http_registry, history, "lib/app", {"0.9.0": "0.9.0", "2.0.0": "2.0.0"})
    plan = parse_prune({"prune": [{"repository": repo, "keep_latest": 1}]})
    async with make_client(http_registry) as client:
        report = await run_prune(client, plan, dry_run=False)
        assert not report.ok and "deletes are disabled" in report.repositories[0].errors[0]
        assert [d.tag for d in report.repositories[0].skipped] == ["0.9.0"]
        assert await client.tags(repo) == ["0.9.0", "2.0.0"]


async def test_client_prune_adopts_the_plans_registries(registry_factory: Any, history: Any, tmp_path: Path) -> None:
    # A TLS registry with basic auth that the client knows nothing about: only the plan's registries:
    # section (CA and credentials) lets it in. run_prune uses its backend as it is, so it cannot.
    # The plan's settings hold for its run only: the client itself is left as it was.
    server = registry_factory("basic", delete=True)
    assert server.ca_pem_path is not None and server.username and server.password
    repo = f"{server.host}/lib/app"
    push(server, history, "lib/app", {"0.9.0": "0.9.0", "2.0.0": "2.0.0"})
    plan = tmp_path / "prune.yaml"
    plan.write_text(yaml.safe_dump({
        "registries": {server.host: {"tls": "https", "ca_file": str(server.ca_pem_path), "credentials": {
            "username": server.username, "password": server.password}}},
        "prune": [{"repository": repo, "keep_latest": 1}],
    }))
    async with regcopy.Client(credentials=regcopy.StaticCredentials({})) as client:
        unadopted = await run_prune(client, parse_prune(yaml.safe_load(plan.read_text())), dry_run=False)
        assert not unadopted.ok and not unadopted.repositories[0].deleted
        report = await client.prune(plan, dry_run=False, now=NOW)
        assert report.ok, report.to_json()
        assert [d.tag for d in report.repositories[0].deleted] == ["0.9.0"]
        assert client.settings_for(server.host) == regcopy.RegistrySettings()
        run = client.context(parse_prune(yaml.safe_load(plan.read_text())).registries)
        assert await regcopy.registry.manifests.tags_list(run.transport(server.host), "lib/app") == ["2.0.0"]
    assert skopeo.list_tags(server, "lib/app") == ["2.0.0"]


def cli(*args: str, authfile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "regcopy", *args, "--authfile", str(authfile)],
                          capture_output=True, text=True, timeout=120, check=False)


def test_cli(delete_registry: RegistryServer, history: Any, empty_authfile: Path, tmp_path: Path) -> None:
    host = delete_registry.host
    digests = push(delete_registry, history, "lib/cli", {t: HISTORY[t] for t in ("0.9.0", "1.0.0", "stable", "2.0.0")})
    plan = tmp_path / "prune.yaml"
    plan.write_text(yaml.safe_dump({
        "registries": {host: {"tls": "http"}},
        "prune": [{"repository": f"{host}/lib/cli", "keep_latest": 1, "protect": ["stable"]}],
    }))
    dry = cli("prune", str(plan), authfile=empty_authfile)
    assert dry.returncode == 0, dry.stderr
    assert "would delete" in dry.stdout and "0.9.0" in dry.stdout and "pass --yes" in dry.stdout
    assert skopeo.list_tags(delete_registry, "lib/cli") == ["0.9.0", "1.0.0", "2.0.0", "stable"]

    report = tmp_path / "report.json"
    real = cli("prune", str(plan), "--yes", "--report", str(report), "-o", "json", authfile=empty_authfile)
    assert real.returncode == 0, real.stderr
    data = json.loads(report.read_text())
    assert json.loads(real.stdout) == data and data["dry_run"] is False and data["ok"] is True
    (repo,) = data["repositories"]
    why = "not among the latest 1 by semver"
    assert repo["deleted"] == [{"tag": "0.9.0", "digest": digests["0.9.0"], "reason": why}]
    assert {k["tag"]: k["reason"] for k in repo["kept"]}["1.0.0"].endswith("shares digest with stable")
    assert data["totals"]["manifests_deleted"] == 1
    assert skopeo.list_tags(delete_registry, "lib/cli") == ["1.0.0", "2.0.0", "stable"]
    skopeo.verify(delete_registry, "lib/cli:stable", digests["stable"])

    both = cli("prune", str(plan), "--dry-run", "--yes", authfile=empty_authfile)
    assert both.returncode == 2 and "contradict" in both.stderr
    plan.write_text("prune: [{repository: nope}]\n")
    bad = cli("prune", str(plan), authfile=empty_authfile)
    assert bad.returncode == 2 and "prune[0]" in bad.stderr and "Traceback" not in bad.stderr


def test_cli_failures_exit_1(http_registry: RegistryServer, history: Any, empty_authfile: Path,
                             tmp_path: Path) -> None:
    host = http_registry.host
    push(http_registry, history, "lib/cli", {"0.9.0": "0.9.0", "2.0.0": "2.0.0"})
    plan = tmp_path / "prune.yaml"
    plan.write_text(yaml.safe_dump({"registries": {host: {"tls": "http"}},
                                    "prune": [{"repository": f"{host}/lib/cli", "keep_latest": 1}]}))
    out = cli("prune", str(plan), "--no-dry-run", authfile=empty_authfile)
    assert out.returncode == 1 and "deletes are disabled" in out.stdout and "Traceback" not in out.stderr
