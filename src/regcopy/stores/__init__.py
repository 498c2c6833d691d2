"""Sources and destinations of images: the protocols the engine speaks and their backends."""

from regcopy.stores.base import BlobOpener, Committer, Destination, Mounter, Source
from regcopy.stores.registry import RegistryStore, UploadPolicy

__all__ = ("BlobOpener", "Committer", "Destination", "Mounter", "RegistryStore", "Source", "UploadPolicy")
