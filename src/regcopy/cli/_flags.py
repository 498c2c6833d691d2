"""The command line's per-host flags as settings overrides (:class:`~regcopy.settings.Overrides`).

skopeo's ``--src-tls-verify``, ``--dest-cert-dir``, ``--src-creds`` and friends, ``--ca-file``,
``--insecure-registry`` and ``--pull-reserve`` say something about some hosts; this module turns them into the overrides
layer a :class:`~regcopy.Client` gets at construction, which wins over a plan's ``registries:``
(docs/architecture.md, "Settings resolution"). Also the options every copying command shares
(:func:`throughput_flags`: ``--limit-rate``, ``--pull-reserve``, ``--events``). No I/O beyond
listing a ``--cert-dir``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from regcopy.locations import LocalRepository
from regcopy.reference import Reference
from regcopy.settings import Credentials, Overrides, RegistrySettings, Settings, parse_byte_rate, resolve
from regcopy.sync import SyncPlan

__all__ = (
    "ByteRate", "cert_dir", "insecure_layer", "reserve_fields", "reserve_layer", "side_fields", "side_layer",
    "side_settings", "throughput_flags",
)

F = TypeVar("F", bound=Callable[..., Any])


def cert_dir(path: str | None) -> dict[str, str]:
    """skopeo's ``--cert-dir``: ``*.crt`` are CAs, ``*.cert`` + ``*.key`` a client pair (containers-certs.d(5))."""
    if not path:
        return {}
    d = Path(path)
    if not d.is_dir():
        raise click.BadParameter(f"{path} is not a directory")
    out: dict[str, str] = {}
    cas = sorted(d.glob("*.crt"))
    if cas:
        out["ca_file"] = str(cas[0])
    certs = sorted(d.glob("*.cert"))
    if certs:
        out["client_cert"] = str(certs[0])
        out["client_key"] = str(certs[0].with_suffix(".key"))
    return out


def side_fields(verify: bool | None, directory: str | None, ca_file: str | None = None) -> dict[str, Any]:
    """One side's flags as the :class:`~regcopy.settings.RegistrySettings` fields they set (only those given)."""
    fields: dict[str, Any] = {}
    if verify is False:
        fields["scheme"] = "insecure"  # skopeo --tls-verify=false: unverified https or plain http
    elif verify is True:
        fields["scheme"] = "https"
    fields |= cert_dir(directory)
    if ca_file:
        fields["ca_file"] = ca_file
    return fields


def side_settings(settings: Settings, location: object, fields: dict[str, Any]) -> RegistrySettings | None:
    """The settings of one side of ``regcopy copy``: its host's, with that side's flags over them
    (None for a local location)."""
    if not isinstance(location, Reference):
        return None
    return resolve(settings, {location.registry: Overrides(fields)}).for_host(location.registry)


def copy_sides(settings: Settings, src: object, dst: object, sides: tuple[Any, ...],
               reserve: int | None) -> tuple[RegistrySettings | None, RegistrySettings | None]:
    """The settings of ``regcopy copy``'s source and destination: each side's flags over its host's
    (``sides``: ``--src-tls-verify``, ``--dest-tls-verify``, ``--src-cert-dir``, ``--dest-cert-dir``,
    ``--ca-file``), and ``--pull-reserve`` on the source."""
    src_verify, dst_verify, src_certs, dst_certs, ca_file = sides
    return (side_settings(settings, src, side_fields(src_verify, src_certs, ca_file) | reserve_fields(reserve)),
            side_settings(settings, dst, side_fields(dst_verify, dst_certs, ca_file)))


def insecure_layer(hosts: tuple[str, ...]) -> dict[str, Overrides]:
    """``--insecure-registry HOST``: the ``insecure`` scheme mode for each host."""
    return {host: Overrides({"scheme": "insecure"}) for host in hosts}


def side_layer(plan: SyncPlan, side: str, verify: bool | None, directory: str | None,
               creds: str | None) -> dict[str, Overrides]:
    """``regcopy sync``'s flags of one side (``src`` or ``dest``) for every registry on that side of the plan.

    :raises click.BadParameter: ``--*-creds`` without ``:``, or a ``--*-cert-dir`` that is no directory
    """
    fields = side_fields(verify, directory)
    credentials = None
    if creds:
        user, sep, password = creds.partition(":")
        if not sep:
            raise click.BadParameter(f"--{side}-creds must be USER:PASSWORD")
        credentials = Credentials(username=user, password=password)
    if not fields and credentials is None:
        return {}
    addresses = [e.source if side == "src" else e.target for e in plan.entries]
    hosts = {a.registry for a in addresses if not isinstance(a, LocalRepository)}  # a local store has no host
    return {host: Overrides(fields, credentials) for host in hosts}


class ByteRate(click.ParamType[int]):
    """``--limit-rate``: bytes per second as ``50M``, ``800KiB``, ``10MB`` or a plain number."""

    name = "rate"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_byte_rate(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def throughput_flags(fn: F) -> F:
    """``--limit-rate``, ``--pull-reserve`` and ``--events`` (``copy`` and ``sync``)."""
    options = (
        click.option("--limit-rate", type=ByteRate(), default=None, metavar="RATE",
                     help="Blob bytes per second over the whole run: 50M, 800KiB, 10MB (k/M/G are powers of 1024)."),
        click.option("--pull-reserve", type=click.IntRange(0), default=None, metavar="N",
                     help="Pulls never spent on a source that announces its quota (Docker Hub's "
                          "ratelimit-remaining): no new pull starts there once N are left."),
        click.option("--events", metavar="FILE|-",
                     help="Write every event as one JSON line to FILE, or stdout with - (docs/events.md)."),
    )
    for option in reversed(options):
        fn = option(fn)
    return fn


def reserve_fields(reserve: int | None) -> dict[str, Any]:
    """``--pull-reserve`` as the settings field it sets (none when not given)."""
    return {} if reserve is None else {"pull_reserve": reserve}


def reserve_layer(plan: SyncPlan, reserve: int | None) -> dict[str, Overrides]:
    """``regcopy sync --pull-reserve N``: for every source registry of the plan."""
    if reserve is None:
        return {}
    hosts = {e.source.registry for e in plan.entries if not isinstance(e.source, LocalRepository)}
    return {host: Overrides(reserve_fields(reserve)) for host in hosts}
