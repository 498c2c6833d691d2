"""Everything that speaks HTTP to a distribution-spec registry; the only aiohttp user of regcopy."""

from regcopy.registry._policy import SCHEME_MODES, RegistrySettings, SchemeMode, is_local_host
from regcopy.registry.transport import PingResult, ProbeOutcome, Reply, Transport

__all__ = (
    "SCHEME_MODES",
    "PingResult",
    "ProbeOutcome",
    "RegistrySettings",
    "Reply",
    "SchemeMode",
    "Transport",
    "is_local_host",
)
