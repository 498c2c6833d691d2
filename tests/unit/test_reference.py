"""Tests for :mod:`regcopy.reference`: grammar tables, local locations and property tests."""

from __future__ import annotations

import contextlib
import dataclasses
import time

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from regcopy.digest import Digest
from regcopy.errors import InvalidReference
from regcopy.reference import (
    DOCKER_HUB,
    LocalLocation,
    Reference,
    Repository,
    api_host,
    parse_location,
)

H256 = "sha256:" + "0123456789abcdef" * 4
H512 = "sha512:" + "fedcba9876543210" * 8
D256 = Digest.parse(H256)
D512 = Digest.parse(H512)

# text, registry, repository, tag, digest, scheme, canonical str
VALID: list[tuple[str, str, str, str | None, Digest | None, str | None, str]] = [
    ("alpine", "docker.io", "library/alpine", "latest", None, None, "docker.io/library/alpine:latest"),
    ("library/alpine", "docker.io", "library/alpine", "latest", None, None, "docker.io/library/alpine:latest"),
    ("alpine:3.20", "docker.io", "library/alpine", "3.20", None, None, "docker.io/library/alpine:3.20"),
    ("docker.io/alpine", "docker.io", "library/alpine", "latest", None, None, "docker.io/library/alpine:latest"),
    (
        "index.docker.io/library/alpine",
        "docker.io", "library/alpine", "latest", None, None, "docker.io/library/alpine:latest",
    ),
    ("registry-1.docker.io/x/y", "docker.io", "x/y", "latest", None, None, "docker.io/x/y:latest"),
    ("user/app", "docker.io", "user/app", "latest", None, None, "docker.io/user/app:latest"),
    ("localhost", "docker.io", "library/localhost", "latest", None, None, "docker.io/library/localhost:latest"),
    ("localhost/a", "localhost", "a", "latest", None, None, "localhost/a:latest"),
    ("localhost:5000/a:tag", "localhost:5000", "a", "tag", None, None, "localhost:5000/a:tag"),
    ("LocalHost:5000/a", "localhost:5000", "a", "latest", None, None, "localhost:5000/a:latest"),
    ("LOCALHOST/a", "localhost", "a", "latest", None, None, "localhost/a:latest"),
    ("127.0.0.1:5000/a/b/c", "127.0.0.1:5000", "a/b/c", "latest", None, None, "127.0.0.1:5000/a/b/c:latest"),
    ("[::1]:5000/a", "[::1]:5000", "a", "latest", None, None, "[::1]:5000/a:latest"),
    ("[2001:db8::1]/a", "[2001:db8::1]", "a", "latest", None, None, "[2001:db8::1]/a:latest"),
    ("[2001:DB8::1]/a:v", "[2001:db8::1]", "a", "v", None, None, "[2001:db8::1]/a:v"),
    ("Quay.IO/org/app", "quay.io", "org/app", "latest", None, None, "quay.io/org/app:latest"),
    (
        "my-reg.example.com/a_b/c__d/e-f.g:T_a.g-1",
        "my-reg.example.com", "a_b/c__d/e-f.g", "T_a.g-1", None, None,
        "my-reg.example.com/a_b/c__d/e-f.g:T_a.g-1",
    ),
    ("a---b/c.d_e", "docker.io", "a---b/c.d_e", "latest", None, None, "docker.io/a---b/c.d_e:latest"),
    (f"alpine@{H256}", "docker.io", "library/alpine", None, D256, None, f"docker.io/library/alpine@{H256}"),
    (
        f"alpine:3.20@{H256}",
        "docker.io", "library/alpine", "3.20", D256, None, f"docker.io/library/alpine:3.20@{H256}",
    ),
    (f"h.io:1/x@{H512}", "h.io:1", "x", None, D512, None, f"h.io:1/x@{H512}"),
    ("http://127.0.0.1/x", "127.0.0.1", "x", "latest", None, "http", "http://127.0.0.1/x:latest"),
    ("http://10.0.0.1/x:1", "10.0.0.1", "x", "1", None, "http", "http://10.0.0.1/x:1"),
    ("https://host/x", "host", "x", "latest", None, "https", "https://host/x:latest"),
    ("HTTPS://host:8443/x/y", "host:8443", "x/y", "latest", None, "https", "https://host:8443/x/y:latest"),
    ("https://docker.io/alpine", "docker.io", "library/alpine", "latest", None, "https",
     "https://docker.io/library/alpine:latest"),
    ("docker://alpine", "docker.io", "library/alpine", "latest", None, None, "docker.io/library/alpine:latest"),
    ("docker://host:5000/repo:tag", "host:5000", "repo", "tag", None, None, "host:5000/repo:tag"),
    ("docker:latest", "docker.io", "library/docker", "latest", None, None, "docker.io/library/docker:latest"),
    ("a:" + "t" * 128, "docker.io", "library/a", "t" * 128, None, None, "docker.io/library/a:" + "t" * 128),
]


@pytest.mark.parametrize(("text", "registry", "repository", "tag", "digest", "scheme", "canonical"), VALID)
def test_parse_valid(
    text: str,
    registry: str,
    repository: str,
    tag: str | None,
    digest: Digest | None,
    scheme: str | None,
    canonical: str,
) -> None:
    ref = Reference.parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest, ref.scheme) == (
        registry, repository, tag, digest, scheme,
    )
    assert str(ref) == canonical
    assert Reference.parse(canonical) == ref
    assert ref.name == f"{registry}/{repository}"


# text, part, message fragment
INVALID: list[tuple[str, str, str]] = [
    ("Alpine", "repository", "repository must be lowercase"),
    ("docker.io/Library/alpine", "repository", "repository must be lowercase"),
    ("Foo/bar", "repository", "repository must be lowercase"),
    ("a//b", "component", "empty path component"),
    ("a/", "component", "empty path component"),
    ("/a", "component", "empty path component"),
    ("localhost:5000/", "component", "empty path component"),
    ("-a", "component", "path component '-a'"),
    ("a-", "component", "path component 'a-'"),
    ("a..b", "component", "path component 'a..b'"),
    ("a___b", "component", "path component"),
    ("a:", "tag", "empty tag"),
    ("a:-x", "tag", "tag must match"),
    ("a:" + "t" * 129, "tag", "tag longer than 128"),
    ("a@sha256:abc", "digest", "64 hex characters, got 3"),
    ("a@md5:" + "0" * 32, "digest", "unsupported digest algorithm 'md5'"),
    ("a@sha256:" + "a" * 63, "digest", "got 63"),
    ("a@sha256:" + "A" * 64, "digest", "lowercase"),
    ("a@", "digest", "algorithm:hex"),
    ("a@b@c", "digest", "'@' may appear only once"),
    ("host:99999/a", "port", "between 1 and 65535"),
    ("host:0/a", "port", "between 1 and 65535"),
    ("host:port/a", "port", "must be a number"),
    ("host:/a", "port", "empty port"),
    ("host:\uff15/a", "registry", "ASCII"),  # fullwidth digit
    ("[::1/a", "registry", "unterminated '['"),
    ("[::g]/a", "registry", "bad IPv6 address"),
    ("[fe80::1%eth0]/a", "registry", "bad IPv6 address"),
    ("[::1]x/a", "registry", "after ']'"),
    ("-h.io/a", "registry", "registry host label '-h'"),
    ("h-.io/a", "registry", "registry host label 'h-'"),
    ("h..io/a", "registry", "registry host label ''"),
    ("1.2.3.999/a", "registry", "bad IPv4 address"),
    ("hé.io/a", "registry", "ASCII"),
    ("http:///a", "registry", "empty registry host"),
    ("a b", "component", "invalid character ' '"),
    ("a/b:c/d", "component", "invalid character ':'"),
    ("a/b c:tag", "component", "invalid character ' '"),
    ("x.io/" + "a" * 251, "repository", "longer than 255"),
    ("", "repository", "empty reference"),
    ("http://", "registry", "must follow 'http://'"),
    ("https://host", "repository", "repository path must follow"),
    ("ftp://x/y", "scheme", "unsupported scheme 'ftp'"),
    ("docker://", "repository", "empty reference"),
]


@pytest.mark.parametrize(("text", "part", "fragment"), INVALID)
def test_parse_invalid(text: str, part: str, fragment: str) -> None:
    with pytest.raises(InvalidReference) as info:
        Reference.parse(text)
    assert info.value.part == part
    assert fragment in info.value.reason
    assert info.value.text == text
    assert isinstance(info.value, ValueError)


def test_name_length_limit_is_inclusive() -> None:
    path = "a" * (255 - len("x.io/"))
    assert Reference.parse(f"x.io/{path}").name == f"x.io/{path}"
    with pytest.raises(InvalidReference, match="longer than 255"):
        Reference.parse(f"x.io/{path}a")


def test_non_string_is_invalid_reference() -> None:
    with pytest.raises(InvalidReference):
        Reference.parse(None)  # type: ignore[arg-type]


def test_default_tag() -> None:
    assert Reference.parse("alpine", default_tag=None).tag is None
    assert Reference.parse("alpine", default_tag="edge").tag == "edge"
    assert Reference.parse(f"alpine@{H256}", default_tag="edge").tag is None
    assert str(Reference.parse("alpine", default_tag=None)) == "docker.io/library/alpine"
    with pytest.raises(InvalidReference) as info:
        Reference.parse("alpine", default_tag="bad tag")
    assert info.value.part == "tag"


def test_constructor_validates_and_rejects_non_canonical() -> None:
    with pytest.raises(InvalidReference, match="namespace"):
        Reference("docker.io", "alpine", "latest")
    with pytest.raises(InvalidReference, match=r"docker\.io"):
        Reference("index.docker.io", "library/alpine", "latest")
    with pytest.raises(InvalidReference, match="registry needs"):
        Reference("host", "x", "latest")  # would re-parse as docker.io/host/x
    assert str(Reference("host", "x", "latest", scheme="http")) == "http://host/x:latest"
    with pytest.raises(InvalidReference, match="lowercase"):
        Reference("Host.io", "x")
    with pytest.raises(InvalidReference) as info:
        Reference("h.io", "x", scheme="ftp")
    assert info.value.part == "scheme"
    with pytest.raises(TypeError):
        Reference("h.io", "x", digest=H256)  # type: ignore[arg-type]


def test_with_tag_with_digest_are_new_values() -> None:
    ref = Reference.parse("localhost:5000/a:v1")
    pinned = ref.with_digest(H256)
    assert ref.digest is None and ref.tag == "v1"
    assert pinned.tag == "v1" and pinned.digest == D256
    assert str(pinned) == f"localhost:5000/a:v1@{H256}"
    assert ref.with_digest(D256) == pinned
    retagged = pinned.with_tag("v2")
    assert (retagged.tag, retagged.digest) == ("v2", None)
    assert pinned.tag == "v1"
    with pytest.raises(dataclasses.FrozenInstanceError):
        ref.tag = "x"  # type: ignore[misc]
    with pytest.raises(InvalidReference) as info:
        ref.with_tag("no spaces")
    assert info.value.part == "tag"
    with pytest.raises(InvalidReference) as info:
        ref.with_digest("sha256:abc")
    assert info.value.part == "digest"


def test_identifier_and_repo() -> None:
    ref = Reference.parse("http://h.io/a/b:v1")
    assert ref.identifier == "v1"
    assert ref.with_digest(H256).identifier == H256
    assert ref.repo == Repository("h.io", "a/b", "http")
    assert str(ref.repo) == "http://h.io/a/b"
    with pytest.raises(InvalidReference, match="neither tag nor digest"):
        _ = Reference.parse("alpine", default_tag=None).identifier


def test_hashable_and_usable_as_keys() -> None:
    a = Reference.parse("alpine")
    b = Reference.parse("docker.io/library/alpine:latest")
    c = Reference.parse("index.docker.io/alpine")
    assert a == b == c and hash(a) == hash(b) == hash(c)
    assert len({a, b, c, Reference.parse("alpine:edge")}) == 2
    assert {a: 1}[c] == 1
    assert Reference.parse("http://h.io/x") != Reference.parse("h.io/x")
    repos = {Repository.parse("alpine"), Repository.parse("docker.io/library/alpine")}
    assert len(repos) == 1
    locs = {LocalLocation.parse("oci:d:v1"), LocalLocation("oci", "d", "v1")}
    assert len(locs) == 1


def test_api_host() -> None:
    assert api_host(DOCKER_HUB) == "registry-1.docker.io"
    assert api_host("localhost:5000") == "localhost:5000"
    assert api_host(Reference.parse("alpine").registry) == "registry-1.docker.io"


# ---------------------------------------------------------------- Repository


@pytest.mark.parametrize(
    ("text", "registry", "path", "scheme"),
    [
        ("alpine", "docker.io", "library/alpine", None),
        ("index.docker.io/x/y", "docker.io", "x/y", None),
        ("localhost:5000/a/b", "localhost:5000", "a/b", None),
        ("http://10.0.0.1/x", "10.0.0.1", "x", "http"),
        ("docker://quay.io/org/app", "quay.io", "org/app", None),
    ],
)
def test_repository_parse(text: str, registry: str, path: str, scheme: str | None) -> None:
    repo = Repository.parse(text)
    assert (repo.registry, repo.path, repo.scheme) == (registry, path, scheme)
    assert Repository.parse(str(repo)) == repo
    assert repo.name == f"{registry}/{path}"
    assert repo.with_tag("v1") == Reference(registry, path, "v1", None, scheme)
    assert repo.with_digest(H256) == Reference(registry, path, None, D256, scheme)
    assert repo.with_tag("v1").repo == repo


@pytest.mark.parametrize(
    ("text", "part"),
    [("alpine:3", "tag"), (f"alpine@{H256}", "digest"), (f"a:1@{H256}", "digest"), ("A", "repository"),
     ("", "repository"), ("h.io:x/a", "port")],
)
def test_repository_parse_invalid(text: str, part: str) -> None:
    with pytest.raises(InvalidReference) as info:
        Repository.parse(text)
    assert info.value.part == part


# ---------------------------------------------------------------- local locations

LOCAL: list[tuple[str, str, str, str | None]] = [
    ("oci:/tmp/dir:v1", "oci", "/tmp/dir", "v1"),
    ("oci:./dir", "oci", "./dir", None),
    ("oci:dir", "oci", "dir", None),
    # c/image splits at the FIRST ':' (oci_util.go splitPathAndImageNonWindows): the rest is the image name.
    ("oci:/tmp/l:repo:tag", "oci", "/tmp/l", "repo:tag"),
    ("oci:./a:b/c", "oci", "./a", "b/c"),
    ("oci:./a:b/c:v1.2", "oci", "./a", "b/c:v1.2"),
    ("oci:d:localhost:5000/a/b:v1", "oci", "d", "localhost:5000/a/b:v1"),
    ("oci:d:x@sha256:" + "0" * 64, "oci", "d", "x@sha256:" + "0" * 64),
    ("oci:d:A--b+c", "oci", "d", "A--b+c"),
    ("oci-archive:/tmp/x.tar", "oci-archive", "/tmp/x.tar", None),
    ("oci-archive:x.tar:latest", "oci-archive", "x.tar", "latest"),
    ("oci-archive:x.tar:repo:tag", "oci-archive", "x.tar", "repo:tag"),
    ("docker-archive:x.tar", "docker-archive", "x.tar", None),
    ("docker-archive:x.tar:alpine:3.20", "docker-archive", "x.tar", "alpine:3.20"),
    ("docker-archive:x.tar:localhost:5000/a/b:v1", "docker-archive", "x.tar", "localhost:5000/a/b:v1"),
    ("docker-archive:/tmp/x.tar:@0", "docker-archive", "/tmp/x.tar", "@0"),
    # dir: (c/image directory transport): the whole rest is the path, ':' included (skopeo sync's app:v1).
    ("dir:/tmp/x", "dir", "/tmp/x", None),
    ("dir:out/app:v1", "dir", "out/app:v1", None),
]


@pytest.mark.parametrize(("text", "transport", "path", "ref"), LOCAL)
def test_local_location(text: str, transport: str, path: str, ref: str | None) -> None:
    loc = parse_location(text)
    assert isinstance(loc, LocalLocation)
    assert (loc.transport, loc.path, loc.ref) == (transport, path, ref)
    assert str(loc) == text
    assert LocalLocation.parse(str(loc)) == loc


@pytest.mark.parametrize(
    ("text", "part", "fragment"),
    [
        ("oci:", "path", "empty path"),
        ("oci::v1", "path", "empty path"),
        ("oci:d:not a tag", "tag", "image name must be"),
        ("oci:d:a//b", "tag", "image name must be"),
        ("oci:d:-a", "tag", "image name must be"),
        ("oci:d:a:", "tag", "image name must be"),
        ("oci-archive:x.tar:a b", "tag", "image name must be"),
        ("docker-archive:", "path", "empty path"),
        ("docker-archive::a", "path", "empty path"),
        ("docker-archive:x.tar:", "tag", "empty reference"),
        ("docker-archive:x.tar:@a", "tag", "@N"),
        ("docker-archive:x.tar:@", "tag", "@N"),
        (f"docker-archive:x.tar:a@{H256}", "digest", "cannot have a digest"),
        ("docker-archive:x.tar:A", "repository", "lowercase"),
        ("dir:", "path", "empty path"),
        ("sif:/tmp/x", "scheme", "unsupported transport 'sif'"),
        ("containers-storage:alpine", "scheme", "unsupported transport"),
        ("docker-daemon:alpine:latest", "scheme", "unsupported transport"),
        ("ftp://x/y", "scheme", "unsupported scheme"),
        ("", "repository", "empty reference"),
    ],
)
def test_parse_location_invalid(text: str, part: str, fragment: str) -> None:
    with pytest.raises(InvalidReference) as info:
        parse_location(text)
    assert info.value.part == part
    assert fragment in info.value.reason
    assert info.value.text == text


@pytest.mark.parametrize(
    "text",
    ["alpine", "docker://alpine", "localhost:5000/x", "host:5000/repo", "localhost:5000/x:1", "https://h/x",
     "docker:latest", "ocireg.io/x", "docker://dir:x"],
)
def test_parse_location_registry(text: str) -> None:
    loc = parse_location(text)
    assert isinstance(loc, Reference)
    assert loc == Reference.parse(text)


def test_parse_location_default_tag() -> None:
    loc = parse_location("h.io/x", default_tag=None)
    assert isinstance(loc, Reference) and loc.tag is None


def test_empty_oci_ref_is_no_ref() -> None:
    # c/image treats "oci:d:" as "oci:d" (an empty image name); the canonical form drops the ':'.
    for transport in ("oci", "oci-archive"):
        loc = LocalLocation.parse(f"{transport}:d:")
        assert (loc.path, loc.ref) == ("d", None)
        assert str(loc) == f"{transport}:d"


def test_local_location_constructor() -> None:
    assert str(LocalLocation("oci", "d", "v1")) == "oci:d:v1"
    assert str(LocalLocation("oci", "d", "repo:tag")) == "oci:d:repo:tag"
    # A path with ':' cannot be written at all: the first ':' always ends the path.
    for transport in ("oci", "oci-archive", "docker-archive"):
        with pytest.raises(InvalidReference, match="cannot contain ':'"):
            LocalLocation(transport, "a:b")  # type: ignore[arg-type]
        with pytest.raises(InvalidReference, match="cannot contain ':'"):
            LocalLocation(transport, "a:b", "v1")  # type: ignore[arg-type]
    with pytest.raises(InvalidReference, match="unknown local transport"):
        LocalLocation("sif", "x")  # type: ignore[arg-type]
    assert str(LocalLocation("dir", "a:b")) == "dir:a:b"
    with pytest.raises(InvalidReference, match="takes no ref"):
        LocalLocation("dir", "x", "v1")
    with pytest.raises(InvalidReference):
        LocalLocation("oci", "d", "bad tag")
    with pytest.raises(InvalidReference):
        LocalLocation.parse("alpine")


# ---------------------------------------------------------------- properties

_label = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
_hostname = st.lists(_label, min_size=1, max_size=4).map(".".join).filter(
    lambda h: not all(part.isdigit() for part in h.split("."))
)
_ipv4 = st.ip_addresses(v=4).map(str)
_ipv6 = st.ip_addresses(v=6).map(str).filter(lambda a: "." not in a and "%" not in a).map(lambda a: f"[{a}]")
_host = st.one_of(st.just("docker.io"), st.just("localhost"), _hostname, _ipv4, _ipv6)
_registry = st.tuples(_host, st.none() | st.integers(1, 65535)).map(
    lambda hp: hp[0] if hp[1] is None else f"{hp[0]}:{hp[1]}"
)
_component = st.from_regex(r"[a-z0-9]{1,5}(?:(?:[._]|__|-{1,3})[a-z0-9]{1,5}){0,3}", fullmatch=True)
_path = st.lists(_component, min_size=1, max_size=4).map("/".join)
_tag = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", fullmatch=True)
_digest = st.one_of(
    st.text("0123456789abcdef", min_size=64, max_size=64).map(lambda h: Digest("sha256", h)),
    st.text("0123456789abcdef", min_size=128, max_size=128).map(lambda h: Digest("sha512", h)),
)
_scheme = st.sampled_from([None, "http", "https"])


def _usable(registry: str, path: str, scheme: str | None) -> bool:
    first = registry
    return (
        registry not in ("index.docker.io", "registry-1.docker.io")
        and (scheme is not None or "." in first or ":" in first or first == "localhost")
        and (registry != DOCKER_HUB or "/" in path)
        and len(registry) + 1 + len(path) <= 255
    )


@given(_registry, _path, st.none() | _tag, st.none() | _digest, _scheme)
def test_property_round_trip(
    registry: str, path: str, tag: str | None, digest: Digest | None, scheme: str | None
) -> None:
    assume(_usable(registry, path, scheme))
    ref = Reference(registry, path, tag, digest, scheme)
    text = str(ref)
    again = Reference.parse(text, default_tag=None)
    assert again == ref
    assert str(again) == text
    if tag is not None or digest is not None:
        assert Reference.parse(text) == ref
    repo = Repository(registry, path, scheme)
    assert Repository.parse(str(repo)) == repo == ref.repo


@given(_registry, _path, _tag, st.sampled_from(["", "docker://", "DOCKER://"]))
def test_property_parse_normalises_spelling(registry: str, path: str, tag: str, prefix: str) -> None:
    assume(_usable(registry, path, None))
    text = f"{prefix}{registry.upper()}/{path}:{tag}"
    ref = Reference.parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.scheme) == (registry, path, tag, None)


_grammarish = st.text(alphabet="aAz09.-_/:@[]%h sx\u212a\u0130", max_size=40) | st.builds(
    lambda a, b: a + b,
    st.sampled_from(["", "http://", "https://", "docker://", "oci:", "docker-archive:", "ftp://", "dir:"]),
    st.text(alphabet="ab1.-_/:@[]", max_size=30),
)


@given(st.text() | _grammarish)
def test_property_parse_never_crashes(text: str) -> None:
    try:
        ref = Reference.parse(text)
    except InvalidReference as exc:
        assert exc.text == text and exc.part is not None
    else:
        assert Reference.parse(str(ref)) == ref
        assert ref.registry.isascii() and ref.repository.isascii()
    try:
        repo = Repository.parse(text)
    except InvalidReference:
        pass
    else:
        assert Repository.parse(str(repo)) == repo
    try:
        loc = parse_location(text)
    except InvalidReference:
        pass
    else:
        assert parse_location(str(loc)) == loc


ADVERSARIAL = [
    "a" + "-" * 10000 + "!",
    "a" + "-" * 10000,
    "a" + "_" * 10000 + "a",
    "a" + ".a" * 5000 + "!",
    "a" + "-a" * 5000 + "!",
    ("a" * 1000 + "__") * 10 + "!",
    "a/" * 5000 + "!",
    "a" * 100000,
    "h" + "-" * 10000 + "h.io/a",
    "h" + "-" * 10000 + "!.io/a",
    "x.io:" + "1" * 10000 + "/a",
    "[" + ":" * 10000 + "]/a",
    "a:" + "a" * 10000,
    "a:" + "." * 10000 + "!",
    "@" * 10000,
    ":" * 10000,
    "/" * 10000,
    "a" * 10000 + "://" + "a" * 10000,
    "oci:" + ":a" * 5000,
    "docker-archive:x:" + "a" * 10000,
]


@pytest.mark.parametrize("text", ADVERSARIAL, ids=lambda t: f"{t[:12]!r}x{len(t)}")
def test_adversarial_inputs_are_fast(text: str) -> None:
    start = time.perf_counter()
    for parse in (Reference.parse, Repository.parse, parse_location):
        with contextlib.suppress(InvalidReference):
            parse(text)
    assert time.perf_counter() - start < 0.5


_oci_component = st.from_regex(r"[A-Za-z0-9]{1,4}(?:(?:[-._:@+]|--)[A-Za-z0-9]{1,4}){0,3}", fullmatch=True)
_oci_ref = st.lists(_oci_component, min_size=1, max_size=3).map("/".join)
_local_path = st.text(alphabet="ab./_-: ", min_size=1, max_size=12)


@given(st.sampled_from(["oci", "oci-archive"]), _local_path, st.none() | _oci_ref)
def test_property_oci_location_round_trip(transport: str, path: str, ref: str | None) -> None:
    try:
        loc = LocalLocation(transport, path, ref)  # type: ignore[arg-type]
    except InvalidReference as exc:
        assert ":" in path and exc.part == "path"  # only an ambiguous path is refused
        return
    assert LocalLocation.parse(str(loc)) == loc == parse_location(str(loc))
