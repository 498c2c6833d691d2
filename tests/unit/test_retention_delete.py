"""Tests for :mod:`regcopy.retention.delete` and :mod:`regcopy.retention.run` over an in-memory repository.

The fake has distribution's delete semantics (a manifest DELETE drops every tag on it): dry runs
change nothing, deletions go by digest and parents first, failures are reported, never raised, and
image configs are read only when a rule needs creation times.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from retention_cases import NOW, rule

from regcopy.digest import Digest
from regcopy.errors import ManifestNotFound, RegistryError, Unsupported
from regcopy.manifest import OCI_CONFIG, OCI_INDEX, OCI_MANIFEST, Descriptor, Manifest, ManifestInfo
from regcopy.retention import (
    DeletionBudget,
    PrunePlan,
    delete_tags,
    run_prune,
)
from regcopy.retention import delete as retention_delete

# ============================================================================================ executor


def _manifest(obj: dict[str, Any]) -> Manifest:
    return Manifest.parse(json.dumps(obj).encode())


@dataclass
class FakeRepo:
    """An in-memory repository with distribution's delete semantics (a manifest DELETE drops its tags)."""

    name: str = "fake.example/repo"
    tags: dict[str, str] = field(default_factory=dict)
    manifests: dict[str, Manifest] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    fail: dict[str, Exception] = field(default_factory=dict)

    def image(self, tag: str | None, created: str | None, seed: str) -> str:
        config = json.dumps({"created": created, "architecture": "amd64", "os": "linux", "seed": seed}).encode()
        cd = Digest.of(config)
        self.blobs[str(cd)] = config
        m = _manifest({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                       "config": {"mediaType": OCI_CONFIG, "digest": str(cd), "size": len(config)}, "layers": []})
        self.manifests[str(m.digest)] = m
        if tag:
            self.tags[tag] = str(m.digest)
        return str(m.digest)

    def index(self, tag: str | None, children: list[str], annotations: dict[str, str] | None = None) -> str:
        entries = [{"mediaType": self.manifests[c].media_type, "digest": c, "size": len(self.manifests[c].data),
                    "platform": {"os": "linux", "architecture": f"a{i}"}} for i, c in enumerate(children)]
        obj: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
        if annotations:
            obj["annotations"] = annotations
        m = _manifest(obj)
        self.manifests[str(m.digest)] = m
        if tag:
            self.tags[tag] = str(m.digest)
        return str(m.digest)

    async def list_tags(self) -> list[str]:
        self.calls.append("list")
        return sorted(self.tags)

    async def head_manifest(self, ref: str) -> ManifestInfo | None:
        self.calls.append(f"HEAD {ref}")
        digest = self.tags.get(ref, ref if ref in self.manifests else None)
        if digest is None:
            return None
        m = self.manifests[digest]
        return ManifestInfo(m.digest, m.media_type, len(m.data))

    async def get_manifest(self, digest: Digest) -> Manifest:
        self.calls.append(f"GET {digest}")
        return self.manifests[str(digest)]

    async def open_blob(self, desc: Descriptor) -> AsyncIterator[bytes]:
        self.calls.append(f"BLOB {desc.digest}")
        yield self.blobs[str(desc.digest)]

    async def delete_manifest(self, digest: Digest) -> None:
        self.calls.append(f"DELETE {digest}")
        if str(digest) in self.fail:
            raise self.fail[str(digest)]
        if str(digest) not in self.manifests:
            raise ManifestNotFound("gone")
        del self.manifests[str(digest)]
        self.tags = {t: d for t, d in self.tags.items() if d != str(digest)}


@pytest.fixture
def fake() -> FakeRepo:
    repo = FakeRepo()
    a = repo.image("old", "2020-01-01T00:00:00Z", "a")
    repo.tags["old-alias"] = a
    b = repo.image("shared-old", "2020-01-01T00:00:00Z", "b")
    repo.tags["keep-me"] = b
    c1 = repo.image("child", "2020-01-01T00:00:00Z", "c1")
    c2 = repo.image(None, "2020-01-01T00:00:00Z", "c2")
    repo.index("multi-old", [c1, c2])
    repo.image("fresh", "2024-05-30T00:00:00Z", "f")
    return repo


async def test_delete_tags_dry_run_changes_nothing(fake: FakeRepo) -> None:
    before = dict(fake.tags)
    report = await delete_tags(fake, ["old", "old-alias", "shared-old", "child", "multi-old"], reason="extra")
    assert fake.tags == before and not [c for c in fake.calls if c.startswith("DELETE")]
    out = report.repositories[0]
    assert report.dry_run and report.ok
    assert sorted(d.tag for d in out.would_delete) == ["child", "multi-old", "old", "old-alias"]
    assert {d.tag: d.reason for d in out.kept}["shared-old"] == "extra; kept: shares digest with keep-me"
    json.dumps(report.to_json())


async def test_delete_tags_deletes_by_digest_parents_first(fake: FakeRepo) -> None:
    index = fake.tags["multi-old"]
    report = await delete_tags(fake, ["old", "old-alias", "child", "multi-old"], dry_run=False)
    assert sorted(fake.tags) == ["fresh", "keep-me", "shared-old"]
    deletes = [c.split()[1] for c in fake.calls if c.startswith("DELETE")]
    assert len(deletes) == 3
    child = next(d.digest for d in report.repositories[0].deleted if d.tag == "child")
    assert deletes.index(index) < deletes.index(child)
    assert sorted(report.repositories[0].manifests_deleted) == sorted(deletes)
    assert report.totals()["deleted"] == 4 and report.ok


async def test_a_failed_index_delete_spares_its_children(fake: FakeRepo) -> None:
    fake.fail[fake.tags["multi-old"]] = RegistryError("boom", registry="fake", status=500)
    report = await delete_tags(fake, ["child", "multi-old", "old", "old-alias"], dry_run=False)
    out = report.repositories[0]
    assert "child" in fake.tags and "multi-old" in fake.tags and "old" not in fake.tags
    skipped = {d.tag: d.reason for d in out.skipped}
    assert "delete failed" in skipped["multi-old"] and "its index" in skipped["child"]
    assert not report.ok and len(out.errors) == 1


async def test_unsupported_deletes_stop_the_repository(fake: FakeRepo) -> None:
    for digest in fake.manifests:
        fake.fail[digest] = Unsupported("deletes are disabled", registry="fake", status=405)
    report = await delete_tags(fake, ["old", "old-alias", "fresh", "child", "multi-old"], dry_run=False)
    out = report.repositories[0]
    assert not out.deleted and len(out.skipped) == 5 and out.errors and not report.ok
    assert "deletes are not supported here" in {d.tag: d.reason for d in out.skipped}["child"]


async def test_a_budget_is_shared_across_calls(fake: FakeRepo) -> None:
    budget = DeletionBudget(1)
    report = await delete_tags(fake, ["old", "old-alias", "fresh"], cap=budget, dry_run=False)
    await delete_tags(fake, ["fresh"], cap=budget, dry_run=False, report=report)
    assert report.totals()["manifests_deleted"] == 1 and budget.left == 0
    assert "old" not in fake.tags and "fresh" in fake.tags
    first, second = report.repositories
    assert [d.tag for d in first.skipped] == [d.tag for d in second.skipped] == ["fresh"]


async def test_listing_errors_are_reported_not_raised(fake: FakeRepo) -> None:
    async def broken() -> list[str]:
        raise RegistryError("down", registry="fake", status=503)

    fake.list_tags = broken  # type: ignore[method-assign]
    report = await delete_tags(fake, ["old"], dry_run=False)
    assert not report.ok and report.repositories[0].errors and "old" in fake.tags


async def test_configs_are_read_only_when_a_rule_needs_them(fake: FakeRepo) -> None:
    class Backend:  # a PruneBackend: catalogs and stores, no client
        def registry_store(self, repo: Any, **_: Any) -> FakeRepo:
            fake.name = repo.name
            return fake

        async def catalog(self, registry: str) -> list[str]:
            return ["team/app"]

    semver_only = PrunePlan((rule(scope="reg.example:5000/team/app", keep_latest=1),))
    await run_prune(Backend(), semver_only, now=NOW)  # type: ignore[arg-type]
    assert not [c for c in fake.calls if c.startswith("BLOB")]
    fake.calls.clear()
    by_age = PrunePlan((rule(name="ns", scope="reg.example:5000", kind="namespace", older_than=timedelta(days=30),
                             protect=["keep-me", "shared-old"]),))
    report = await run_prune(Backend(), by_age, now=NOW, dry_run=True)  # type: ignore[arg-type]
    blobs = [c for c in fake.calls if c.startswith("BLOB")]
    assert len(set(blobs)) == 3 and len(blobs) <= 4  # old, child (also the index's time), fresh: never keep-me
    out = report.repositories[0]
    assert out.rule == "ns"
    assert sorted(d.tag for d in out.would_delete) == ["child", "multi-old", "old", "old-alias"]
    assert {d.tag for d in out.kept} == {"fresh", "keep-me", "shared-old"}


async def test_an_index_created_annotation_wins() -> None:
    repo = FakeRepo()
    c = repo.image(None, "2020-01-01T00:00:00Z", "c")
    idx = repo.index("idx", [c], {"org.opencontainers.image.created": "2024-05-31T00:00:00Z"})
    inv = retention_delete.Inventory()
    assert await retention_delete._created(repo, inv, idx) == datetime(2024, 5, 31, tzinfo=UTC)
    assert not [x for x in repo.calls if x.startswith("BLOB")]

