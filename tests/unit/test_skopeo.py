"""Tests for :mod:`regcopy.sync.skopeo`: skopeo sync YAML and ``--src docker``, with skopeo-sync(1)'s meaning.

Valid inputs are compared with the whole expected dataclasses; every invalid input must raise a
ConfigError naming the culprit, never a secret. Property tests feed arbitrary YAML-able data to the
parsers; the unanchored tag regexes are checked against ``re.search``.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from plan_cases import D0, D1, DATA, KEYS, LEAVES, SECRET, check, only_config_errors, raises, sync_entry

from regcopy import planfile
from regcopy.errors import ConfigError
from regcopy.filters import TagFilter, unanchored
from regcopy.reference import Repository
from regcopy.settings import Credentials, Overrides
from regcopy.sync import skopeo as sync_skopeo
from regcopy.sync.model import SyncEntry, SyncPlan
from regcopy.sync.plan import target_repository
from regcopy.sync.skopeo import from_skopeo_docker, from_skopeo_yaml

MAN_PAGE_YAML = r"""
registry.example.com:
    images:
        busybox: []
        redis:
            - "1.0"
            - "2.0"
            - "sha256:0000000000000000000000000000000011111111111111111111111111111111"
    images-by-tag-regex:
        nginx: ^1\.13\.[12]-alpine-perl$
    images-by-semver:
        alpine: ">= 3.12.0"
    credentials:
        username: john
        password: this is a secret
    tls-verify: true
    cert-dir: CERT_DIR
quay.io:
    tls-verify: false
    images:
        coreos/etcd:
            - latest
"""


def test_skopeo_secrets_never_appear(write: Callable[[str, str], Path]) -> None:
    for creds in (f"{{password: {SECRET}}}", f"{{username: u, password: [{SECRET}]}}",
                  f"{{username: u, password: {SECRET}, pass: {SECRET}}}", f"{{identitytoken: {{a: {SECRET}}}}}"):
        path = write(f"quay.io:\n  credentials: {creds}\n  images: {{a/b: []}}\n", "s.yaml")
        exc = raises(lambda p=path: from_skopeo_yaml(p, "dst.io", scoped=False, all_platforms=True))  # type: ignore[misc]
        assert SECRET not in str(exc)


@pytest.fixture
def amd64(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend to run on x86_64, so the host platform is linux/amd64."""
    monkeypatch.setattr("platform.machine", lambda: "x86_64")


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str], Path]:
    def _write(text: str, name: str = "plan.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return _write


# ------------------------------------------------------------------------------------ skopeo: YAML


@pytest.fixture
def cert_dir(tmp_path: Path) -> Path:
    certs = tmp_path / "certs"
    certs.mkdir()
    for name in ("b-ca.crt", "a-ca.crt", "client.cert", "client.key", "README"):
        (certs / name).write_text("x")
    return certs


def skopeo(write: Callable[[str, str], Path], text: str, destination: str = "dst.io", *,
           scoped: bool = False, all_platforms: bool = True) -> SyncPlan:
    return from_skopeo_yaml(write(text, "sync.yml"), destination, scoped=scoped, all_platforms=all_platforms)


def test_the_man_page_example(write: Callable[[str, str], Path], cert_dir: Path, amd64: None) -> None:
    path = write(MAN_PAGE_YAML.replace("CERT_DIR", str(cert_dir)), "sync.yml")
    plan = from_skopeo_yaml(path, "my-registry.local.lan/repo/", scoped=False, all_platforms=False)
    dst, host = "my-registry.local.lan/repo", ("linux/amd64",)

    def sk(name: str, source: str, tags: TagFilter) -> SyncEntry:
        return sync_entry(name, source, dst, "repository", "basename", tags=tags, platforms=host)

    assert plan == SyncPlan(
        (
            sk("registry.example.com/busybox", "registry.example.com/busybox", TagFilter()),
            sk("registry.example.com/redis", "registry.example.com/redis",
               TagFilter(exact=("1.0", "2.0"), digests=(D1,))),
            sk("registry.example.com/nginx", "registry.example.com/nginx",
               TagFilter(allow=(unanchored(r"^1\.13\.[12]-alpine-perl$"),))),
            sk("registry.example.com/alpine", "registry.example.com/alpine", TagFilter(semver=">= 3.12.0")),
            sk("quay.io/coreos/etcd", "quay.io/coreos/etcd", TagFilter(exact=("latest",))),
        ),
        {
            "registry.example.com": Overrides(
                {"scheme": "https", "cert_dir": str(cert_dir)},  # every CA in it, as skopeo reads them
                Credentials("john", "this is a secret"),
            ),
            "quay.io": Overrides({"scheme": "insecure"}),
        },
        str(path),
    )
    # What skopeo-sync(1) says lands where, and which nginx tags the regex keeps.
    assert [str(target_repository(e, e.source)) for e in plan.entries] == [
        f"{dst}/busybox", f"{dst}/redis", f"{dst}/nginx", f"{dst}/alpine", f"{dst}/etcd",
    ]
    nginx = re.compile(plan.entries[2].tags.allow[0])
    kept = [t for t in ("1.13.1-alpine-perl", "1.13.2-alpine-perl", "1.13.3-alpine-perl", "1.13.1-alpine")
            if nginx.fullmatch(t)]
    assert kept == ["1.13.1-alpine-perl", "1.13.2-alpine-perl"]


def test_the_man_page_example_scoped(write: Callable[[str, str], Path], cert_dir: Path) -> None:
    path = write(MAN_PAGE_YAML.replace("CERT_DIR", str(cert_dir)), "sync.yml")
    plan = from_skopeo_yaml(path, "my-registry.local.lan/repo/", scoped=True, all_platforms=True)
    assert {e.naming for e in plan.entries} == {"scoped"} and {e.platforms for e in plan.entries} == {()}
    assert str(target_repository(plan.entries[4], Repository("quay.io", "coreos/etcd"))) == (
        "my-registry.local.lan/repo/quay.io/coreos/etcd")


def test_skopeo_docker_hub_names_are_normalised(write: Callable[[str, str], Path]) -> None:
    text = (
        "docker.io:\n  images:\n    busybox: []\n    library/alpine: []\n    bitnami/redis: []\n"
        "index.docker.io:\n  images:\n    nginx: [latest]\n"
    )
    plan = skopeo(write, text, "dst:5000/m", scoped=True)
    assert [(e.name, str(e.source)) for e in plan.entries] == [
        ("docker.io/busybox", "docker.io/library/busybox"),
        ("docker.io/library/alpine", "docker.io/library/alpine"),
        ("docker.io/bitnami/redis", "docker.io/bitnami/redis"),
        ("index.docker.io/nginx", "docker.io/library/nginx"),
    ]
    assert str(target_repository(plan.entries[0], Repository("docker.io", "library/busybox"))) == (
        "dst:5000/m/docker.io/library/busybox")


def test_skopeo_keeps_scalars_as_text(write: Callable[[str, str], Path]) -> None:
    # skopeo's yaml.v3 decodes into Go strings: 1.10 is the tag "1.10", not the float 1.1.
    text = (
        "quay.io:\n  images:\n    a/b: [1.10, 3, 2024-01-01, 0x1f]\n  images-by-semver:\n    a/c: 3.12\n"
        "  credentials: {username: 1000, password: 12345}\n"
    )
    plan = skopeo(write, text)
    assert plan.entries[0].tags == TagFilter(exact=("1.10", "3", "2024-01-01", "0x1f"))
    assert plan.entries[1].tags == TagFilter(semver="3.12")
    assert plan.registries["quay.io"].credentials == Credentials("1000", "12345")


def test_skopeo_image_in_several_sections(write: Callable[[str, str], Path]) -> None:
    text = (
        "quay.io:\n  images: {a/b: [v1]}\n  images-by-tag-regex: {a/b: '^v2'}\n  images-by-semver: {a/b: '>=3'}\n"
        "quay.io/a:\n  images: {b: [v4]}\n"
    )
    plan = skopeo(write, text)
    assert [e.name for e in plan.entries] == [
        "quay.io/a/b", "quay.io/a/b (images-by-tag-regex)", "quay.io/a/b (images-by-semver)",
        "quay.io/a/b (images)",
    ]
    assert {str(e.source) for e in plan.entries} == {"quay.io/a/b"}
    assert [e.tags for e in plan.entries] == [
        TagFilter(exact=("v1",)), TagFilter(allow=(unanchored("^v2"),)), TagFilter(semver=">=3"),
        TagFilter(exact=("v4",)),
    ]


@pytest.mark.parametrize(
    ("value", "scheme"),
    [("true", "https"), ("false", "insecure"), ("True", "https"), ("FALSE", "insecure"), ("yes", "https"),
     ("off", "insecure"), ('"on"', "https"), ("n", "insecure")],
)
def test_skopeo_tls_verify(write: Callable[[str, str], Path], value: str, scheme: str) -> None:
    plan = skopeo(write, f"quay.io:\n  tls-verify: {value}\n  images: {{a/b: []}}\n")
    assert plan.registries == {"quay.io": Overrides({"scheme": scheme})}


def test_skopeo_without_settings_keeps_auto(write: Callable[[str, str], Path]) -> None:
    plan = skopeo(write, "quay.io:\n  tls-verify: null\n  credentials: {username: '', password: ''}\n"
                         "  images: {a/b: null}\n")
    assert plan.registries == {} and plan.entries[0].tags == TagFilter()


def test_skopeo_identity_token(write: Callable[[str, str], Path]) -> None:
    plan = skopeo(write, f"quay.io:\n  credentials: {{identitytoken: {SECRET}}}\n  images: {{a/b: []}}\n")
    assert plan.registries["quay.io"].credentials == Credentials(identity_token=SECRET)


def test_skopeo_settings_of_one_host_merge(write: Callable[[str, str], Path], cert_dir: Path) -> None:
    text = (
        "quay.io:\n  tls-verify: false\n  images: {a/b: []}\n"
        f"quay.io/coreos:\n  cert-dir: {cert_dir}\n  tls-verify: false\n  images: {{etcd: []}}\n"
    )
    plan = skopeo(write, text)
    assert plan.registries == {
        "quay.io": Overrides({"scheme": "insecure", "cert_dir": str(cert_dir)})
    }
    assert str(plan.entries[1].source) == "quay.io/coreos/etcd"


def test_skopeo_cert_dir_variants(write: Callable[[str, str], Path], tmp_path: Path) -> None:
    only_ca = tmp_path / "ca-only"
    only_ca.mkdir()
    (only_ca / "ca.crt").write_text("x")
    plan = skopeo(write, f"quay.io:\n  cert-dir: {only_ca}\n  images: {{a/b: []}}\n")
    assert plan.registries["quay.io"] == Overrides({"cert_dir": str(only_ca)})
    empty = tmp_path / "empty"
    empty.mkdir()
    assert skopeo(write, f"quay.io:\n  cert-dir: {empty}\n  images: {{a/b: []}}\n").registries == {}


@pytest.mark.parametrize(
    ("machine", "expected"),
    [("x86_64", "linux/amd64"), ("AMD64", "linux/amd64"), ("aarch64", "linux/arm64"), ("arm64", "linux/arm64"),
     ("armv7l", "linux/arm/v7"), ("ppc64le", "linux/ppc64le"), ("s390x", "linux/s390x"), ("weird9", "linux/weird9")],
)
def test_host_platform(monkeypatch: pytest.MonkeyPatch, machine: str, expected: str) -> None:
    monkeypatch.setattr("platform.machine", lambda: machine)
    assert from_skopeo_docker("quay.io/a/b", "dst.io", scoped=False, all_platforms=False).entries[0].platforms == (
        expected,
    )
    assert from_skopeo_docker("quay.io/a/b", "dst.io", scoped=False, all_platforms=True).entries[0].platforms == ()


def test_unknown_host_platform_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("platform.machine", lambda: "")
    assert "--all" in str(raises(lambda: from_skopeo_docker("quay.io/a/b", "d.io", scoped=False, all_platforms=False)))


# regex, tags it must keep (Go MatchString: anywhere in the tag), tags it must drop
REGEXES: list[tuple[str, list[str], list[str]]] = [
    (r"^1\.13\.[12]-alpine-perl$", ["1.13.1-alpine-perl"], ["1.13.3-alpine-perl", "x1.13.1-alpine-perl"]),
    ("alpine", ["alpine", "3.19-alpine", "alpine-slim"], ["debian"]),
    ("^v", ["v1", "v"], ["1v"]),
    ("rc$", ["1.0-rc"], ["rc1"]),
    ("a|b", ["xax", "b"], ["c"]),
    ("", ["anything", ""], []),
    ("(?i)^V", ["v1", "V2"], ["1v"]),
    ("(?i)(?s)beta", ["1-BETA-2"], ["1-alpha"]),
    (r"(\d)\1", ["v11", "1.22"], ["v12"]),
]


@pytest.mark.parametrize(("regex", "keep", "drop"), REGEXES)
def test_tag_regexes_keep_skopeos_unanchored_meaning(
    write: Callable[[str, str], Path], regex: str, keep: list[str], drop: list[str]
) -> None:
    plan = skopeo(write, f"quay.io:\n  images-by-tag-regex:\n    a/b: {json.dumps(regex)}\n")
    (stored,) = plan.entries[0].tags.allow
    pattern = re.compile(stored, re.ASCII)
    assert [t for t in keep + drop if pattern.fullmatch(t)] == keep


@settings(max_examples=80, deadline=None)
@given(
    regex=st.text(alphabet="ab.*+?^$|()[]-\\", max_size=8),
    tags=st.lists(st.text(alphabet="ab.-", max_size=6), max_size=5),
)
def test_wrapped_fullmatch_equals_search(regex: str, tags: list[str]) -> None:
    at = planfile.At("f", "e", "k")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "[[": valid today, re only warns
        try:
            wrapped = sync_skopeo._unanchored(regex, at)
        except ConfigError:
            with pytest.raises((re.error, ValueError, OverflowError)):
                re.compile(regex, re.ASCII)
            return
        for tag in tags:
            assert bool(re.fullmatch(wrapped, tag, re.ASCII)) == bool(re.search(regex, tag, re.ASCII))


# text, destination, scoped, entry, key, words
SKOPEO_INVALID: list[tuple[str, str, bool, str | None, str | None, str]] = [
    ("", "dst.io", False, None, None, "no images"),
    ("# only a comment\n", "dst.io", False, None, None, "no images"),
    ("quay.io:\n  tls-verify: false\n", "dst.io", False, None, None, "no images"),
    ("quay.io:\n", "dst.io", False, None, None, "no images"),
    ("- quay.io\n", "dst.io", False, None, None, "must be a mapping"),
    ("true: {images: {a/b: []}}\n", "dst.io", False, None, None, "keys must be strings"),
    ("myregistry:\n  images: {busybox: []}\n", "dst.io", False, "myregistry", None, "must start with a registry host"),
    ("quay.io:99999:\n  images: {a/b: []}\n", "dst.io", False, "quay.io:99999", None, "65535"),
    ("quay.io:\n  - images\n", "dst.io", False, "quay.io", None, "must be a mapping"),
    ("quay.io:\n  image: {a/b: []}\n", "dst.io", False, "quay.io", "image", "did you mean 'images'"),
    ("quay.io:\n  tls_verify: false\n", "dst.io", False, "quay.io", "tls_verify", "did you mean 'tls-verify'"),
    ("quay.io:\n  images: [a/b]\n", "dst.io", False, "quay.io", "images", "must be a mapping, not a list"),
    ("quay.io:\n  images: {a/b: latest}\n", "dst.io", False, "quay.io", "images[a/b]", "must be a list"),
    ("quay.io:\n  images: {a/b: ['v 1']}\n", "dst.io", False, "quay.io", "images[a/b][0]", "invalid tag"),
    ("quay.io:\n  images: {a/b: [v1, null]}\n", "dst.io", False, "quay.io", "images[a/b][1]", "not null"),
    ("quay.io:\n  images: {a/b: ['sha256:abc']}\n", "dst.io", False, "quay.io", "images[a/b][0]", "invalid digest"),
    ("quay.io:\n  images: {a/b: ['sha384:" + "0" * 96 + "']}\n", "dst.io", False, "quay.io", "images[a/b][0]",
     "unsupported digest algorithm"),
    ("quay.io:\n  images: {'a/b:v1': []}\n", "dst.io", False, "quay.io", "images[a/b:v1]", "cannot carry a tag"),
    (f"quay.io:\n  images: {{'a/b@{D0}': []}}\n", "dst.io", False, "quay.io", f"images[a/b@{D0}]", "digest"),
    ("quay.io:\n  images: {A/B: []}\n", "dst.io", False, "quay.io", "images[A/B]", "lowercase"),
    ("quay.io:\n  images: {'': []}\n", "dst.io", False, "quay.io", "images[]", "invalid image"),
    ("quay.io:\n  images: {null: []}\n", "dst.io", False, "quay.io", "images", "keys must be strings"),
    ("quay.io:\n  images-by-tag-regex: {a/b: '('}\n", "dst.io", False, "quay.io", "images-by-tag-regex[a/b]",
     "invalid regular expression"),
    ("quay.io:\n  images-by-tag-regex: {a/b: 'a)(b'}\n", "dst.io", False, "quay.io", "images-by-tag-regex[a/b]",
     "invalid regular expression"),
    ("quay.io:\n  images-by-tag-regex: {a/b: '(?U)a+'}\n", "dst.io", False, "quay.io", "images-by-tag-regex[a/b]",
     "unsupported regex flags"),
    ("quay.io:\n  images-by-tag-regex: {a/b: '(?x)a # c'}\n", "dst.io", False, "quay.io",
     "images-by-tag-regex[a/b]", "unsupported regex flags"),
    ("quay.io:\n  images-by-tag-regex: {a/b: null}\n", "dst.io", False, "quay.io", "images-by-tag-regex[a/b]",
     "not null"),
    ("quay.io:\n  images-by-tag-regex: {a/b: [x]}\n", "dst.io", False, "quay.io", "images-by-tag-regex[a/b]",
     "must be a string, not a list"),
    ("quay.io:\n  images-by-semver: {a/b: ''}\n", "dst.io", False, "quay.io", "images-by-semver[a/b]", "empty"),
    ("quay.io:\n  images-by-semver: {a/b: null}\n", "dst.io", False, "quay.io", "images-by-semver[a/b]", "null"),
    ("quay.io:\n  tls-verify: maybe\n  images: {a/b: []}\n", "dst.io", False, "quay.io", "tls-verify",
     "must be true or false"),
    ("quay.io:\n  tls-verify: 1\n  images: {a/b: []}\n", "dst.io", False, "quay.io", "tls-verify", "true or false"),
    ("quay.io:\n  credentials: [u, p]\n  images: {a/b: []}\n", "dst.io", False, "quay.io", "credentials",
     "must be a mapping"),
    ("quay.io:\n  credentials: {user: u}\n  images: {a/b: []}\n", "dst.io", False, "quay.io", "credentials.user",
     "did you mean 'username'"),
    ("quay.io:\n  credentials: {username: u}\n  images: {a/b: []}\n", "dst.io", False, "quay.io",
     "credentials.password", "needs password"),
    ("quay.io:\n  credentials: {password: p}\n  images: {a/b: []}\n", "dst.io", False, "quay.io",
     "credentials.username", "needs username"),
    ("quay.io:\n  credentials: {username: true, password: p}\n  images: {a/b: []}\n", "dst.io", False, "quay.io",
     "credentials.username", "must be a string"),
    ("quay.io:\n  cert-dir: /nonexistent/regcopy/certs\n  images: {a/b: []}\n", "dst.io", False, "quay.io",
     "cert-dir", "cannot list cert-dir"),
    ("quay.io:\n  cert-dir: 5\n  images: {a/b: []}\n", "dst.io", False, "quay.io", "cert-dir", "no such file"),
    ("quay.io:\n  tls-verify: true\n  images: {a/b: []}\nquay.io/x:\n  tls-verify: false\n  images: {c: []}\n",
     "dst.io", False, "quay.io/x", "tls-verify", "conflicts"),
    ("quay.io:\n  credentials: {username: a, password: b}\n  images: {a/b: []}\n"
     "quay.io/x:\n  credentials: {username: c, password: d}\n  images: {c: []}\n",
     "dst.io", False, "quay.io/x", "credentials", "conflicts"),
    ("reg:5000:\n  images: {app: []}\n", "dst.io", True, "reg:5000", "images[app]", "cannot name the target"),
    ("quay.io:\n  images: {a/b: []}\n  images: {c/d: []}\n", "dst.io", False, None, None, "duplicate key 'images'"),
    ("quay.io:\n  images: {a/b: [\n", "dst.io", False, None, None, "YAML syntax error at line"),
]


@pytest.mark.parametrize(("text", "destination", "scoped", "entry_name", "key", "says"), SKOPEO_INVALID)
def test_invalid_skopeo_yaml(
    write: Callable[[str, str], Path], text: str, destination: str, scoped: bool,
    entry_name: str | None, key: str | None, says: str,
) -> None:
    path = write(text, "sync.yml")
    exc = raises(lambda: from_skopeo_yaml(path, destination, scoped=scoped, all_platforms=True))
    check(exc, path=str(path), entry=entry_name, key=key, says=says)


def test_skopeo_cert_dir_pairs_must_be_complete(write: Callable[[str, str], Path], tmp_path: Path) -> None:
    for present, says in ((("c.cert",), "missing key c.key"), (("c.key",), "missing client certificate c.cert")):
        certs = tmp_path / present[0]
        certs.mkdir()
        for name in present:
            (certs / name).write_text("x")
        path = write(f"quay.io:\n  cert-dir: {certs}\n  images: {{a/b: []}}\n", "s.yml")
        exc = raises(lambda p=path: from_skopeo_yaml(p, "d.io", scoped=False, all_platforms=True))  # type: ignore[misc]
        check(exc, path=str(path), entry="quay.io", key="cert-dir", says=says)


def test_skopeo_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "none.yml"
    exc = raises(lambda: from_skopeo_yaml(missing, "dst.io", scoped=False, all_platforms=True))
    check(exc, path=str(missing), entry=None, key=None, says="cannot read")


@pytest.mark.parametrize(
    ("destination", "says"),
    [("dst.io/m:v1", "cannot carry a tag"), (f"dst.io/m@{D0}", "digest"), ("http://dst.io", "scheme"),
     ("docker://dst.io/m", "scheme"), ("dst.io/M", "lowercase"), ("", "must not be empty"), ("dst.io:0/m", "65535")],
)
def test_skopeo_destination_errors(write: Callable[[str, str], Path], destination: str, says: str) -> None:
    path = write("quay.io:\n  images: {a/b: []}\n", "s.yml")
    check(raises(lambda: from_skopeo_yaml(path, destination, scoped=False, all_platforms=True)),
          path=None, entry=None, key="destination", says=says)
    check(raises(lambda: from_skopeo_docker("quay.io/a/b", destination, scoped=False, all_platforms=True)),
          path=None, entry=None, key="destination", says=says)


@pytest.mark.parametrize(
    ("destination", "target"),
    [("my-registry.local.lan", "my-registry.local.lan"), ("my-registry.local.lan/repo/", "my-registry.local.lan/repo"),
     ("Reg.IO//a//b", "reg.io/a/b"), ("myorg", "docker.io/myorg"), ("index.docker.io/myorg", "docker.io/myorg"),
     ("localhost:5000", "localhost:5000"), ("[::1]:5000/m", "[::1]:5000/m")],
)
def test_skopeo_destinations(destination: str, target: str) -> None:
    plan = from_skopeo_docker("quay.io/a/b", destination, scoped=False, all_platforms=True)
    assert str(plan.entries[0].target) == target


# --------------------------------------------------------------------------------- skopeo: --src docker


@pytest.mark.parametrize(
    ("source", "repo", "tags"),
    [
        ("registry.example.com/busybox", "registry.example.com/busybox", TagFilter()),
        ("registry.example.com/busybox:1-glibc", "registry.example.com/busybox", TagFilter(exact=("1-glibc",))),
        (f"registry.example.com/busybox@{D0}", "registry.example.com/busybox", TagFilter(digests=(D0,))),
        ("busybox", "docker.io/library/busybox", TagFilter()),
        ("busybox:5000", "docker.io/library/busybox", TagFilter(exact=("5000",))),
        ("docker.io/busybox:latest", "docker.io/library/busybox", TagFilter(exact=("latest",))),
        ("localhost:5000/a/b", "localhost:5000/a/b", TagFilter()),
    ],
)
def test_skopeo_docker_sources(source: str, repo: str, tags: TagFilter) -> None:
    plan = from_skopeo_docker(source, "my-registry.local.lan/repo", scoped=False, all_platforms=True)
    dst = "my-registry.local.lan/repo"
    assert plan == SyncPlan((sync_entry(source, repo, dst, "repository", "basename", tags=tags),))


def test_skopeo_docker_man_page_examples() -> None:
    def where(source: str, dest: str, scoped: bool) -> str:
        (e,) = from_skopeo_docker(source, dest, scoped=scoped, all_platforms=True).entries
        return str(target_repository(e, e.source))

    assert where("registry.example.com/busybox", "my-registry.local.lan", False) == "my-registry.local.lan/busybox"
    assert where("registry.example.com/repo/busybox", "my-registry.local.lan/repo", False) == (
        "my-registry.local.lan/repo/busybox"
    )
    assert where("registry.example.com/busybox", "my-registry.local.lan", True) == (
        "my-registry.local.lan/registry.example.com/busybox"
    )
    assert where("busybox", "dst:5000/m", True) == "dst:5000/m/docker.io/library/busybox"


@pytest.mark.parametrize(
    ("source", "says"),
    [
        (f"quay.io/a/b:v1@{D0}", "both a tag and a digest"),
        ("reg.example:5000", "looks like a registry host"),
        ("localhost", "looks like a registry host"),
        ("http://quay.io/a/b", "scheme"),
        ("docker://quay.io/a/b", "scheme"),
        ("Foo/Bar", "invalid source"),
        ("quay.io/a/b:", "empty tag"),
        ("", "must not be empty"),
    ],
)
def test_skopeo_docker_source_errors(source: str, says: str) -> None:
    exc = raises(lambda: from_skopeo_docker(source, "dst.io", scoped=False, all_platforms=True))
    check(exc, path=None, entry=None, key="source", says=says)


def test_skopeo_docker_scoped_port_is_caught_early() -> None:
    exc = raises(lambda: from_skopeo_docker("reg:5000/app", "dst.io", scoped=True, all_platforms=True))
    check(exc, path=None, entry=None, key="source", says="cannot name the target repository")
    assert str(from_skopeo_docker("reg:5000/app", "dst.io", scoped=False, all_platforms=True).entries[0].target) == (
        "dst.io")


# ------------------------------------------------------------------------------------------ properties


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("skopeo") / "sync.yml"


def _near_skopeo() -> st.SearchStrategy[dict[Any, Any]]:
    images = st.dictionaries(KEYS, LEAVES | st.lists(LEAVES, max_size=3), max_size=3)
    block = st.dictionaries(
        st.sampled_from([*sync_skopeo._SKOPEO_KEYS, "x"]),
        images | LEAVES | st.dictionaries(st.sampled_from(["username", "password", "identitytoken"]), LEAVES),
        max_size=4,
    )
    keys = st.one_of(KEYS, LEAVES.filter(lambda v: isinstance(v, str)))
    return st.dictionaries(keys, block | LEAVES, max_size=3)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=DATA | _near_skopeo(), scoped=st.booleans())
def test_from_skopeo_yaml_only_raises_config_errors(scratch: Path, data: object, scoped: bool) -> None:
    scratch.write_text(yaml.safe_dump(data))
    only_config_errors(lambda: from_skopeo_yaml(scratch, "dst.io/m", scoped=scoped, all_platforms=True))


@settings(max_examples=80, deadline=None)
@given(source=LEAVES, destination=LEAVES, scoped=st.booleans())
def test_from_skopeo_docker_only_raises_config_errors(source: Any, destination: Any, scoped: bool) -> None:
    only_config_errors(lambda: from_skopeo_docker(source, destination, scoped=scoped, all_platforms=True))

