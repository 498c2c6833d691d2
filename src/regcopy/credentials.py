"""Registry credentials: the stores that find a :class:`~regcopy.credstore.Credential` for a registry host.

Owns reading docker ``config.json``, containers ``auth.json`` and legacy ``~/.dockercfg`` files and running
docker credential helpers (docs/protocol.md#credentials), and the default chain of stores (those files,
then Amazon ECR). No HTTP: turning a credential into a token is the transport's job.

**A credential belongs to one host.** Stores are asked with ``get(registry)`` for one ``host[:port]``
(Docker Hub is ``"docker.io"``), and callers must never send the answer to another host: not after a
redirect (blob GETs are redirected to CDNs, docs/protocol.md#docker-hub), not for a cross-registry
mount, not for a token realm the host did not name. Ask the store again for each host instead.

**Answers are cached per host** (:class:`~regcopy.credstore.CredentialCache`): until
:meth:`CredentialStore.forget`, which the transport calls when a registry or token server rejects a
credential, or until a maximum age passes. Credential helpers cannot say when their answer expires, so
:class:`HelperCredentials` and the helper answers of :class:`DockerConfigCredentials` take an optional
``refresh_after``; providers that know the expiry (ECR's 12-hour token, :mod:`regcopy.ecr`) give it per
answer. Lookups are single-flight per host.

Only host keys are used. containers auth.json may also hold repository-namespaced keys (``quay.io/org``,
docs/protocol.md#credential-files); they are ignored, because applying one to the whole host would leak a
repository-scoped secret to the host's other repositories.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import anyio

from regcopy.credstore import ANONYMOUS, Credential, CredentialCache, CredentialStore
from regcopy.ecr import EcrCredentials
from regcopy.errors import ConfigError, CredentialError
from regcopy.settings import Credentials

__all__ = (
    "ANONYMOUS",
    "ChainCredentials",
    "Credential",
    "CredentialStore",
    "DockerConfigCredentials",
    "HelperCredentials",
    "StaticCredentials",
    "default_credentials",
    "run_helper",
    "store_for",
)

logger = logging.getLogger(__name__)

_HUB: Final = "docker.io"
# docker/cli getAuthConfigKey and c/image treat these as one registry (docs/protocol.md#credential-files).
_HUB_ALIASES: Final = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
# Docker Hub's key in config.json and the server URL its credential helpers know it by
# (docs/protocol.md#credential-files and docs/protocol.md#docker-hub).
_HUB_SERVER_URL: Final = "https://index.docker.io/v1/"

_Kind = Literal["docker", "containers", "legacy"]


def _max_age(refresh_after: float | None) -> float | None:
    if refresh_after is not None and not refresh_after > 0:  # also refuses NaN
        raise ConfigError(f"refresh_after must be a positive number of seconds, not {refresh_after!r}")
    return refresh_after


def _host_of(key: str) -> str | None:
    """Normalise a registry name or config key to ``host[:port]``; Hub aliases become ``docker.io``.

    URLs lose scheme and path (``https://host/v1/`` → ``host``, docker ``ConvertToHostname``). A key with a
    path but no scheme is a c/image namespaced key and gives None.
    """
    text = key.strip()
    _, sep, rest = text.partition("://")
    host, _, path = (rest if sep else text).partition("/")
    if (path.strip("/") and not sep) or not host:
        return None
    host = host.lower()
    return _HUB if host in _HUB_ALIASES else host


def _registry(registry: str) -> str:
    host = _host_of(registry)
    if host is None:
        raise ConfigError(f"not a registry host: {registry!r}")
    return host


class StaticCredentials(CredentialStore):
    """Credentials given in code: ``{"reg:5000": ("user", "password"), "docker.io": Credential(...)}``.

    Keys are normalised like config-file keys (URLs and Hub aliases allowed).
    """

    def __init__(self, credentials: Mapping[str, tuple[str, str] | Credential]) -> None:
        """
        :raises ConfigError: a key is not a registry host, or a value is not a pair or a Credential
        """
        self._credentials: dict[str, Credential] = {}
        for key, value in credentials.items():
            if isinstance(value, Credential):
                credential = value
            elif isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, str) for v in value):
                credential = Credential(username=value[0], password=value[1])
            else:
                raise ConfigError(f"credentials for {key!r} must be a (username, password) pair or a Credential")
            self._credentials[_registry(key)] = credential

    async def get(self, registry: str) -> Credential:
        return self._credentials.get(_registry(registry), ANONYMOUS)

    def forget(self, registry: str) -> None:
        """Nothing is cached."""


class ChainCredentials(CredentialStore):
    """Asks each store in turn; the first non-anonymous credential wins. Errors stop the chain."""

    def __init__(self, *stores: CredentialStore) -> None:
        self.stores = stores

    async def get(self, registry: str) -> Credential:
        for store in self.stores:
            credential = await store.get(registry)
            if not credential.anonymous:
                return credential
        return ANONYMOUS

    def forget(self, registry: str) -> None:
        for store in self.stores:
            store.forget(registry)


@dataclass(frozen=True, slots=True)
class _Config:
    """One parsed credentials file. ``where`` names it in errors."""

    where: str
    auths: Mapping[str, object]
    helpers: Mapping[str, str]  # normalised host -> helper suffix
    store: str | None  # credsStore, only from docker config.json (docs/protocol.md#credential-files)


class DockerConfigCredentials(CredentialStore):
    """Credentials from docker / containers config files and docker credential helpers
    (docs/protocol.md#credentials).

    Files are searched in c/image order, then docker's (docs/protocol.md#credential-files); the first
    that yields a credential wins. Within one file, ``credHelpers[host]`` wins, then an ``auths`` entry,
    then ``credsStore``. A file named ``.dockercfg`` is read as the legacy format (the auth map at the top
    level); ``credsStore`` is only honoured in files named ``config.json``, since containers auth.json does
    not support it.

    Answers (from files or helpers) are cached per registry until :meth:`forget`; a helper's answer also only
    for ``refresh_after`` seconds when that is set.
    """

    def __init__(
        self,
        paths: Sequence[str | Path] | None = None,
        *,
        env: Mapping[str, str] | None = None,
        helper_timeout: float = 10.0,
        refresh_after: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """
        :param paths: files to read, in order; None searches the default locations:
            ``$REGISTRY_AUTH_FILE``; ``$XDG_RUNTIME_DIR/containers/auth.json`` (``/run/containers/<uid>/``
            when unset); ``${XDG_CONFIG_HOME:-~/.config}/containers/auth.json``;
            ``$DOCKER_CONFIG/config.json`` else ``~/.docker/config.json``; ``~/.dockercfg``.
            ``DOCKER_AUTH_CONFIG`` is then overlaid first.
        :param env: environment for the search and for helpers (``PATH``); default ``os.environ``. When given,
            every default location derives from it alone (no ``HOME`` in it: no home-based locations)
        :param helper_timeout: seconds a credential helper may run
        :param refresh_after: run a helper again when its answer is this many seconds old (None: only after
            :meth:`forget`); file entries are re-read only after :meth:`forget`
        :param clock: the clock ``refresh_after`` is measured on
        :raises ConfigError: ``refresh_after`` is not a positive number
        """
        self._env = dict(os.environ if env is None else env)
        self._overlay = self._env.get("DOCKER_AUTH_CONFIG") if paths is None else None
        self.paths = tuple(Path(p) for p in paths) if paths is not None else _default_paths(self._env, env is None)
        self._helper_timeout = helper_timeout
        self._refresh_after = _max_age(refresh_after)
        self._cache = CredentialCache(clock)

    async def get(self, registry: str) -> Credential:
        host = _registry(registry)
        return await self._cache.get(host, lambda: self._lookup(host))

    def forget(self, registry: str) -> None:
        host = _host_of(registry)
        if host is not None:
            self._cache.forget(host)

    async def _lookup(self, host: str) -> tuple[Credential, float | None]:
        """The credential and its maximum age (``refresh_after`` when a helper gave it, else None)."""
        if self._overlay:
            # docker/cli DOCKER_AUTH_CONFIG: {"auths": {...}} overlaid on the files (docs/protocol.md#credential-files).
            overlay = _parse_config(self._overlay.encode(), "DOCKER_AUTH_CONFIG", "containers")
            found = _from_auths(overlay, host)
            if found is not None:
                return found, None
        for path in self.paths:
            config = await _load(path)
            if config is None:
                continue
            found, from_helper = await self._from_config(config, host)
            if found is not None and not found.anonymous:
                logger.debug("credentials for %s from %s", host, config.where)
                return found, self._refresh_after if from_helper else None
        return ANONYMOUS, None

    async def _from_config(self, config: _Config, host: str) -> tuple[Credential | None, bool]:
        """The file's answer for ``host`` (None: nothing) and whether a credential helper gave it."""
        helper = config.helpers.get(host)
        if helper:
            return await self._run_helper(helper, host), True
        found = _from_auths(config, host)
        if found is not None:
            return found, False
        if config.store:
            return await self._run_helper(config.store, host), True
        return None, False

    async def _run_helper(self, suffix: str, host: str) -> Credential:
        return await run_helper(suffix, host, env=self._env, helper_timeout=self._helper_timeout)


async def run_helper(suffix: str, host: str, *, env: Mapping[str, str], helper_timeout: float) -> Credential:
    """``docker-credential-<suffix> get`` with the server URL on stdin (docs/protocol.md#credential-helpers).

    :raises CredentialError: the helper is missing, times out, or fails (not "not found": anonymous)
    """
    program = f"docker-credential-{suffix}"
    search = env.get("PATH", os.defpath)
    executable = await anyio.to_thread.run_sync(lambda: shutil.which(program, path=search))
    if executable is None:
        raise CredentialError(
            f"credential helper {program} for {host} not found on PATH", registry=host, helper=program
        )
    server_url = _HUB_SERVER_URL if host == _HUB else host
    try:
        with anyio.fail_after(helper_timeout):
            result = await anyio.run_process([executable, "get"], input=server_url.encode(), check=False, env=env)
    except TimeoutError as exc:  # before OSError: TimeoutError is one
        raise CredentialError(
            f"credential helper {program} for {host} timed out after {helper_timeout:g}s", registry=host, helper=program
        ) from exc
    except OSError as exc:
        raise CredentialError(
            f"cannot run credential helper {program} for {host}: {exc.strerror or exc}",
            registry=host,
            helper=program,
        ) from exc
    return _helper_answer(result.returncode, result.stdout, result.stderr, program, host)


class HelperCredentials(CredentialStore):
    """Credentials from a named docker credential helper per host (a plan's ``credentials: {helper: X}``).

    Answers are cached until :meth:`forget`, so a helper whose credential was rejected is re-run, and at most
    ``refresh_after`` seconds when that is set: a helper cannot say when its answer expires, so a long run that
    knows its helper hands out short-lived secrets re-runs it before they do.
    """

    def __init__(self, helpers: Mapping[str, str], *, env: Mapping[str, str] | None = None,
                 timeout: float = 10.0, refresh_after: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """
        :param helpers: host → helper suffix (``docker-credential-<suffix>``)
        :param env: environment for the helpers (``PATH``); default ``os.environ``
        :param timeout: seconds a helper may run
        :param refresh_after: run a helper again when its answer is this many seconds old (None: only after
            :meth:`forget`)
        :param clock: the clock ``refresh_after`` is measured on
        :raises ConfigError: a key is not a registry host, or ``refresh_after`` is not a positive number
        """
        self._helpers = {_registry(h): suffix for h, suffix in helpers.items()}
        self._env = dict(os.environ if env is None else env)
        self._timeout = timeout
        self._refresh_after = _max_age(refresh_after)
        self._cache = CredentialCache(clock)

    async def get(self, registry: str) -> Credential:
        host = _registry(registry)
        suffix = self._helpers.get(host)
        if suffix is None:
            return ANONYMOUS

        async def lookup() -> tuple[Credential, float | None]:
            answer = await run_helper(suffix, host, env=self._env, helper_timeout=self._timeout)
            return answer, self._refresh_after

        return await self._cache.get(host, lookup)

    def forget(self, registry: str) -> None:
        host = _host_of(registry)
        if host is not None:
            self._cache.forget(host)


def store_for(host: str, source: Credentials) -> CredentialStore:
    """The store a settings layer's :class:`~regcopy.settings.Credentials` name for ``host``: nothing
    (``anonymous``), its helper, its auth file, or its inline secret or registry token (for ``host`` only)."""
    if source.anonymous:
        return StaticCredentials({})
    if source.helper:
        return HelperCredentials({host: source.helper}, refresh_after=source.refresh_after)
    if source.authfile:
        return DockerConfigCredentials([source.authfile], refresh_after=source.refresh_after)
    return StaticCredentials({host: Credential(
        username=source.username, password=source.password, identity_token=source.identity_token,
        registry_token=source.registry_token)})


def _helper_answer(returncode: int, stdout: bytes, stderr: bytes, program: str, host: str) -> Credential:
    """Decode a helper's answer. Messages never include stdout that could be JSON (it may hold the secret)."""
    if returncode != 0:
        output = (stdout + b"\n" + stderr).decode("utf-8", "replace")
        if "credentials not found" in output.lower():
            return ANONYMOUS  # not found is not an error (docs/protocol.md#credential-helpers)
        lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
        out_lines = [line.strip() for line in stdout.decode("utf-8", "replace").splitlines() if line.strip()]
        if not lines and out_lines and not out_lines[0].startswith("{"):
            lines = out_lines
        detail = f": {lines[0][:200]!r}" if lines else ""
        raise CredentialError(
            f"credential helper {program} failed for {host}: exit status {returncode}{detail}",
            registry=host,
            helper=program,
        )
    try:
        data = json.loads(stdout)
    except (ValueError, RecursionError):
        data = None
    if not isinstance(data, dict):
        raise CredentialError(
            f"credential helper {program} for {host} did not print a JSON object",
            registry=host,
            helper=program,
        )
    # Go's encoding/json matches field names case-insensitively (docs/protocol.md#credential-helpers).
    fields = {str(k).lower(): v for k, v in data.items()}
    username, secret = fields.get("username") or "", fields.get("secret") or ""
    if not isinstance(username, str) or not isinstance(secret, str):
        raise CredentialError(
            f"credential helper {program} for {host} returned non-string fields",
            registry=host,
            helper=program,
        )
    if username == "<token>":  # docker/cli native_store.go tokenUsername: Secret is an identity token
        return Credential(identity_token=secret or None)
    return Credential(username=username or None, password=secret or None)


def _default_paths(env: Mapping[str, str], process: bool) -> tuple[Path, ...]:
    home = env.get("HOME") or None
    if home is None and process:
        expanded = os.path.expanduser("~")
        home = expanded if expanded != "~" else None
    paths: list[Path] = []
    if env.get("REGISTRY_AUTH_FILE"):
        paths.append(Path(env["REGISTRY_AUTH_FILE"]))
    if env.get("XDG_RUNTIME_DIR"):
        paths.append(Path(env["XDG_RUNTIME_DIR"], "containers", "auth.json"))
    elif process and sys.platform == "linux":
        paths.append(Path("/run/containers", str(os.getuid()), "auth.json"))
    if env.get("XDG_CONFIG_HOME"):
        paths.append(Path(env["XDG_CONFIG_HOME"], "containers", "auth.json"))
    elif home:
        paths.append(Path(home, ".config", "containers", "auth.json"))
    if env.get("DOCKER_CONFIG"):
        paths.append(Path(env["DOCKER_CONFIG"], "config.json"))
    elif home:
        paths.append(Path(home, ".docker", "config.json"))
    if home:
        paths.append(Path(home, ".dockercfg"))
    return tuple(dict.fromkeys(paths))


def _kind(path: Path) -> _Kind:
    if path.name == ".dockercfg":
        return "legacy"
    return "docker" if path.name == "config.json" else "containers"


async def _load(path: Path) -> _Config | None:
    """The parsed file, or None when it does not exist."""
    try:
        raw = await anyio.Path(path).read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise CredentialError(f"cannot read credentials file {path}: {exc.strerror or exc}") from exc
    return _parse_config(raw, str(path), _kind(path))


def _parse_config(raw: bytes, where: str, kind: _Kind) -> _Config:
    if not raw.strip():
        return _Config(where, {}, {}, None)
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CredentialError(f"{where}: invalid JSON at line {exc.lineno} column {exc.colno}") from None
    except (ValueError, RecursionError):
        raise CredentialError(f"{where}: invalid JSON") from None
    if not isinstance(data, dict):
        raise CredentialError(f"{where}: expected a JSON object")
    if kind == "legacy":
        return _Config(where, data, {}, None)
    fields = {str(k).lower(): v for k, v in data.items()}  # Go struct fields: case-insensitive
    auths = fields.get("auths")
    auths = {} if auths is None else auths
    helpers = fields.get("credhelpers")
    helpers = {} if helpers is None else helpers
    store = fields.get("credsstore") or None
    if not isinstance(auths, dict):
        raise CredentialError(f"{where}: 'auths' must be an object")
    if not isinstance(helpers, dict) or not all(isinstance(v, str) for v in helpers.values()):
        raise CredentialError(f"{where}: 'credHelpers' must map hosts to helper names")
    if store is not None and not isinstance(store, str):
        raise CredentialError(f"{where}: 'credsStore' must be a string")
    if store is not None and kind != "docker":
        logger.debug("%s: ignoring credsStore, which only docker config.json supports", where)
        store = None
    by_host = {host: name for key, name in helpers.items() if (host := _host_of(key)) is not None}
    return _Config(where, auths, by_host, store)


def _from_auths(config: _Config, host: str) -> Credential | None:
    """The credential of the best ``auths`` key for ``host``: its canonical key, then the bare host, then URL
    forms in file order. None when no entry holds anything."""
    preferred = (_HUB_SERVER_URL if host == _HUB else host, host)
    keys = [key for key in config.auths if _host_of(key) == host]
    keys.sort(key=lambda key: preferred.index(key) if key in preferred else len(preferred))
    for key in keys:
        credential = _decode_entry(config.auths[key], config.where, host)
        if not credential.anonymous:
            return credential
    return None


def _decode_entry(entry: object, where: str, host: str) -> Credential:
    """One ``auths`` entry (docs/protocol.md#credential-files). Errors name the file and registry, never a value."""
    if not isinstance(entry, dict):
        raise CredentialError(f"{where}: the entry for {host} must be an object", registry=host)
    fields = {str(k).lower(): v for k, v in entry.items()}
    values: dict[str, str | None] = {}
    for name in ("auth", "username", "password", "identitytoken", "registrytoken"):
        value = fields.get(name)
        if value is not None and not isinstance(value, str):
            raise CredentialError(f"{where}: {name!r} of {host} must be a string", registry=host)
        values[name] = value or None
    username, password = values["username"], values["password"]
    if values["auth"]:
        username, password = _decode_auth(values["auth"], where, host)
    return Credential(username, password, values["identitytoken"], values["registrytoken"])


def _decode_auth(auth: str, where: str, host: str) -> tuple[str | None, str | None]:
    """``auth`` = std base64 of ``user:password``: split at the first ':' and trim NULs from the password."""
    try:
        padded = auth.strip() + "=" * (-len(auth.strip()) % 4)
        decoded = base64.b64decode(padded, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise CredentialError(f"{where}: 'auth' of {host} is not base64 of user:password", registry=host) from None
    username, sep, password = decoded.partition(":")
    if not sep:
        raise CredentialError(f"{where}: 'auth' of {host} does not decode to user:password", registry=host)
    return username or None, password.strip("\x00") or None


def default_credentials(authfile: str | Path | None = None) -> CredentialStore:
    """The store regcopy uses by default: only ``authfile`` when given (like skopeo ``--authfile``), else
    the default search of :class:`DockerConfigCredentials` over the process environment; then, for Amazon ECR
    hosts the files leave anonymous, :class:`regcopy.ecr.EcrCredentials` (GetAuthorizationToken, needs the
    ``regcopy[ecr]`` extra only when such a host is used).

    Files come first, so ``docker login`` entries and ``credHelpers`` (e.g. ``ecr-login``) keep working as
    they do for docker; the ECR provider only fills the gap where docker would send nothing.
    """
    return ChainCredentials(DockerConfigCredentials(None if authfile is None else [authfile]), EcrCredentials())
