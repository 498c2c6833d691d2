"""Addressing of plan repositories in registries and local stores (locations.py, stores/local.split_ref)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from regcopy.errors import InvalidReference
from regcopy.locations import LocalRepository, parse_namespace, parse_repository
from regcopy.reference import LocalLocation, Namespace, Repository
from regcopy.stores.local import join_ref, split_ref


@pytest.mark.parametrize("text, endpoint, path", [
    ("oci:/x", "oci:/x", ""),
    ("oci:/x:ns/app", "oci:/x", "ns/app"),
    ("oci-archive:rel/a.tar:ns", "oci-archive:rel/a.tar", "ns"),
    ("docker-archive:/d.tar:team/app", "docker-archive:/d.tar", "team/app"),
    ("reg.example:5000/ns/app", "reg.example:5000", "ns/app"),
    ("reg.example:5000", "reg.example:5000", ""),
])
def test_namespaces_name_their_store_or_registry_and_path(text: str, endpoint: str, path: str) -> None:
    namespace = parse_namespace(text)
    assert (namespace.registry, namespace.path) == (endpoint, path)
    assert namespace.name == str(namespace) == text
    assert namespace.root.name == endpoint and namespace.root.path == ""


def test_local_repository_refs_and_names() -> None:
    repo = parse_repository("oci:/x:ns/app")
    assert isinstance(repo, LocalRepository) and repo.registry == "oci:/x" and repo.path == "ns/app"
    assert join_ref(repo.path, "v1") == "ns/app:v1"
    assert join_ref(repo.path, "sha256:" + "a" * 64) == "sha256:" + "a" * 64
    assert str(repo.with_tag("v1")) == "oci:/x:ns/app:v1" and repo.with_tag("v1").identifier == "v1"
    bare = parse_repository("oci:/x")
    assert isinstance(bare, LocalRepository) and join_ref(bare.path, "v1") == "v1"
    assert str(bare.with_tag("v1")) == "oci:/x:v1"
    assert parse_repository("oci:./x").key == parse_repository(f"oci:{__import__('os').path.abspath('x')}").key
    assert parse_repository("reg.example:5000/ns/app") == Repository.parse("reg.example:5000/ns/app")
    with pytest.raises(InvalidReference, match="source index"):
        parse_repository("docker-archive:/d.tar:@1")
    # A repository value checks its path as the store's refs are checked, whoever builds it.
    assert bare.at("ns/app") == repo
    with pytest.raises(InvalidReference):
        bare.at("bad path")
    with pytest.raises(InvalidReference, match="source index"):
        LocalRepository(LocalLocation("docker-archive", "/d.tar"), "@1")
    with pytest.raises(InvalidReference):
        LocalRepository(LocalLocation("oci", "/x", "v1"))  # the store's location carries no ref


@pytest.mark.parametrize("text, registry, path", [
    ("quay.io", "quay.io", ""), ("quay.io/org", "quay.io", "org"), ("reg:5000/a/b", "reg:5000", "a/b"),
    ("myorg", "docker.io", "myorg"), ("index.docker.io/bitnami", "docker.io", "bitnami"), ("Quay.IO/x", "quay.io", "x"),
    ("localhost", "localhost", ""),
])
def test_namespace_parse(text: str, registry: str, path: str) -> None:
    assert Namespace.parse(text) == Namespace(registry, path)


@pytest.mark.parametrize("text, part", [
    ("https://quay.io/org", "scheme"), ("quay.io/org:v1", "tag"), ("quay.io/org@sha256:" + "a" * 64, "digest"),
    ("quay.io//org", "component"), ("quay.io/Org", "repository"), ("reg:0/x", "port"), ("", "repository"),
])
def test_namespace_parse_refuses(text: str, part: str) -> None:
    with pytest.raises(InvalidReference) as info:
        Namespace.parse(text)
    assert info.value.part == part


def test_namespace_repositories_are_normalised() -> None:
    hub = Namespace("docker.io")
    assert hub.at("app") == Repository.parse("docker.io/app") == Repository("docker.io", "library/app")
    assert Namespace("quay.io", "org").at("org/app") == Repository("quay.io", "org/app")
    assert Namespace("docker.io", "bitnami").name == "docker.io/bitnami"  # a prefix needs no Hub namespace
    with pytest.raises(InvalidReference):
        Namespace("quay.io").at("")
    with pytest.raises(InvalidReference):
        Namespace("index.docker.io")  # values are normalised: Docker Hub is docker.io


@pytest.mark.parametrize("ref, expected", [
    ("ns/app:v1", ("ns/app", "v1")), ("v1", ("", "v1")), ("app:latest", ("app", "latest")),
    ("localhost:5000/app", ("localhost:5000/app", "")), ("localhost:5000/app:v2", ("localhost:5000/app", "v2")),
])
def test_split_ref(ref: str, expected: tuple[str, str]) -> None:
    assert split_ref(ref) == expected


@given(st.text(max_size=60))
def test_parse_namespace_only_raises_invalid_reference(text: str) -> None:
    for prefix in ("", "oci:", "docker-archive:"):
        try:
            namespace = parse_namespace(prefix + text)
        except InvalidReference:
            continue
        assert parse_namespace(namespace.name) == namespace  # what parses, prints back to the same value


@given(st.text(max_size=60))
def test_parse_repository_only_raises_invalid_reference(text: str) -> None:
    for prefix in ("", "oci:", "oci-archive:", "docker-archive:"):
        try:
            repo = parse_repository(prefix + text)
        except InvalidReference:
            continue
        if isinstance(repo, LocalRepository):  # what parses, prints back to the same repository
            assert parse_repository(repo.name) == repo
            assert LocalLocation.parse(str(repo.location)).ref is None


@given(st.text(max_size=40))
def test_split_ref_round_trips(ref: str) -> None:
    repo, tag = split_ref(ref)
    assert ref in {f"{repo}:{tag}", repo, tag}
    assert "/" not in tag  # a port's ':' never makes a tag
