"""The verbs that read one image: ``manifest``, ``config``, ``inspect`` and ``manifest-digest`` (of a
file). Flags → one library call → rendering; the client is imported when a verb runs, not when help is shown."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

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

__all__ = ()


@click.command(name="manifest")
@click.argument("reference")
@click.option("--platform", help="With an index: print the manifest of this os/arch[/variant].")
@click.option("--pretty", is_flag=True, help="Indent the JSON (the raw bytes are printed by default).")
@access_flags()
@authfile_option
@insecure_option
@verbose_option
def _manifest(reference: str, platform: str | None, pretty: bool, access: Access, authfile: str | None,
              insecure: tuple[str, ...], verbose: int) -> None:
    """Print the manifest REFERENCE points to, byte for byte (or --pretty). REFERENCE may be local
    (oci:DIR:TAG, oci-archive:, docker-archive:, dir:)."""
    setup_logging(verbose)

    async def run() -> bytes:
        async with make_client(authfile, insecure, access.layer(hosts_of(reference))) as client:
            return (await client.manifest(reference, platform=platform)).data

    _print_json(run_async(run), pretty)


@click.command(name="config")
@click.argument("reference")
@click.option("--platform", help="With an index: the image of this os/arch[/variant] (default: this machine's).")
@click.option("--pretty", is_flag=True, help="Indent the JSON (the raw bytes are printed by default).")
@access_flags()
@authfile_option
@insecure_option
@verbose_option
def _config(reference: str, platform: str | None, pretty: bool, access: Access, authfile: str | None,
            insecure: tuple[str, ...], verbose: int) -> None:
    """Print the config blob of the image REFERENCE points to, byte for byte (crane config)."""
    setup_logging(verbose)
    _print_json(run_async(lambda: _config_bytes(reference, platform, access, authfile, insecure)), pretty)


async def _config_bytes(reference: str, platform: str | None, access: Access, authfile: str | None,
                        insecure: tuple[str, ...]) -> bytes:
    async with make_client(authfile, insecure, access.layer(hosts_of(reference))) as client:
        return await client.config(reference, platform=platform)


@click.command(name="blob")
@click.argument("reference", metavar="REPOSITORY@DIGEST")
@access_flags()
@authfile_option
@insecure_option
@verbose_option
def _blob(reference: str, access: Access, authfile: str | None, insecure: tuple[str, ...], verbose: int) -> None:
    """Write the blob REPOSITORY@DIGEST to stdout (crane blob), checked against its digest as it flows."""
    setup_logging(verbose)
    out = sys.stdout.buffer

    async def run() -> int:
        async with make_client(authfile, insecure, access.layer(hosts_of(reference))) as client:
            return await client.blob(reference, out.write)

    run_async(run)
    out.flush()


@click.command(name="manifest-digest")
@click.argument("path", type=click.Path(dir_okay=False, exists=True, allow_dash=True))
def _manifest_digest(path: str) -> None:
    """Print the digest of the manifest in the file PATH (skopeo manifest-digest): the sha256 of its bytes."""
    data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    click.echo(f"sha256:{hashlib.sha256(data).hexdigest()}")


@click.command(name="inspect")
@click.argument("reference")
@click.option("--platform", help="With an index: the image of this os/arch[/variant] (default: this machine's).")
@click.option("--config", "show_config", is_flag=True, help="Print the image's config blob instead (as skopeo).")
@click.option("--raw", is_flag=True, help="Print the manifest REFERENCE points to, byte for byte (as skopeo).")
@access_flags()
@authfile_option
@insecure_option
@output_option
@verbose_option
def _inspect(reference: str, platform: str | None, show_config: bool, raw: bool, access: Access,
             authfile: str | None, insecure: tuple[str, ...], output: str, verbose: int) -> None:
    """Show an image: the digest REFERENCE points to (an index's own), the chosen platform's manifest
    digest, platform, creation time, Env, Cmd, Entrypoint, WorkingDir, labels, layers and size."""
    setup_logging(verbose)
    if show_config or raw:
        if show_config and raw:
            raise click.UsageError("--config and --raw: give one")
        if show_config:
            data = run_async(lambda: _config_bytes(reference, platform, access, authfile, insecure))
        else:
            data = run_async(lambda: _raw(reference, access, authfile, insecure))
        _print_json(data, pretty=output == "json")
        return

    async def run() -> Any:
        async with make_client(authfile, insecure, access.layer(hosts_of(reference))) as client:
            return await client.inspect(reference, platform=platform)

    info = run_async(run)
    emit(info.to_json(), output, lambda: _inspect_text(info))


async def _raw(reference: str, access: Access, authfile: str | None, insecure: tuple[str, ...]) -> bytes:
    async with make_client(authfile, insecure, access.layer(hosts_of(reference))) as client:
        return (await client.manifest(reference)).data


def _inspect_text(info: Any) -> str:
    plat = "/".join(p for p in (info.os, info.architecture, info.variant) if p)
    lines = [f"{info.reference}", f"  digest     {info.digest}"]
    if info.manifest_digest != info.digest:
        lines.append(f"  manifest   {info.manifest_digest} ({plat} of the index)")
    lines += [f"  platform   {plat}", f"  created    {info.created}",
              f"  size       {info.total_size} bytes in {len(info.layers)} layers"]
    lines.extend(f"  env        {e}" for e in info.env)
    for name, value in (("entrypoint", info.entrypoint), ("cmd", info.cmd)):
        if value is not None:
            lines.append(f"  {name:<10} {json.dumps(list(value))}")
    if info.working_dir:
        lines.append(f"  workdir    {info.working_dir}")
    lines.extend(f"  label      {k}={v}" for k, v in sorted(info.labels.items()))
    lines.extend(f"  layer      {layer.digest} {layer.size}" for layer in info.layers)
    return "\n".join(lines)


def _print_json(data: bytes, pretty: bool) -> None:
    """Raw bytes on stdout, or indented JSON (``--pretty``)."""
    if pretty:
        click.echo(json.dumps(json.loads(data), indent=2))
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
