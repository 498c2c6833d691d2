"""Everything that speaks HTTP to a distribution-spec registry; the only aiohttp user of regcopy.

The names other layers use are exported here: the transport and its probe result, the host settings
(re-exported from :mod:`regcopy.settings`), the client's token cache and the token scopes a store asks for.
"""

from regcopy.registry._challenge import Scope
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
    "Scope",
    "TokenCache",
    "Transport",
    "is_local_host",
)
