"""Everything that speaks HTTP to a distribution-spec registry; the only aiohttp user of regcopy."""

from regcopy.registry._tokens import TokenCache
from regcopy.registry.transport import PingResult, ProbeOutcome, Reply, Transport
from regcopy.settings import SCHEME_MODES, RegistrySettings, SchemeMode, is_local_host

__all__ = (
    "SCHEME_MODES",
    "PingResult",
    "ProbeOutcome",
    "RegistrySettings",
    "Reply",
    "SchemeMode",
    "TokenCache",
    "Transport",
    "is_local_host",
)
