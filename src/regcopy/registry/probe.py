"""The ``GET /v2/`` probe of one registry host and the https/http race that picks its scheme.

Owns which schemes a host may use (its scheme mode, or an explicit ``http://``/``https://`` prefix),
one race of the probes (docs/protocol.md#the-probe; go-containerregistry
pkg/v1/remote/transport/ping.go ``pingParallel``, improved: both probes start at once and https keeps
a short grace window, so a black-holed 443 never delays http) and its outcome: the chosen scheme, why,
each probe's timing and the auth challenge. Only 200 and 401 are answers: http to a TLS port gets a
400, which is a failed probe. The transport retries a failed race and caches the outcome.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
import anyio
from multidict import CIMultiDictProxy
from yarl import URL

from regcopy.errors import TransportError
from regcopy.reference import api_host
from regcopy.registry._challenge import Challenge
from regcopy.registry._errors import parse_retry_after
from regcopy.registry.auth import read_challenge
from regcopy.registry.exchange import USER_AGENT, client_timeouts, describe, ssl_for, tls_failure
from regcopy.settings import RegistrySettings

__all__ = ("NoEndpoint", "PingResult", "Probe", "ProbeOutcome")

# Failed probes worth another race: the host may answer next time (a definite 404 or 400 will not).
_TRANSIENT: Final = frozenset({408, 429, 500, 502, 503, 504})

@dataclass(frozen=True, slots=True)
class ProbeOutcome:
    """One ``/v2/`` probe: scheme, status (None on error), seconds, and the error text if it failed."""

    scheme: str
    status: int | None
    seconds: float
    error: str | None = None


_Answer = tuple[ProbeOutcome, CIMultiDictProxy[str] | None]


@dataclass(frozen=True, slots=True)
class PingResult:
    """The outcome of the scheme probe for a host (cached for the client's life)."""

    registry: str
    scheme: str
    status: int
    reason: str
    probes: tuple[ProbeOutcome, ...]
    challenge: Challenge | None = None

    @property
    def base_url(self) -> str:
        """``scheme://api-host`` for building request URLs."""
        return f"{self.scheme}://{api_host(self.registry)}"


class NoEndpoint(TransportError):
    """No probe answered; ``transient`` when a retry may help (a failure, not a definite answer)."""

    def __init__(self, message: str, *, transient: bool, retry_after: float | None, timed_out: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.transient = transient
        self.retry_after = retry_after
        self.timed_out = timed_out
        """Every probe that failed without an answer timed out (and none answered 5xx/429)."""


class Probe:
    """The scheme race of one registry host.

    :param session: the client's aiohttp session
    :param registry: normalised ``host[:port]``
    :param settings: the host's policy (scheme mode, timeouts, TLS)
    :param forced_scheme: ``http``/``https`` when a reference carried an explicit prefix
    """

    def __init__(self, session: aiohttp.ClientSession, registry: str, settings: RegistrySettings,
                 forced_scheme: str | None = None) -> None:
        self.session = session
        self.registry = registry
        self.host = api_host(registry)
        self.settings = settings
        self.forced = forced_scheme

    def schemes(self) -> tuple[str, ...]:
        """The schemes to race: the prefix's alone, else those the host's scheme mode allows."""
        if self.forced == "http":
            return ("http",)
        if self.forced == "https":
            return ("https",)
        return self.settings.candidates(self.registry)

    async def run(self) -> PingResult:
        """Race the probes once; https wins if it answers within ``race_grace`` of http.

        :raises NoEndpoint: no scheme answered 200 or 401
        """
        schemes = self.schemes()
        outcomes, good, headers_of = await self._race(schemes)
        probes = tuple(outcomes.get(s) or ProbeOutcome(s, None, 0.0, "cancelled: lost the race") for s in schemes)
        for scheme in ("https", "http"):
            if scheme in good:
                return self._result(scheme, probes, good[scheme])
        raise self._failure(schemes, probes, headers_of)

    async def _race(self, schemes: tuple[str, ...]) -> tuple[
        dict[str, ProbeOutcome], dict[str, CIMultiDictProxy[str] | None], dict[str, CIMultiDictProxy[str]]
    ]:
        """Every probe's outcome (until a winner is certain), the answers' headers, the good ones'."""
        send, receive = anyio.create_memory_object_stream[_Answer](len(schemes))
        outcomes: dict[str, ProbeOutcome] = {}
        good: dict[str, CIMultiDictProxy[str] | None] = {}
        headers_of: dict[str, CIMultiDictProxy[str]] = {}
        deadline = float("inf")
        async with anyio.create_task_group() as tg, receive:
            for scheme in schemes:
                tg.start_soon(self._probe_into, scheme, send.clone())
            send.close()
            while len(outcomes) < len(schemes):
                with anyio.move_on_after(max(0.0, deadline - time.monotonic())) as timer:
                    try:
                        outcome, headers = await receive.receive()
                    except anyio.EndOfStream:
                        break
                if timer.cancelled_caught:
                    break  # https used up its grace window: http wins
                outcomes[outcome.scheme] = outcome
                if headers is not None:
                    headers_of[outcome.scheme] = headers
                if outcome.status in (200, 401):
                    good[outcome.scheme] = headers
                    if outcome.scheme == "https":
                        break
                    deadline = time.monotonic() + self.settings.race_grace
            tg.cancel_scope.cancel()
        return outcomes, good, headers_of

    async def _probe_into(self, scheme: str, send: anyio.abc.ObjectSendStream[_Answer]) -> None:
        async with send:
            await send.send(await self._probe(scheme))

    async def _probe(self, scheme: str) -> _Answer:
        url = f"{scheme}://{self.host}/v2/"
        start = time.monotonic()
        try:
            with anyio.fail_after(self.settings.probe_timeout):
                async with self.session.get(
                    URL(url, encoded=True),
                    ssl=ssl_for(self.settings, scheme),
                    allow_redirects=False,
                    headers={"User-Agent": USER_AGENT},
                    timeout=client_timeouts(self.settings),
                ) as resp:
                    await resp.content.read(4096)
                    outcome = ProbeOutcome(scheme, resp.status, time.monotonic() - start)
                    return outcome, resp.headers
        except TimeoutError:
            return ProbeOutcome(scheme, None, time.monotonic() - start, "timed out"), None
        except (aiohttp.ClientSSLError, ssl.SSLError) as exc:
            # Definite, like a 404: no TLS there (an http port) or a certificate we refuse.
            return ProbeOutcome(scheme, None, time.monotonic() - start, f"TLS failure: {describe(exc)}"), None
        except (aiohttp.ClientError, OSError) as exc:
            if tls_failure(exc):  # an alert after the handshake (a refused client certificate) comes as OSError
                return ProbeOutcome(scheme, None, time.monotonic() - start, f"TLS failure: {describe(exc)}"), None
            return ProbeOutcome(scheme, None, time.monotonic() - start, describe(exc)), None

    def _result(self, scheme: str, probes: tuple[ProbeOutcome, ...],
                headers: CIMultiDictProxy[str] | None) -> PingResult:
        status = next(p.status for p in probes if p.scheme == scheme)
        assert status is not None
        if len(probes) == 1:
            why = "explicit http:// prefix" if self.forced else f"{self.settings.scheme} policy allows only {scheme}"
        elif scheme == "https":
            why = "https answered (preferred when both answer within the grace window)"
        else:
            other = next(p for p in probes if p.scheme == "https")
            why = f"https {other.error or f'answered HTTP {other.status}'}; http answered"
        challenge = None
        if status == 401 and headers is not None:
            challenge = read_challenge(headers.getall("WWW-Authenticate", []), registry=self.registry,
                                       url=f"{scheme}://{self.host}/v2/")
        return PingResult(self.registry, scheme, status, why, probes, challenge)

    def _failure(self, schemes: tuple[str, ...], probes: tuple[ProbeOutcome, ...],
                 headers_of: dict[str, CIMultiDictProxy[str]]) -> NoEndpoint:
        detail = "; ".join(f"{p.scheme}: {p.error or f'HTTP {p.status}'}" for p in probes)
        tried = [p for p in probes if "lost the race" not in (p.error or "")]
        transient = any((p.status is None and not (p.error or "").startswith("TLS failure"))
                        or p.status in _TRANSIENT for p in tried)
        timed_out = all(p.error == "timed out" for p in tried if p.status is None) and any(
            p.status is None for p in tried) and not any(p.status in _TRANSIENT for p in tried)
        retry_after = max((parse_retry_after(h.get("Retry-After")) or 0.0 for h in headers_of.values()),
                          default=0.0) or None
        return NoEndpoint(f"no usable /v2/ endpoint ({detail})", registry=self.registry, method="GET",
                          url=f"{schemes[0]}://{self.host}/v2/", transient=transient, retry_after=retry_after,
                          timed_out=timed_out)
