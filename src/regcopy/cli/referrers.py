"""The command line of supply-chain artifacts and fan-out: ``regcopy referrers REF``, the
``--referrers/--no-referrers`` and ``--artifact-type`` options of ``copy``, and ``copy SRC DST
DST...`` (one read of SRC for every DST, :meth:`~regcopy.Client.copy_fanout`). Flags → one library
call → rendering, as in :mod:`regcopy.cli`, which names the command.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from regcopy.cli._access import Access, access_flags, hosts_of
from regcopy.cli._common import (
    EXIT_FAILED,
    EXIT_USAGE,
    authfile_option,
    emit,
    fail,
    insecure_option,
    make_client,
    output_option,
    progress_display,
    run_async,
    setup_logging,
    verbose_option,
)
from regcopy.cli._flags import side_settings
from regcopy.errors import InvalidReference, RegcopyError
from regcopy.reference import parse_location

if TYPE_CHECKING:
    from regcopy import Client, ReferrerPolicy

__all__ = ("copy_many", "referrer_flags")

F = TypeVar("F", bound=Callable[..., Any])

_artifact_type_option = click.option("--artifact-type", "artifact_types", multiple=True, metavar="TYPE",
                                     help="Only referrers of this artifact type (repeatable). Default: all.")


def referrer_flags(fn: F) -> F:
    """``copy``'s ``--referrers/--no-referrers`` and ``--artifact-type``."""
    fn = _artifact_type_option(fn)
    return click.option("--referrers/--no-referrers", default=True, show_default=True,
                        help="Copy signatures, SBOMs and attestations that refer to each copied manifest.")(fn)


def copy_many(src_loc: Any, dst_locs: list[Any], *, platforms: tuple[str, ...], jobs: int, force: bool,
              policy: ReferrerPolicy, progress: str, output: str, new_client: Callable[[], Client],
              src_fields: dict[str, Any], dst_fields: dict[str, Any], events: str | None = None) -> None:
    """``copy SRC DST DST...``: one fan-out; every destination's outcome is printed (none with ``output``
    ``"quiet"``), exit 1 if one failed.

    :param src_fields: the source side's settings fields for this copy (its flags); ``dst_fields`` likewise
    :param events: ``--events`` (a file, or ``-`` for stdout)
    """
    from regcopy.cli._render import copy_summaries, copy_summary

    async def run() -> list[Any]:
        async with new_client() as client:
            src_settings = side_settings(client.settings, src_loc, src_fields)
            dst_settings = [side_settings(client.settings, loc, dst_fields) for loc in dst_locs]
            with progress_display(progress, events) as reporter, copy_summaries(reporter) as done:
                results = await client.copy_fanout(src_loc, dst_locs, platforms=platforms, jobs=jobs, force=force,
                                                   reporter=reporter, referrers=policy, src_settings=src_settings,
                                                   dst_settings=dst_settings)
                done([r for r in results if not isinstance(r, RegcopyError)])
                return results

    results = list(zip(dst_locs, run_async(run), strict=True))
    data = [{"destination": str(d), "error": str(r)} if isinstance(r, RegcopyError) else r.to_json()
            for d, r in results]
    if output != "quiet":
        emit(data, output, lambda: "\n".join(f"failed {d}: {r}" if isinstance(r, RegcopyError) else copy_summary(r)
                                              for d, r in results), events)
    if any(isinstance(r, RegcopyError) for _, r in results):
        sys.exit(EXIT_FAILED)


@click.command(name="referrers")
@click.argument("ref")
@click.option("--platform", "platforms", multiple=True, metavar="OS/ARCH[/VARIANT]",
              help="Only these platforms of an index (repeatable). Default: all.")
@_artifact_type_option
@access_flags()
@authfile_option
@insecure_option
@output_option
@verbose_option
def _referrers(ref: str, platforms: tuple[str, ...], artifact_types: tuple[str, ...], access: Access,
               authfile: str | None, insecure: tuple[str, ...], output: str, verbose: int) -> None:
    """List what refers to REF and to each of its children: signatures, SBOMs, attestations (the
    referrers API, the fallback tag or cosign's tags), as a tree with artifact types and digests."""
    from regcopy.cli._render import referrer_tree_text

    setup_logging(verbose)
    try:
        location = parse_location(ref, default_tag="latest")
    except InvalidReference as exc:
        fail(str(exc), EXIT_USAGE)

    async def run() -> Any:
        async with make_client(authfile, insecure, access.layer(hosts_of(ref))) as client:
            return await client.referrers(location, artifact_types=artifact_types, platforms=platforms)

    tree = run_async(run)
    emit(tree.to_json(), output, lambda: referrer_tree_text(tree))
