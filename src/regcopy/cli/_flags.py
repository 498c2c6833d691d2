"""The command line's per-host flags as settings overrides (:class:`~regcopy.settings.Overrides`).

skopeo's ``--src-tls-verify``, ``--dest-cert-dir``, ``--src-creds`` and friends, ``--ca-file`` and
``--insecure-registry`` say something about some hosts; this module turns them into the overrides
layer a :class:`~regcopy.Client` gets at construction, which wins over a plan's ``registries:``
(docs/architecture.md, "Settings resolution"). No I/O beyond listing a ``--cert-dir``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from regcopy.locations import LocalRepository
from regcopy.reference import Reference
from regcopy.settings import Credentials, Overrides, RegistrySettings, Settings, resolve

if TYPE_CHECKING:
    from regcopy.sync import SyncPlan  # the sync package loads the scheduler: not for `--help`

__all__ = ("cert_dir", "insecure_layer", "side_fields", "side_layer", "side_settings")


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
