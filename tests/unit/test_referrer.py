"""Referrer values: tag schemes, the descriptors a referrers list holds, merging the fallback index."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from regcopy.digest import Digest
from regcopy.errors import InvalidManifest
from regcopy.manifest import OCI_INDEX, OCI_MANIFEST, Manifest
from regcopy.referrer import (
    cosign_tag,
    fallback_tag,
    index_descriptors,
    merge_index,
    parse_referrer_tag,
    referrer_entry,
)

HEX = "a" * 64


def test_fallback_tag_follows_the_spec_table() -> None:
    # distribution spec, "Referrers Tag Schema": algorithm truncated to 32, encoded part to 64.
    assert fallback_tag(Digest("sha256", HEX)) == f"sha256-{HEX}"
    assert fallback_tag(Digest("sha512", "a" * 128)) == f"sha512-{HEX}"


def test_cosign_tags_and_parsing() -> None:
    digest = Digest("sha256", HEX)
    for kind in ("sig", "att", "sbom"):
        tag = cosign_tag(digest, kind)  # type: ignore[arg-type]
        parsed = parse_referrer_tag(tag)
        assert parsed is not None and parsed.kind == kind and parsed.names(digest)
    assert parse_referrer_tag(f"sha256-{HEX}") is not None
    assert parse_referrer_tag("latest") is None
    assert parse_referrer_tag(f"sha256-{HEX}.sig.bak") is None
    assert parse_referrer_tag(f"sha256-{HEX[:-1]}") is None


@given(st.text(max_size=200))
def test_parse_referrer_tag_never_raises_and_only_accepts_its_shapes(text: str) -> None:
    parsed = parse_referrer_tag(text)
    if parsed is not None:
        assert parsed.tag == text and text.startswith(("sha256-", "sha512-"))
        assert text.removesuffix("." + parsed.kind) == parsed.stem


@given(st.sampled_from(["sha256", "sha512"]), st.text("0123456789abcdef", min_size=64, max_size=64),
       st.sampled_from(["sig", "att", "sbom"]))
def test_cosign_tags_round_trip(algorithm: str, hexpart: str, kind: str) -> None:
    digest = Digest(algorithm, hexpart * (2 if algorithm == "sha512" else 1))
    parsed = parse_referrer_tag(cosign_tag(digest, kind))  # type: ignore[arg-type]
    assert parsed is not None and parsed.names(digest) and parsed.kind == kind


def _manifest(obj: dict[str, object]) -> Manifest:
    return Manifest.parse(json.dumps(obj).encode())


def _artifact(artifact_type: str | None, annotations: dict[str, str] | None = None) -> Manifest:
    obj: dict[str, object] = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                              "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                                         "digest": "sha256:" + "4" * 64, "size": 2},
                              "layers": [], "subject": {"mediaType": OCI_MANIFEST, "digest": f"sha256:{HEX}",
                                                        "size": 10}}
    if artifact_type:
        obj["artifactType"] = artifact_type
    if annotations:
        obj["annotations"] = annotations
    return _manifest(obj)


def test_referrer_entry_takes_the_artifact_type_else_the_config_type_and_every_annotation() -> None:
    typed = referrer_entry(_artifact("application/spdx+json", {"a": "1"}))
    assert typed["artifactType"] == "application/spdx+json" and typed["annotations"] == {"a": "1"}
    untyped = referrer_entry(_artifact(None))
    assert untyped["artifactType"] == "application/vnd.oci.empty.v1+json" and "annotations" not in untyped


def test_merge_keeps_entries_verbatim_appends_once_and_is_idempotent() -> None:
    theirs = {"mediaType": OCI_MANIFEST, "digest": "sha256:" + "b" * 64, "size": 7, "x-vendor": {"keep": True}}
    existing = _manifest({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [theirs],
                          "annotations": {"owner": "someone"}})
    mine = referrer_entry(_artifact("application/spdx+json"))
    merged = merge_index(existing, [mine, mine])
    assert merged is not None
    body = json.loads(merged.data)
    assert body["manifests"] == [theirs, mine] and body["annotations"] == {"owner": "someone"}
    assert merge_index(merged, [mine]) is None  # nothing new: no write
    assert merge_index(None, []) is not None  # an empty index to start from


def test_merge_refuses_a_tag_that_holds_something_else() -> None:
    image = _artifact("x")
    with pytest.raises(InvalidManifest, match="not an OCI image index"):
        merge_index(image, [referrer_entry(image)])


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                               max_size=4), max_leaves=30))
def test_index_descriptors_accepts_only_valid_lists(obj: object) -> None:
    try:
        found = index_descriptors(obj, where="answer")
    except InvalidManifest:
        return
    assert isinstance(found, tuple)
