"""The command line's per-host flags as settings overrides (:class:`~regcopy.settings.Overrides`).

skopeo's ``--src-tls-verify``, ``--dest-cert-dir``, ``--src-creds`` and friends, ``--ca-file`` and
``--insecure-registry`` say something about some hosts; this module turns them into the overrides
layer a :class:`~regcopy.Client` gets at construction, which wins over a plan's ``registries:``
(docs/architecture.md, "Settings resolution"). No I/O (a ``--cert-dir`` is read when a
host's TLS context is built).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from regcopy.locations import LocalRepository
from regcopy.reference import Reference
from regcopy.settings import Overrides, RegistrySettings, Settings, resolve

if TYPE_CHECKING:
    from regcopy.cli._access import Access
    from regcopy.sync import SyncPlan  # the sync package loads the scheduler: not for `--help`

__all__ = ("insecure_layer", "side_layer", "side_settings")


def side_settings(settings: Settings, location: object, fields: dict[str, Any]) -> RegistrySettings | None:
    """The settings of one side of ``regcopy copy``: its host's, with that side's flags over them
    (None for a local location)."""
    if not isinstance(location, Reference):
        return None
    return resolve(settings, {location.registry: Overrides(fields)}).for_host(location.registry)


def insecure_layer(hosts: tuple[str, ...]) -> dict[str, Overrides]:
    """``--insecure-registry HOST``: the ``insecure`` scheme mode for each host."""
    return {host: Overrides({"scheme": "insecure"}) for host in hosts}


def side_layer(plan: SyncPlan, side: str, access: Access, extra: dict[str, Any] | None = None) -> dict[str, Overrides]:
    """``regcopy sync``'s flags of one side (``src`` or ``dest``: an :class:`~regcopy.cli._access.Access`
    and ``extra`` settings fields such as the retry flags) for every registry on that side of the plan.

    :raises click.UsageError: flags skopeo refuses together (:meth:`Access.credentials`)
    """
    addresses = [e.source if side == "src" else e.target for e in plan.entries]
    hosts = sorted({a.registry for a in addresses if not isinstance(a, LocalRepository)})  # a local store has none
    return access.layer(hosts, extra)
