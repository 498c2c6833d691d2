"""Local stores by location: ``oci:`` layouts, ``oci-archive:`` and ``docker-archive:`` tars.

Owns the mapping from a :class:`~regcopy.reference.LocalLocation` to its store and the store's life:
:func:`open_local` opens (indexes an archive, loads a layout) and always closes, removing temp files
and spools, so a writable store that was never committed leaves no partial output. Committing is the
engine's job (:class:`~regcopy.stores.base.Committer`), never implicit on exit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol, runtime_checkable

import anyio

from regcopy.reference import LocalLocation
from regcopy.stores.archive import DockerArchiveStore, OciArchiveStore
from regcopy.stores.base import Committer, Destination, Source
from regcopy.stores.layout import LayoutStore

__all__ = ("LocalStore", "local_identifier", "open_local")


@runtime_checkable
class LocalStore(Source, Destination, Committer, Protocol):
    """A local store: a :class:`Source`, a :class:`Destination` (when writable) and a :class:`Committer`."""

    async def default_identifier(self) -> str:
        """The location's ref, else the only image the store holds.

        :raises StoreError: no ref was given and the store holds no image or several
        """
        ...

    async def aclose(self) -> None:
        """Release temp files and spools (committed output stays)."""
        ...


@asynccontextmanager
async def open_local(location: LocalLocation, *, writable: bool) -> AsyncIterator[LocalStore]:
    """Open the store for ``location``; closed (temp files removed) when the block exits.

    Reading indexes an archive or loads a layout up front. Writing an archive spools blobs beside
    it and replaces the file only on ``commit()`` (the engine's last step); a layout is updated in
    place (blobs renamed in, ``index.json`` merged and replaced on commit).

    ```python
    async with open_local(LocalLocation.parse("oci:./out:v1"), writable=True) as dst:
        await copy_image(src, dst, "v1", target_tag="v1")
    ```

    :param location: the parsed location
    :param writable: open as a destination; read-only stores refuse writes with ``StoreError``
    :returns: an async context manager yielding the store
    :raises StoreError: missing or corrupt layout or archive (the message names the file)
    """
    store: LayoutStore | OciArchiveStore | DockerArchiveStore
    if location.transport == "oci":
        store = LayoutStore(location.path, location.ref, writable=writable)
    elif location.transport == "oci-archive":
        store = OciArchiveStore(location.path, location.ref, writable=writable)
    else:
        store = DockerArchiveStore(location.path, location.ref, writable=writable)
    try:
        await store.open()
        yield store
    finally:
        with anyio.CancelScope(shield=True):
            await store.aclose()


async def local_identifier(location: LocalLocation, store: LocalStore) -> str:
    """The tag, digest or ``@N`` to resolve in a source store opened for ``location``.

    :param location: the location the store was opened for
    :param store: the open store
    :returns: ``location.ref`` when given, else the store's only image
    :raises StoreError: no ref and the store holds no image or several
    """
    return location.ref if location.ref is not None else await store.default_identifier()
