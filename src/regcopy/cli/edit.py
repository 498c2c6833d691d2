"""The verbs that change a registry: ``tag``, ``delete`` and ``prune``. Flags → one library call →
rendering; the client is imported when a verb runs, not when help is shown."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

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
    run_async,
    setup_logging,
    verbose_option,
)
from regcopy.errors import ConfigError, InvalidReference

__all__ = ()


@click.command(name="tag")
@click.argument("reference")
@click.argument("new_tag")
@access_flags()
@authfile_option
@insecure_option
@output_option
@verbose_option
def _tag(reference: str, new_tag: str, access: Access, authfile: str | None, insecure: tuple[str, ...], output: str,
         verbose: int) -> None:
    """Point NEW_TAG (same repository) at REFERENCE: one manifest PUT, no blob traffic."""
    setup_logging(verbose)

    async def run() -> str:
        async with make_client(authfile, insecure, access.layer(hosts_of(reference))) as client:
            return str(await client.tag(reference, new_tag))

    digest_text = run_async(run)
    emit({"reference": reference, "tag": new_tag, "digest": digest_text}, output,
          lambda: f"tagged {new_tag} -> {digest_text}")


@click.command(name="delete")
@click.argument("reference")
@click.option("--dry-run", is_flag=True, help="Only say what would go: the digest and every tag on it.")
@click.option("--yes", "-y", is_flag=True, help="Delete even when other tags point at the same digest.")
@access_flags()
@authfile_option
@insecure_option
@output_option
@verbose_option
def _delete(reference: str, dry_run: bool, yes: bool, access: Access, authfile: str | None,
            insecure: tuple[str, ...], output: str, verbose: int) -> None:
    """Delete the manifest REFERENCE points to (a tag is resolved to its digest). Every tag on that digest
    goes with it (the registry deletes manifests, not tags): when tags other than REFERENCE's would go,
    they are listed and nothing is deleted without --yes."""
    from regcopy.reference import Reference

    setup_logging(verbose)
    try:
        ref = Reference.parse(reference.removeprefix("docker://"), default_tag="latest")
    except InvalidReference as exc:
        fail(str(exc), EXIT_USAGE)

    async def run(dry: bool) -> Any:
        async with make_client(authfile, insecure, access.layer([ref.registry])) as client:
            return await client.delete(ref, dry_run=dry)

    preview = run_async(lambda: run(True))
    others = [t for t in preview.tags if t != ref.tag]
    if not dry_run and others and not yes:
        fail(f"{preview.repository}@{preview.digest} is also tagged {', '.join(others)}: deleting it deletes "
             "those tags too; say --yes to delete them all", EXIT_USAGE)
    result = preview if dry_run else run_async(lambda: run(False))
    data = {"repository": result.repository, "digest": result.digest, "tags": result.tags, "dry_run": dry_run}
    emit(data, output, lambda: _delete_text(result, dry_run))


def _delete_text(result: Any, dry_run: bool) -> str:
    tags = ", ".join(result.tags) or "none"
    if dry_run:
        return f"would delete {result.repository}@{result.digest} (and the tags on it: {tags})"
    return f"deleted {result.repository}@{result.digest} (tags that pointed at it, now gone: {tags})"


@click.command(name="prune")
@click.argument("plan_path", metavar="PLAN", type=click.Path(dir_okay=False))
@click.option("--dry-run/--no-dry-run", "dry_run", default=None,
              help="Only show what would be deleted (the default); --no-dry-run (or --yes) deletes.")
@click.option("--yes", "-y", is_flag=True, help="Delete for real (same as --no-dry-run).")
@click.option("--cap", type=click.IntRange(0), default=None, help="At most N manifest deletions in this run.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False), help="Write the JSON report here.")
@click.option("--show-kept", is_flag=True, help="List the kept tags too, with the reason.")
@access_flags()
@authfile_option
@insecure_option
@output_option
@verbose_option
def _prune(plan_path: str, dry_run: bool | None, yes: bool, cap: int | None, report_path: str | None,
           show_kept: bool, access: Access, authfile: str | None, insecure: tuple[str, ...], output: str,
           verbose: int) -> None:
    """Delete tags by a retention PLAN (a prune plan, or a sync plan with a prune section): keep the
    latest N by semver or created time, protected tags and anything newer than an age. A dry run
    unless --yes or --no-dry-run."""
    import anyio

    from regcopy.cli._render import prune_table
    from regcopy.retention import PruneReport, load_prune

    setup_logging(verbose)
    if dry_run and yes:
        fail("--dry-run and --yes contradict each other", EXIT_USAGE)
    dry = not yes if dry_run is None else dry_run
    try:
        plan = load_prune(plan_path)
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    report = PruneReport(dry_run=dry)

    async def run() -> None:
        hosts = sorted({rule.scope.registry for rule in plan.rules})  # the flags speak for every host of the plan
        async with make_client(authfile, insecure, access.layer(hosts)) as client:
            try:
                await client.prune(plan, dry_run=dry, cap=cap, report=report)
            except anyio.get_cancelled_exc_class():
                report.interrupted = True
                raise

    try:
        run_async(run)
    finally:
        if report_path:
            Path(report_path).write_text(json.dumps(report.to_json(), indent=2))
    emit(report.to_json(), output, lambda: prune_table(report, show_kept))
    if not report.ok:
        sys.exit(EXIT_FAILED)
