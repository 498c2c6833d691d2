"""Manifest parsing: media-type rules, descriptors, platforms, select() and build_index()."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regcopy.digest import Digest
from regcopy.errors import (
    ContentError,
    DigestMismatch,
    InvalidManifest,
    InvalidReference,
    RegcopyError,
    UnsupportedMediaType,
)
from regcopy.manifest import (
    DOCKER_CONFIG,
    DOCKER_FOREIGN_LAYER,
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    MAX_MANIFEST_SIZE,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    Descriptor,
    Manifest,
    Platform,
    build_index,
)

SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def desc(data: bytes, media_type: str, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha(data), "size": len(data), **extra}


CONFIG = b'{"architecture":"amd64","os":"linux"}'
LAYER1 = b"layer-one"
LAYER2 = b"layer-two"


def image_obj(media_type: str | None = OCI_MANIFEST, *, docker: bool = False) -> dict[str, Any]:
    obj: dict[str, Any] = {"schemaVersion": 2}
    if media_type is not None:
        obj["mediaType"] = media_type
    obj["config"] = desc(CONFIG, DOCKER_CONFIG if docker else OCI_CONFIG)
    obj["layers"] = [desc(LAYER1, DOCKER_LAYER if docker else OCI_LAYER),
                     desc(LAYER2, DOCKER_LAYER if docker else OCI_LAYER)]
    return obj


def plat(os_: str, arch: str, variant: str | None = None) -> dict[str, str]:
    p = {"os": os_, "architecture": arch}
    if variant:
        p["variant"] = variant
    return p


def index_obj(media_type: str | None = OCI_INDEX, entries: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {"schemaVersion": 2}
    if media_type is not None:
        obj["mediaType"] = media_type
    if entries is None:
        child = json.dumps(image_obj()).encode()
        entries = [desc(child, OCI_MANIFEST, platform=plat("linux", "amd64"))]
    obj["manifests"] = entries
    return obj


def enc(obj: Any) -> bytes:
    return json.dumps(obj).encode()


# --- media types ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "header", "expected"),
    [
        (image_obj(OCI_MANIFEST), None, OCI_MANIFEST),
        (image_obj(None), None, OCI_MANIFEST),  # OCI allows no mediaType: sniffed
        (image_obj(None), OCI_MANIFEST, OCI_MANIFEST),
        (image_obj(OCI_MANIFEST), OCI_MANIFEST, OCI_MANIFEST),
        (image_obj(OCI_MANIFEST), f"{OCI_MANIFEST}; charset=utf-8", OCI_MANIFEST),
        (image_obj(OCI_MANIFEST), "application/json", OCI_MANIFEST),
        (image_obj(OCI_MANIFEST), "application/octet-stream", OCI_MANIFEST),
        (image_obj(DOCKER_MANIFEST, docker=True), None, DOCKER_MANIFEST),
        (image_obj(None, docker=True), DOCKER_MANIFEST, DOCKER_MANIFEST),
        (image_obj(None, docker=True), f"{DOCKER_MANIFEST};charset=utf-8", DOCKER_MANIFEST),
        (image_obj(None, docker=True), f" {DOCKER_MANIFEST.upper()} ", DOCKER_MANIFEST),
        (index_obj(OCI_INDEX), None, OCI_INDEX),
        (index_obj(None), None, OCI_INDEX),
        (index_obj(None), f"{OCI_INDEX}; charset=utf-8", OCI_INDEX),
        (index_obj(DOCKER_MANIFEST_LIST), None, DOCKER_MANIFEST_LIST),
        (index_obj(None), DOCKER_MANIFEST_LIST, DOCKER_MANIFEST_LIST),
        (index_obj(DOCKER_MANIFEST_LIST), "application/json; charset=utf-8", DOCKER_MANIFEST_LIST),
    ],
)
def test_media_type(obj: dict[str, Any], header: str | None, expected: str) -> None:
    m = Manifest.parse(enc(obj), header)
    assert m.media_type == expected
    assert m.is_index == (expected in (OCI_INDEX, DOCKER_MANIFEST_LIST))


def test_image_view() -> None:
    obj = image_obj()
    m = Manifest.parse(enc(obj))
    assert m.config is not None and m.config.digest == Digest.parse(sha(CONFIG))
    assert m.config.media_type == OCI_CONFIG and m.config.size == len(CONFIG)
    assert [d.digest for d in m.layers] == [Digest.parse(sha(LAYER1)), Digest.parse(sha(LAYER2))]
    assert m.manifests == () and m.children() == ()
    assert m.blobs() == (m.config, *m.layers)
    assert m.subject is None
    assert len(m) == len(enc(obj))
    assert not any(d.is_manifest for d in m.blobs())


def test_index_view() -> None:
    m = Manifest.parse(enc(index_obj()))
    assert m.config is None and m.layers == () and m.blobs() == ()
    assert len(m.children()) == 1
    child = m.children()[0]
    assert child.is_manifest and child.platform == Platform("linux", "amd64")


def test_oci_image_without_layers_key_is_allowed_docker_is_not() -> None:
    obj = image_obj()
    del obj["layers"]
    assert Manifest.parse(enc(obj)).layers == ()
    docker = image_obj(DOCKER_MANIFEST, docker=True)
    del docker["layers"]
    with pytest.raises(InvalidManifest):
        Manifest.parse(enc(docker))


def test_subject_is_parsed() -> None:
    obj = image_obj()
    obj["subject"] = desc(b"parent", OCI_MANIFEST)
    m = Manifest.parse(enc(obj))
    assert m.subject is not None and m.subject.digest == Digest.parse(sha(b"parent"))
    obj["subject"] = None
    with pytest.raises(InvalidManifest):
        Manifest.parse(enc(obj))


@pytest.mark.parametrize(
    ("obj", "header"),
    [
        (image_obj(OCI_MANIFEST), DOCKER_MANIFEST),
        (image_obj(DOCKER_MANIFEST, docker=True), OCI_MANIFEST),
        (index_obj(OCI_INDEX), DOCKER_MANIFEST_LIST),
        (index_obj(OCI_INDEX), f"{OCI_MANIFEST}; charset=utf-8"),
    ],
)
def test_body_header_disagreement(obj: dict[str, Any], header: str) -> None:
    with pytest.raises(InvalidManifest, match="disagrees"):
        Manifest.parse(enc(obj), header)


SCHEMA1_BODY = {
    "schemaVersion": 1, "name": "library/x", "tag": "latest", "architecture": "amd64",
    "fsLayers": [{"blobSum": sha(LAYER1)}], "history": [{"v1Compatibility": "{}"}],
}


@pytest.mark.parametrize(
    ("obj", "header"),
    [
        (SCHEMA1_BODY, SCHEMA1_SIGNED),
        (SCHEMA1_BODY, SCHEMA1),
        ({**SCHEMA1_BODY, "mediaType": SCHEMA1}, None),
        ({**SCHEMA1_BODY, "mediaType": SCHEMA1_SIGNED}, None),
        ({**image_obj(None), "schemaVersion": 1}, None),  # schemaVersion 1 with a v2-looking shape
        ({**image_obj(OCI_MANIFEST), "schemaVersion": 1}, None),
        (image_obj(None), SCHEMA1_SIGNED),
    ],
)
def test_schema1_is_unsupported(obj: dict[str, Any], header: str | None) -> None:
    with pytest.raises(UnsupportedMediaType, match="schema1"):
        Manifest.parse(enc(obj), header)


@pytest.mark.parametrize("header", [None, "application/json"])
def test_schema1_body_without_schema1_header_is_unsupported(header: str | None) -> None:
    # A real schema1 body has no mediaType and neither config nor manifests: the verdict must still
    # be "schema1 unsupported", not "invalid manifest" (regression: the shape was sniffed first).
    with pytest.raises(UnsupportedMediaType):
        Manifest.parse(enc(SCHEMA1_BODY), header)


def test_oci_manifest_type_is_not_schema1() -> None:
    # "manifest.v1" in the OCI type must not be mistaken for Docker schema1.
    m = Manifest.parse(enc(image_obj(OCI_MANIFEST)), OCI_MANIFEST)
    assert m.media_type == OCI_MANIFEST
    m = Manifest.parse(enc(image_obj(None)), f"{OCI_MANIFEST}; charset=utf-8")
    assert m.media_type == OCI_MANIFEST


@pytest.mark.parametrize(
    ("obj", "header"),
    [
        ({**image_obj(None), "mediaType": "application/vnd.example.thing+json"}, None),
        (image_obj(None), "application/vnd.oci.image.config.v1+json"),
        ({**image_obj(None), "mediaType": OCI_CONFIG}, None),
        ({**image_obj(None), "mediaType": OCI_MANIFEST.upper()}, None),
    ],
)
def test_unknown_media_type(obj: dict[str, Any], header: str | None) -> None:
    with pytest.raises(UnsupportedMediaType):
        Manifest.parse(enc(obj), header)


def _bad_layers(value: Any) -> dict[str, Any]:
    obj = image_obj()
    obj["layers"] = value
    return obj


def _bad_config(**changes: Any) -> dict[str, Any]:
    obj = image_obj()
    obj["config"] = {**obj["config"], **changes}
    return obj


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"\xff\xfe\x00garbage",
        b"[1, 2]",
        b'"a string"',
        b"null",
        b"42",
        b'{"mediaType": 5, "config": {}}',
        b'{"schemaVersion": 2}',  # no type and neither config nor manifests
        enc({**image_obj(None), "config": None}),
        enc({**image_obj(None), "config": "sha256:abc"}),
        enc(_bad_config(size=-1)),
        enc(_bad_config(size=True)),
        enc(_bad_config(size=1.5)),
        enc(_bad_config(size="12")),
        enc(_bad_config(digest="sha256:nothex")),
        enc(_bad_config(digest="sha256:" + "A" * 64)),
        enc(_bad_config(digest=12)),
        enc(_bad_config(mediaType=7)),
        enc(_bad_config(urls="http://x")),
        enc(_bad_config(urls=[1])),
        enc(_bad_layers({"not": "a list"})),
        enc(_bad_layers("layers")),
        enc(_bad_layers([1])),
        enc(_bad_layers([{"mediaType": OCI_LAYER, "size": 1}])),
        enc({**index_obj(), "manifests": None}),
        enc({**index_obj(), "manifests": {}}),
        enc({"mediaType": OCI_INDEX, "schemaVersion": 2}),
        enc({**index_obj(), "manifests": [{"mediaType": OCI_MANIFEST, "digest": sha(b"x"), "size": -5}]}),
    ],
)
def test_invalid_manifest(data: bytes) -> None:
    with pytest.raises(InvalidManifest):
        Manifest.parse(data)


def test_digest_argument() -> None:
    data = enc(image_obj())
    assert Manifest.parse(data, digest=Digest.parse(sha(data))).digest == Digest.parse(sha(data))
    other = Digest.of(b"other")
    with pytest.raises(DigestMismatch) as info:
        Manifest.parse(data, digest=other)
    assert info.value.expected == str(other) and info.value.actual == sha(data)
    # sha512 digests are checked with sha512
    d512 = Digest.of(data, "sha512")
    assert Manifest.parse(data, digest=d512).digest == d512


def test_digest_checked_before_parse() -> None:
    # Wrong bytes fetched by digest are a mismatch even when they are not JSON at all.
    with pytest.raises(DigestMismatch):
        Manifest.parse(b"<html>", digest=Digest.of(b"something else"))


def test_size_cap() -> None:
    base = enc(image_obj())
    filler = b" " * (MAX_MANIFEST_SIZE - len(base))
    at_cap = base[:-1] + filler + base[-1:]
    assert len(at_cap) == MAX_MANIFEST_SIZE
    assert Manifest.parse(at_cap).digest == Digest.of(at_cap)
    over = base[:-1] + filler + b" " + base[-1:]
    with pytest.raises(InvalidManifest, match="cap"):
        Manifest.parse(over)


def test_bytes_kept_exactly() -> None:
    # Odd whitespace, key order and escapes: data and digest are the received bytes, never re-serialised.
    obj = image_obj()
    text = json.dumps(obj, indent=7, sort_keys=True, separators=(" ,", " :  ")).replace("\n", "\r\n")
    data = ("\n\t " + text + "   \n").encode()
    m = Manifest.parse(data, OCI_MANIFEST)
    assert m.data is data or m.data == data
    assert m.digest == Digest("sha256", hashlib.sha256(data).hexdigest())
    assert m.digest != Digest.of(enc(obj))
    escaped = enc(obj).replace(b'"layers"', b'"\\u006cayers"')
    m2 = Manifest.parse(escaped)
    assert m2.data == escaped and m2.digest == Digest.of(escaped) and len(m2.layers) == 2


def test_blobs_exclude_foreign_layers() -> None:
    obj = image_obj(DOCKER_MANIFEST, docker=True)
    foreign = desc(b"windows-base", DOCKER_FOREIGN_LAYER, urls=["https://mcr.example/base"])
    nondist = desc(b"nd", "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip")
    obj["layers"] = [foreign, *obj["layers"], nondist]
    m = Manifest.parse(enc(obj))
    assert len(m.layers) == 4
    assert m.layers[0].is_foreign and m.layers[0].urls == ("https://mcr.example/base",)
    assert m.layers[3].is_foreign
    assert [d.digest for d in m.blobs()] == [Digest.parse(sha(x)) for x in (CONFIG, LAYER1, LAYER2)]


# --- Descriptor / Platform -------------------------------------------------------------------


def test_descriptor_from_json() -> None:
    raw = desc(b"x", OCI_MANIFEST, platform={"os": "windows", "architecture": "amd64", "os.version": "10.0.1"},
               annotations={"a": "b"})
    d = Descriptor.from_json(raw)
    assert d.platform == Platform("windows", "amd64", None, "10.0.1")
    assert d.raw == raw and d.is_manifest and not d.is_foreign
    assert Descriptor.from_json({"digest": sha(b"x"), "size": 0}).media_type == ""
    # malformed platform objects are ignored, not fatal
    assert Descriptor.from_json({**raw, "platform": {"os": "linux"}}).platform is None
    assert Descriptor.from_json({**raw, "platform": "linux/amd64"}).platform is None
    with pytest.raises(InvalidManifest, match="where-am-i"):
        Descriptor.from_json([], where="where-am-i")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("linux/amd64", Platform("linux", "amd64")),
        ("linux/arm64/v8", Platform("linux", "arm64", "v8")),
        (" linux/arm/v7 ", Platform("linux", "arm", "v7")),
    ],
)
def test_platform_parse(text: str, expected: Platform) -> None:
    assert Platform.parse(text) == expected
    assert str(expected) == text.strip()


@pytest.mark.parametrize("text", ["", "linux", "linux/", "/amd64", "linux//v7", "a/b/c/d", "linux/arm/", " "])
def test_platform_parse_errors(text: str) -> None:
    with pytest.raises(InvalidReference) as info:
        Platform.parse(text)
    assert info.value.part == "platform"


@pytest.mark.parametrize(
    ("have", "wanted", "ok"),
    [
        (Platform("linux", "amd64"), Platform("linux", "amd64"), True),
        (Platform("linux", "arm64", "v8"), Platform("linux", "arm64"), True),  # wanted has no variant
        (Platform("linux", "arm64", "v8"), Platform("linux", "arm64", "v8"), True),
        (Platform("linux", "arm", "v6"), Platform("linux", "arm", "v7"), False),
        (Platform("linux", "arm64"), Platform("linux", "arm64", "v8"), False),  # variant wanted, none given
        (Platform("windows", "amd64"), Platform("linux", "amd64"), False),
        (Platform("linux", "amd64"), Platform("linux", "arm64"), False),
    ],
)
def test_platform_matches(have: Platform, wanted: Platform, ok: bool) -> None:
    assert have.matches(wanted) is ok


# --- select / build_index ----------------------------------------------------------------------


def _multi_index(media_type: str = OCI_INDEX) -> Manifest:
    entries = [
        desc(b"amd64", OCI_MANIFEST, platform=plat("linux", "amd64"), annotations={"k": "amd64"}),
        desc(b"arm64", OCI_MANIFEST, platform=plat("linux", "arm64", "v8")),
        desc(b"armv7", OCI_MANIFEST, platform=plat("linux", "arm", "v7")),
        desc(b"armv6", OCI_MANIFEST, platform=plat("linux", "arm", "v6")),
        desc(b"attest", OCI_MANIFEST, platform=plat("unknown", "unknown")),
        desc(b"noplat", OCI_MANIFEST),
        desc(b"nested", OCI_INDEX),
    ]
    return Manifest.parse(enc({**index_obj(media_type, entries), "annotations": {"top": "level"}}))


def _digests(descs: tuple[Descriptor, ...]) -> list[str]:
    return [str(d.digest) for d in descs]


@pytest.mark.parametrize(
    ("wanted", "names"),
    [
        (["linux/amd64"], [b"amd64", b"nested"]),
        (["linux/arm"], [b"armv7", b"armv6", b"nested"]),
        (["linux/arm/v7"], [b"armv7", b"nested"]),
        (["linux/arm64/v8", "linux/amd64"], [b"amd64", b"arm64", b"nested"]),  # index order, not wanted order
        (["linux/arm64"], [b"arm64", b"nested"]),
        (["linux/s390x"], [b"nested"]),
    ],
)
def test_select(wanted: list[str], names: list[bytes]) -> None:
    m = _multi_index()
    assert _digests(m.select([Platform.parse(w) for w in wanted])) == [sha(n) for n in names]


def test_select_on_image_is_empty() -> None:
    assert Manifest.parse(enc(image_obj())).select([Platform("linux", "amd64")]) == ()


@pytest.mark.parametrize("media_type", [OCI_INDEX, DOCKER_MANIFEST_LIST])
def test_build_index(media_type: str) -> None:
    src = _multi_index(media_type)
    picked = src.select([Platform.parse("linux/arm64"), Platform.parse("linux/amd64")])[:2]
    new = build_index(src, picked)
    assert new.media_type == media_type and new.is_index
    assert new.digest == Digest.of(new.data) and new.digest != src.digest
    obj = json.loads(new.data)
    assert obj["manifests"] == [dict(d.raw) for d in picked]  # entries verbatim, annotations included
    assert obj["manifests"][0]["annotations"] == {"k": "amd64"}
    assert obj["annotations"] == {"top": "level"} and obj["schemaVersion"] == 2
    assert _digests(new.children()) == _digests(picked)
    assert Manifest.parse(new.data, media_type, digest=new.digest).children() == new.children()


def test_build_index_without_body_media_type_uses_source_type() -> None:
    src = Manifest.parse(enc(index_obj(None)), DOCKER_MANIFEST_LIST)
    new = build_index(src, src.children())
    assert new.media_type == DOCKER_MANIFEST_LIST
    assert _digests(new.children()) == _digests(src.children())


# --- properties --------------------------------------------------------------------------------


def _parse_or_regcopy_error(data: bytes, header: str | None = None) -> None:
    try:
        m = Manifest.parse(data, header)
    except (ContentError, RegcopyError):
        return
    assert m.data == data and m.digest == Digest.of(data)


@given(st.binary(max_size=512), st.sampled_from([None, OCI_MANIFEST, OCI_INDEX, "application/json", ""]))
@settings(max_examples=300)
def test_arbitrary_bytes_only_regcopy_errors(data: bytes, header: str | None) -> None:
    _parse_or_regcopy_error(data, header)


@pytest.mark.parametrize("data", [b"[" * 100_000, b'{"config": ' * 50_000])
def test_deeply_nested_json_is_invalid_manifest(data: bytes) -> None:
    # Regression: json.loads raised RecursionError, which escaped Manifest.parse.
    with pytest.raises(InvalidManifest):
        Manifest.parse(data)


json_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(
    max_size=20
)
DESCRIPTOR_KEYS = ["mediaType", "digest", "size", "platform", "urls", "os", "architecture", "variant"]
MEANINGFUL = st.sampled_from(
    [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_LAYER, SCHEMA1, sha(b"x"), "linux", "amd64"]
)
json_values = st.recursive(
    json_scalars | MEANINGFUL,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(
        st.sampled_from(["mediaType", "schemaVersion", "config", "layers", "manifests", "subject", *DESCRIPTOR_KEYS])
        | st.text(max_size=8),
        children,
        max_size=6,
    ),
    max_leaves=15,
)


@given(json_values, st.sampled_from([None, OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, "application/json"]))
@settings(max_examples=200)
def test_arbitrary_json_only_regcopy_errors(value: Any, header: str | None) -> None:
    _parse_or_regcopy_error(json.dumps(value).encode(), header)


@given(st.dictionaries(st.sampled_from(["mediaType", "schemaVersion", "config", "layers", "manifests", "subject"]),
                       json_values, max_size=6))
@settings(max_examples=150)
def test_arbitrary_manifest_objects_only_regcopy_errors(obj: dict[str, Any]) -> None:
    _parse_or_regcopy_error(json.dumps(obj).encode())


blob_desc = st.builds(
    lambda data, mt, extra: desc(data, mt, **extra),
    st.binary(max_size=16),
    st.sampled_from([OCI_LAYER, DOCKER_LAYER, DOCKER_FOREIGN_LAYER, "application/octet-stream"]),
    st.dictionaries(st.sampled_from(["annotations", "urls"]), st.just([]) | st.just(["https://x"]), max_size=1),
)
platform_obj = st.builds(plat, st.sampled_from(["linux", "windows"]), st.sampled_from(["amd64", "arm64", "arm"]),
                         st.sampled_from([None, "v6", "v7", "v8"]))


@st.composite
def valid_manifests(draw: st.DrawFn) -> tuple[bytes, dict[str, Any]]:
    if draw(st.booleans()):
        mt = draw(st.sampled_from([OCI_MANIFEST, DOCKER_MANIFEST]))
        obj: dict[str, Any] = {"schemaVersion": 2, "mediaType": mt, "config": draw(blob_desc),
                               "layers": draw(st.lists(blob_desc, max_size=5))}
    else:
        mt = draw(st.sampled_from([OCI_INDEX, DOCKER_MANIFEST_LIST]))
        entries = draw(st.lists(st.builds(lambda d, p: {**d, "platform": p}, blob_desc, platform_obj), max_size=5))
        for e in entries:
            e["mediaType"] = OCI_MANIFEST
        obj = {"schemaVersion": 2, "mediaType": mt, "manifests": entries}
    if draw(st.booleans()):
        obj["annotations"] = draw(st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3))
    indent = draw(st.sampled_from([None, 0, 2, "\t"]))
    return json.dumps(obj, indent=indent, ensure_ascii=draw(st.booleans())).encode(), obj


@given(valid_manifests())
@settings(max_examples=200)
def test_valid_manifests_roundtrip_digest(case: tuple[bytes, dict[str, Any]]) -> None:
    data, obj = case
    m = Manifest.parse(data)
    assert m.data == data
    assert m.digest == Digest("sha256", hashlib.sha256(data).hexdigest())
    assert Manifest.parse(data, obj["mediaType"], digest=m.digest).digest == m.digest
    assert m.media_type == obj["mediaType"]
    if m.is_index:
        assert [str(d.digest) for d in m.children()] == [e["digest"] for e in obj["manifests"]]
        assert m.blobs() == ()
    else:
        assert [str(d.digest) for d in m.layers] == [e["digest"] for e in obj["layers"]]
        assert [str(d.digest) for d in m.blobs()] == [obj["config"]["digest"]] + [
            e["digest"] for e in obj["layers"] if e["mediaType"] != DOCKER_FOREIGN_LAYER
        ]


def test_oci_artifact_manifest_lists_its_blobs() -> None:
    blob = {"mediaType": "application/vnd.example.sbom", "digest": "sha256:" + "a" * 64, "size": 3}
    raw = json.dumps({"mediaType": "application/vnd.oci.artifact.manifest.v1+json", "artifactType": "x/y",
                      "blobs": [blob]}).encode()
    m = Manifest.parse(raw)
    assert m.media_type == "application/vnd.oci.artifact.manifest.v1+json"
    assert not m.is_index and m.config is None
    assert [str(b.digest) for b in m.blobs()] == ["sha256:" + "a" * 64]
