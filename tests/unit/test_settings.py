"""Tests for :mod:`regcopy.settings`: the one settings type, its partial overrides, and the one resolution rule.

Table tests of :func:`~regcopy.settings.resolve`: defaults (a client's ``settings``/``default_settings``)
→ a plan's ``registries:`` → the command line's flags (a client's ``overrides``), the later winning field
by field; a property test that the rule is one rule (applying layers one by one or stacked gives the
same); the client's side (each run resolved in its own context, the client never changed) and the
command line's side (flags of a plan's source and target hosts). Also the store each credentials source
names (:func:`regcopy.credentials.store_for`), answered by a real helper process and a real auth file.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import click
import pytest
from hypothesis import given
from hypothesis import strategies as st

from regcopy import Client, StaticCredentials
from regcopy.cli._access import Access
from regcopy.cli._flags import insecure_layer, side_layer
from regcopy.credentials import Credential, store_for
from regcopy.reference import Namespace
from regcopy.settings import Credentials, Layer, Overrides, RegistrySettings, Settings, resolve, stack
from regcopy.sync import parse_plan

BASE = RegistrySettings(scheme="https", ca_file="/base/ca.pem", client_cert="/base/c.pem", client_key="/base/c.key",
                        max_concurrency=3, requests_per_second=5.0, retries=7)
DEFAULTS = Settings(RegistrySettings(retries=7), {"reg.io": BASE})
HELPER, INLINE = Credentials(helper="desktop"), Credentials(username="u", password="p")
M1, M2 = Namespace("cache.local:5000"), Namespace("cache2.example", "hub")


def _with(**fields: Any) -> RegistrySettings:
    return RegistrySettings(**{**{f: getattr(BASE, f) for f in BASE.__dataclass_fields__}, **fields})


# (what the row shows, the plan's registries:, the flags, the host, the settings that hold)
SETTINGS: list[tuple[str, Layer, Layer, str, RegistrySettings]] = [
    ("no layer: the defaults", {}, {}, "reg.io", BASE),
    ("a host no layer names: the default", {"reg.io": Overrides({"scheme": "http"})}, {}, "other.io",
     RegistrySettings(retries=7)),
    ("the plan over the defaults, field by field", {"reg.io": Overrides({"scheme": "http", "ca_file": "/plan/ca.pem",
                                                                          "max_concurrency": 9})}, {},
     "reg.io", _with(scheme="http", ca_file="/plan/ca.pem", max_concurrency=9)),
    ("a client pair and a rate from the plan", {"reg.io": Overrides({
        "scheme": "insecure", "client_cert": "/p/c.pem", "client_key": "/p/c.key", "requests_per_second": 0.5})}, {},
     "reg.io", _with(scheme="insecure", client_cert="/p/c.pem", client_key="/p/c.key", requests_per_second=0.5)),
    ("a request timeout from the plan", {"reg.io": Overrides({"scheme": "https", "request_timeout": 90.0})}, {},
     "reg.io", _with(request_timeout=90.0)),
    # A registries: entry sets what it gives and nothing else: no tls key, no scheme (it used to force auto).
    ("a plan entry that says nothing", {"reg.io": Overrides()}, {}, "reg.io", BASE),
    ("a plan entry without tls keeps the scheme", {"reg.io": Overrides({"max_concurrency": 1})}, {}, "reg.io",
     _with(max_concurrency=1)),
    ("a host only the plan names", {"new.io": Overrides({"request_timeout": 9.0})}, {}, "new.io",
     RegistrySettings(retries=7, request_timeout=9.0)),
    ("the flags over the defaults", {}, {"reg.io": Overrides({"scheme": "insecure"})}, "reg.io",
     _with(scheme="insecure")),
    ("the flags win over the plan", {"reg.io": Overrides({"scheme": "https"})},
     {"reg.io": Overrides({"scheme": "insecure"})}, "reg.io", _with(scheme="insecure")),
    ("the plan keeps what the flags leave out",
     {"reg.io": Overrides({"ca_file": "/plan/ca.pem", "max_concurrency": 9, "requests_per_second": 0.5})},
     {"reg.io": Overrides({"max_concurrency": 2})}, "reg.io",
     _with(ca_file="/plan/ca.pem", max_concurrency=2, requests_per_second=0.5)),
    ("flags without settings change none", {"reg.io": Overrides({"scheme": "http"})},
     {"reg.io": Overrides(credentials=INLINE)}, "reg.io", _with(scheme="http")),
]


@pytest.mark.parametrize(("plan", "flags", "host", "expected"), [row[1:] for row in SETTINGS],
                         ids=[row[0] for row in SETTINGS])
def test_resolve_settings(plan: Layer, flags: Layer, host: str, expected: RegistrySettings) -> None:
    assert resolve(DEFAULTS, plan, flags).for_host(host) == expected


# (what the row shows, the plan's registries:, the flags, reg.io's credentials source and mirrors that hold)
SOURCES: list[tuple[str, Layer, Layer, Credentials | None, tuple[Namespace, ...] | None]] = [
    ("nothing said", {}, {}, None, None),
    ("the plan's", {"reg.io": Overrides(credentials=HELPER, mirrors=(M1, M2))}, {}, HELPER, (M1, M2)),
    ("the flags' credentials win", {"reg.io": Overrides(credentials=HELPER, mirrors=(M1,))},
     {"reg.io": Overrides(credentials=INLINE)}, INLINE, (M1,)),
    ("settings alone keep the plan's", {"reg.io": Overrides(credentials=HELPER, mirrors=(M1,))},
     {"reg.io": Overrides({"scheme": "http"})}, HELPER, (M1,)),
    ("an empty mirror list is said", {"reg.io": Overrides(mirrors=(M1,))}, {"reg.io": Overrides(mirrors=())},
     None, ()),
]


@pytest.mark.parametrize(("plan", "flags", "credentials", "mirrors"), [row[1:] for row in SOURCES],
                         ids=[row[0] for row in SOURCES])
def test_resolve_credentials_and_mirrors(plan: Layer, flags: Layer, credentials: Credentials | None,
                                         mirrors: tuple[Namespace, ...] | None) -> None:
    resolved = resolve(DEFAULTS, plan, flags)
    assert resolved.credentials.get("reg.io") == credentials
    assert resolved.mirrors.get("reg.io") == mirrors


def test_resolve_is_pure() -> None:
    plan = {"reg.io": Overrides({"scheme": "http"}, HELPER, (M1,))}
    before = (dict(DEFAULTS.hosts), dict(plan))
    resolved = resolve(DEFAULTS, plan)
    assert (dict(DEFAULTS.hosts), dict(plan)) == before
    assert DEFAULTS.for_host("reg.io") == BASE and resolved.for_host("reg.io").scheme == "http"
    with pytest.raises(TypeError):
        resolved.hosts["x"] = BASE  # type: ignore[index]  # read-only views


@pytest.mark.parametrize(("settings", "message"), [
    ({"schema": "http"}, "not a registry setting: schema"),
    ({"scheme": "maybe"}, "scheme must be one of"),
    ({"max_concurrency": 0}, "at least 1"),
    ({"request_timeout": 0}, "positive number of seconds"),
])
def test_overrides_are_checked_against_the_settings_type(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Overrides(settings)


def test_overrides_keep_their_own_copy() -> None:
    fields: dict[str, Any] = {"scheme": "http"}
    said = Overrides(fields)
    fields["scheme"] = "https"
    assert said.settings == {"scheme": "http"}
    assert not Overrides() and Overrides(mirrors=()) and Overrides(credentials=HELPER)


_FIELDS = st.fixed_dictionaries({}, optional={
    "scheme": st.sampled_from(["auto", "https", "http", "insecure"]), "max_concurrency": st.integers(1, 9),
    "ca_file": st.sampled_from(["/a.pem", "/b.pem"]), "request_timeout": st.sampled_from([1.0, 60.0]),
})
_SOURCES = st.none() | st.sampled_from([HELPER, INLINE])
_MIRRORS = st.none() | st.sampled_from([(), (M1,), (M2, M1)])
_HOSTS = st.sampled_from(["reg.io", "b.io", "c.io"])
_LAYERS = st.dictionaries(_HOSTS, st.builds(Overrides, _FIELDS, _SOURCES, _MIRRORS), max_size=3)


@given(st.lists(_LAYERS, max_size=4))
def test_one_rule_whether_layers_come_one_by_one_or_stacked(layers: list[Layer]) -> None:
    one_by_one = DEFAULTS
    for layer in layers:
        one_by_one = resolve(one_by_one, layer)
    assert resolve(DEFAULTS, *layers) == one_by_one == resolve(DEFAULTS, stack(*layers))


# ----------------------------------------------------------------------------- the client and the CLI


def test_each_run_resolves_its_plan_and_the_client_stays_as_it_is() -> None:
    client = Client(credentials=StaticCredentials({}), settings={"reg.io": RegistrySettings(scheme="http")},
                    overrides={"reg.io": Overrides({"max_concurrency": 2}, INLINE)})
    plan = parse_plan({"registries": {"reg.io": {"tls": "https", "max_concurrency": 9,
                                                  "credentials": {"helper": "desktop"}},
                                      "new.io": {"request_timeout": 5, "mirrors": ["cache.local:5000"]}},
                       "sync": [{"source": "reg.io/a", "target": "new.io/a"}]})
    run = client.context(plan.registries)
    assert run.settings.for_host("reg.io") == RegistrySettings(scheme="https", max_concurrency=2)
    assert run.settings.credentials == {"reg.io": INLINE}  # the client's overrides win over the plan
    assert run.settings.for_host("new.io") == RegistrySettings(request_timeout=5.0)
    assert run.settings.mirrors == {"new.io": (M1,)}
    assert client.settings_for("reg.io") == RegistrySettings(scheme="http", max_concurrency=2)
    assert client.settings_for("new.io") == RegistrySettings() and not client.settings.mirrors
    # One store per host and credentials source: a helper's cached answer outlives the run.
    again = client.context(plan.registries)
    store = run.pool.credentials_for("reg.io", INLINE)
    assert again.pool.credentials_for("reg.io", INLINE) is store is not client.credentials
    assert run.pool.credentials_for("other.io", None) is client.credentials


def test_the_command_lines_flags_name_each_side_of_a_plan() -> None:
    plan = parse_plan({"sync": [{"source": "a.io/x", "target": "b.io/x"},
                                {"source": "c.io/ns", "target": "oci:/tmp/out", "type": "namespace"}]})
    src = side_layer(plan, "src", Access("--src-", tls_verify=False, creds="u:p:w"))
    assert src == {h: Overrides({"scheme": "insecure"}, Credentials(username="u", password="p:w"))
                   for h in ("a.io", "c.io")}
    dest = side_layer(plan, "dest", Access("--dest-", tls_verify=True))
    assert dest == {"b.io": Overrides({"scheme": "https"})}  # a local store has no host
    assert side_layer(plan, "dest", Access("--dest-")) == {}
    retry = side_layer(plan, "dest", Access("--dest-"), {"retries": 0})
    assert retry == {"b.io": Overrides({"retries": 0})}  # --retry-times alone still reaches every host
    flags = stack(insecure_layer(("b.io", "d.io")), src, dest)
    assert flags["b.io"] == Overrides({"scheme": "https"}) and flags["d.io"] == Overrides({"scheme": "insecure"})
    # skopeo asks for a missing password on a terminal; without one it is a usage error that names the flag.
    with pytest.raises(click.UsageError, match="--src-creds no-colon has no password"):
        side_layer(plan, "src", Access("--src-", creds="no-colon"))
    with pytest.raises(click.UsageError, match="--src-creds and --src-no-creds"):
        side_layer(plan, "src", Access("--src-", creds="u:p", no_creds=True))
    anonymous = side_layer(plan, "src", Access("--src-", no_creds=True))
    assert anonymous["a.io"] == Overrides({}, Credentials(anonymous=True))
    token = side_layer(plan, "src", Access("--src-", registry_token="tok"))
    assert token["a.io"].credentials == Credentials(registry_token="tok")


# ------------------------------------------------------------------------------------ credential stores


async def test_inline_credentials() -> None:
    store = store_for("reg.io", Credentials(username="u", password="p"))
    assert await store.get("reg.io") == Credential("u", "p")
    token = store_for("reg.io", Credentials(identity_token="refresh"))
    assert await token.get("reg.io") == Credential(identity_token="refresh")


async def test_an_auth_file(tmp_path: Path) -> None:
    auth = tmp_path / "auth.json"
    auth.write_text(json.dumps({"auths": {"reg.io": {"auth": base64.b64encode(b"alice:pw").decode()}}}))
    store = store_for("reg.io", Credentials(authfile=str(auth)))
    assert await store.get("reg.io") == Credential("alice", "pw")


async def test_a_helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    helper = tmp_path / "docker-credential-plan"
    answer = json.dumps({"Username": "bob", "Secret": "s3"})
    helper.write_text(f"#!/bin/sh\ntest \"$1\" = get || exit 9\ncat >/dev/null\nprintf '%s' '{answer}'\n")
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    store = store_for("reg.io", Credentials(helper="plan", refresh_after=60))
    assert await store.get("reg.io") == Credential("bob", "s3")
