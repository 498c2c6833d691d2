"""Sources and destinations of images: the protocols the engine speaks and their backends."""

from regcopy.stores.archive import OciArchiveStore
from regcopy.stores.base import BlobOpener, Committer, Destination, Mounter, Source
from regcopy.stores.dockerarchive import DockerArchiveStore
from regcopy.stores.layout import LayoutStore
from regcopy.stores.local import LocalStore, local_identifier, open_local
from regcopy.stores.registry import RegistryStore, UploadPolicy

__all__ = (
    "BlobOpener",
    "Committer",
    "Destination",
    "DockerArchiveStore",
    "LayoutStore",
    "LocalStore",
    "Mounter",
    "OciArchiveStore",
    "RegistryStore",
    "Source",
    "UploadPolicy",
    "local_identifier",
    "open_local",
)
