"""Shared pytest fixtures: real ``docker-registry`` servers per test, image cache, failure diagnostics.

This module owns the registry fixtures (a factory plus one fixture per mode and ``any_registry``
parametrized over http/https/basic/token), the ``redis_server`` fixture, the session-wide
generated-layer cache, and the report hook that attaches the tail of every registry log a failing
test started to its report.
"""

from __future__ import annotations

import shutil
import signal
import threading
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from servers.redis_server import REDIS_BIN, RedisServer, stop_all_redis
from servers.registry import MODES, REGISTRY_BIN, Mode, RegistryFactory, RegistryServer, stop_all_registries

_REGISTRIES = pytest.StashKey[list[RegistryServer]]()
_LOG_LINES = 200


@pytest.fixture
def registry_factory(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RegistryFactory]:
    """Start any number of registries for one test; all are stopped when the test ends.

    Keyword arguments go to :class:`servers.registry.RegistryServer` (``tls``, ``delete``,
    ``extra_config``, ``users``, ``token_server``, ``acl``, ...).
    """
    if shutil.which(REGISTRY_BIN) is None:
        pytest.skip(f"{REGISTRY_BIN} is not installed")
    started = request.node.stash.setdefault(_REGISTRIES, [])
    # A fresh base per test, outside tmp_path so tests keep tmp_path for themselves.
    base = tmp_path_factory.mktemp("registries")

    def start(mode: Mode = "http", **kwargs: Any) -> RegistryServer:
        server = RegistryServer(base / f"{len(started)}-{mode}", mode, **kwargs)
        started.append(server)
        return server.start()

    try:
        yield start
    finally:
        for server in reversed(started):
            server.stop()


@pytest.fixture
def http_registry(registry_factory: RegistryFactory) -> RegistryServer:
    """Plain-HTTP registry, no auth, delete disabled."""
    return registry_factory("http")


@pytest.fixture
def https_registry(registry_factory: RegistryFactory) -> RegistryServer:
    """TLS registry (cert from the shared test CA), no auth."""
    return registry_factory("https")


@pytest.fixture
def basic_registry(registry_factory: RegistryFactory) -> RegistryServer:
    """TLS registry with htpasswd basic auth; credentials in ``.username``/``.password`` (alice)."""
    return registry_factory("basic")


@pytest.fixture
def token_registry(registry_factory: RegistryFactory) -> RegistryServer:
    """TLS registry with bearer-token auth and its own token server (``.token_server``).

    Users: ``alice``/``secret`` (pull, push, delete everywhere, catalog) and ``reader``/``reader-secret``
    (pull only); anonymous is refused.
    """
    return registry_factory("token")


@pytest.fixture
def delete_registry(registry_factory: RegistryFactory) -> RegistryServer:
    """Plain-HTTP registry with ``storage.delete.enabled``."""
    return registry_factory("http", delete=True)


@pytest.fixture(params=MODES)
def any_registry(request: pytest.FixtureRequest, registry_factory: RegistryFactory) -> RegistryServer:
    """The same test against http, https, basic and token registries (ids are the mode names)."""
    mode: Mode = request.param
    return registry_factory(mode)


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real ``redis-server`` on a free loopback port with its own directory (append-only persistence,
    so ``restart()`` keeps the data); stopped when the test ends."""
    if shutil.which(REDIS_BIN) is None:
        pytest.skip(f"{REDIS_BIN} is not installed")
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def image_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Layer cache shared by every layout generated in this session (``write_layout(cache_dir=...)``)."""
    return tmp_path_factory.mktemp("image-cache")


_REGISTRY_FIXTURES = frozenset(
    {"registry_factory", "http_registry", "https_registry", "basic_registry", "token_registry"}
    | {"delete_registry", "any_registry"}
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Tests that start registries get the `registry` marker, so `-m "not registry"` gives a fast run.
    for item in items:
        if _REGISTRY_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.registry)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        # Only the registries this test started, and only their tails: the logs of a long test can be
        # thousands of access lines.
        for server in item.stash.get(_REGISTRIES, []):
            title = f"registry log: {server.mode} {server.url} (last {_LOG_LINES} lines, {server.log_path})"
            report.sections.append((title, server.log_tail(_LOG_LINES)))
    return report


def pytest_configure(config: pytest.Config) -> None:
    # SIGTERM (CI cancel, `timeout`) would end Python without running fixture finalizers or atexit,
    # orphaning every registry. Turn it into KeyboardInterrupt, which pytest unwinds cleanly.
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _sigterm_to_interrupt)


def _sigterm_to_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # Belt and braces: a registry whose fixture never finalized (e.g. KeyboardInterrupt) dies here.
    stop_all_registries()
    stop_all_redis()
