"""Credential stores: docker config.json / containers auth.json files and credential helpers
(docs/protocol.md#credentials)."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from regcopy.credentials import (
    ANONYMOUS,
    ChainCredentials,
    Credential,
    CredentialStore,
    DockerConfigCredentials,
    HelperCredentials,
    StaticCredentials,
    default_credentials,
)
from regcopy.ecr import EcrCredentials
from regcopy.errors import ConfigError, CredentialError

SECRET = "s3cr3t-pa55"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def write_json(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


class Env:
    """A hermetic environment: HOME and a bin dir (first on PATH) inside tmp_path."""

    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path
        self.home = tmp_path / "home"
        self.bin = tmp_path / "bin"
        self.home.mkdir()
        self.bin.mkdir()
        self.vars = {"HOME": str(self.home), "PATH": f"{self.bin}{os.pathsep}/usr/bin{os.pathsep}/bin"}
        self.calls = tmp_path / "calls"

    def store(self, *, helper_timeout: float = 10.0) -> DockerConfigCredentials:
        return DockerConfigCredentials(env=self.vars, helper_timeout=helper_timeout)

    @property
    def docker_config(self) -> Path:
        return self.home / ".docker" / "config.json"

    def helper(self, name: str, body: str) -> None:
        """docker-credential-<name>: logs its stdin to ``calls`` (one line per run), then runs ``body``."""
        script = self.bin / f"docker-credential-{name}"
        script.write_text(
            f'#!/bin/sh\ntest "$1" = get || exit 9\ninput=$(cat); echo "{name} $input" >> "{self.calls}"\n{body}\n'
        )
        script.chmod(0o755)

    def helper_calls(self) -> list[str]:
        return self.calls.read_text().splitlines() if self.calls.exists() else []


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


def ok_helper(user: str = "helperuser", secret: str = SECRET) -> str:
    return f"""printf '{{"ServerURL":"%s","Username":"{user}","Secret":"{secret}"}}' "$input\""""


# ------------------------------------------------------------------------------------------- values


def test_credential_repr_redacts() -> None:
    cred = Credential("alice", SECRET, identity_token=SECRET + "i", registry_token=SECRET + "r")
    assert SECRET not in repr(cred)
    assert SECRET not in str(cred)
    assert "alice" in repr(cred)
    assert repr(Credential()) == ("Credential(username=None, password=None, identity_token=None, registry_token=None)")


def test_anonymous() -> None:
    assert ANONYMOUS.anonymous
    assert Credential(username="", password="").anonymous
    assert not Credential(username="alice").anonymous
    assert not Credential(identity_token="x").anonymous
    assert not Credential(registry_token="x").anonymous


def test_protocol_is_runtime_checkable(env: Env) -> None:
    assert isinstance(StaticCredentials({}), CredentialStore)
    assert isinstance(env.store(), CredentialStore)
    assert isinstance(ChainCredentials(), CredentialStore)
    assert not isinstance(object(), CredentialStore)


# ---------------------------------------------------------------------------------------- files


@pytest.mark.parametrize("key", ["https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io"])
async def test_hub_key_forms(env: Env, key: str) -> None:
    write_json(env.docker_config, {"auths": {key: {"auth": b64(f"alice:{SECRET}")}}})
    store = env.store()
    assert await store.get("docker.io") == Credential("alice", SECRET)
    assert await store.get("index.docker.io") == Credential("alice", SECRET)
    assert await store.get("quay.io") == ANONYMOUS


async def test_hub_canonical_key_wins(env: Env) -> None:
    write_json(
        env.docker_config,
        {
            "auths": {
                "registry-1.docker.io": {"auth": b64("third:x")},
                "docker.io": {"auth": b64("second:x")},
                "https://index.docker.io/v1/": {"auth": b64("first:x")},
            }
        },
    )
    assert (await env.store().get("docker.io")).username == "first"


@pytest.mark.parametrize(
    "key", ["reg.example:5000", "https://reg.example:5000/v1/", "http://reg.example:5000", "REG.example:5000"]
)
async def test_host_and_url_keys(env: Env, key: str) -> None:
    write_json(env.docker_config, {"auths": {key: {"auth": b64("bob:pw")}}})
    store = env.store()
    assert await store.get("reg.example:5000") == Credential("bob", "pw")
    assert await store.get("reg.example") == ANONYMOUS


async def test_namespaced_keys_are_ignored(env: Env) -> None:
    write_json(env.docker_config, {"auths": {"quay.io/org": {"auth": b64("org:pw")}}})
    assert await env.store().get("quay.io") == ANONYMOUS


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"auth": b64("alice:pa:ss\x00\x00")}, Credential("alice", "pa:ss")),  # first ':' and NULs
        ({"auth": b64("alice:pw").rstrip("=")}, Credential("alice", "pw")),  # missing padding tolerated
        ({"username": "u", "password": "p"}, Credential("u", "p")),
        ({"auth": b64("a:b"), "username": "u", "password": "p"}, Credential("a", "b")),  # auth wins
        ({"Auth": b64("a:b")}, Credential("a", "b")),  # Go decodes struct fields case-insensitively
        ({"auth": b64("alice:"), "identitytoken": "idt"}, Credential("alice", None, identity_token="idt")),
        ({"identitytoken": "idt"}, Credential(identity_token="idt")),
        ({"registrytoken": "rt"}, Credential(registry_token="rt")),
        ({}, ANONYMOUS),
        ({"auth": ""}, ANONYMOUS),
    ],
)
async def test_entry_forms(env: Env, entry: dict[str, str], expected: Credential) -> None:
    write_json(env.docker_config, {"auths": {"reg": entry}})
    assert await env.store().get("reg") == expected


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        ({"auth": "!!!" + SECRET}, "not base64"),
        ({"auth": b64("no-colon-" + SECRET)}, "does not decode to user:password"),
        ({"auth": base64.b64encode(b"\xff\xfe:" + SECRET.encode()).decode()}, "not base64"),
        ({"password": 42}, "'password' of reg must be a string"),
        ("just a string", "must be an object"),
    ],
)
async def test_bad_entries(env: Env, entry: object, why: str) -> None:
    path = write_json(env.docker_config, {"auths": {"reg": entry}})
    with pytest.raises(CredentialError) as info:
        await env.store().get("reg")
    assert why in str(info.value)
    assert str(path) in str(info.value)
    assert SECRET not in str(info.value)
    assert info.value.registry == "reg"


async def test_bad_entry_of_another_host_is_not_an_error(env: Env) -> None:
    write_json(env.docker_config, {"auths": {"other": {"auth": "!!!"}, "reg": {"auth": b64("a:b")}}})
    assert await env.store().get("reg") == Credential("a", "b")


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"{not json", "invalid JSON at line 1"),
        (b"\xff\xfe", "invalid JSON"),
        (b"[]", "expected a JSON object"),
        (b'{"auths": []}', "'auths' must be an object"),
        (b'{"credHelpers": {"reg": 1}}', "'credHelpers' must map"),
        (b'{"credsStore": 1}', "'credsStore' must be a string"),
    ],
)
async def test_bad_files(env: Env, content: bytes, why: str) -> None:
    env.docker_config.parent.mkdir(parents=True)
    env.docker_config.write_bytes(content)
    with pytest.raises(CredentialError) as info:
        await env.store().get("reg")
    assert why in str(info.value)
    assert str(env.docker_config) in str(info.value)


async def test_unreadable_file(env: Env) -> None:
    env.docker_config.mkdir(parents=True)  # a directory where the file should be
    with pytest.raises(CredentialError, match="cannot read credentials file") as info:
        await env.store().get("reg")
    assert str(env.docker_config) in str(info.value)


async def test_empty_file_is_empty_config(env: Env) -> None:
    env.docker_config.parent.mkdir(parents=True)
    env.docker_config.write_text("  \n")
    assert await env.store().get("reg") == ANONYMOUS


async def test_search_order(env: Env) -> None:
    root = env.root
    files = {
        "authfile": root / "explicit.json",
        "runtime": root / "run" / "containers" / "auth.json",
        "xdgconfig": root / "xdg" / "containers" / "auth.json",
        "dockerconfig": root / "dc" / "config.json",
        "homedocker": env.home / ".docker" / "config.json",
        "homeconfig": env.home / ".config" / "containers" / "auth.json",
    }
    for name, path in files.items():
        write_json(path, {"auths": {"reg": {"auth": b64(f"{name}:pw")}, f"only-{name}": {"auth": b64("x:y")}}})
    write_json(env.home / ".dockercfg", {"reg": {"auth": b64("legacy:pw")}, "only-legacy": {"auth": b64("x:y")}})
    env.vars |= {
        "REGISTRY_AUTH_FILE": str(files["authfile"]),
        "XDG_RUNTIME_DIR": str(root / "run"),
        "XDG_CONFIG_HOME": str(root / "xdg"),
        "DOCKER_CONFIG": str(root / "dc"),
    }
    steps: list[Callable[[], object]] = [
        lambda: env.vars.pop("REGISTRY_AUTH_FILE"),
        lambda: env.vars.pop("XDG_RUNTIME_DIR"),
        lambda: env.vars.pop("XDG_CONFIG_HOME"),  # falls back to ~/.config
        files["homeconfig"].unlink,
        lambda: env.vars.pop("DOCKER_CONFIG"),  # falls back to ~/.docker
        files["homedocker"].unlink,
    ]
    order = [(await env.store().get("reg")).username]
    for step in steps:
        step()
        order.append((await env.store().get("reg")).username)
    assert order == ["authfile", "runtime", "xdgconfig", "homeconfig", "dockerconfig", "homedocker", "legacy"]
    # Every file is still consulted for hosts the earlier ones do not know.
    assert (await env.store().get("only-legacy")).username == "x"


async def test_default_paths_derive_from_env_only(env: Env) -> None:
    store = DockerConfigCredentials(env={"PATH": "/bin"})
    assert store.paths == ()
    assert env.store().paths == (
        env.home / ".config" / "containers" / "auth.json",
        env.home / ".docker" / "config.json",
        env.home / ".dockercfg",
    )


async def test_explicit_paths_and_default_credentials(env: Env) -> None:
    authfile = write_json(env.root / "auth.json", {"auths": {"reg": {"auth": b64("explicit:pw")}}})
    write_json(env.docker_config, {"auths": {"other": {"auth": b64("home:pw")}}})
    store = DockerConfigCredentials([authfile], env=env.vars)
    assert (await store.get("reg")).username == "explicit"
    assert await store.get("other") == ANONYMOUS  # only the given file
    default = default_credentials(authfile)
    # Files first, then the ECR provider for ECR hosts the files leave anonymous (tests/unit/test_ecr.py).
    assert isinstance(default, ChainCredentials)
    files, ecr = default.stores
    assert isinstance(files, DockerConfigCredentials) and isinstance(ecr, EcrCredentials)
    assert files.paths == (authfile,)
    assert (await default.get("reg")).username == "explicit"
    assert await default.get("other") == ANONYMOUS  # not an ECR host: boto3 is never touched


async def test_docker_auth_config_overlay(env: Env) -> None:
    write_json(env.docker_config, {"auths": {"reg": {"auth": b64("file:pw")}, "b": {"auth": b64("file:pw")}}})
    env.vars["DOCKER_AUTH_CONFIG"] = json.dumps({"auths": {"reg": {"auth": b64("overlay:pw")}}})
    store = env.store()
    assert (await store.get("reg")).username == "overlay"
    assert (await store.get("b")).username == "file"
    env.vars["DOCKER_AUTH_CONFIG"] = "{oops"
    with pytest.raises(CredentialError, match="DOCKER_AUTH_CONFIG"):
        await env.store().get("reg")


# -------------------------------------------------------------------------------------- helpers


async def test_cred_helper(env: Env) -> None:
    env.helper("testhelper", ok_helper())
    write_json(env.docker_config, {"credHelpers": {"reg.example:5000": "testhelper"}})
    store = env.store()
    assert await store.get("reg.example:5000") == Credential("helperuser", SECRET)
    assert env.helper_calls() == ["testhelper reg.example:5000"]  # the server URL on stdin


async def test_hub_helper_gets_the_v1_url(env: Env) -> None:
    env.helper("testhelper", ok_helper())
    write_json(env.docker_config, {"credHelpers": {"docker.io": "testhelper"}})
    assert (await env.store().get("docker.io")).username == "helperuser"
    assert env.helper_calls() == ["testhelper https://index.docker.io/v1/"]


async def test_cred_helpers_win_over_creds_store_and_auths(env: Env) -> None:
    env.helper("specific", ok_helper("specific"))
    env.helper("global", ok_helper("global"))
    write_json(
        env.docker_config,
        {
            "auths": {"a": {"auth": b64("inline:pw")}, "b": {"auth": b64("inline:pw")}},
            "credHelpers": {"a": "specific"},
            "credsStore": "global",
        },
    )
    store = env.store()
    assert (await store.get("a")).username == "specific"
    assert (await store.get("b")).username == "inline"  # an inline entry of the host comes before credsStore
    assert (await store.get("c")).username == "global"


async def test_creds_store_ignored_in_containers_auth_json(env: Env) -> None:
    env.helper("global", ok_helper("global"))
    env.helper("specific", ok_helper("specific"))
    write_json(
        env.home / ".config" / "containers" / "auth.json",
        {"credsStore": "global", "credHelpers": {"a": "specific"}},
    )
    store = env.store()
    assert await store.get("c") == ANONYMOUS
    assert (await store.get("a")).username == "specific"  # credHelpers are supported there


async def test_token_username_means_identity_token(env: Env) -> None:
    env.helper("testhelper", ok_helper("<token>", "refresh-tok"))
    write_json(env.docker_config, {"credsStore": "testhelper"})
    assert await env.store().get("reg") == Credential(identity_token="refresh-tok")


async def test_helper_fields_case_insensitive(env: Env) -> None:
    env.helper("testhelper", """echo '{"serverurl":"reg","USERNAME":"u","secret":"p"}'""")
    write_json(env.docker_config, {"credsStore": "testhelper"})
    assert await env.store().get("reg") == Credential("u", "p")


async def test_helper_not_found_is_anonymous_and_falls_through(env: Env) -> None:
    env.helper("testhelper", 'echo "credentials not found in native keychain"; exit 1')
    write_json(env.docker_config, {"credsStore": "testhelper"})
    write_json(env.home / ".dockercfg", {"legacy-only": {"auth": b64("legacy:pw")}})
    store = env.store()
    assert await store.get("reg") == ANONYMOUS
    assert (await store.get("legacy-only")).username == "legacy"


async def test_helper_cached_until_forget(env: Env) -> None:
    env.helper("testhelper", ok_helper())
    write_json(env.docker_config, {"credHelpers": {"reg": "testhelper"}})
    store = env.store()
    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(store.get, "reg")
    await store.get("reg")
    assert len(env.helper_calls()) == 1
    store.forget("reg")
    store.forget("never-asked")
    await store.get("reg")
    assert len(env.helper_calls()) == 2


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_helper_credentials_refresh_after_max_age(env: Env) -> None:
    env.helper("testhelper", ok_helper())
    clock = FakeClock()
    store = HelperCredentials({"reg:5000": "testhelper"}, env=env.vars, refresh_after=60, clock=clock)
    assert await store.get("reg:5000") == Credential("helperuser", SECRET)
    clock.now += 59.9
    await store.get("reg:5000")
    assert len(env.helper_calls()) == 1  # still fresh
    clock.now += 0.1
    await store.get("reg:5000")
    assert len(env.helper_calls()) == 2  # max age reached: the helper ran again
    store.forget("reg:5000")
    await store.get("reg:5000")
    assert len(env.helper_calls()) == 3  # forget (a rejection) still re-runs it at once
    assert await store.get("elsewhere") == ANONYMOUS


async def test_helper_credentials_without_max_age_cache_until_forget(env: Env) -> None:
    env.helper("testhelper", ok_helper())
    clock = FakeClock()
    store = HelperCredentials({"reg": "testhelper"}, env=env.vars, clock=clock)
    await store.get("reg")
    clock.now += 86400 * 365
    await store.get("reg")
    assert len(env.helper_calls()) == 1


async def test_helper_credentials_single_flight(env: Env) -> None:
    env.helper("testhelper", "sleep 0.2\n" + ok_helper())
    store = HelperCredentials({"reg": "testhelper"}, env=env.vars)
    results: list[Credential] = []

    async def get() -> None:
        results.append(await store.get("reg"))

    async with anyio.create_task_group() as tg:
        for _ in range(8):
            tg.start_soon(get)
    assert results == [Credential("helperuser", SECRET)] * 8
    assert len(env.helper_calls()) == 1


async def test_helper_failure_reaches_every_waiter_and_is_not_cached(env: Env) -> None:
    env.helper("testhelper", "sleep 0.2; echo boom >&2; exit 3")
    store = HelperCredentials({"reg": "testhelper"}, env=env.vars)
    errors: list[BaseException] = []

    async def get() -> None:
        try:
            await store.get("reg")
        except CredentialError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(get)
    assert len(errors) == 4 and all("boom" in str(e) for e in errors)
    assert len(env.helper_calls()) == 1  # one run, its failure shared
    with pytest.raises(CredentialError):
        await store.get("reg")
    assert len(env.helper_calls()) == 2  # a failure is not cached


async def test_cancelled_lookup_does_not_poison_waiters(env: Env) -> None:
    env.helper("testhelper", "sleep 0.3\n" + ok_helper())
    store = HelperCredentials({"reg": "testhelper"}, env=env.vars)
    got: list[Credential] = []

    async def waiter() -> None:
        got.append(await store.get("reg"))

    async with anyio.create_task_group() as tg:
        with anyio.move_on_after(0.1):  # the first caller gives up mid-lookup
            async with anyio.create_task_group() as inner:
                inner.start_soon(store.get, "reg")
                await anyio.sleep(0.02)
                tg.start_soon(waiter)
                await anyio.sleep(1)
    assert got == [Credential("helperuser", SECRET)]


@pytest.mark.parametrize("bad", [0, -1, float("nan")])
def test_refresh_after_must_be_positive(env: Env, bad: float) -> None:
    with pytest.raises(ConfigError, match="refresh_after"):
        HelperCredentials({"reg": "x"}, refresh_after=bad)
    with pytest.raises(ConfigError, match="refresh_after"):
        DockerConfigCredentials(env=env.vars, refresh_after=bad)


async def test_docker_config_refresh_after_applies_to_helpers_only(env: Env) -> None:
    env.helper("testhelper", ok_helper())
    write_json(env.docker_config, {"credHelpers": {"helped": "testhelper"},
                                   "auths": {"filed": {"auth": b64("file:pw")}}})
    clock = FakeClock()
    store = DockerConfigCredentials(env=env.vars, refresh_after=30, clock=clock)
    assert (await store.get("helped")).username == "helperuser"
    assert (await store.get("filed")).username == "file"
    write_json(env.docker_config, {"credHelpers": {"helped": "testhelper"},
                                   "auths": {"filed": {"auth": b64("changed:pw")}}})
    clock.now += 31
    assert (await store.get("helped")).username == "helperuser"
    assert len(env.helper_calls()) == 2  # the helper's answer aged out
    assert (await store.get("filed")).username == "file"  # a file entry waits for forget()
    store.forget("filed")
    assert (await store.get("filed")).username == "changed"


async def test_forget_rereads_files(env: Env) -> None:
    write_json(env.docker_config, {"auths": {"reg": {"auth": b64("old:pw")}}})
    store = env.store()
    assert (await store.get("reg")).username == "old"
    write_json(env.docker_config, {"auths": {"reg": {"auth": b64("new:pw")}}})
    assert (await store.get("reg")).username == "old"
    store.forget("reg")
    assert (await store.get("reg")).username == "new"


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (f'echo "boom: backend unavailable" >&2; echo "{SECRET}"; exit 3', "exit status 3: 'boom: backend"),
        (f'echo \'{{"Secret":"{SECRET}"\'; exit 0', "did not print a JSON object"),
        (f'echo \'{{"Secret":"{SECRET}"}}\'; exit 4', "exit status 4"),
        (f"echo '[\"{SECRET}\"]'", "did not print a JSON object"),
        (f'echo \'{{"Username":1,"Secret":"{SECRET}"}}\'', "non-string"),
    ],
)
async def test_helper_failures(env: Env, body: str, why: str) -> None:
    env.helper("testhelper", body)
    write_json(env.docker_config, {"credHelpers": {"reg": "testhelper"}})
    with pytest.raises(CredentialError) as info:
        await env.store().get("reg")
    assert why in str(info.value)
    assert "docker-credential-testhelper" in str(info.value)
    assert SECRET not in str(info.value)
    assert (info.value.registry, info.value.helper) == ("reg", "docker-credential-testhelper")


async def test_helper_missing(env: Env) -> None:
    write_json(env.docker_config, {"credsStore": "testhelper"})
    with pytest.raises(CredentialError, match="docker-credential-testhelper for reg not found on PATH") as info:
        await env.store().get("reg")
    assert info.value.helper == "docker-credential-testhelper"


async def test_helper_timeout(env: Env) -> None:
    env.helper("testhelper", "exec sleep 30")
    write_json(env.docker_config, {"credHelpers": {"reg": "testhelper"}})
    with anyio.fail_after(10):
        with pytest.raises(CredentialError, match=r"timed out after 0\.3s") as info:
            await env.store(helper_timeout=0.3).get("reg")
    assert info.value.registry == "reg"


async def test_helper_found_via_os_environ(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    env.helper("testhelper", ok_helper())
    write_json(env.docker_config, {"credsStore": "testhelper"})
    for name in ("REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME", "DOCKER_CONFIG", "DOCKER_AUTH_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(env.home))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(env.root / "no-runtime-dir"))
    monkeypatch.setenv("PATH", env.vars["PATH"])
    assert (await DockerConfigCredentials().get("reg")).username == "helperuser"


# ------------------------------------------------------------------------------- static and chain


async def test_static_credentials() -> None:
    store = StaticCredentials(
        {"reg:5000": ("u", SECRET), "https://index.docker.io/v1/": Credential(registry_token="rt")}
    )
    assert await store.get("reg:5000") == Credential("u", SECRET)
    assert await store.get("docker.io") == Credential(registry_token="rt")
    assert await store.get("elsewhere") == ANONYMOUS
    store.forget("reg:5000")
    assert await store.get("reg:5000") == Credential("u", SECRET)
    with pytest.raises(ConfigError):
        StaticCredentials({"reg": ("only-user",)})  # type: ignore[dict-item]
    with pytest.raises(ConfigError):
        StaticCredentials({"reg/org": ("u", "p")})


async def test_chain_credentials(env: Env) -> None:
    write_json(env.docker_config, {"auths": {"b": {"auth": b64("file:pw")}, "a": {"auth": b64("file:pw")}}})
    chain = ChainCredentials(StaticCredentials({"a": ("static", "pw")}), env.store())
    assert (await chain.get("a")).username == "static"
    assert (await chain.get("b")).username == "file"
    assert await chain.get("c") == ANONYMOUS
    chain.forget("b")
