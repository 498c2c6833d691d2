"""Proxies in front of a real registry that behave like registries with quotas, for the limits tests.

Both are :class:`~servers.faulty_proxy.FaultyProxy` subclasses (the same transparent forwarding, the same
request log with arrival times, faults still scriptable):

* :class:`CapacityProxy` answers ``429 TOOMANYREQUESTS`` (no ``Retry-After``, as Artifact Registry and
  Quay do) to every request that arrives while ``capacity`` requests are already in flight, and
  records how many were in flight at each arrival;
* :class:`HubProxy` emulates Docker Hub's pull limits (docs/registry-quirks.md#docker-hub-pull-limits):
  every manifest answer carries ``ratelimit-limit: L;w=W`` and ``ratelimit-remaining: R;w=W``; every
  manifest GET is a pull and takes one off ``R`` as it arrives; a GET arriving at ``R == 0`` gets
  Hub's ``429`` with ``TOOMANYREQUESTS`` and ``ratelimit-remaining: 0;w=W``. HEADs count no pull. ``lie``
  makes the headers announce more than is left (a quota another client shares).

A free helper, :func:`max_in_window`, answers "how many requests arrived in any window of N seconds".
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from .faulty_proxy import Fault, FaultyProxy, ProxiedRequest

__all__ = ("CapacityProxy", "HubProxy", "max_in_window")

_MANIFEST = re.compile(r"^/v2/.+/manifests/[^/?]+$")
_TOO_MANY = json.dumps({"errors": [{"code": "TOOMANYREQUESTS", "message": "too many requests"}]}).encode()
_HUB_LIMIT = json.dumps({"errors": [{
    "code": "TOOMANYREQUESTS",
    "message": "You have reached your pull rate limit. You may increase the limit by authenticating and "
               "upgrading: https://www.docker.com/increase-rate-limit",
}]}).encode()


def max_in_window(requests: Sequence[ProxiedRequest], seconds: float) -> int:
    """The largest number of ``requests`` that arrived within any half-open window of ``seconds``."""
    times = sorted(r.at for r in requests)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= seconds:
            start += 1
        best = max(best, end - start + 1)
    return best


class CapacityProxy(FaultyProxy):
    """A registry that serves at most ``capacity`` requests at once and answers 429 to the others."""

    def __init__(self, upstream_url: str, capacity: int, **kwargs: Any) -> None:
        super().__init__(upstream_url, **kwargs)
        self.capacity = capacity
        self.in_flight = 0
        self.refused = 0
        self.served = 0
        self.peak = 0
        self._gate = threading.Lock()

    def reset_counts(self) -> None:
        with self._gate:
            self.refused = self.served = self.peak = 0

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        with self._gate:
            full = self.in_flight >= self.capacity
            if full:
                self.refused += 1
            else:
                self.in_flight += 1
                self.served += 1
                self.peak = max(self.peak, self.in_flight)
        if full:
            # Answered before the body is read, as a busy registry does (aiohttp drops the rest).
            return web.Response(status=429, body=_TOO_MANY, content_type="application/json")
        try:
            return await super()._handle(request)
        finally:
            with self._gate:
                self.in_flight -= 1


class HubProxy(FaultyProxy):
    """Docker Hub's pull limits in front of a registry (see the module docstring)."""

    def __init__(self, upstream_url: str, *, limit: int = 100, remaining: int | None = None, window: int = 21600,
                 lie: int = 0, **kwargs: Any) -> None:
        super().__init__(upstream_url, **kwargs)
        self.limit = limit
        self.remaining = limit if remaining is None else remaining
        self.window = window
        self.lie = lie
        self.pulls = 0
        self.heads = 0
        self.refused = 0
        self._gate = threading.Lock()

    def reset(self, remaining: int | None = None) -> None:
        """A new quota window (and fresh counters)."""
        with self._gate:
            self.remaining = self.limit if remaining is None else remaining
            self.pulls = self.heads = self.refused = 0

    def _headers(self, remaining: int) -> dict[str, str]:
        return {"ratelimit-limit": f"{self.limit};w={self.window}",
                "ratelimit-remaining": f"{remaining};w={self.window}",
                "docker-ratelimit-source": "127.0.0.1"}

    async def _apply(self, request: web.Request, record: ProxiedRequest, fault: Fault | None) -> web.StreamResponse:
        if fault is not None or not _MANIFEST.match(request.path) or request.method not in ("GET", "HEAD"):
            return await super()._apply(request, record, fault)
        with self._gate:
            if request.method == "HEAD":
                self.heads += 1
                refused, left = False, self.remaining
            else:
                refused = self.remaining <= 0
                self.refused += refused
                self.pulls += not refused
                self.remaining = max(0, self.remaining - 1)
                left = self.remaining
        shown = 0 if refused else left + self.lie
        if refused:
            self._update(record, status=429)
            return web.Response(status=429, body=_HUB_LIMIT, content_type="application/json",
                                headers=self._headers(0))
        return await self._forward(request, record, Fault(set_headers=self._headers(shown)))
