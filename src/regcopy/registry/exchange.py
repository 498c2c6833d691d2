"""The building blocks of one HTTP exchange with a registry, shared by the probe, the auth handshake
and the transport.

Owns the :class:`Reply` (a fully read answer), reading a body to its end (:func:`read_body`: a body
cut short is a failed attempt, never a short answer), the one mapping of aiohttp, OSError and SSL
failures into :mod:`regcopy.errors` (:func:`map_errors`), the per-request timeouts and TLS context of
a host's settings, and what a transport's requests share (:class:`HostState`: exponential backoff with
jitter, ``Retry-After`` honoured up to a cap, one 429 pausing every request to the host through its
shared :class:`~regcopy.registry.limits.HostLimits`, retries announced as events, counters).
"""

from __future__ import annotations

import functools
import logging
import math
import random
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Final

import aiohttp
import anyio
from multidict import CIMultiDictProxy

from regcopy.errors import (
    ProtocolViolation,
    PullLimitReached,
    RateLimited,
    RegcopyError,
    RegistryError,
    RegistryTimeout,
    TransportError,
    redact,
)
from regcopy.progress import Retrying
from regcopy.registry._errors import redact_url
from regcopy.registry.limits import HostLimits
from regcopy.settings import RegistrySettings

__all__ = (
    "USER_AGENT",
    "HostState",
    "Reply",
    "body_cause",
    "client_timeouts",
    "describe",
    "map_errors",
    "read_body",
    "read_capped",
    "ssl_for",
    "tls_failure",
)

log = logging.getLogger(__name__)

USER_AGENT: Final = "regcopy/0.1"


@dataclass(slots=True)
class Reply:
    """A fully read response: status, headers, body and the final URL."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes
    url: str


# --- one request's parameters ---------------------------------------------------------------------


def client_timeouts(settings: RegistrySettings) -> aiohttp.ClientTimeout:
    """A host's connect and per-read timeouts (the session's own are another host's)."""
    s = settings
    return aiohttp.ClientTimeout(total=None, connect=s.connect_timeout, sock_connect=s.connect_timeout,
                                 sock_read=s.read_timeout)


def ssl_for(settings: RegistrySettings, scheme: str) -> ssl.SSLContext | bool:
    """The TLS context of a host's settings for ``scheme`` (False for http).

    A host whose certificates are not verified and that presents no client certificate (neither
    ``client_cert`` nor a pair in ``cert_dir``) gets a context without the system CA store: nothing
    would read it, and loading it is most of a short run's TLS cost (the https probe of an http
    registry builds a context too).
    """
    if scheme != "https":
        return False
    if not settings.verify_tls and not settings.client_cert and not settings.cert_dir:
        return _unverified_context()
    return settings.ssl_context()


@functools.cache
def _unverified_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


# --- reading answers ------------------------------------------------------------------------------


async def read_body(resp: aiohttp.ClientResponse, cap: int, *, registry: str, method: str) -> bytes:
    """The whole body, at most ``cap`` bytes; a body shorter than its ``Content-Length`` (a connection
    closed early) is a :class:`TransportError`, never a short answer.

    :raises ProtocolViolation: the body exceeds ``cap``
    """
    parts: list[bytes] = []
    size = 0
    while chunk := await resp.content.read(min(cap + 1 - size, 256 * 1024)):
        parts.append(chunk)
        size += len(chunk)
        if size > cap:
            raise ProtocolViolation(f"response body larger than {cap} bytes", registry=registry, method=method,
                                    url=redact_url(str(resp.url)), status=resp.status)
    body = b"".join(parts)
    expected = resp.content_length
    # A decoded (gzip) body differs from its Content-Length by design; aiohttp checks those itself.
    encoded = resp.headers.get("Content-Encoding", "identity").lower() not in ("", "identity")
    if expected is not None and method != "HEAD" and not encoded and len(body) != expected:
        raise TransportError(f"response body ended after {len(body)} of {expected} bytes", registry=registry,
                             method=method, url=redact_url(str(resp.url)), status=resp.status)
    return body


async def read_capped(resp: aiohttp.ClientResponse, scope: anyio.CancelScope, cap: int = 64 * 1024) -> bytes:
    """An error body, up to ``cap`` bytes, read to its end within what is left of ``scope``'s deadline.

    A body that drips or breaks yields what arrived: the status decides the error, the body only
    refines it, so a slow error body never turns a definite 404 into a retried timeout.
    """
    parts: list[bytes] = []
    size = 0
    remaining = scope.deadline - anyio.current_time()
    scope.deadline = math.inf  # the bound below takes over, without turning the answer into a timeout
    with anyio.move_on_after(remaining):
        try:
            while size < cap and (chunk := await resp.content.read(cap - size)):
                parts.append(chunk)
                size += len(chunk)
        except (aiohttp.ClientError, OSError, TimeoutError):
            pass
    return b"".join(parts)


# --- failures -------------------------------------------------------------------------------------


@contextmanager
def map_errors(registry: str, method: str, url: str) -> Iterator[None]:
    """The one place where aiohttp, OSError and SSL failures become regcopy errors."""
    where = redact_url(url)
    try:
        yield
    except RegistryError:
        raise
    except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
        raise RegistryTimeout("timed out", registry=registry, method=method, url=where) from exc
    except (aiohttp.ClientSSLError, ssl.SSLError) as exc:
        raise TransportError(f"TLS failure: {describe(exc)}", registry=registry, method=method, url=where) from exc
    except aiohttp.InvalidURL as exc:
        raise ProtocolViolation(f"invalid URL: {exc}", registry=registry, method=method, url=where) from exc
    except (aiohttp.ClientError, OSError) as exc:
        # aiohttp wraps an exception raised by a streamed request body in ClientOSError: a
        # DigestMismatch from the VerifyingStream feeding an upload, or the *source's* failure
        # (its GET broke for good). Neither is this host's connection failing: re-raise the
        # original, so it is not retried as one and the error names the right registry.
        cause = body_cause(exc)
        if cause is not None:
            raise cause from exc
        raise TransportError(describe(exc), registry=registry, method=method, url=where) from exc


def body_cause(exc: BaseException) -> RegcopyError | None:
    """A regcopy error in ``exc``'s chain: raised by our own code (a request body), not by aiohttp."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, RegcopyError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def tls_failure(exc: BaseException) -> bool:
    """True when ``exc`` or an exception in its chain is a TLS failure."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError) or "[SSL:" in str(current):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def describe(exc: BaseException) -> str:
    """An exception's text for a message: one line, no URL userinfo or query (aiohttp's texts carry
    the full URL, signed storage query included)."""
    text = redact(str(exc) or type(exc).__name__)
    return text.replace("\n", " ")[:300]


# --- backoff --------------------------------------------------------------------------------------


@dataclass(slots=True)
class HostState:
    """What one transport's requests share: the backoff and counters; the pauses, quotas and limits
    every transport of the host shares are its :class:`~regcopy.registry.limits.HostLimits`."""

    settings: RegistrySettings
    limits: HostLimits
    consecutive_failures: int = 0
    stats: dict[str, int] = field(default_factory=lambda: {"requests": 0, "retries": 0})

    def note_failure(self, err: RegistryError) -> None:
        """Count a failed attempt; a 429 pauses every request to the host."""
        self.consecutive_failures += 1
        # A spent pull quota (PullLimitReached) is no overload: blob requests to the host go on.
        if isinstance(err, RateLimited) and not isinstance(err, PullLimitReached):
            # One 429 slows every request to this host (regclient's shared per-host backoff).
            delay = err.retry_after if err.retry_after is not None else self.delay(self.consecutive_failures)
            # The same cap as a single request's wait (sleep): a "Retry-After: 3600" must not park every
            # request to the host for an hour; the request gives up with RateLimited instead.
            self.limits.pause(min(delay, self.max_wait()), "Retry-After" if err.retry_after is not None
                              else "HTTP 429")

    async def respect_pause(self) -> None:
        """Wait out a 429's pause on the host."""
        await self.limits.respect_pause()

    def delay(self, attempt: int) -> float:
        """Exponential backoff with jitter for the ``attempt``-th retry (from 0)."""
        base = min(self.settings.backoff * (2**attempt), self.settings.backoff_max)
        jitter: float = random.random()
        return float(base) * (0.5 + jitter / 2)

    def max_wait(self) -> float:
        """The longest a ``Retry-After`` may make one request wait."""
        return float(self.settings.backoff_max * 4)

    def wait_for(self, attempt: int, retry_after: float | None) -> float:
        """Seconds before the ``attempt``-th retry: the backoff, or ``Retry-After`` up to :meth:`max_wait`."""
        delay = self.delay(attempt)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_wait()))
        return delay

    async def sleep(self, attempt: int, retry_after: float | None) -> None:
        """Sleep before the ``attempt``-th retry (:meth:`wait_for`)."""
        await anyio.sleep(self.wait_for(attempt, retry_after))

    async def retry(self, method: str, url: str, err: RegistryError, attempt: int, attempts: int) -> None:
        """Count, log and announce the ``attempt``-th retry (from 1) of a failed request, then wait for it."""
        self.stats["retries"] += 1
        self.limits.counts["retries"] += 1
        retry_after: float | None = getattr(err, "retry_after", None)  # RateLimited, or a failed probe's 503
        delay = self.wait_for(attempt - 1, retry_after)
        log.info("%s %s: %s; retry %d/%d in %.1f s", method, redact_url(url), err, attempt, attempts - 1, delay)
        self.limits.emit(Retrying(self.limits.registry, method, redact_url(url), attempt, round(delay, 3),
                                  redact(str(err))[:300]))
        await anyio.sleep(delay)
