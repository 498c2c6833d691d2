"""Tests for :mod:`regcopy.sync.plan` (regcopy's plan files) and the toolkit under it.

Valid inputs are compared with the whole expected dataclasses; every invalid input must raise a
ConfigError whose ``.path``, ``.entry`` and ``.key`` point at the culprit, with a clear message that
never contains a secret (:mod:`regcopy.planfile`, :mod:`regcopy.planaddress`,
:mod:`regcopy.plansettings`). Property tests feed arbitrary YAML-able data to the parser.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from plan_cases import D0, DATA, LEAVES, SECRET, check, entry, ns, only_config_errors, plan_of, raises, sync_entry

from regcopy import plansettings
from regcopy.errors import ConfigError, InvalidReference
from regcopy.filters import RepoFilter, TagFilter
from regcopy.reference import Repository
from regcopy.settings import SCHEME_MODES, Credentials, Overrides
from regcopy.sync import plan as sync_plan
from regcopy.sync.model import SyncEntry, SyncPlan
from regcopy.sync.plan import load_plan, parse_plan, target_repository


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str], Path]:
    def _write(text: str, name: str = "plan.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return _write


# ------------------------------------------------------------------------------ regcopy plans: valid


def E(name: str, source: str, target: str, **kw: Any) -> SyncEntry:  # short: the tables read like dataclasses
    return sync_entry(name, source, target, **kw)


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
            "reg.internal:5000": Overrides(
                {"scheme": "https", "ca_file": "/ca.pem", "client_cert": "/c.pem", "client_key": "/c.key",
                 "max_concurrency": 8, "requests_per_second": 20.0, "request_timeout": 90.0},
                Credentials("u", SECRET),
            ),
            "docker.io": Overrides(credentials=Credentials(helper="desktop")),
            "ghcr.io": Overrides(credentials=Credentials(authfile="/auth.json")),
            "acr.example.io": Overrides(credentials=Credentials(username="0000", identity_token=SECRET)),
            "quay.io": Overrides(),  # named, and says nothing: the layers under it decide
        },
        "plan.yaml",
    )
    assert isinstance(plan.registries["reg.internal:5000"].settings["requests_per_second"], float)
    with pytest.raises(TypeError):
        plan.registries["x"] = Overrides()  # type: ignore[index]  # read-only view
    with pytest.raises(TypeError):
        plan.registries["quay.io"].settings["scheme"] = "http"  # type: ignore[index]  # read-only too
    assert SECRET not in repr(plan)


@pytest.mark.parametrize("mode", SCHEME_MODES)
def test_every_tls_mode(mode: str) -> None:
    plan = parse_plan(plan_of(registries={"reg.io": {"tls": mode}}))
    assert plan.registries["reg.io"].settings == {"scheme": mode}


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
    entry = sync_entry("e", source, target, kind, naming)
    assert str(target_repository(entry, Repository(entry.source.registry, repo))) == expected


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
    entry = sync_entry("e", source, target, kind, naming)
    with pytest.raises(InvalidReference):  # the source repository as a value, or where it lands
        target_repository(entry, Repository(entry.source.registry, repo))


def test_plan_entries_name_their_targets() -> None:
    plan = parse_plan(plan_of(entry(), ns(), ns(type="registry", source="src.io", target="dst.io")))
    assert [str(target_repository(e, Repository(e.source.registry, "org/app"))) for e in plan.entries] == [
        "reg.internal:5000/m/app", "reg.internal:5000/m/app", "dst.io/org/app",
    ]


# ------------------------------------------------------------------------------------------ properties


def _near_plan() -> st.SearchStrategy[dict[str, Any]]:
    """Plans shaped like real ones with arbitrary leaves: reaches the deep validation paths."""
    filters = st.dictionaries(st.sampled_from(["allow", "deny", "semver", "latest", "exact", "digests", "x"]),
                              LEAVES | st.lists(LEAVES, max_size=3), max_size=4)
    extra = st.dictionaries(st.sampled_from(["protect", "cap", "x"]), LEAVES | st.lists(LEAVES, max_size=3),
                            max_size=3)
    item = st.dictionaries(
        st.sampled_from([*sync_plan._ENTRY_KEYS, "x"]),
        LEAVES | filters | extra | st.lists(LEAVES, max_size=3), max_size=7,
    )
    settings_ = st.dictionaries(
        st.sampled_from([*plansettings._REGISTRY_KEYS, "x"]),
        LEAVES | st.dictionaries(st.sampled_from([*plansettings._CREDENTIAL_KEYS, "x"]), LEAVES, max_size=3),
        max_size=4,
    )
    return st.fixed_dictionaries(
        {"sync": st.lists(item, max_size=3)},
        optional={
            "version": LEAVES,
            "registries": st.dictionaries(LEAVES.filter(lambda v: isinstance(v, str)), settings_, max_size=2),
            "defaults": st.dictionaries(st.sampled_from(["tags", "platforms", "repos"]), filters, max_size=3),
        },
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(DATA)
def test_parse_plan_only_raises_config_errors(data: object) -> None:
    only_config_errors(lambda: parse_plan(data, path="p.yaml"))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_near_plan())
def test_near_valid_plans_only_raise_config_errors(data: dict[str, Any]) -> None:
    only_config_errors(lambda: parse_plan(data))


@settings(max_examples=60, deadline=None)
@given(creds=st.dictionaries(st.sampled_from([*plansettings._CREDENTIAL_KEYS, "pass"]),
                             st.just(SECRET) | LEAVES | st.lists(st.just(SECRET), max_size=2), max_size=4))
def test_credentials_errors_never_show_values(creds: dict[str, Any]) -> None:
    try:
        parse_plan(plan_of(registries={"reg.io": {"credentials": creds}}))
    except ConfigError as exc:
        assert SECRET not in str(exc)


def test_a_bad_refresh_after_is_not_echoed() -> None:
    # Found by the property test above: a password pasted into refresh_after was quoted back.
    with pytest.raises(ConfigError) as info:
        parse_plan(plan_of(registries={"reg.io": {"credentials": {"helper": "h", "refresh_after": SECRET}}}))
    assert SECRET not in str(info.value)
    assert info.value.key == "registries[reg.io].credentials.refresh_after"
    assert "must be a duration" in str(info.value)
