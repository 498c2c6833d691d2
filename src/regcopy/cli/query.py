"""The read-only registry verbs: ``ping``, ``ls``, ``catalog``, ``digest``. Flags → one library
call → rendering; the client is imported when a verb runs, not when help is shown."""

from __future__ import annotations

import re
from typing import Any, cast

import click

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
from regcopy.settings import Overrides, SchemeMode

__all__ = ()


@click.command(name="ping")
@click.argument("registry")
@click.option("--scheme", type=click.Choice(["auto", "https", "https-insecure", "http", "insecure"]),
              default="auto", show_default=True, help="Scheme policy for the probe.")
@click.option("--ca-file", type=click.Path(dir_okay=False), help="Extra CA bundle (PEM).")
@click.option("--grace", type=float, default=0.2, show_default=True,
              help="Seconds https may answer after http and still win.")
@authfile_option
@output_option
@verbose_option
def _ping(registry: str, scheme: str, ca_file: str | None, grace: float, authfile: str | None, output: str,
          verbose: int) -> None:
    """Probe REGISTRY's /v2/ and print which scheme won, why, and the timings."""
    setup_logging(verbose)
    forced = None
    for prefix in ("http://", "https://"):
        if registry.startswith(prefix):
            forced, registry = prefix[:-3], registry[len(prefix):]
    registry = registry.rstrip("/")
    flags = Overrides({"scheme": cast(SchemeMode, scheme), "race_grace": grace, "ca_file": ca_file})

    async def run() -> Any:
        async with make_client(authfile, (), {registry: flags}) as client:
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
@authfile_option
@insecure_option
@output_option
@verbose_option
def _ls(repository: str, pattern: str | None, authfile: str | None, insecure: tuple[str, ...], output: str,
        verbose: int) -> None:
    """List the tags of REPOSITORY, sorted."""
    setup_logging(verbose)
    regex = re.compile(pattern) if pattern else None

    async def run() -> list[str]:
        async with make_client(authfile, insecure) as client:
            return await client.tags(repository)

    tags = [t for t in run_async(run) if regex is None or regex.fullmatch(t)]
    emit(tags, output, lambda: "\n".join(tags))


@click.command(name="catalog")
@click.argument("registry")
@click.option("--filter", "pattern", help="Keep repositories fully matching this regex.")
@authfile_option
@insecure_option
@output_option
@verbose_option
def _catalog(registry: str, pattern: str | None, authfile: str | None, insecure: tuple[str, ...], output: str,
             verbose: int) -> None:
    """List the repositories of REGISTRY (/v2/_catalog), sorted."""
    setup_logging(verbose)
    regex = re.compile(pattern) if pattern else None

    async def run() -> list[str]:
        async with make_client(authfile, insecure) as client:
            return await client.catalog(registry.removeprefix("docker://").rstrip("/"))

    repos = [r for r in run_async(run) if regex is None or regex.fullmatch(r)]
    emit(repos, output, lambda: "\n".join(repos))


@click.command(name="digest")
@click.argument("reference")
@authfile_option
@insecure_option
@verbose_option
def _digest(reference: str, authfile: str | None, insecure: tuple[str, ...], verbose: int) -> None:
    """Print the digest REFERENCE resolves to (a HEAD request)."""
    setup_logging(verbose)

    async def run() -> str:
        async with make_client(authfile, insecure) as client:
            return str(await client.digest(reference))

    click.echo(run_async(run))
