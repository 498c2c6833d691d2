"""The read-only registry verbs: ``ping``, ``ls`` (and skopeo's ``list-tags``), ``catalog``, ``digest``.
Flags → one library call → rendering; the client is imported when a verb runs, not when help is shown."""

from __future__ import annotations

import json
import re
from typing import Any, cast

import click

from regcopy.cli._access import Access, access_flags, hosts_of
from regcopy.cli._common import (
    authfile_option,
    emit,
    insecure_option,
    make_client,
    output_option,
    run_async,
    setup_logging,
    verbose_option,
)
from regcopy.errors import InvalidReference
from regcopy.settings import Overrides, SchemeMode, stack

__all__ = ()


@click.command(name="ping")
@click.argument("registry")
@click.option("--scheme", type=click.Choice(["auto", "https", "https-insecure", "http", "insecure"]),
              default="auto", show_default=True, help="Scheme policy for the probe.")
@click.option("--ca-file", type=click.Path(dir_okay=False), help="Extra CA bundle (PEM).")
@click.option("--grace", type=float, default=0.2, show_default=True,
              help="Seconds https may answer after http and still win.")
@access_flags()
@authfile_option
@output_option
@verbose_option
def _ping(registry: str, scheme: str, ca_file: str | None, grace: float, access: Access, authfile: str | None,
          output: str, verbose: int) -> None:
    """Probe REGISTRY's /v2/ and print which scheme won, why, and the timings."""
    setup_logging(verbose)
    forced = None
    for prefix in ("http://", "https://"):
        if registry.startswith(prefix):
            forced, registry = prefix[:-3], registry[len(prefix):]
    registry = registry.rstrip("/")
    flags = Overrides({"scheme": cast(SchemeMode, scheme), "race_grace": grace, "ca_file": ca_file})

    async def run() -> Any:
        async with make_client(authfile, (), stack({registry: flags}, access.layer([registry]))) as client:
            return await client.ping(registry, scheme=forced)

    result = run_async(run)
    data = {
        "registry": result.registry, "scheme": result.scheme, "status": result.status, "reason": result.reason,
        "auth": result.challenge.scheme if result.challenge else None,
        "probes": [{"scheme": p.scheme, "status": p.status, "seconds": round(p.seconds, 4), "error": p.error}
                   for p in result.probes],
    }

    def text() -> str:
        lines = [f"{result.registry}: {result.scheme} (HTTP {result.status}) - {result.reason}"]
        for p in result.probes:
            outcome = f"HTTP {p.status}" if p.status is not None else p.error
            lines.append(f"  {p.scheme:5} {p.seconds * 1000:8.1f} ms  {outcome}")
        return "\n".join(lines)

    emit(data, output, text)


@click.command(name="ls")
@click.argument("repository")
@click.option("--filter", "pattern", help="Keep tags fully matching this regex.")
@click.option("--full-ref", is_flag=True, help="Print REPOSITORY:TAG, not the tag alone (crane ls).")
@click.option("--omit-digest-tags", is_flag=True,
              help="Leave out sha256-... tags (signatures, attestations, referrer fallbacks) (crane ls).")
@access_flags()
@authfile_option
@insecure_option
@output_option
@verbose_option
def _ls(repository: str, pattern: str | None, full_ref: bool, omit_digest_tags: bool, access: Access,
        authfile: str | None, insecure: tuple[str, ...], output: str, verbose: int) -> None:
    """List the tags of REPOSITORY, sorted. REPOSITORY may be local (oci:DIR, oci-archive:, docker-archive:,
    dir:)."""
    setup_logging(verbose)
    regex = re.compile(pattern) if pattern else None
    tags = [t for t in run_async(lambda: _tags(repository, access, authfile, insecure))
            if (regex is None or regex.fullmatch(t)) and not (omit_digest_tags and _DIGEST_TAG.match(t))]
    if full_ref:
        name = repository.removeprefix("docker://")
        tags = [f"{name}:{t}" for t in tags]
    emit(tags, output, lambda: "\n".join(tags))


_DIGEST_TAG = re.compile(r"^sha256-[0-9a-f]{64}")


async def _tags(repository: str, access: Access, authfile: str | None, insecure: tuple[str, ...]) -> list[str]:
    async with make_client(authfile, insecure, access.layer(hosts_of(repository))) as client:
        return await client.tags(repository)


@click.command(name="list-tags")
@click.argument("repository")
@access_flags()
@authfile_option
@insecure_option
@verbose_option
def _list_tags(repository: str, access: Access, authfile: str | None, insecure: tuple[str, ...],
               verbose: int) -> None:
    """skopeo list-tags: the tags of REPOSITORY (docker://HOST/REPO) as skopeo prints them,
    {"Repository": ..., "Tags": [...]}."""
    from regcopy.reference import Repository

    setup_logging(verbose)
    tags = run_async(lambda: _tags(repository, access, authfile, insecure))
    try:
        name = str(Repository.parse(repository.removeprefix("docker://")))
    except InvalidReference:
        name = repository  # a local location: as given
    click.echo(json.dumps({"Repository": name, "Tags": tags}, indent=4))


@click.command(name="catalog")
@click.argument("registry")
@click.option("--filter", "pattern", help="Keep repositories fully matching this regex.")
@click.option("--full-ref", is_flag=True, help="Print REGISTRY/REPOSITORY (crane catalog).")
@access_flags()
@authfile_option
@insecure_option
@output_option
@verbose_option
def _catalog(registry: str, pattern: str | None, full_ref: bool, access: Access, authfile: str | None,
             insecure: tuple[str, ...], output: str, verbose: int) -> None:
    """List the repositories of REGISTRY (/v2/_catalog), sorted."""
    setup_logging(verbose)
    regex = re.compile(pattern) if pattern else None
    host = registry.removeprefix("docker://").rstrip("/")

    async def run() -> list[str]:
        async with make_client(authfile, insecure, access.layer([host])) as client:
            return await client.catalog(host)

    repos = [f"{host}/{r}" if full_ref else r for r in run_async(run) if regex is None or regex.fullmatch(r)]
    emit(repos, output, lambda: "\n".join(repos))


@click.command(name="digest")
@click.argument("reference")
@access_flags()
@authfile_option
@insecure_option
@verbose_option
def _digest(reference: str, access: Access, authfile: str | None, insecure: tuple[str, ...], verbose: int) -> None:
    """Print the digest REFERENCE resolves to (a HEAD request). REFERENCE may be local (oci:DIR:TAG, ...)."""
    setup_logging(verbose)

    async def run() -> str:
        async with make_client(authfile, insecure, access.layer(hosts_of(reference))) as client:
            return str(await client.digest(reference))

    click.echo(run_async(run))
