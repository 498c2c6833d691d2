"""The verbs that read one image: ``manifest`` and ``inspect``. Flags → one library call →
rendering; the client is imported when a verb runs, not when help is shown."""

from __future__ import annotations

import json
import sys
from typing import Any

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

__all__ = ()


@click.command(name="manifest")
@click.argument("reference")
@click.option("--platform", help="With an index: print the manifest of this os/arch[/variant].")
@click.option("--pretty", is_flag=True, help="Indent the JSON (the raw bytes are printed by default).")
@authfile_option
@insecure_option
@verbose_option
def _manifest(reference: str, platform: str | None, pretty: bool, authfile: str | None,
              insecure: tuple[str, ...], verbose: int) -> None:
    """Print the manifest REFERENCE points to, byte for byte (or --pretty)."""
    setup_logging(verbose)

    async def run() -> bytes:
        async with make_client(authfile, insecure) as client:
            return (await client.manifest(reference, platform=platform)).data

    data = run_async(run)
    if pretty:
        click.echo(json.dumps(json.loads(data), indent=2))
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()


@click.command(name="inspect")
@click.argument("reference")
@click.option("--platform", help="With an index: the image of this os/arch[/variant] (default: this machine's).")
@authfile_option
@insecure_option
@output_option
@verbose_option
def _inspect(reference: str, platform: str | None, authfile: str | None, insecure: tuple[str, ...],
             output: str, verbose: int) -> None:
    """Show an image's platform, creation time, labels, layers and total size."""
    setup_logging(verbose)

    async def run() -> Any:
        async with make_client(authfile, insecure) as client:
            return await client.inspect(reference, platform=platform)

    info = run_async(run)

    def text() -> str:
        plat = "/".join(p for p in (info.os, info.architecture, info.variant) if p)
        lines = [f"{info.reference}", f"  digest   {info.digest}", f"  platform {plat}",
                 f"  created  {info.created}", f"  size     {info.total_size} bytes in {len(info.layers)} layers"]
        lines.extend(f"  label    {k}={v}" for k, v in sorted(info.labels.items()))
        lines.extend(f"  layer    {layer.digest} {layer.size}" for layer in info.layers)
        return "\n".join(lines)

    emit(info.to_json(), output, text)
