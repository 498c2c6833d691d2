"""regcopy: copy container images between OCI/Docker registries, layouts and archives, asynchronously.

::

    import anyio, regcopy

    anyio.run(regcopy.copy, "localhost:5000/app:v1", "registry.internal/app:v1")

    async with regcopy.Client() as client:
        result = await client.copy(src, dst, platforms=["linux/amd64"], reporter=print)
"""

__version__ = "0.1.0"

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
