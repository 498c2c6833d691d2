"""Test infrastructure (not shipped): real registries, a token server, image layouts and skopeo helpers.

Submodules are imported explicitly (``from servers.registry import RegistryServer``) so that the
stdlib-only :mod:`servers.images` stays importable without the network-side dependencies.
"""

from __future__ import annotations
