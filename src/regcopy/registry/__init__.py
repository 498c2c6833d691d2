"""Everything that speaks HTTP to a distribution-spec registry; the only aiohttp user of regcopy."""

from regcopy.registry._policy import RegistrySettings, is_local_host
from regcopy.registry.transport import PingResult, ProbeOutcome, Reply, Transport

__all__ = ("PingResult", "ProbeOutcome", "RegistrySettings", "Reply", "Transport", "is_local_host")
