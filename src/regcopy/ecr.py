"""Amazon ECR credentials: a :class:`~regcopy.credstore.CredentialStore` that calls GetAuthorizationToken.

Owns recognising ECR registry hosts (``<account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn]``), one boto3 ECR
client per region (created lazily, in a worker thread: boto3 is blocking), and turning the API's answer
(base64 ``AWS:<password>``, valid 12 hours) into a Basic credential that is cached until shortly before it
expires. The cache and its single-flight refresh are the ones every credential helper uses
(:class:`~regcopy.credstore.CredentialCache`): a long run refreshes the token by itself, and a rejected token is dropped
by :meth:`EcrCredentials.forget` (the transport calls it on a 401) and fetched anew.

boto3 is optional (``pip install regcopy[ecr]``) and imported only when an ECR host is first asked for, so
``import regcopy`` never pays for it and a missing boto3 is an error only where it matters.
"""

from __future__ import annotations

import base64
import binascii
import importlib
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Protocol

import anyio

from regcopy.credstore import ANONYMOUS, Credential, CredentialCache, CredentialStore
from regcopy.errors import ConfigError, CredentialError

__all__ = ("ClientFactory", "EcrClient", "EcrCredentials", "EcrRegistry", "parse_ecr_host")

logger = logging.getLogger(__name__)

# amazon-ecr-credential-helper's pattern, narrowed to 12-digit account ids and the commercial and China
# partitions: <account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn], optionally with port 443.
_ECR_HOST: Final = re.compile(
    r"(?P<account>[0-9]{12})\.dkr\.ecr(?P<fips>-fips)?\.(?P<region>[a-z0-9][a-z0-9-]*[a-z0-9])"
    r"\.amazonaws\.com(?P<cn>\.cn)?(?::443)?",
    re.ASCII,
)
# ECR tokens live 12 hours; refresh this long before the stated expiry (clock skew, long requests).
_DEFAULT_MARGIN: Final = 15 * 60.0
# Never cache an answer for less than this, whatever expiresAt says (a local clock far ahead would otherwise
# call the API for every request); a token the registry really rejects is dropped by forget() anyway.
_MIN_CACHE: Final = 60.0


@dataclass(frozen=True, slots=True)
class EcrRegistry:
    """An ECR registry: the account (registry id) and region the token is asked for.

    :ivar fips: the host is a FIPS endpoint (``dkr.ecr-fips``): the API is called on the FIPS endpoint too
    """

    account: str
    region: str
    fips: bool = False


def parse_ecr_host(host: str) -> EcrRegistry | None:
    """The ECR registry behind ``host`` (``host[:port]``, any case), or None when it is not an ECR host.

    Never raises: any string is either an ECR host or not.
    """
    match = _ECR_HOST.fullmatch(host.strip().lower().rstrip("."))
    if match is None:
        return None
    return EcrRegistry(match["account"], match["region"], fips=match["fips"] is not None)


class EcrClient(Protocol):
    """The one boto3 ECR client method this module calls (a real ``boto3.client("ecr")`` satisfies it)."""

    def get_authorization_token(self, **kwargs: Any) -> Mapping[str, Any]:
        """GetAuthorizationToken: ``{"authorizationData": [{"authorizationToken", "expiresAt", ...}]}``."""
        ...


ClientFactory = Callable[[str, bool], EcrClient]
"""``factory(region, fips)`` → an ECR client; called in a worker thread, once per (region, fips)."""


def _boto3_client(region: str, fips: bool) -> EcrClient:
    """A boto3 ECR client for ``region`` from a fresh session (sessions are not thread-safe; clients are)."""
    try:
        boto3 = importlib.import_module("boto3")
        botocore_config = importlib.import_module("botocore.config")
    except ImportError as exc:
        raise CredentialError("Amazon ECR credentials need boto3: install regcopy[ecr]") from exc
    config = botocore_config.Config(use_fips_endpoint=fips, retries={"mode": "standard"})
    client: EcrClient = boto3.session.Session().client("ecr", region_name=region, config=config)
    return client


class EcrCredentials(CredentialStore):
    """Credentials for Amazon ECR hosts from GetAuthorizationToken; other hosts ask ``fallback``.

    The token (user ``AWS``) is cached per host until ``margin`` seconds before its ``expiresAt`` and then
    fetched again, so a run longer than 12 hours keeps going; :meth:`forget` drops it so that the next
    :meth:`get` fetches a new one. Concurrent gets of one host make one API call. AWS credentials, profile
    and retries are boto3's own (environment, ``~/.aws``, instance roles).

    >>> store = EcrCredentials()                               # doctest: +SKIP
    >>> await store.get("123456789012.dkr.ecr.eu-west-1.amazonaws.com")   # doctest: +SKIP
    Credential(username='AWS', password='***', ...)
    """

    def __init__(
        self,
        fallback: CredentialStore | None = None,
        *,
        client_factory: ClientFactory | None = None,
        hosts: Callable[[str], EcrRegistry | None] = parse_ecr_host,
        margin: float = _DEFAULT_MARGIN,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        """
        :param fallback: where non-ECR hosts get their credentials (None: anonymous)
        :param client_factory: ``factory(region, fips)`` → an ECR client (default: boto3, ``regcopy[ecr]``)
        :param hosts: which hosts are ECR registries and which account and region each is; default
            :func:`parse_ecr_host` (tests map a loopback registry here)
        :param margin: seconds before ``expiresAt`` at which a token is refreshed
        :param clock: the monotonic clock the cache runs on
        :param wall_clock: the clock ``expiresAt`` is compared with (epoch seconds)
        :raises ConfigError: ``margin`` is negative
        """
        if not margin >= 0:
            raise ConfigError(f"margin must be a non-negative number of seconds, not {margin!r}")
        self._fallback = fallback
        self._factory = client_factory or _boto3_client
        self._hosts = hosts
        self._margin = margin
        self._wall = wall_clock
        self._cache = CredentialCache(clock)
        self._clients: dict[tuple[str, bool], EcrClient] = {}

    async def get(self, registry: str) -> Credential:
        """The ECR token of ``registry`` (cached), else ``fallback``'s answer or :data:`ANONYMOUS`.

        :raises CredentialError: boto3 is missing, the AWS call failed, or its answer is malformed
        """
        ecr = self._hosts(registry)
        if ecr is None:
            return ANONYMOUS if self._fallback is None else await self._fallback.get(registry)
        return await self._cache.get(registry.lower(), lambda: self._fetch(registry, ecr))

    def forget(self, registry: str) -> None:
        """Drop the cached token of an ECR host (the next :meth:`get` calls the API), else tell ``fallback``."""
        if self._hosts(registry) is None:
            if self._fallback is not None:
                self._fallback.forget(registry)
            return
        self._cache.forget(registry.lower())

    async def _fetch(self, host: str, ecr: EcrRegistry) -> tuple[Credential, float]:
        response = await anyio.to_thread.run_sync(self._call, host, ecr)
        credential, expires_at = _decode(response, host)
        lifetime = expires_at - self._wall() if expires_at is not None else 0.0
        max_age = max(_MIN_CACHE, lifetime - self._margin)
        logger.debug("ECR token for %s: valid %.0f s, refreshed after %.0f s", host, lifetime, max_age)
        return credential, max_age

    def _call(self, host: str, ecr: EcrRegistry) -> Mapping[str, Any]:
        """GetAuthorizationToken in a worker thread; every failure becomes a :class:`CredentialError`."""
        key = (ecr.region, ecr.fips)
        try:
            client = self._clients.get(key)
            if client is None:
                client = self._clients[key] = self._factory(ecr.region, ecr.fips)
            return client.get_authorization_token(registryIds=[ecr.account])
        except CredentialError:
            raise
        except Exception as exc:  # botocore's ClientError and BotoCoreError (no credentials, no endpoint, ...)
            raise CredentialError(f"Amazon ECR GetAuthorizationToken for {host} failed: {_describe(exc)}",
                                  registry=host) from exc


def _describe(exc: Exception) -> str:
    """botocore ``ClientError``: its code and message; anything else: its type and text. AWS error messages
    name the caller's ARN at most, never a secret."""
    response = getattr(exc, "response", None)
    error = response.get("Error") if isinstance(response, Mapping) else None
    if isinstance(error, Mapping) and error.get("Code"):
        message = str(error.get("Message") or "").replace("\n", " ")
        return f"{error['Code']}: {message[:300]}" if message else str(error["Code"])
    text = str(exc).replace("\n", " ")[:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _decode(response: Mapping[str, Any], host: str) -> tuple[Credential, float | None]:
    """The Basic credential in the first ``authorizationData`` entry and its expiry (epoch seconds, or None
    when absent). Errors never include the token."""

    def bad(why: str) -> CredentialError:
        return CredentialError(f"Amazon ECR GetAuthorizationToken for {host}: {why}", registry=host)

    data = response.get("authorizationData")
    if not isinstance(data, list) or not data or not isinstance(data[0], Mapping):
        raise bad("the answer holds no authorizationData")
    entry = data[0]
    token = entry.get("authorizationToken")
    if not isinstance(token, str) or not token:
        raise bad("the answer holds no authorizationToken")
    try:
        decoded = base64.b64decode(token, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise bad("authorizationToken is not base64 of user:password") from None
    username, sep, password = decoded.partition(":")
    if not sep or not username or not password:
        raise bad("authorizationToken does not decode to user:password")
    expires = entry.get("expiresAt")
    expires_at = expires.timestamp() if isinstance(expires, datetime) else None
    return Credential(username=username, password=password), expires_at
