"""skopeo's transport and credential flags, per side, as settings overrides.

``--[src-|dest-]tls-verify``, ``--cert-dir``, ``--creds``, ``--username``/``--password``,
``--authfile`` (per side), ``--no-creds`` and ``--registry-token`` say how to reach the hosts of
one side; :class:`Access` holds what was given and :meth:`Access.layer` turns it into the overrides
layer of those hosts (fields of :class:`~regcopy.settings.RegistrySettings` and a
:class:`~regcopy.settings.Credentials` source), which wins over a plan's ``registries:``
(docs/architecture.md, "Settings resolution"). ``--retry-times``/``--retry-delay`` become the hosts'
retry settings. The flags skopeo has and regcopy cannot honour are refused by name (usage error),
never accepted and ignored. The conflicts skopeo refuses (``--creds`` with ``--no-creds``, a user
without a password, ...) are usage errors here too (skopeo ``cmd/skopeo/utils.go``).
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from typing import Any, Final, TypeVar

import click

from regcopy.errors import ConfigError
from regcopy.settings import Credentials, Overrides, cert_dir_contents

__all__ = (
    "REFUSED",
    "SYNC_REFUSED",
    "Access",
    "access_flags",
    "hosts_of",
    "parse_duration",
    "refused_flags",
    "retry_fields",
    "retry_flags",
)

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class Access:
    """How to reach the hosts of one side, as the command line said it (None / False: not said).

    :ivar flag: the flags' prefix as typed (``--src-``, ``--dest-`` or ``--``), for messages
    """

    flag: str = "--"
    tls_verify: bool | None = None
    cert_dir: str | None = None
    creds: str | None = None
    username: str | None = None
    password: str | None = None
    authfile: str | None = None
    no_creds: bool = False
    registry_token: str | None = None

    def fields(self) -> dict[str, Any]:
        """The :class:`~regcopy.settings.RegistrySettings` fields these flags set (only those given).

        :raises click.BadParameter: a ``cert-dir`` that is no directory or holds a half client pair
        """
        out: dict[str, Any] = {}
        if self.tls_verify is False:
            out["scheme"] = "insecure"  # skopeo --tls-verify=false: unverified https or plain http
        elif self.tls_verify is True:
            out["scheme"] = "https"
        if self.cert_dir:
            try:
                cert_dir_contents(self.cert_dir)  # refuse an unusable directory now, not mid-copy
            except ConfigError as exc:
                raise click.BadParameter(str(exc), param_hint=f"'{self.flag}cert-dir'") from None
            out["cert_dir"] = self.cert_dir
        return out

    def credentials(self) -> Credentials | None:
        """Where the side's credentials come from (None: the client's default search).

        :raises click.UsageError: flags skopeo refuses together, or ``USER`` without a password and no
            terminal to ask on
        """
        f = self.flag
        given = [n for n, v in (("creds", self.creds), ("username", self.username), ("no-creds", self.no_creds),
                                ("registry-token", self.registry_token)) if v]
        if len(given) > 1:
            raise click.UsageError(f"{f}{given[0]} and {f}{given[1]} cannot be given together")
        if self.password is not None and self.username is None:
            raise click.UsageError(f"{f}password needs {f}username")
        if self.no_creds:
            return Credentials(anonymous=True)
        if self.registry_token:
            return Credentials(registry_token=self.registry_token)
        if self.creds or self.username:
            user, password = self._user_password()
            return Credentials(username=user, password=password)
        if self.authfile:
            return Credentials(authfile=self.authfile)
        return None

    def _user_password(self) -> tuple[str, str]:
        if self.username is not None:
            user, password = self.username, self.password
        else:
            assert self.creds is not None
            user, sep, rest = self.creds.partition(":")
            password = rest if sep else None
        if not user:
            raise click.UsageError(f"{self.flag}creds needs a user name (USER[:PASSWORD])")
        if password is None:
            if not sys.stdin.isatty():
                raise click.UsageError(f"{self.flag}creds {user} has no password and there is no terminal to ask on")
            password = click.prompt(f"Password for {user}", hide_input=True, err=True)
        return user, password

    def layer(self, hosts: Iterable[str], extra: dict[str, Any] | None = None) -> dict[str, Overrides]:
        """These flags (and ``extra`` settings fields) for each of ``hosts``; empty when they say nothing."""
        settings = self.fields() | (extra or {})
        credentials = self.credentials()
        if not settings and credentials is None:
            return {}
        return {host: Overrides(settings, credentials) for host in hosts}


def hosts_of(*texts: str) -> list[str]:
    """The registry hosts of a verb's references or repositories (none for a local location, or for text
    that does not parse, which the verb itself then reports)."""
    from regcopy.errors import InvalidReference
    from regcopy.reference import Reference, parse_location

    hosts = []
    for text in texts:
        try:
            location = parse_location(text, default_tag="latest")
        except InvalidReference:
            continue
        if isinstance(location, Reference):
            hosts.append(location.registry)
    return hosts


def access_flags(side: str = "") -> Callable[[F], F]:
    """Add one side's flags (``side`` ``"src"``, ``"dest"``, or ``""`` for a verb with one registry)
    and hand the command an :class:`Access` as ``<side>_access`` (``access`` for ``""``).

    The one-registry form has no ``--authfile`` of its own: the verb's ``--authfile`` is the client's.
    """
    k = f"{side}_" if side else ""
    names = [f.name for f in fields(Access) if f.name != "flag" and (side or f.name != "authfile")]

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            given = {name: kwargs.pop(f"{k}{name}", None) for name in names}
            given["no_creds"] = bool(given["no_creds"])
            kwargs[f"{side}_access" if side else "access"] = Access(f"--{side}-" if side else "--", **given)
            return fn(*args, **kwargs)

        for option in reversed(_side_options(side)):
            wrapper = option(wrapper)
        return wrapper  # type: ignore[return-value]  # click's decorators keep the call signature

    return decorate


def _side_options(side: str) -> list[Callable[[F], F]]:
    p, k = (f"{side}-", f"{side}_") if side else ("", "")
    what = {"src": "the source", "dest": "the destination", "": "the registry"}[side]
    options = [
        click.option(f"--{p}tls-verify", f"{k}tls_verify", type=click.BOOL, default=None, is_flag=False,
                     flag_value=True, metavar="BOOL",
                     help=f"true: https with verified certificates only; false: allow http and unverified "
                          f"https for {what} (skopeo's default: verify, http only for local hosts)."),
        click.option(f"--{p}cert-dir", f"{k}cert_dir", type=click.Path(file_okay=False), metavar="DIR",
                     help=f"Certificates for {what}: every *.crt a CA, *.cert with *.key a client pair "
                          "(default: certs.d/HOST[:PORT] under ~/.config/containers, /etc/containers, /etc/docker)."),
        click.option(f"--{p}creds", f"{k}creds", metavar="USER[:PASSWORD]", help=f"Credentials for {what}."),
        click.option(f"--{p}username", f"{k}username", metavar="USER", help=f"User name for {what}."),
        click.option(f"--{p}password", f"{k}password", metavar="PASSWORD", help=f"Password for {what}."),
        click.option(f"--{p}no-creds", f"{k}no_creds", is_flag=True, help=f"Access {what} anonymously."),
        click.option(f"--{p}registry-token", f"{k}registry_token", metavar="TOKEN",
                     help=f"A bearer token for {what}, sent as is."),
    ]
    if side:
        options.insert(2, click.option(f"--{p}authfile", f"{k}authfile", type=click.Path(dir_okay=False),
                                       metavar="FILE", help=f"Auth file for {what} (default: --authfile)."))
    return options


_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS: Final = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in a Go duration (``1.5s``, ``300ms``, ``1m30s``; a bare number is seconds), as
    skopeo's ``--retry-delay`` takes it.

    :raises ValueError: not a duration, or negative
    """
    text = text.strip()
    if re.fullmatch(r"\d+(?:\.\d*)?", text):
        return float(text)
    pos, total = 0, 0.0
    while pos < len(text):
        m = _DURATION.match(text, pos)
        if m is None:
            raise ValueError(f"not a duration: {text!r} (say 2s, 500ms, 1m30s)")
        total += float(m[1]) * _UNITS[m[2]]
        pos = m.end()
    if not text:
        raise ValueError("an empty duration")
    return total


class _Duration(click.ParamType[float]):
    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, float):
            return value
        try:
            return parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def retry_flags(fn: F) -> F:
    """skopeo's ``--retry-times`` and ``--retry-delay``."""
    fn = click.option("--retry-delay", type=_Duration(), default=None, metavar="DURATION",
                      help="A fixed delay between retries (2s, 500ms); default: exponential backoff from 0.5 s.")(fn)
    return click.option("--retry-times", type=click.IntRange(0, 100), default=None, metavar="N",
                        help="Retries of a failed request (default 4; skopeo's default is 0).")(fn)


def retry_fields(times: int | None, delay: float | None) -> dict[str, Any]:
    """``--retry-times``/``--retry-delay`` as the settings fields they set (only those given)."""
    out: dict[str, Any] = {}
    if times is not None:
        out["retries"] = times
    if delay is not None:
        out["backoff"] = out["backoff_max"] = max(delay, 0.001)  # exponential capped at itself: fixed
    return out


REFUSED: Final = {
    "--sign-by": "regcopy does not sign images (sign with cosign or skopeo; regcopy copies the signatures)",
    "--sign-by-sigstore-private-key": "regcopy does not sign images (sign with cosign; regcopy copies the signatures)",
    "--sign-passphrase-file": "regcopy does not sign images",
    "--sign-identity": "regcopy does not sign images",
    "--encryption-key": "regcopy does not encrypt layers",
    "--encrypt-layer": "regcopy does not encrypt layers",
    "--decryption-key": "regcopy does not decrypt layers",
    "--dest-compress": "regcopy never recompresses layers (the digests would change)",
    "--dest-decompress": "regcopy never decompresses layers (the digests would change)",
    "--dest-compress-format": "regcopy never recompresses layers (the digests would change)",
    "--dest-compress-level": "regcopy never recompresses layers (the digests would change)",
    "--dest-oci-accept-uncompressed-layers": "regcopy never recompresses layers: they are written as they are",
    "--src-shared-blob-dir": "regcopy has no shared blob directory for oci: layouts",
    "--dest-shared-blob-dir": "regcopy has no shared blob directory for oci: layouts",
    "--src-daemon-host": "regcopy has no docker-daemon: transport",
    "--dest-daemon-host": "regcopy has no docker-daemon: transport",
    "--additional-tag": "regcopy writes one tag per docker-archive",
}
"""skopeo's ``copy`` flags regcopy cannot honour, and why."""

SYNC_REFUSED: Final = {
    **{name: REFUSED[name] for name in ("--sign-by", "--sign-by-sigstore-private-key", "--sign-passphrase-file")},
    "--format": "regcopy sync does not convert manifests (regcopy copy --format does, image by image)",
}
"""skopeo's ``sync`` flags regcopy cannot honour, and why."""

_SHORT: Final = {"--format": ("-f",)}
_FLAG_ONLY: Final = ("--dest-compress", "--dest-decompress", "--dest-oci-accept-uncompressed-layers")


def _refuse(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    if value:
        name = param.opts[0]
        raise click.UsageError(f"{name} is not supported: {(REFUSED | SYNC_REFUSED)[name]}", ctx)


def refused_flags(names: Iterable[str]) -> Callable[[F], F]:
    """Hidden options for skopeo's flags in ``names`` that regcopy cannot honour: given, each is a usage
    error that names it and says why (never accepted and ignored)."""

    def decorate(fn: F) -> F:
        for name in names:
            fn = click.option(name, *_SHORT.get(name, ()), is_flag=name in _FLAG_ONLY, hidden=True,
                              expose_value=False, callback=_refuse, multiple=name not in _FLAG_ONLY)(fn)
        return fn

    return decorate
