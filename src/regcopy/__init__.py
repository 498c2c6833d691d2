"""regcopy: copy container images between OCI/Docker registries, layouts and archives, asynchronously.

::

    import anyio, regcopy

    anyio.run(regcopy.copy, "localhost:5000/app:v1", "registry.internal/app:v1")

    async with regcopy.Client() as client:
        result = await client.copy(src, dst, platforms=["linux/amd64"], reporter=print)

Importing the package is cheap: each public name is imported from its module on first use (PEP 562
``__getattr__``), so ``regcopy --version`` and ``regcopy --help`` never load aiohttp and its peers.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from regcopy.artifacts import ReferrerPolicy, ReferrerTree
    from regcopy.client import Client, DeleteResult, copy
    from regcopy.credentials import (
        ChainCredentials,
        Credential,
        CredentialStore,
        DockerConfigCredentials,
        StaticCredentials,
        default_credentials,
    )
    from regcopy.digest import Digest, VerifyingStream
    from regcopy.ecr import EcrCredentials
    from regcopy.engine import CopyResult, copy_image
    from regcopy.errors import (
        AuthenticationError,
        BlobNotFound,
        ConfigError,
        ContentError,
        CopyFailed,
        CredentialError,
        DigestMismatch,
        DigestsNotPreserved,
        InvalidManifest,
        InvalidReference,
        ManifestNotFound,
        NotFound,
        PermissionDenied,
        ProtocolViolation,
        RateLimited,
        RegcopyError,
        RegistryError,
        RegistryTimeout,
        SizeMismatch,
        StoreError,
        TransportError,
        Unsupported,
        UnsupportedMediaType,
    )
    from regcopy.inspect import ImageInfo
    from regcopy.ledger import BlobLedger
    from regcopy.manifest import Descriptor, Manifest, Platform
    from regcopy.reference import LocalLocation, Namespace, Reference, Repository, parse_location
    from regcopy.registry import PingResult
    from regcopy.retention import PrunePlan, PruneReport, PruneRule, delete_tags, load_prune, run_prune
    from regcopy.settings import Credentials, Overrides, RegistrySettings
    from regcopy.stores import UploadPolicy

_EXPORTS: dict[str, str] = {
    "AuthenticationError": "regcopy.errors",
    "BlobLedger": "regcopy.ledger",
    "BlobNotFound": "regcopy.errors",
    "ChainCredentials": "regcopy.credentials",
    "Client": "regcopy.client",
    "ConfigError": "regcopy.errors",
    "ContentError": "regcopy.errors",
    "CopyFailed": "regcopy.errors",
    "CopyResult": "regcopy.engine",
    "Credential": "regcopy.credentials",
    "CredentialError": "regcopy.errors",
    "CredentialStore": "regcopy.credentials",
    "Credentials": "regcopy.settings",
    "DeleteResult": "regcopy.client",
    "Descriptor": "regcopy.manifest",
    "Digest": "regcopy.digest",
    "DigestMismatch": "regcopy.errors",
    "DigestsNotPreserved": "regcopy.errors",
    "DockerConfigCredentials": "regcopy.credentials",
    "EcrCredentials": "regcopy.ecr",
    "ImageInfo": "regcopy.inspect",
    "InvalidManifest": "regcopy.errors",
    "InvalidReference": "regcopy.errors",
    "LocalLocation": "regcopy.reference",
    "Manifest": "regcopy.manifest",
    "ManifestNotFound": "regcopy.errors",
    "Namespace": "regcopy.reference",
    "NotFound": "regcopy.errors",
    "Overrides": "regcopy.settings",
    "PermissionDenied": "regcopy.errors",
    "PingResult": "regcopy.registry",
    "Platform": "regcopy.manifest",
    "ProtocolViolation": "regcopy.errors",
    "PrunePlan": "regcopy.retention",
    "PruneReport": "regcopy.retention",
    "PruneRule": "regcopy.retention",
    "RateLimited": "regcopy.errors",
    "Reference": "regcopy.reference",
    "ReferrerPolicy": "regcopy.artifacts",
    "ReferrerTree": "regcopy.artifacts",
    "RegcopyError": "regcopy.errors",
    "RegistryError": "regcopy.errors",
    "RegistrySettings": "regcopy.settings",
    "RegistryTimeout": "regcopy.errors",
    "Repository": "regcopy.reference",
    "SizeMismatch": "regcopy.errors",
    "StaticCredentials": "regcopy.credentials",
    "StoreError": "regcopy.errors",
    "TransportError": "regcopy.errors",
    "Unsupported": "regcopy.errors",
    "UnsupportedMediaType": "regcopy.errors",
    "UploadPolicy": "regcopy.stores",
    "VerifyingStream": "regcopy.digest",
    "copy": "regcopy.client",
    "copy_image": "regcopy.engine",
    "default_credentials": "regcopy.credentials",
    "delete_tags": "regcopy.retention",
    "load_prune": "regcopy.retention",
    "parse_location": "regcopy.reference",
    "run_prune": "regcopy.retention",
}
"""Each public name → the module that defines it (imported on first use)."""

if not TYPE_CHECKING:  # mypy sees the imports above; a typo'd name stays an error for it

    def __getattr__(name: str) -> Any:
        module = _EXPORTS.get(name)
        if module is not None:
            value = getattr(importlib.import_module(module), name)
            globals()[name] = value
            return value
        if not name.startswith("_") and importlib.util.find_spec(f"regcopy.{name}") is not None:
            return importlib.import_module(f"regcopy.{name}")  # regcopy.sync etc. as an eager package gave them
        raise AttributeError(f"module 'regcopy' has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted({*globals(), *_EXPORTS})

__all__ = (
    "AuthenticationError",
    "BlobLedger",
    "BlobNotFound",
    "ChainCredentials",
    "Client",
    "ConfigError",
    "ContentError",
    "CopyFailed",
    "CopyResult",
    "Credential",
    "CredentialError",
    "CredentialStore",
    "Credentials",
    "DeleteResult",
    "Descriptor",
    "Digest",
    "DigestMismatch",
    "DigestsNotPreserved",
    "DockerConfigCredentials",
    "EcrCredentials",
    "ImageInfo",
    "InvalidManifest",
    "InvalidReference",
    "LocalLocation",
    "Manifest",
    "ManifestNotFound",
    "Namespace",
    "NotFound",
    "Overrides",
    "PermissionDenied",
    "PingResult",
    "Platform",
    "ProtocolViolation",
    "PrunePlan",
    "PruneReport",
    "PruneRule",
    "RateLimited",
    "Reference",
    "ReferrerPolicy",
    "ReferrerTree",
    "RegcopyError",
    "RegistryError",
    "RegistrySettings",
    "RegistryTimeout",
    "Repository",
    "SizeMismatch",
    "StaticCredentials",
    "StoreError",
    "TransportError",
    "Unsupported",
    "UnsupportedMediaType",
    "UploadPolicy",
    "VerifyingStream",
    "__version__",
    "copy",
    "copy_image",
    "default_credentials",
    "delete_tags",
    "load_prune",
    "parse_location",
    "run_prune",
)
