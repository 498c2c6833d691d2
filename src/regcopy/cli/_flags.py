"""The command line's per-host flags as settings overrides (:class:`~regcopy.settings.Overrides`).

``--insecure-registry``, ``--ca-file``, ``--pull-reserve`` and skopeo's per-side flags
(:mod:`regcopy.cli._access`: ``--src-tls-verify``, ``--dest-cert-dir``, ``--src-creds`` and friends)
say something about some hosts; this module turns them into the overrides layer a
:class:`~regcopy.Client` gets at construction, which wins over a plan's ``registries:``
(docs/architecture.md, "Settings resolution"). Also the options every copying command shares
(:func:`throughput_flags`: ``--limit-rate``, ``--pull-reserve``, ``--events``). No I/O (a
``--cert-dir`` is read when a host's TLS context is built).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from regcopy.locations import LocalRepository
from regcopy.reference import Reference
from regcopy.settings import Overrides, RegistrySettings, Settings, parse_byte_rate, resolve

if TYPE_CHECKING:
    from regcopy.cli._access import Access
    from regcopy.sync import SyncPlan  # the sync package loads the scheduler: not for `--help`

__all__ = (
    "ByteRate", "insecure_layer", "reserve_fields", "reserve_layer", "side_layer", "side_settings",
    "throughput_flags",
)

F = TypeVar("F", bound=Callable[..., Any])


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
