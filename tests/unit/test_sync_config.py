"""Tests for :mod:`regcopy.sync.config`: regcopy plans, skopeo sync YAML and ``--src docker``, naming.

Valid inputs are compared with the whole expected dataclasses; every invalid input must raise a
ConfigError whose ``.path``, ``.entry`` and ``.key`` point at the culprit, with a clear message that
never contains a secret. Property tests feed arbitrary YAML-able data to the parsers.
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

from regcopy.errors import ConfigError, InvalidReference
from regcopy.registry._policy import SCHEME_MODES
from regcopy.sync import config
from regcopy.sync.config import from_skopeo_docker, from_skopeo_yaml, load_plan, parse_plan, target_repository
from regcopy.sync.filters import unanchored
from regcopy.sync.model import Credentials, RegistryConfig, RepoFilter, SyncEntry, SyncPlan, TagFilter

D0 = "sha256:" + "0" * 64
D1 = "sha256:" + "0" * 32 + "1" * 32  # the digest of skopeo-sync(1)'s example
SECRET = "Sup3r-S3cret-Pa55"  # must never appear in an error message

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


def plan_of(*entries: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {**top, "sync": list(entries) or [{"source": "quay.io/org/app", "target": "reg.internal:5000/m/app"}]}


def entry(**fields: Any) -> dict[str, Any]:
    return {"source": "quay.io/org/app", "target": "reg.internal:5000/m/app", **fields}


def ns(**fields: Any) -> dict[str, Any]:
    return {"source": "quay.io/org", "target": "reg.internal:5000/m", "type": "namespace", **fields}


def raises(fn: Callable[[], object]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        fn()
    return info.value


def check(exc: ConfigError, *, path: str | None, entry: str | None, key: str | None, says: str) -> None:
    assert (exc.path, exc.entry, exc.key) == (path, entry, key), str(exc)
    assert says.lower() in str(exc).lower(), str(exc)
    for part in (path, entry, key):  # the message itself names the place
        assert part is None or part in str(exc)


# ------------------------------------------------------------------------------ regcopy plans: valid


def E(name: str, source: str, target: str, **kw: Any) -> SyncEntry:  # short: the tables read like dataclasses
    return SyncEntry(name, source, target, **kw)


VALID_ENTRIES: list[tuple[dict[str, Any], SyncEntry]] = [
    (entry(), E("sync[0]", "quay.io/org/app", "reg.internal:5000/m/app")),
    (entry(name="app", type="repository"), E("app", "quay.io/org/app", "reg.internal:5000/m/app")),
    (entry(name=" app "), E("app", "quay.io/org/app", "reg.internal:5000/m/app")),
    # Docker Hub: aliases, library/ for single-component repositories (source and target)
    (entry(source="busybox"), E("sync[0]", "docker.io/library/busybox", "reg.internal:5000/m/app")),
    (entry(source="docker.io/busybox"), E("sync[0]", "docker.io/library/busybox", "reg.internal:5000/m/app")),
    (entry(source="index.docker.io/library/busybox"),
     E("sync[0]", "docker.io/library/busybox", "reg.internal:5000/m/app")),
    (entry(source="registry-1.docker.io/bitnami/redis"),
     E("sync[0]", "docker.io/bitnami/redis", "reg.internal:5000/m/app")),
    (entry(target="docker.io/app"), E("sync[0]", "quay.io/org/app", "docker.io/library/app")),
    (entry(target="myorg/app"), E("sync[0]", "quay.io/org/app", "docker.io/myorg/app")),
    # registries are case-insensitive; IPv6, localhost, ports
    (entry(source="Quay.IO/org/app"), E("sync[0]", "quay.io/org/app", "reg.internal:5000/m/app")),
    (entry(source="[::1]:5000/app", target="localhost/a/b"), E("sync[0]", "[::1]:5000/app", "localhost/a/b")),
    (entry(source="localhost:5000/a/b-c__d.e"), E("sync[0]", "localhost:5000/a/b-c__d.e", "reg.internal:5000/m/app")),
    # namespaces: host/path or a bare word (docker grammar: a Docker Hub namespace, no library/)
    (ns(), E("sync[0]", "quay.io/org", "reg.internal:5000/m", kind="namespace")),
    (ns(source="docker.io/bitnami"), E("sync[0]", "docker.io/bitnami", "reg.internal:5000/m", kind="namespace")),
    (ns(source="bitnami"), E("sync[0]", "docker.io/bitnami", "reg.internal:5000/m", kind="namespace")),
    (ns(source="quay.io/org/team", target="reg.internal:5000"),
     E("sync[0]", "quay.io/org/team", "reg.internal:5000", kind="namespace")),
    (ns(source="quay.io"), E("sync[0]", "quay.io", "reg.internal:5000/m", kind="namespace")),
    # registries: a bare host (the usual case) or host/path
    (ns(type="registry", source="reg.example:5000", target="dst.example"),
     E("sync[0]", "reg.example:5000", "dst.example", kind="registry")),
    (ns(type="registry", source="Index.Docker.IO", target="dst.example/hub"),
     E("sync[0]", "docker.io", "dst.example/hub", kind="registry")),
    (ns(type="registry", source="reg.example:5000/team", target="dst.example/t/"[:-1]),
     E("sync[0]", "reg.example:5000/team", "dst.example/t", kind="registry")),
    # filters
    (entry(tags={}), E("sync[0]", "quay.io/org/app", "reg.internal:5000/m/app")),
    (
        entry(tags={
            "allow": [r"v\d+\.\d+", ""], "deny": [".*-rc.*", ".*-rc.*"], "semver": ">=1.2", "latest": 5,
            "exact": ["v1", "latest", "v1"], "digests": [D0, D0],
        }),
        E("sync[0]", "quay.io/org/app", "reg.internal:5000/m/app", tags=TagFilter(
            allow=(r"v\d+\.\d+", ""), deny=(".*-rc.*",), semver=">=1.2", latest=5,
            exact=("v1", "latest"), digests=(D0,),
        )),
    ),
    (entry(platforms=[" linux/amd64 ", "linux/arm64/v8", "linux/amd64"]),
     E("sync[0]", "quay.io/org/app", "reg.internal:5000/m/app", platforms=("linux/amd64", "linux/arm64/v8"))),
    (entry(platforms=[]), E("sync[0]", "quay.io/org/app", "reg.internal:5000/m/app")),
    # re only warns about "[[" (possible nested set): valid, even under -W error
    (entry(tags={"allow": ["[[a]"]}), E("sync[0]", "quay.io/org/app", "reg.internal:5000/m/app",
                                         tags=TagFilter(allow=("[[a]",)))),
    (ns(repos={"allow": ["org/.*"], "deny": ["org/tmp-.*"]}),
     E("sync[0]", "quay.io/org", "reg.internal:5000/m", kind="namespace",
       repos=RepoFilter(allow=("org/.*",), deny=("org/tmp-.*",)))),
]


@pytest.mark.parametrize(("item", "expected"), VALID_ENTRIES)
def test_valid_entries(item: dict[str, Any], expected: SyncEntry) -> None:
    assert parse_plan(plan_of(item)) == SyncPlan((expected,))


def test_a_whole_plan() -> None:
    doc = {
        "version": 1,
        "registries": {
            "reg.internal:5000": {
                "tls": "https", "ca_file": "/ca.pem", "client_cert": "/c.pem", "client_key": "/c.key",
                "credentials": {"username": "u", "password": SECRET}, "max_concurrency": 8,
                "requests_per_second": 20, "request_timeout": 90,
            },
            "Index.Docker.IO": {"credentials": {"helper": "desktop"}},
            "ghcr.io": {"credentials": {"authfile": "/auth.json"}},
            "acr.example.io": {"credentials": {"identity_token": SECRET, "username": "0000"}},
            "quay.io": None,
        },
        "defaults": {"platforms": ["linux/amd64"]},
        "sync": [entry(name="one"), ns(name="two")],
    }
    plan = parse_plan(doc, path="plan.yaml")
    assert plan == SyncPlan(
        (
            E("one", "quay.io/org/app", "reg.internal:5000/m/app", platforms=("linux/amd64",)),
            E("two", "quay.io/org", "reg.internal:5000/m", kind="namespace", platforms=("linux/amd64",)),
        ),
        {
            "reg.internal:5000": RegistryConfig(
                "reg.internal:5000", "https", "/ca.pem", "/c.pem", "/c.key", Credentials("u", SECRET), 8, 20.0,
                request_timeout=90.0,
            ),
            "docker.io": RegistryConfig("docker.io", credentials=Credentials(helper="desktop")),
            "ghcr.io": RegistryConfig("ghcr.io", credentials=Credentials(authfile="/auth.json")),
            "acr.example.io": RegistryConfig(
                "acr.example.io", credentials=Credentials(username="0000", identity_token=SECRET)
            ),
            "quay.io": RegistryConfig("quay.io"),
        },
        "plan.yaml",
    )
    assert isinstance(plan.registries["reg.internal:5000"].requests_per_second, float)
    with pytest.raises(TypeError):
        plan.registries["x"] = RegistryConfig("x")  # type: ignore[index]  # read-only view
    assert SECRET not in repr(plan)


@pytest.mark.parametrize("mode", SCHEME_MODES)
def test_every_tls_mode(mode: str) -> None:
    plan = parse_plan(plan_of(registries={"reg.io": {"tls": mode}}))
    assert plan.registries["reg.io"].scheme == mode


def test_optional_sections_may_be_null_or_absent() -> None:
    for top in ({"registries": None, "defaults": None}, {"version": 1}, {}):
        assert parse_plan(plan_of(**top)).registries == {}


# ------------------------------------------------------------------------------------- defaults merge


def test_defaults_apply_when_the_entry_is_silent() -> None:
    defaults = {
        "tags": {"allow": ["v.*"], "latest": 3}, "platforms": ["linux/amd64"], "repos": {"deny": ["tmp/.*"]},
    }
    plan = parse_plan(plan_of(entry(), ns(), defaults=defaults))
    repo, space = plan.entries
    assert repo.tags == space.tags == TagFilter(allow=("v.*",), latest=3)
    assert repo.platforms == space.platforms == ("linux/amd64",)
    assert space.repos == RepoFilter(deny=("tmp/.*",))
    assert repo.repos == RepoFilter()  # repos filters mean nothing to a single repository


def test_an_entry_key_replaces_the_default_as_a_whole() -> None:
    defaults = {
        "tags": {"allow": ["v.*"], "latest": 3}, "platforms": ["linux/amd64"], "repos": {"deny": ["tmp/.*"]},
    }
    plan = parse_plan(plan_of(
        entry(tags={"exact": ["v1"]}, platforms=["linux/arm64"]),
        entry(tags={}, platforms=[]),
        ns(repos={"allow": ["org/a"]}),
        ns(repos={}),
        defaults=defaults,
    ))
    one, two, three, four = plan.entries
    assert one.tags == TagFilter(exact=("v1",))  # no allow/latest merged in from the defaults
    assert one.platforms == ("linux/arm64",)
    assert two.tags == TagFilter() and two.platforms == ()  # explicit "everything"
    assert three.repos == RepoFilter(allow=("org/a",))
    assert four.repos == RepoFilter()


# ----------------------------------------------------------------------------- regcopy plans: invalid

# document, entry, key, words the message must contain
INVALID: list[tuple[object, str | None, str | None, str]] = [
    (None, None, None, "empty"),
    ([], None, None, "must be a mapping"),
    ("sync", None, None, "must be a mapping"),
    ({}, None, "sync", "missing required key 'sync'"),
    ({"syncs": []}, None, "syncs", "did you mean 'sync'"),
    (plan_of(sink=1), None, "sink", "unknown key 'sink'"),
    ({1: 2, "sync": []}, None, None, "keys must be strings"),
    (plan_of(version=2), None, "version", "only 1"),
    (plan_of(version="1"), None, "version", "version"),
    (plan_of(version=True), None, "version", "version"),
    ({"sync": []}, None, "sync", "at least one"),
    ({"sync": None}, None, "sync", "must be a list, not null"),
    ({"sync": {"a": 1}}, None, "sync", "must be a list, not a mapping"),
    ({"sync": ["quay.io/x"]}, "sync[0]", "sync[0]", "must be a mapping"),
    # registries
    (plan_of(registries=[]), "registries", "registries", "must be a mapping"),
    (plan_of(registries={5000: {}}), "registries", "registries", "keys must be strings"),
    (plan_of(registries={"myhost": {}}), "myhost", "registries[myhost]", "not a registry host"),
    (plan_of(registries={"quay.io/org": {}}), "quay.io/org", "registries[quay.io/org]", "not a registry host"),
    (plan_of(registries={"reg:99999": {}}), "reg:99999", "registries[reg:99999]", "between 1 and 65535"),
    (plan_of(registries={"docker.io": {}, "index.docker.io": {}}),
     "index.docker.io", "registries[index.docker.io]", "configured twice"),
    (plan_of(registries={"reg.io": []}), "reg.io", "registries[reg.io]", "must be a mapping"),
    (plan_of(registries={"reg.io": {"tsl": "http"}}), "reg.io", "registries[reg.io].tsl", "did you mean 'tls'"),
    (plan_of(registries={"reg.io": {"tls": "maybe"}}), "reg.io", "registries[reg.io].tls", "must be one of auto"),
    (plan_of(registries={"reg.io": {"tls": True}}), "reg.io", "registries[reg.io].tls", "not a boolean"),
    (plan_of(registries={"reg.io": {"ca_file": 1}}), "reg.io", "registries[reg.io].ca_file", "must be a string"),
    (plan_of(registries={"reg.io": {"ca_file": ""}}), "reg.io", "registries[reg.io].ca_file", "must not be empty"),
    (plan_of(registries={"reg.io": {"client_key": "/k"}}),
     "reg.io", "registries[reg.io].client_key", "needs client_cert"),
    (plan_of(registries={"reg.io": {"max_concurrency": 0}}),
     "reg.io", "registries[reg.io].max_concurrency", "positive integer"),
    (plan_of(registries={"reg.io": {"max_concurrency": True}}),
     "reg.io", "registries[reg.io].max_concurrency", "positive integer"),
    (plan_of(registries={"reg.io": {"max_concurrency": "8"}}),
     "reg.io", "registries[reg.io].max_concurrency", "positive integer"),
    *[
        (plan_of(registries={"reg.io": {"requests_per_second": bad}}),
         "reg.io", "registries[reg.io].requests_per_second", "above 0")
        for bad in (0, -1, float("nan"), float("inf"), "20", True, None)
    ],
    *[
        (plan_of(registries={"reg.io": {"request_timeout": bad}}),
         "reg.io", "registries[reg.io].request_timeout", "seconds above 0")
        for bad in (0, -1, float("nan"), float("inf"), "60", True, None)
    ],
    (plan_of(registries={"reg.io": {"credentials": "u:p"}}), "reg.io", "registries[reg.io].credentials", "mapping"),
    (plan_of(registries={"reg.io": {"credentials": {}}}), "reg.io", "registries[reg.io].credentials", "give one of"),
    (plan_of(registries={"reg.io": {"credentials": {"username": "u"}}}),
     "reg.io", "registries[reg.io].credentials.password", "needs a password"),
    (plan_of(registries={"reg.io": {"credentials": {"password": "p"}}}),
     "reg.io", "registries[reg.io].credentials.username", "needs a username"),
    (plan_of(registries={"reg.io": {"credentials": {"username": "u", "password": "p", "helper": "h"}}}),
     "reg.io", "registries[reg.io].credentials", "exactly one"),
    (plan_of(registries={"reg.io": {"credentials": {"helper": "h", "username": "u"}}}),
     "reg.io", "registries[reg.io].credentials.username", "not helper"),
    (plan_of(registries={"reg.io": {"credentials": {"helper": 1}}}),
     "reg.io", "registries[reg.io].credentials.helper", "must be a string"),
    (plan_of(registries={"reg.io": {"credentials": {"token": "t"}}}),
     "reg.io", "registries[reg.io].credentials.token", "unknown key"),
    # defaults
    (plan_of(defaults=[]), "defaults", "defaults", "must be a mapping"),
    (plan_of(defaults={"tag": {}}), "defaults", "defaults.tag", "did you mean 'tags'"),
    (plan_of(defaults={"tags": None}), "defaults", "defaults.tags", "must be a mapping, not null"),
    (plan_of(defaults={"tags": {"allow": ["("]}}), "defaults", "defaults.tags.allow[0]", "invalid regular expression"),
    (plan_of(defaults={"platforms": ["linux"]}), "defaults", "defaults.platforms[0]", "os/arch"),
    (plan_of(defaults={"repos": {"allow": "x"}}), "defaults", "defaults.repos.allow", "must be a list"),
    # entries: structure
    (plan_of({"target": "reg.io/a"}), "sync[0]", "sync[0].source", "missing required key 'source'"),
    (plan_of({"source": "quay.io/a/b"}), "sync[0]", "sync[0].target", "missing required key 'target'"),
    (plan_of(entry(source=5)), "sync[0]", "sync[0].source", "must be a string, not an integer"),
    (plan_of(entry(tag={})), "sync[0]", "sync[0].tag", "did you mean 'tags'"),
    (plan_of(entry(type="repo")), "sync[0]", "sync[0].type", "must be one of repository, namespace, registry"),
    (plan_of(entry(type=None)), "sync[0]", "sync[0].type", "not null"),
    (plan_of(entry(name="")), "sync[0]", "sync[0].name", "must not be empty"),
    (plan_of(entry(name="  ")), "sync[0]", "sync[0].name", "blank"),
    (plan_of(entry(name=3)), "sync[0]", "sync[0].name", "must be a string"),
    (plan_of(entry(name="a"), entry(name="a")), "a", "sync[1].name", "duplicate entry name 'a'"),
    (plan_of(entry(), entry(name="sync[0]")), "sync[0]", "sync[1].name", "duplicate"),
    (plan_of(entry(), entry(), entry(tags=1)), "sync[2]", "sync[2].tags", "must be a mapping"),
    # entries: sources and targets
    (plan_of(entry(name="app", source="quay.io/org/app:v1")), "app", "sync[0].source", "tags: {exact: [TAG]}"),
    (plan_of(entry(source=f"quay.io/org/app@{D0}")), "sync[0]", "sync[0].source", "cannot carry a digest"),
    (plan_of(entry(source="http://quay.io/org/app")), "sync[0]", "sync[0].source", "must not have a scheme"),
    (plan_of(entry(source="docker://quay.io/org/app")), "sync[0]", "sync[0].source", "must not have a scheme"),
    (plan_of(entry(source="quay.io/Org/App")), "sync[0]", "sync[0].source", "lowercase"),
    (plan_of(entry(source="quay.io/")), "sync[0]", "sync[0].source", "invalid source"),
    (plan_of(entry(source="reg.example:5000")), "sync[0]", "sync[0].source", "is a registry host"),
    (plan_of(entry(source="reg.example:5000")), "sync[0]", "sync[0].source", "type: registry"),
    (plan_of(entry(target="reg.io/m/app:v1")), "sync[0]", "sync[0].target", "cannot carry a tag"),
    (plan_of(entry(target="reg.io")), "sync[0]", "sync[0].target", "is a registry host"),
    (plan_of(entry(repos={})), "sync[0]", "sync[0].repos", "type: namespace or registry"),
    (plan_of(ns(source="quay.io/org:v1")), "sync[0]", "sync[0].source", "cannot carry a tag"),
    (plan_of(ns(source=f"quay.io/org@{D0}")), "sync[0]", "sync[0].source", "cannot carry a digest"),
    (plan_of(ns(source="quay.io/Org")), "sync[0]", "sync[0].source", "lowercase"),
    (plan_of(ns(source="quay.io//org")), "sync[0]", "sync[0].source", "empty path component"),
    (plan_of(ns(type="registry", source="myregistry")), "sync[0]", "sync[0].source", "must start with a registry host"),
    (plan_of(ns(type="registry", source="reg:0")), "sync[0]", "sync[0].source", "between 1 and 65535"),
    (plan_of(ns(target="reg.io/m:v1")), "sync[0]", "sync[0].target", "cannot carry a tag"),
    (plan_of(ns(target="https://reg.io/m")), "sync[0]", "sync[0].target", "must not have a scheme"),
    # entries: filters
    (plan_of(entry(tags=None)), "sync[0]", "sync[0].tags", "must be a mapping, not null"),
    (plan_of(entry(tags=[])), "sync[0]", "sync[0].tags", "must be a mapping, not a list"),
    (plan_of(entry(tags={"allows": []})), "sync[0]", "sync[0].tags.allows", "did you mean 'allow'"),
    (plan_of(entry(tags={"allow": ["("]})), "sync[0]", "sync[0].tags.allow[0]", "invalid regular expression '('"),
    (plan_of(entry(name="x", tags={"allow": ["ok", "[z-a]"]})), "x", "sync[0].tags.allow[1]", "bad character range"),
    (plan_of(entry(tags={"allow": ["a{99999999999}"]})), "sync[0]", "sync[0].tags.allow[0]", "invalid regular"),
    (plan_of(entry(tags={"allow": [1]})), "sync[0]", "sync[0].tags.allow[0]", "must be a string"),
    (plan_of(entry(tags={"deny": "x"})), "sync[0]", "sync[0].tags.deny", "must be a list, not a string"),
    (plan_of(entry(tags={"semver": 1.2})), "sync[0]", "sync[0].tags.semver", "quote numbers"),
    (plan_of(entry(tags={"semver": ""})), "sync[0]", "sync[0].tags.semver", "must not be empty"),
    (plan_of(entry(tags={"latest": 0})), "sync[0]", "sync[0].tags.latest", "positive integer, not 0"),
    (plan_of(entry(tags={"latest": -1})), "sync[0]", "sync[0].tags.latest", "positive integer"),
    (plan_of(entry(tags={"latest": True})), "sync[0]", "sync[0].tags.latest", "positive integer"),
    (plan_of(entry(tags={"latest": "5"})), "sync[0]", "sync[0].tags.latest", "positive integer, not a string"),
    (plan_of(entry(tags={"exact": ["v 1"]})), "sync[0]", "sync[0].tags.exact[0]", "invalid tag 'v 1'"),
    (plan_of(entry(tags={"exact": ["v1", 1.1]})), "sync[0]", "sync[0].tags.exact[1]", "quote numbers"),
    (plan_of(entry(tags={"exact": "v1"})), "sync[0]", "sync[0].tags.exact", "must be a list"),
    (plan_of(entry(tags={"digests": ["sha256:abc"]})), "sync[0]", "sync[0].tags.digests[0]", "64 hex"),
    (plan_of(entry(tags={"digests": ["md5:" + "0" * 32]})), "sync[0]", "sync[0].tags.digests[0]", "algorithm"),
    (plan_of(entry(platforms="linux/amd64")), "sync[0]", "sync[0].platforms", "must be a list"),
    (plan_of(entry(platforms=["linux"])), "sync[0]", "sync[0].platforms[0]", "os/arch"),
    (plan_of(entry(platforms=["linux/arm64/v8/x"])), "sync[0]", "sync[0].platforms[0]", "os/arch"),
    (plan_of(entry(platforms=[None])), "sync[0]", "sync[0].platforms[0]", "must be a string"),
    (plan_of(ns(repos={"allow": ["("]})), "sync[0]", "sync[0].repos.allow[0]", "invalid regular expression"),
    (plan_of(ns(repos={"only": []})), "sync[0]", "sync[0].repos.only", "unknown key"),
]


@pytest.mark.parametrize(("doc", "entry_name", "key", "says"), INVALID)
def test_invalid_plans(doc: object, entry_name: str | None, key: str | None, says: str) -> None:
    exc = raises(lambda: parse_plan(doc, path="plan.yaml"))
    check(exc, path="plan.yaml", entry=entry_name, key=key, says=says)


def test_unknown_keys_list_what_is_expected() -> None:
    exc = raises(lambda: parse_plan(plan_of(entry(tag={"allow": []}))))
    assert "expected one of: name, source, target, type, tags, platforms, repos" in str(exc)


# ------------------------------------------------------------------------------------------ secrets

SECRET_DOCS: list[object] = [
    plan_of(registries={"reg.io": {"credentials": {"username": "u", "password": SECRET, "helper": "h"}}}),
    plan_of(registries={"reg.io": {"credentials": {"password": SECRET}}}),
    plan_of(registries={"reg.io": {"credentials": {"username": "u", "password": [SECRET]}}}),
    plan_of(registries={"reg.io": {"credentials": {"username": "u", "password": 12345678}}}),
    plan_of(registries={"reg.io": {"credentials": {"username": "u", "password": SECRET, "pasword": SECRET}}}),
    plan_of(registries={"reg.io": {"credentials": {"identity_token": SECRET, "authfile": "/a"}}}),
    plan_of(registries={"reg.io": {"credentials": {"identity_token": {"t": SECRET}}}}),
    plan_of(registries={"myhost": {"credentials": {"username": "u", "password": SECRET}}}),
    plan_of(registries={"reg.io": {"tls": "nope", "credentials": {"username": "u", "password": SECRET}}}),
]


@pytest.mark.parametrize("doc", SECRET_DOCS)
def test_secrets_never_appear_in_errors(doc: object) -> None:
    exc = raises(lambda: parse_plan(doc, path="p.yaml"))
    assert SECRET not in str(exc) and "12345678" not in str(exc)
    assert SECRET not in repr(exc.args)


@pytest.mark.parametrize(
    "text",
    [
        f'registries:\n  reg.io:\n    credentials: {{username: u, password: "{SECRET}\n',  # unterminated
        f"registries:\n  reg.io:\n    credentials:\n      password: {SECRET}\n      password: {SECRET}\n",
        f"registries:\n  reg.io:\n    credentials: {{username: u, password: {SECRET}: x}}\nsync: [\n",
        f"registries:\n  reg.io:\n\tcredentials: {{password: {SECRET}}}\n",
    ],
)
def test_yaml_errors_do_not_quote_the_source(write: Callable[[str], Path], text: str) -> None:
    exc = raises(lambda: load_plan(write(text)))
    assert "line" in str(exc) and SECRET not in str(exc)


def test_skopeo_secrets_never_appear(write: Callable[[str, str], Path]) -> None:
    for creds in (f"{{password: {SECRET}}}", f"{{username: u, password: [{SECRET}]}}",
                  f"{{username: u, password: {SECRET}, pass: {SECRET}}}", f"{{identitytoken: {{a: {SECRET}}}}}"):
        path = write(f"quay.io:\n  credentials: {creds}\n  images: {{a/b: []}}\n", "s.yaml")
        exc = raises(lambda p=path: from_skopeo_yaml(p, "dst.io", scoped=False, all_platforms=True))  # type: ignore[misc]
        assert SECRET not in str(exc)


# ------------------------------------------------------------------------------------------- files


def test_load_plan_reads_yaml_and_json(write: Callable[[str, str], Path]) -> None:
    text = "version: 1\nsync:\n  - source: quay.io/org/app  # a comment\n    target: reg.io/m/app\n"
    path = write(text, "plan.yaml")
    expected = SyncPlan((E("sync[0]", "quay.io/org/app", "reg.io/m/app"),), path=str(path))
    assert load_plan(path) == expected
    assert load_plan(str(path)) == expected
    json_path = write(json.dumps({"sync": [{"source": "quay.io/org/app", "target": "reg.io/m/app"}]}), "plan.json")
    assert load_plan(json_path).entries == expected.entries


def test_yaml_merge_keys_work(write: Callable[[str, str], Path]) -> None:
    text = (
        "x-common: &common {target: reg.io/m/app, platforms: [linux/amd64]}\n"
        "sync:\n  - <<: *common\n    source: quay.io/org/app\n"
    )
    exc = raises(lambda: load_plan(write(text, "p.yaml")))  # x-common is not a plan key...
    assert exc.key == "x-common"
    plan = parse_plan({"sync": [{**yaml.safe_load(text)["sync"][0]}]})  # ...but the merge itself is honoured
    assert plan.entries[0].platforms == ("linux/amd64",)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "empty"),
        ("# nothing but a comment\n", "empty"),
        ("- a\n- b\n", "must be a mapping"),
        ("just text\n", "must be a mapping"),
        ("sync: [\n  {source: a\n", "YAML syntax error at line"),
        ("sync:\n\t- a\n", "line 2, column 1"),
        ("sync: []\nsync: []\n", "duplicate key 'sync'"),
        ("sync: [{source: a, source: b}]\n", "duplicate key 'source'"),
        ("--- {sync: []}\n--- {sync: []}\n", "single document"),
        ("sync: [{? [a]\n: b}]\n", "unhashable"),
        ("sync: !!python/object:os.system {}\n", "could not determine a constructor"),
    ],
)
def test_file_level_errors(write: Callable[[str, str], Path], text: str, says: str) -> None:
    path = write(text, "bad.yaml")
    exc = raises(lambda: load_plan(path))
    check(exc, path=str(path), entry=None, key=None, says=says)


def test_yaml_error_positions_are_one_based(write: Callable[[str, str], Path]) -> None:
    exc = raises(lambda: load_plan(write("version: 1\nsync:\n  - source: [\n", "p.yaml")))
    assert re.search(r"line \d+, column \d+", str(exc))
    dup = raises(lambda: load_plan(write("version: 1\nversion: 1\n", "d.yaml")))
    assert "line 2, column 1" in str(dup)


def test_unreadable_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    check(raises(lambda: load_plan(missing)), path=str(missing), entry=None, key=None, says="cannot read")
    check(raises(lambda: load_plan(tmp_path)), path=str(tmp_path), entry=None, key=None, says="cannot read")
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"sync: \xff\xfe\x00\x01")
    assert raises(lambda: load_plan(binary)).path == str(binary)
    check(raises(lambda: load_plan("a\0b")), path="a\0b", entry=None, key=None, says="cannot read")


def test_deep_nesting_is_a_config_error(write: Callable[[str, str], Path]) -> None:
    path = write("sync: " + "[" * 600 + "]" * 600 + "\n", "deep.yaml")  # PyYAML recurses per level
    assert raises(lambda: load_plan(path)).path == str(path)


def test_errors_from_a_file_name_it(write: Callable[[str, str], Path]) -> None:
    text = "sync:\n  - {name: web, source: quay.io/org/web, target: reg.io/web, tags: {allow: ['(']}}\n"
    path = write(text, "p.yaml")
    check(raises(lambda: load_plan(path)), path=str(path), entry="web", key="sync[0].tags.allow[0]", says="regular")


def test_unquoted_version_like_tags_are_caught(write: Callable[[str, str], Path]) -> None:
    # YAML reads 1.10 as the float 1.1: refuse it rather than mirror the wrong tag.
    path = write("sync: [{source: quay.io/a/b, target: r.io/a/b, tags: {exact: [1.10]}}]\n", "p.yaml")
    check(raises(lambda: load_plan(path)), path=str(path), entry="sync[0]", key="sync[0].tags.exact[0]",
          says="quote numbers")


# ------------------------------------------------------------------------------------------- naming

# source, kind, naming, target, discovered repository path, expected target repository
NAMING: list[tuple[str, str, str, str, str, str]] = [
    # prefix (regcopy plans)
    ("quay.io/org/app", "repository", "prefix", "dst:5000/m/app", "org/app", "dst:5000/m/app"),
    ("quay.io/org/app", "repository", "prefix", "dst:5000/other", "org/app", "dst:5000/other"),
    ("quay.io/ns", "namespace", "prefix", "dst:5000/mirror", "ns/app/x", "dst:5000/mirror/app/x"),
    ("quay.io/ns", "namespace", "prefix", "dst:5000/mirror", "ns", "dst:5000/mirror"),
    ("quay.io/ns", "namespace", "prefix", "dst:5000", "ns/app", "dst:5000/app"),
    ("quay.io/a/b", "namespace", "prefix", "dst:5000/m", "a/b/c/d", "dst:5000/m/c/d"),
    ("src.io", "registry", "prefix", "dst:5000/m", "a/b", "dst:5000/m/a/b"),
    ("src.io", "registry", "prefix", "dst:5000", "a/b", "dst:5000/a/b"),
    ("src.io/team", "registry", "prefix", "dst:5000/t", "team/a", "dst:5000/t/a"),
    ("docker.io/bitnami", "namespace", "prefix", "dst.io/hub", "bitnami/redis", "dst.io/hub/redis"),
    ("src.io", "registry", "prefix", "docker.io", "app", "docker.io/library/app"),
    # basename (skopeo without --scoped)
    ("quay.io/org/app", "repository", "basename", "dst:5000/m", "org/app", "dst:5000/m/app"),
    ("quay.io/org/app", "repository", "basename", "dst:5000", "org/app", "dst:5000/app"),
    ("docker.io/library/busybox", "repository", "basename", "dst:5000/m", "library/busybox", "dst:5000/m/busybox"),
    ("docker.io/library/busybox", "repository", "basename", "docker.io", "library/busybox",
     "docker.io/library/busybox"),
    ("quay.io/org", "namespace", "basename", "dst:5000/m", "org/team/app", "dst:5000/m/app"),
    ("src.io", "registry", "basename", "dst:5000", "a/b", "dst:5000/b"),
    # scoped (skopeo --scoped)
    ("quay.io/org/app", "repository", "scoped", "dst:5000/m", "org/app", "dst:5000/m/quay.io/org/app"),
    ("quay.io/org/app", "repository", "scoped", "dst:5000", "org/app", "dst:5000/quay.io/org/app"),
    ("docker.io/library/busybox", "repository", "scoped", "dst:5000/m", "library/busybox",
     "dst:5000/m/docker.io/library/busybox"),
    ("quay.io/org", "namespace", "scoped", "dst:5000/m", "org/app", "dst:5000/m/quay.io/org/app"),
    ("src.io", "registry", "scoped", "dst:5000", "a/b", "dst:5000/src.io/a/b"),
]


@pytest.mark.parametrize(("source", "kind", "naming", "target", "repo", "expected"), NAMING)
def test_target_repository(source: str, kind: Any, naming: Any, target: str, repo: str, expected: str) -> None:
    assert target_repository(SyncEntry("e", source, target, kind, naming), repo) == expected


def test_naming_covers_every_kind_and_naming() -> None:
    assert {(k, n) for _, k, n, *_ in NAMING} == {
        (k, n) for k in ("repository", "namespace", "registry") for n in ("prefix", "basename", "scoped")
    }


@pytest.mark.parametrize(
    ("source", "kind", "naming", "target", "repo"),
    [
        ("quay.io/ns", "namespace", "prefix", "dst:5000/m", "other/app"),  # not under the namespace
        ("quay.io/ns", "namespace", "prefix", "dst:5000/m", "nsx/app"),  # a prefix of the text, not of the path
        ("quay.io/ns", "namespace", "prefix", "dst:5000", "ns"),  # lands on no path at all
        ("reg:5000/app", "repository", "scoped", "dst.io", "app"),  # 'reg:5000' is no path component
        ("quay.io", "registry", "prefix", "dst.io", "Bad/Name"),
        ("quay.io", "registry", "prefix", "dst.io", ""),
        ("docker.io", "registry", "prefix", "dst.io", "busybox"),  # Docker Hub paths have a namespace
    ],
)
def test_target_repository_refuses(source: str, kind: Any, naming: Any, target: str, repo: str) -> None:
    with pytest.raises(InvalidReference):
        target_repository(SyncEntry("e", source, target, kind, naming), repo)


def test_plan_entries_name_their_targets() -> None:
    plan = parse_plan(plan_of(entry(), ns(), ns(type="registry", source="src.io", target="dst.io")))
    assert [target_repository(e, "org/app") for e in plan.entries] == [
        "reg.internal:5000/m/app", "reg.internal:5000/m/app", "dst.io/org/app",
    ]


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
        return SyncEntry(name, source, dst, "repository", "basename", tags=tags, platforms=host)

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
            "registry.example.com": RegistryConfig(
                "registry.example.com", "https", str(cert_dir / "a-ca.crt"), str(cert_dir / "client.cert"),
                str(cert_dir / "client.key"), Credentials("john", "this is a secret"),
            ),
            "quay.io": RegistryConfig("quay.io", "insecure"),
        },
        str(path),
    )
    # What skopeo-sync(1) says lands where, and which nginx tags the regex keeps.
    assert [target_repository(e, e.source.partition("/")[2]) for e in plan.entries] == [
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
    assert target_repository(plan.entries[4], "coreos/etcd") == "my-registry.local.lan/repo/quay.io/coreos/etcd"


def test_skopeo_docker_hub_names_are_normalised(write: Callable[[str, str], Path]) -> None:
    text = (
        "docker.io:\n  images:\n    busybox: []\n    library/alpine: []\n    bitnami/redis: []\n"
        "index.docker.io:\n  images:\n    nginx: [latest]\n"
    )
    plan = skopeo(write, text, "dst:5000/m", scoped=True)
    assert [(e.name, e.source) for e in plan.entries] == [
        ("docker.io/busybox", "docker.io/library/busybox"),
        ("docker.io/library/alpine", "docker.io/library/alpine"),
        ("docker.io/bitnami/redis", "docker.io/bitnami/redis"),
        ("index.docker.io/nginx", "docker.io/library/nginx"),
    ]
    assert target_repository(plan.entries[0], "library/busybox") == "dst:5000/m/docker.io/library/busybox"


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
    assert {e.source for e in plan.entries} == {"quay.io/a/b"}
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
    assert plan.registries == {"quay.io": RegistryConfig("quay.io", scheme)}  # type: ignore[arg-type]


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
        "quay.io": RegistryConfig(
            "quay.io", "insecure", str(cert_dir / "a-ca.crt"), str(cert_dir / "client.cert"),
            str(cert_dir / "client.key"),
        )
    }
    assert plan.entries[1].source == "quay.io/coreos/etcd"


def test_skopeo_cert_dir_variants(write: Callable[[str, str], Path], tmp_path: Path) -> None:
    only_ca = tmp_path / "ca-only"
    only_ca.mkdir()
    (only_ca / "ca.crt").write_text("x")
    plan = skopeo(write, f"quay.io:\n  cert-dir: {only_ca}\n  images: {{a/b: []}}\n")
    assert plan.registries["quay.io"] == RegistryConfig("quay.io", ca_file=str(only_ca / "ca.crt"))
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
    at = config._At("f", "e", "k")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "[[": valid today, re only warns
        try:
            wrapped = config._unanchored(regex, at)
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
    assert from_skopeo_docker("quay.io/a/b", destination, scoped=False, all_platforms=True).entries[0].target == target


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
    assert plan == SyncPlan((SyncEntry(source, repo, dst, "repository", "basename", tags=tags),))


def test_skopeo_docker_man_page_examples() -> None:
    def where(source: str, dest: str, scoped: bool) -> str:
        (e,) = from_skopeo_docker(source, dest, scoped=scoped, all_platforms=True).entries
        return target_repository(e, e.source.partition("/")[2])

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
    assert from_skopeo_docker("reg:5000/app", "dst.io", scoped=False, all_platforms=True).entries[0].target == "dst.io"


# ------------------------------------------------------------------------------------------ properties

_LEAVES = (
    st.none() | st.booleans() | st.integers(-3, 10) | st.floats(allow_nan=True)
    | st.text(max_size=8)
    | st.sampled_from([
        "quay.io/org/app", "reg.example:5000", "reg.io/m:v1", "https", "http", "linux/amd64", "linux", "v1", "(",
        D0, "sha256:x", "namespace", "registry", "repository", "docker.io", "busybox", ">=1.2", "[::1]:5000/a",
        "/nonexistent", ".", "", "true", "yes", "(?i)a", "a{99999999999}",
        # local stores (ISSUE #7 §4), durations, mirrors
        "oci:/tmp/l", "oci:/tmp/l:ns/app", "oci:/tmp/l:a:b", "oci-archive:/x.tar", "docker-archive:/x.tar:@0",
        "oci:", "oci::x", "docker-archive:/d.tar:repo:tag", "15m", "12h", "0s", "-1", "cache.local:5000/hub",
    ])
)
_KEYS = st.sampled_from([
    "version", "registries", "defaults", "sync", "name", "source", "target", "type", "tags", "platforms", "repos",
    "allow", "deny", "semver", "latest", "exact", "digests", "tls", "ca_file", "client_cert", "client_key",
    "credentials", "username", "password", "helper", "authfile", "identity_token", "max_concurrency",
    "requests_per_second", "images", "images-by-tag-regex", "images-by-semver", "tls-verify", "cert-dir",
    "identitytoken", "quay.io", "reg.example:5000", "a/b", "busybox", "mirrors", "delete_extra", "protect",
    "cap", "refresh_after", "prune",
]) | st.text(max_size=6)
_DATA = st.recursive(
    _LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(_KEYS | st.integers(0, 3) | st.none(), inner, max_size=5)
    ),
    max_leaves=25,
)


def _near_plan() -> st.SearchStrategy[dict[str, Any]]:
    """Plans shaped like real ones with arbitrary leaves: reaches the deep validation paths."""
    filters = st.dictionaries(st.sampled_from(["allow", "deny", "semver", "latest", "exact", "digests", "x"]),
                              _LEAVES | st.lists(_LEAVES, max_size=3), max_size=4)
    extra = st.dictionaries(st.sampled_from(["protect", "cap", "x"]), _LEAVES | st.lists(_LEAVES, max_size=3),
                            max_size=3)
    item = st.dictionaries(
        st.sampled_from([*config._ENTRY_KEYS, "x"]),
        _LEAVES | filters | extra | st.lists(_LEAVES, max_size=3), max_size=7,
    )
    settings_ = st.dictionaries(
        st.sampled_from([*config._REGISTRY_KEYS, "x"]),
        _LEAVES | st.dictionaries(st.sampled_from([*config._CREDENTIAL_KEYS, "x"]), _LEAVES, max_size=3),
        max_size=4,
    )
    return st.fixed_dictionaries(
        {"sync": st.lists(item, max_size=3)},
        optional={
            "version": _LEAVES,
            "registries": st.dictionaries(_LEAVES.filter(lambda v: isinstance(v, str)), settings_, max_size=2),
            "defaults": st.dictionaries(st.sampled_from(["tags", "platforms", "repos"]), filters, max_size=3),
        },
    )


def _only_config_errors(fn: Callable[[], object]) -> None:
    try:
        result = fn()
    except ConfigError as exc:
        assert str(exc)
    else:
        assert isinstance(result, SyncPlan)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_DATA)
def test_parse_plan_only_raises_config_errors(data: object) -> None:
    _only_config_errors(lambda: parse_plan(data, path="p.yaml"))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_near_plan())
def test_near_valid_plans_only_raise_config_errors(data: dict[str, Any]) -> None:
    _only_config_errors(lambda: parse_plan(data))


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("skopeo") / "sync.yml"


def _near_skopeo() -> st.SearchStrategy[dict[Any, Any]]:
    images = st.dictionaries(_KEYS, _LEAVES | st.lists(_LEAVES, max_size=3), max_size=3)
    block = st.dictionaries(
        st.sampled_from([*config._SKOPEO_KEYS, "x"]),
        images | _LEAVES | st.dictionaries(st.sampled_from(["username", "password", "identitytoken"]), _LEAVES),
        max_size=4,
    )
    keys = st.one_of(_KEYS, _LEAVES.filter(lambda v: isinstance(v, str)))
    return st.dictionaries(keys, block | _LEAVES, max_size=3)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_DATA | _near_skopeo(), scoped=st.booleans())
def test_from_skopeo_yaml_only_raises_config_errors(scratch: Path, data: object, scoped: bool) -> None:
    scratch.write_text(yaml.safe_dump(data))
    _only_config_errors(lambda: from_skopeo_yaml(scratch, "dst.io/m", scoped=scoped, all_platforms=True))


@settings(max_examples=80, deadline=None)
@given(source=_LEAVES, destination=_LEAVES, scoped=st.booleans())
def test_from_skopeo_docker_only_raises_config_errors(source: Any, destination: Any, scoped: bool) -> None:
    _only_config_errors(lambda: from_skopeo_docker(source, destination, scoped=scoped, all_platforms=True))


@settings(max_examples=60, deadline=None)
@given(creds=st.dictionaries(st.sampled_from([*config._CREDENTIAL_KEYS, "pass"]),
                             st.just(SECRET) | _LEAVES | st.lists(st.just(SECRET), max_size=2), max_size=4))
def test_credentials_errors_never_show_values(creds: dict[str, Any]) -> None:
    try:
        parse_plan(plan_of(registries={"reg.io": {"credentials": creds}}))
    except ConfigError as exc:
        assert SECRET not in str(exc)
