"""Copy one image (or a whole multi-platform index) with the library and print the typed result.

    python examples/copy_one.py localhost:5000/app:v1 localhost:5001/mirror/app:v1 [--http]
"""

from __future__ import annotations

import sys

import anyio

import regcopy
from regcopy.progress import BlobDone, BlobMounted, BlobSkipped, Event


def report(event: Event) -> None:
    """A reporter: any callable taking progress events (it must not block)."""
    if isinstance(event, BlobDone | BlobMounted | BlobSkipped):
        print(f"  {type(event).__name__:12} {event.digest[:19]} {event.size} bytes")


async def main(src: str, dst: str, plain_http: bool) -> None:
    settings = regcopy.RegistrySettings(scheme="insecure" if plain_http else "auto")
    async with regcopy.Client(default_settings=settings) as client:
        result = await client.copy(src, dst, reporter=report)
    print(f"{result.destination} {result.digest}: {result.blobs_uploaded} uploaded, "
          f"{result.blobs_mounted} mounted, {result.blobs_skipped} skipped, {result.seconds}s")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if len(args) != 2:
        sys.exit(__doc__)
    anyio.run(main, args[0], args[1], "--http" in sys.argv)
