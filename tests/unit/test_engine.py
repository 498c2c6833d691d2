"""The copy engine over small in-memory stores: plan order, push order, failures, up-to-date, mounts, platforms."""

from __future__ import annotations

import json
from dataclasses import dataclass

import anyio
import pytest
from memstores import (
    MemDestination,
    MemMountingDestination,
    MemSource,
    MemStorage,
    add_image,
    add_index,
    descriptor,
    linux,
)

from regcopy.digest import Digest
from regcopy.engine import copy_image, plan_image
from regcopy.errors import DigestMismatch, InvalidManifest, ManifestNotFound, SizeMismatch, StoreError
from regcopy.ledger import BlobLedger
from regcopy.manifest import OCI_INDEX, Manifest, Platform
from regcopy.progress import Event
from regcopy.stores.base import Destination, Mounter, Source


def test_doubles_satisfy_protocols() -> None:
    assert isinstance(MemSource(), Source)
    plain = MemDestination(MemStorage())
    mounting = MemMountingDestination(MemStorage())
    assert isinstance(plain, Destination) and not isinstance(plain, Mounter)
    assert isinstance(mounting, Destination) and isinstance(mounting, Mounter)


BASE = b"base layer bytes " * 20
APP = b"application layer " * 7
ARM = b"arm-only layer " * 11
TOOLS = b"tools layer " * 13


@dataclass
class MultiArch:
    src: MemSource
    amd64: Manifest
    arm64: Manifest
    s390x: Manifest
    inner: Manifest
    root: Manifest


def multi_arch() -> MultiArch:
    """root index → [inner index → [amd64, arm64/v8], s390x]; BASE is shared by all three images."""
    src = MemSource()
    amd64 = add_image(src, [BASE, APP])
    arm64 = add_image(src, [BASE, ARM], arch="arm64")
    s390x = add_image(src, [BASE, TOOLS], arch="s390x")
    inner = add_index(src, [(amd64, linux("amd64")), (arm64, linux("arm64", "v8"))])
    root = add_index(src, [(inner, None), (s390x, linux("s390x"))], tag="v1")
    return MultiArch(src, amd64, arm64, s390x, inner, root)


def flat_index(src: MemSource | None = None) -> tuple[MemSource, Manifest, dict[str, Manifest]]:
    src = src or MemSource()
    images = {
        "amd64": add_image(src, [BASE, APP]),
        "arm64": add_image(src, [BASE, ARM], arch="arm64"),
        "armv7": add_image(src, [TOOLS], arch="arm"),
    }
    root = add_index(src, [(images["amd64"], linux("amd64")), (images["arm64"], linux("arm64", "v8")),
                           (images["armv7"], linux("arm", "v7"))], tag="multi")
    return src, root, images


def writes(storage: MemStorage) -> list[tuple[str, ...]]:
    return [e for e in storage.log if e[0] in ("put_blob", "put_manifest", "mount_blob")]


# --- plan_image -------------------------------------------------------------------------------


async def test_plan_nested_index_leaves_first_and_dedups_blobs() -> None:
    g = multi_arch()
    plan = await plan_image(g.src, "v1")
    assert plan.root.digest == g.root.digest == plan.source_digest
    assert not plan.built_index
    assert [m.digest for m in plan.manifests] == [g.amd64.digest, g.arm64.digest, g.inner.digest, g.s390x.digest]
    # every manifest comes after all of its children
    position = {m.digest: i for i, m in enumerate([*plan.manifests, plan.root])}
    for m in [*plan.manifests, plan.root]:
        for child in m.children():
            assert position[child.digest] < position[m.digest]
    # blobs: 3 configs + BASE once + APP + ARM + TOOLS
    expected = {d.digest for img in (g.amd64, g.arm64, g.s390x) for d in img.blobs()}
    assert len(expected) == 7
    assert len(plan.blobs) == 7 and {b.digest for b in plan.blobs} == expected
    assert plan.total_bytes == sum(len(g.src.blobs[d]) for d in expected)


async def test_plan_single_image() -> None:
    src = MemSource()
    img = add_image(src, [BASE, APP, BASE], tag="latest")  # a layer repeated in one image counts once
    plan = await plan_image(src, "latest")
    assert plan.root.digest == img.digest and plan.manifests == []
    assert [b.digest for b in plan.blobs] == [d.digest for d in img.blobs()[:3]]


async def test_plan_by_digest_and_missing_child() -> None:
    src, root, images = flat_index()
    assert (await plan_image(src, str(root.digest))).root.digest == root.digest
    del src.manifests[images["arm64"].digest]
    with pytest.raises(ManifestNotFound):
        await plan_image(src, "multi")


async def test_plan_child_media_type_must_match_index_entry() -> None:
    src = MemSource()
    img = add_image(src, [BASE])
    entry = descriptor(img.data, OCI_INDEX, platform=linux("amd64"))  # the index lies about the child's type
    src.add_manifest(json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry]}).encode(), "x")
    with pytest.raises(InvalidManifest):
        await plan_image(src, "x")


# --- copy_image order ---------------------------------------------------------------------------


async def test_copy_pushes_blobs_then_children_then_root_with_tag() -> None:
    g = multi_arch()
    storage = MemStorage()
    dst = MemDestination(storage)
    events: list[Event] = []
    result = await copy_image(g.src, dst, "v1", target_tag="copied", reporter=events.append, blob_jobs=3)
    log = writes(storage)
    kinds = [e[0] for e in log]
    assert kinds == ["put_blob"] * 7 + ["put_manifest"] * 5
    assert [e[2] for e in log[7:]] == [str(m.digest) for m in (g.amd64, g.arm64, g.inner, g.s390x, g.root)]
    assert [e[3] for e in log[7:]] == ["", "", "", "", "copied"]  # only the root, last, carries the tag
    # bytes exact, digest unchanged
    assert storage.manifests["dst/repo"][g.root.digest] == g.root.data
    assert storage.tags["dst/repo"] == {"copied": g.root.digest}
    for digest, data in storage.blobs["dst/repo"].items():
        assert g.src.blobs[digest] == data
    assert result.digest == result.source_digest == str(g.root.digest)
    assert (result.blobs_uploaded, result.blobs_mounted, result.blobs_skipped) == (7, 0, 0)
    assert result.manifests_pushed == 5 and not result.new_digest and not result.up_to_date
    assert result.bytes_uploaded == sum(len(d) for d in storage.blobs["dst/repo"].values())
    assert type(events[0]).__name__ == "ImageStarted" and type(events[-1]).__name__ == "ImageDone"


async def test_copy_without_tag_pushes_by_digest_only() -> None:
    src = MemSource()
    img = add_image(src, [APP], tag="t")
    storage = MemStorage()
    result = await copy_image(src, MemDestination(storage), "t", target_tag=None)
    assert storage.tags["dst/repo"] == {}
    assert storage.manifests["dst/repo"] == {img.digest: img.data}
    assert result.tag is None and result.destination == "mem/dst/repo"


async def test_copy_skips_blobs_already_present() -> None:
    src = MemSource()
    add_image(src, [BASE, APP], tag="t")
    storage = MemStorage()
    dst = MemDestination(storage)
    dst.repo_blobs[Digest.of(BASE)] = BASE
    result = await copy_image(src, dst, "t", target_tag="t")
    assert (result.blobs_uploaded, result.blobs_skipped) == (2, 1)
    assert Digest.of(BASE) not in src.opened
    assert str(Digest.of(BASE)) not in [e[2] for e in writes(storage) if e[0] == "put_blob"]


async def test_result_source_of_tag_starting_with_sha() -> None:
    # Regression: any ref starting with "sha" was rendered as a digest (src/repo@sha-1a2b3c).
    src = MemSource()
    add_image(src, [APP], tag="sha-1a2b3c")
    result = await copy_image(src, MemDestination(MemStorage()), "sha-1a2b3c", target_tag="x")
    assert result.source == "src/repo:sha-1a2b3c"


async def test_result_source_names() -> None:
    src = MemSource()
    img = add_image(src, [APP], tag="v2")
    r1 = await copy_image(src, MemDestination(MemStorage()), "v2", target_tag="x")
    r2 = await copy_image(src, MemDestination(MemStorage()), str(img.digest), target_tag="x")
    assert r1.source == "src/repo:v2" and r1.destination == "mem/dst/repo:x"
    assert r2.source == f"src/repo@{img.digest}"


# --- failures: nothing gets pushed ----------------------------------------------------------------


@pytest.mark.parametrize(("bad", "error"), [(b"X" * len(APP), DigestMismatch), (APP[:-1], SizeMismatch),
                                            (APP + b"!", SizeMismatch)])
async def test_wrong_source_bytes_push_no_manifest(bad: bytes, error: type[Exception]) -> None:
    g = multi_arch()
    g.src.blobs[Digest.of(APP)] = bad
    storage = MemStorage()
    with pytest.raises(error):
        await copy_image(g.src, MemDestination(storage), "v1", target_tag="v1")
    assert not [e for e in storage.log if e[0] == "put_manifest"]
    assert storage.manifests["dst/repo"] == {} and storage.tags["dst/repo"] == {}
    assert Digest.of(APP) not in storage.blobs["dst/repo"]


async def test_put_blob_failure_pushes_no_manifest() -> None:
    g = multi_arch()
    storage = MemStorage()
    dst = MemDestination(storage, fail_blob=Digest.of(ARM))
    events: list[Event] = []
    with pytest.raises(StoreError, match="disk full"):
        await copy_image(g.src, dst, "v1", target_tag="v1", reporter=events.append)
    assert not [e for e in storage.log if e[0] == "put_manifest"]
    assert storage.tags["dst/repo"] == {}
    done = events[-1]
    assert type(done).__name__ == "ImageDone" and "disk full" in str(done.error)  # type: ignore[attr-defined]


async def test_missing_source_ref() -> None:
    storage = MemStorage()
    with pytest.raises(ManifestNotFound):
        await copy_image(MemSource(), MemDestination(storage), "nope", target_tag="nope")
    assert storage.log == []


# --- up to date -------------------------------------------------------------------------------------


async def test_up_to_date_writes_nothing_and_force_overrides() -> None:
    g = multi_arch()
    storage = MemStorage()
    first = await copy_image(g.src, MemDestination(storage), "v1", target_tag="v1")
    assert not first.up_to_date
    storage.log.clear()
    g.src.opened.clear()

    ledger = BlobLedger()
    again = await copy_image(g.src, MemDestination(storage), "v1", target_tag="v1", ledger=ledger)
    assert again.up_to_date and again.manifests_pushed == 0
    assert writes(storage) == [] and g.src.opened == []
    # the ledger learns the repository holds every blob (mount candidates for later copies)
    for blob in (await plan_image(g.src, "v1")).blobs:
        assert ledger.candidates("registry:mem", blob.digest, exclude="other") == ["dst/repo"]

    forced = await copy_image(g.src, MemDestination(storage), "v1", target_tag="v1", force=True)
    assert not forced.up_to_date and forced.manifests_pushed == 5
    assert forced.blobs_skipped == 7 and forced.blobs_uploaded == 0
    assert [e[0] for e in writes(storage)] == ["put_manifest"] * 5


async def test_other_digest_under_tag_is_overwritten() -> None:
    src = MemSource()
    old = add_image(src, [APP], tag="old")
    new = add_image(src, [BASE], tag="new")
    storage = MemStorage()
    await copy_image(src, MemDestination(storage), "old", target_tag="t")
    result = await copy_image(src, MemDestination(storage), "new", target_tag="t")
    assert not result.up_to_date
    assert storage.tags["dst/repo"]["t"] == new.digest != old.digest


# --- ledger and mounts -----------------------------------------------------------------------------


async def test_ledger_mounts_shared_blob_across_repositories() -> None:
    src = MemSource()
    add_image(src, [BASE, APP], tag="one")
    add_image(src, [BASE, TOOLS], arch="arm64", tag="two")  # own config: only BASE is shared
    storage = MemStorage()
    ledger = BlobLedger()
    r1 = await copy_image(src, MemMountingDestination(storage, "team/one"), "one", target_tag="one", ledger=ledger)
    r2 = await copy_image(src, MemMountingDestination(storage, "team/two"), "two", target_tag="two", ledger=ledger)
    uploads = [e for e in storage.log if e[0] == "put_blob" and e[2] == str(Digest.of(BASE))]
    mounts = [e for e in storage.log if e[0] == "mount_blob" and e[2] == str(Digest.of(BASE))]
    assert uploads == [("put_blob", "team/one", str(Digest.of(BASE)))]
    assert mounts == [("mount_blob", "team/two", str(Digest.of(BASE)), "team/one")]
    assert (r1.blobs_uploaded, r1.blobs_mounted) == (3, 0)
    assert (r2.blobs_uploaded, r2.blobs_mounted) == (2, 1)
    assert storage.blobs["team/two"][Digest.of(BASE)] == BASE


async def test_ledger_concurrent_copies_upload_once() -> None:
    src = MemSource()
    add_image(src, [BASE, APP], tag="t")
    storage = MemStorage()
    ledger = BlobLedger()
    results = []

    async def copy(repo: str) -> None:
        results.append(await copy_image(src, MemMountingDestination(storage, repo), "t", target_tag="t",
                                        ledger=ledger))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(copy, "a")
            tg.start_soon(copy, "b")
    for blob in (BASE, APP):
        d = str(Digest.of(blob))
        assert len([e for e in storage.log if e[0] == "put_blob" and e[2] == d]) == 1
        assert len([e for e in storage.log if e[0] == "mount_blob" and e[2] == d]) == 1
    assert sorted((r.blobs_uploaded, r.blobs_mounted) for r in results) == [(0, 3), (3, 0)]
    assert storage.blobs["a"] == storage.blobs["b"]


async def test_no_mount_across_storages() -> None:
    src = MemSource()
    add_image(src, [BASE], tag="t")
    ledger = BlobLedger()
    s1, s2 = MemStorage(), MemStorage()
    await copy_image(src, MemMountingDestination(s1, "a", storage_id="registry:one"), "t", target_tag="t",
                     ledger=ledger)
    r = await copy_image(src, MemMountingDestination(s2, "b", storage_id="registry:two"), "t", target_tag="t",
                         ledger=ledger)
    assert r.blobs_uploaded == 2 and r.blobs_mounted == 0
    assert not [e for e in s2.log if e[0] == "mount_blob"]


def test_ledger_candidates() -> None:
    ledger = BlobLedger()
    d = Digest.of(b"x")
    for repo in ("c", "a", "b"):
        ledger.note("s", d, repo)
    assert ledger.candidates("s", d, exclude="b") == ["a", "c"]
    assert ledger.candidates("other", d, exclude="b") == []


# --- platform filters -------------------------------------------------------------------------------


async def test_one_platform_copies_the_child_manifest() -> None:
    src, root, images = flat_index()
    storage = MemStorage()
    result = await copy_image(src, MemDestination(storage), "multi", target_tag="arm",
                              platforms=[Platform.parse("linux/arm64")])
    arm = images["arm64"]
    assert result.digest == str(arm.digest) and result.source_digest == str(root.digest)
    assert result.new_digest is False and result.platforms == ["linux/arm64"]
    assert storage.tags["dst/repo"] == {"arm": arm.digest}
    assert storage.manifests["dst/repo"] == {arm.digest: arm.data}
    assert set(storage.blobs["dst/repo"]) == {d.digest for d in arm.blobs()}


async def test_two_platforms_build_a_new_index() -> None:
    src, root, images = flat_index()
    storage = MemStorage()
    result = await copy_image(src, MemDestination(storage), "multi", target_tag="sub",
                              platforms=[Platform.parse("linux/amd64"), Platform.parse("linux/arm/v7")])
    assert result.new_digest is True and result.digest != result.source_digest == str(root.digest)
    new_digest = Digest.parse(result.digest)
    assert storage.tags["dst/repo"] == {"sub": new_digest}
    pushed = Manifest.parse(storage.manifests["dst/repo"][new_digest], digest=new_digest)
    assert pushed.is_index
    assert [d.digest for d in pushed.children()] == [images["amd64"].digest, images["armv7"].digest]
    assert set(storage.manifests["dst/repo"]) == {new_digest, images["amd64"].digest, images["armv7"].digest}
    assert Digest.of(ARM) not in storage.blobs["dst/repo"]
    assert writes(storage)[-1] == ("put_manifest", "dst/repo", str(new_digest), "sub")


async def test_platform_filter_matching_nothing() -> None:
    src, _, _ = flat_index()
    storage = MemStorage()
    with pytest.raises(InvalidManifest, match="linux/s390x"):
        await copy_image(src, MemDestination(storage), "multi", target_tag="x",
                         platforms=[Platform.parse("linux/s390x")])
    assert storage.log == []


async def test_platform_filter_on_single_image_is_ignored() -> None:
    src = MemSource()
    img = add_image(src, [APP], tag="t")
    plan = await plan_image(src, "t", [Platform.parse("linux/s390x")])
    assert plan.root.digest == img.digest and not plan.built_index
