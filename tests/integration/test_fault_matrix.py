"""The fault matrix (docs/fault-matrix.md): every protocol step x every fault that applies to it.

One parametrised test per step; each cell puts a :class:`FaultyProxy` in front of the registry (or the
token server) that serves the step and scripts a fault. Recoverable cells (transient faults, fewer
faulted requests than the retry budget) must end in a correct copy, checked with skopeo, with every
faulted request redone exactly once. Unrecoverable cells (a persistent fault, wrong bytes) must end in
the expected regcopy error, after an exact number of attempts where the policy makes it exact, and
leave no destination tag. After a ``429`` with ``Retry-After: 1`` the next attempt must come at least
0.9 s later (backoff alone is 10 ms here). ``docs/fault-matrix.md`` is this file as a table; a cell
marked ``xfail(strict=True, reason="BUG: ...")`` is a regcopy bug the table lists.

Clients use ``retries=3`` and 10 ms backoff; stall cells a 0.4 s read timeout against a 3 s stall;
drip cells (one byte every 0.25 s, which no per-read timeout catches) a 1 s ``request_timeout`` and
a minimum progress of 4 KiB per second of waiting.
Connection faults on GET/HEAD/PUT fault two requests (``times=2``): aiohttp silently retries an
idempotent request once on a broken connection, so the second fault meets regcopy's own retry.
"""

from __future__ import annotations

import email.utils
import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

import regcopy
from servers import skopeo
from servers.faulty_proxy import Fault, FaultyProxy, ProxiedRequest
from servers.images import layout_contents
from servers.registry import REGISTRY_BIN, RegistryFactory, RegistryServer, running_registry
from servers.token_server import TokenServer

# `registry` by hand: the module-scoped source below is not one of the fixtures conftest recognises.
pytestmark = [pytest.mark.skopeo, pytest.mark.registry]

RETRIES = 3
RESTARTS = regcopy.UploadPolicy().restarts  # fresh upload sessions for one blob after a broken one
RESUMES = 3  # Range resumes of one blob download (registry/blobs.py: blob_chunks)
# backoff_max only caps the exponential steps (never reached with 10 ms and 3 retries) and Retry-After
# (capped at 4 x backoff_max): 1 s keeps a "Retry-After: 1" intact.
FAST: dict[str, Any] = {"retries": RETRIES, "backoff": 0.01, "backoff_max": 1.0, "read_timeout": 5.0,
                        "probe_timeout": 5.0}
STALL = 3.0  # seconds a stalled response waits; the stall cells' read timeout is READ_TIMEOUT
READ_TIMEOUT = 0.4
# A drip: one byte every 0.25 s never trips a per-read timeout and would take minutes for a manifest.
# The drip cells bound small answers with a 1 s request_timeout and blobs with 4 KiB per 1 s of waiting.
DRIP = 0.25
DRIP_LIMITS: dict[str, Any] = {"request_timeout": 1.0, "progress_window": 1.0, "progress_bytes": 4096}
SRC, DST, TAG = "src/app", "dst/app", "v1"
HTML = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
NO_DIGEST = "sha256:" + "0" * 64


# ---------------------------------------------------------------- expectations


@dataclass(frozen=True)
class Ok:
    """A correct copy (or listing). The step saw its fault-free requests plus ``redo`` more
    (None: one per faulted request); ``exact=False``: at least the fault-free ones, at most ``redo`` more."""

    redo: int | None = None
    exact: bool = True


@dataclass(frozen=True)
class Fails:
    """The operation raises ``error`` whose text holds ``match``, after exactly ``attempts`` requests of
    the step (None: not asserted) and at most ``at_most``."""

    error: type[BaseException] | tuple[type[BaseException], ...]
    match: str = ""
    attempts: int | None = None
    at_most: int | None = None


Expect = Ok | Fails
Spec = dict[str, Any] | list[dict[str, Any]]


def bug(reason: str) -> pytest.MarkDecorator:
    return pytest.mark.xfail(strict=True, reason=f"BUG: {reason}")


def cell(cid: str, spec: Spec, expect: Expect, *marks: pytest.MarkDecorator) -> Any:
    return pytest.param(spec if isinstance(spec, list) else [spec], expect, id=cid, marks=marks)


def transient(idempotent: bool, **override: Any) -> list[Any]:
    """The columns every request has: a reset before the answer, 5xx, 429 ± Retry-After, a stall.

    ``5xx`` answers 500, then 502, then 503 to three matching requests in a row (a request and its
    retries): every status, and as many faults in a row as the budget allows (3 retries, 3 upload
    restarts). ``override`` maps a column id to an ``Expect`` or ``(Expect, mark, ...)``.
    """
    columns: list[tuple[str, Spec]] = [
        ("reset", {"reset": True, "times": 2 if idempotent else 1}),
        ("5xx", [{"status": 500}, {"status": 502}, {"status": 503}]),
        ("429", {"status": 429}),
        ("429-retry-after", {"status": 429, "headers": {"Retry-After": "1"}}),
        ("stall", {"stall": STALL}),
    ]
    out = []
    for cid, spec in columns:
        given = override.get(cid.replace("-", "_"), Ok())
        expect, marks = (given[0], given[1:]) if isinstance(given, tuple) else (given, ())
        out.append(cell(cid, spec, expect, *marks))
    return out


TRANSIENT = ("reset", "5xx", "429", "429_retry_after", "stall")

# ---------------------------------------------------------------- the bugs found



# ---------------------------------------------------------------- helpers


def client(*, creds: dict[str, tuple[str, str]] | None = None, upload: regcopy.UploadPolicy | None = None,
           **overrides: Any) -> regcopy.Client:
    settings = regcopy.RegistrySettings(scheme="http", **{**FAST, **overrides})
    return regcopy.Client(default_settings=settings, credentials=regcopy.StaticCredentials(creds or {}),
                          upload=upload)


def timeouts(specs: list[dict[str, Any]]) -> dict[str, Any]:
    """Client settings for a cell: a short read timeout when a fault stalls for longer than it."""
    if any(s.get("stall") or (s.get("stall_after_bytes") or (0, 0))[1] >= STALL for s in specs):
        return {"read_timeout": READ_TIMEOUT, "probe_timeout": READ_TIMEOUT}
    if any(s.get("drip") for s in specs):
        return DRIP_LIMITS
    return {}


async def copy(src: str, dst: str, specs: list[dict[str, Any]], *, jobs: int = 6, **kwargs: Any
               ) -> regcopy.CopyResult:
    async with client(**{**timeouts(specs), **kwargs}) as c:
        return await c.copy(f"{src}/{SRC}:oci", f"{dst}/{DST}:{TAG}", jobs=jobs)


async def outcome_of(coro: Any) -> tuple[Any, BaseException | None]:
    try:
        return await coro, None
    except regcopy.RegcopyError as exc:
        return None, exc


def add(proxy: FaultyProxy, method: str, path: str, specs: list[dict[str, Any]]) -> list[Fault]:
    return [proxy.add(Fault(method=method, path=path, **spec)) for spec in specs]


def matching(proxy: FaultyProxy, method: str, path: str) -> list[ProxiedRequest]:
    probe = Fault(method=method, path=path, stall=0)
    return [r for r in proxy.requests if probe._matches(r.method, r.path)]


def successful_tag_puts(server: RegistryServer, repo: str = DST, tag: str = TAG) -> list[str]:
    return [e.path for e in server.access_log()
            if e.method == "PUT" and e.route == f"/v2/{repo}/manifests/{tag}" and 200 <= e.status < 300]


def writes(server: RegistryServer) -> list[str]:
    return [f"{e.method} {e.route}" for e in server.access_log() if e.method in ("POST", "PATCH", "PUT")]


def assert_no_tag(server: RegistryServer, repo: str = DST, tag: str = TAG) -> None:
    """No tag was ever written (access log) and none is there now (HEAD, on registries without auth)."""
    assert successful_tag_puts(server, repo, tag) == []
    if server.mode != "http":
        return
    request = urllib.request.Request(f"{server.url}/v2/{repo}/manifests/{tag}", method="HEAD")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=5)
    assert info.value.code == 404


def assert_retry_after_waited(proxy: FaultyProxy, next_attempt: Callable[[ProxiedRequest, ProxiedRequest], bool]
                              ) -> None:
    """The first request after the ``429 Retry-After: 1`` that ``next_attempt(faulted, r)`` picks came ≥ 0.9 s later."""
    log = proxy.requests
    index = next(i for i, r in enumerate(log) if r.status == 429 and r.action and "status" in r.action)
    faulted = log[index]
    later = [r for r in log[index + 1:] if next_attempt(faulted, r)]
    assert later, f"no attempt after the 429 on {faulted.path}"
    gap = later[0].at - faulted.at
    assert gap >= 0.9, f"next attempt {gap:.3f} s after a 429 with Retry-After: 1"


def same_request(faulted: ProxiedRequest, r: ProxiedRequest) -> bool:
    return r.method == faulted.method and r.path == faulted.path


def any_request(faulted: ProxiedRequest, r: ProxiedRequest) -> bool:
    return True


def check(
    proxy: FaultyProxy, faults: list[Fault], method: str, path: str, baseline: int, expect: Expect,
    outcome: BaseException | None, *, next_attempt: Callable[[ProxiedRequest, ProxiedRequest], bool] = same_request,
) -> None:
    """The common assertions: the faults fired, the outcome, attempt counts, the Retry-After wait."""
    hits = sum(f.hits for f in faults)
    assert hits >= 1, f"the fault never fired: {proxy.requests}"
    seen = len(matching(proxy, method, path))
    if isinstance(expect, Ok):
        if outcome is not None:
            raise outcome
        for f in faults:
            assert f.times == -1 or f.hits == f.times, f"{f.action} fired {f.hits} of {f.times} times"
        redo = hits if expect.redo is None else expect.redo
        if expect.exact:
            assert seen == baseline + redo, f"{seen} {method} requests, expected {baseline} + {redo}"
        else:
            assert baseline <= seen <= baseline + redo, f"{seen} {method} requests, expected {baseline} + ≤ {redo}"
        if any(f.status == 429 and "Retry-After" in f.headers for f in faults):
            assert_retry_after_waited(proxy, next_attempt)
    else:
        assert outcome is not None, "the operation succeeded"
        if not isinstance(outcome, expect.error):
            raise AssertionError(f"expected {expect.error}, got {type(outcome).__name__}: {outcome}") from outcome
        assert expect.match.lower() in str(outcome).lower(), str(outcome)
        if expect.attempts is not None:
            assert seen == expect.attempts, f"{seen} {method} requests, expected exactly {expect.attempts}"
        if expect.at_most is not None:
            assert 1 <= seen <= expect.at_most, f"{seen} {method} requests, expected at most {expect.at_most}"


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory, sample_layout: tuple[Path, dict[str, str]]
           ) -> Iterator[tuple[RegistryServer, str]]:
    """One read-only source registry for the module, holding ``src/app:oci`` (config, a 200 KB and a
    64 KB layer), and its digest. Seeding once saves a skopeo push per cell."""
    if shutil.which(REGISTRY_BIN) is None:
        pytest.skip(f"{REGISTRY_BIN} is not installed")
    layout, digests = sample_layout
    with running_registry(tmp_path_factory.mktemp("matrix-source")) as server:
        digest = skopeo.seed(server, layout, "oci", SRC, "oci")
        assert digest == digests["oci"]
        yield server, digest


@pytest.fixture
def src_proxy(source: tuple[RegistryServer, str]) -> Iterator[FaultyProxy]:
    with FaultyProxy(source[0].url) as proxy:
        yield proxy


@pytest.fixture
def base_layer(sample_layout: tuple[Path, dict[str, str]]) -> str:
    """Digest of the 200 KB layer of ``oci`` (big enough to cut mid-body)."""
    blobs = layout_contents(sample_layout[0], "oci").blobs
    return max(blobs, key=lambda d: blobs[d].size)


# ---------------------------------------------------------------- ping

PING = r"^/v2/$"
PING_CELLS = [
    *transient(True, **{k: Ok() for k in TRANSIENT}),
    # The probe only needs the status: whatever happens to the body does not matter.
    cell("reset-after-bytes", {"reset_after_bytes": 1}, Ok(redo=0)),
    cell("truncate", {"truncate": 1}, Ok(redo=0)),
    cell("corrupt", {"corrupt": True}, Ok(redo=0)),
    cell("garbage", {"garbage": HTML}, Ok(redo=0)),
    cell("503-forever", {"status": 503, "times": -1},
         Fails(regcopy.TransportError, "no usable /v2/ endpoint", at_most=1 + RETRIES)),
]


@pytest.mark.parametrize(("specs", "expect"), [
    *PING_CELLS,
    # The source's probe is the same code: two cells show it.
    *(pytest.param(*p.values, id=f"src-{p.id}", marks=p.marks) for p in PING_CELLS if p.id in ("reset", "5xx")),
])
async def test_ping(
    specs: list[dict[str, Any]], expect: Expect, request: pytest.FixtureRequest, source: tuple[RegistryServer, str],
    src_proxy: FaultyProxy, dst: RegistryServer, dst_proxy: FaultyProxy,
) -> None:
    """``GET /v2/`` of the destination (or the source, ``src-*``): the first request of each side of a copy."""
    _, digest = source
    proxy = src_proxy if request.node.callspec.id.startswith("src-") else dst_proxy
    faults = add(proxy, "GET", PING, specs)
    _, outcome = await outcome_of(copy(src_proxy.host, dst_proxy.host, specs))
    check(proxy, faults, "GET", PING, 1, expect, outcome)
    if isinstance(expect, Ok):
        skopeo.verify(dst, f"{DST}:{TAG}", digest)
    else:
        assert_no_tag(dst)


# ---------------------------------------------------------------- token

TOKEN = r"^/token\?"
TOKEN_CELLS = [
    *transient(True),
    cell("reset-after-bytes", {"reset_after_bytes": 40, "times": 2}, Ok()),
    cell("truncate", {"truncate": 40}, Ok()),
    cell("stall-after-bytes", {"stall_after_bytes": (40, STALL)}, Ok()),
    cell("slow-body", {"stall_after_bytes": (40, 0.05)}, Ok(redo=0)),
    cell("drip", {"drip": DRIP}, Ok()),  # request_timeout ends it, the retry gets the token
    cell("garbage", {"garbage": HTML, "times": -1}, Fails(regcopy.ProtocolViolation, "token", attempts=1)),
    cell("503-forever", {"status": 503, "times": -1},
         Fails(regcopy.AuthenticationError, "token server", attempts=1 + RETRIES)),
    # aiohttp retries each reset GET once: 2 requests per attempt.
    cell("reset-forever", {"reset": True, "times": -1},
         Fails(regcopy.AuthenticationError, "unreachable", attempts=2 * (1 + RETRIES))),
]


@pytest.fixture
def token_setup(registry_factory: RegistryFactory, tmp_path: Path) -> Iterator[tuple[RegistryServer, FaultyProxy]]:
    """A plain-http registry with bearer auth whose realm is a proxy in front of its token server."""
    with TokenServer(tmp_path / "token") as tokens, FaultyProxy(tokens.url) as proxy:
        registry = registry_factory("token", tls=False, token_server=tokens,
                                    extra_config={"auth": {"token": {"realm": f"{proxy.url}/token"}}})
        yield registry, proxy


@pytest.mark.parametrize(("specs", "expect"), TOKEN_CELLS)
async def test_token(
    specs: list[dict[str, Any]], expect: Expect, source: tuple[RegistryServer, str],
    token_setup: tuple[RegistryServer, FaultyProxy],
) -> None:
    """The token GET of a bearer-auth destination (one token, pull,push, serves the whole copy)."""
    src, digest = source
    registry, proxy = token_setup
    assert registry.username and registry.password
    faults = add(proxy, "GET", TOKEN, specs)
    creds = {registry.host: (registry.username, registry.password)}
    _, outcome = await outcome_of(copy(src.host, registry.host, specs, creds=creds))
    check(proxy, faults, "GET", TOKEN, 1, expect, outcome)
    proxy.clear()  # skopeo below gets its tokens through the same proxy
    if isinstance(expect, Ok):
        skopeo.verify(registry, f"{DST}:{TAG}", digest)
    else:
        assert_no_tag(registry)
        assert writes(registry) == []


# ---------------------------------------------------------------- catalog, tags list


def listing_cells(only: tuple[str, ...] = ()) -> list[Any]:
    """The listing columns (``only``: a subset, by id)."""
    cells = [
        *transient(True),
        cell("reset-after-bytes", {"reset_after_bytes": 10}, Ok()),
        cell("truncate", {"truncate": 10}, Ok()),
        cell("stall-after-bytes", {"stall_after_bytes": (10, STALL)}, Ok()),
        cell("slow-body", {"stall_after_bytes": (10, 0.05)}, Ok(redo=0)),
        cell("drip", {"drip": DRIP}, Ok()),
        # A listing carries no digest: a flipped byte is caught only where it breaks the JSON (it does here).
        cell("corrupt", {"corrupt": True, "times": -1}, Fails(regcopy.ProtocolViolation, "not JSON", attempts=1)),
        cell("garbage", {"garbage": HTML, "times": -1}, Fails(regcopy.ProtocolViolation, "not JSON", attempts=1)),
        cell("503-forever", {"status": 503, "times": -1}, Fails(regcopy.RegistryError, "HTTP 503",
                                                                  attempts=1 + RETRIES)),
    ]
    return [c for c in cells if not only or c.id in only]


CATALOG = r"^/v2/_catalog"
TAGS = rf"^/v2/{SRC}/tags/list"


# The catalog and the tags list share every line of code (manifests._paginate -> Transport.request): the
# catalog runs a subset, one cell per kind of fault.
@pytest.mark.parametrize(("specs", "expect"), listing_cells(("reset", "5xx", "429-retry-after", "truncate",
                                                              "drip", "garbage", "503-forever")))
async def test_catalog(
    specs: list[dict[str, Any]], expect: Expect, source: tuple[RegistryServer, str], src_proxy: FaultyProxy
) -> None:
    faults = add(src_proxy, "GET", CATALOG, specs)
    async with client(**timeouts(specs)) as c:
        repos, outcome = await outcome_of(c.catalog(src_proxy.host))
    check(src_proxy, faults, "GET", CATALOG, 1, expect, outcome)
    assert outcome is not None or repos == [SRC]


@pytest.mark.parametrize(("specs", "expect"), listing_cells())
async def test_tags_list(
    specs: list[dict[str, Any]], expect: Expect, source: tuple[RegistryServer, str], src_proxy: FaultyProxy
) -> None:
    faults = add(src_proxy, "GET", TAGS, specs)
    async with client(**timeouts(specs)) as c:
        tags, outcome = await outcome_of(c.tags(f"{src_proxy.host}/{SRC}"))
    check(src_proxy, faults, "GET", TAGS, 1, expect, outcome)
    assert outcome is not None or tags == ["oci"]




@pytest.mark.parametrize("form", ["http-date", "3600"])
async def test_retry_after_forms(form: str, source: tuple[RegistryServer, str], src_proxy: FaultyProxy) -> None:
    """``Retry-After`` as an HTTP date is waited out; a huge one is capped at 4 x backoff_max (1 s here)."""
    value = email.utils.formatdate(time.time() + 2, usegmt=True) if form == "http-date" else form
    faults = add(src_proxy, "GET", TAGS, [{"status": 429, "headers": {"Retry-After": value}}])
    async with client(backoff_max=0.25) as c:
        with anyio.move_on_after(3) as timer:
            tags, outcome = await outcome_of(c.tags(f"{src_proxy.host}/{SRC}"))
    assert not timer.cancelled_caught, "still waiting 3 s after the 429 (the cap is 1 s)"
    if form == "http-date":
        check(src_proxy, faults, "GET", TAGS, 1, Ok(), outcome)  # a gap of at least 0.9 s
        assert tags == ["oci"]
    else:
        # Bounded either way: the retry after at most the cap (plus scheduling), or a prompt RateLimited.
        assert outcome is None or isinstance(outcome, regcopy.RateLimited), outcome
        log = matching(src_proxy, "GET", TAGS)
        assert len(log) == 1 or log[1].at - log[0].at <= 2.0


# ---------------------------------------------------------------- manifest HEAD (destination tag)

MANIFEST_PATH = rf"^/v2/{DST}/manifests/{TAG}$"
MANIFEST_HEAD_CELLS = [
    *transient(True),
    cell("503-forever", {"status": 503, "times": -1}, Fails(regcopy.RegistryError, "HTTP 503", attempts=1 + RETRIES)),
    # The tag already holds the image, but HEAD reports another digest: the manifest is pushed again.
    cell("wrong-digest-header", {"set_headers": {"Docker-Content-Digest": NO_DIGEST}}, Ok(redo=0)),
    cell("garbage-digest-header", {"set_headers": {"Docker-Content-Digest": "<html>"}, "times": -1},
         Fails(regcopy.ProtocolViolation, "Docker-Content-Digest", attempts=1)),
]


@pytest.mark.parametrize(("specs", "expect"), MANIFEST_HEAD_CELLS)
async def test_manifest_head(
    specs: list[dict[str, Any]], expect: Expect, source: tuple[RegistryServer, str], dst: RegistryServer,
    dst_proxy: FaultyProxy,
) -> None:
    """``HEAD`` of the destination tag (is it up to date?), the first request a copy sends there."""
    src, digest = source
    header_cell = "set_headers" in specs[0]
    if header_cell:
        await copy(src.host, dst.host, [])  # the tag exists, so HEAD answers 200 with a digest to edit
    faults = add(dst_proxy, "HEAD", MANIFEST_PATH, specs)
    result, outcome = await outcome_of(copy(src.host, dst_proxy.host, specs))
    check(dst_proxy, faults, "HEAD", MANIFEST_PATH, 1, expect, outcome)
    if header_cell:
        # The tag of the first, fault-free copy; pushed again (same bytes) when HEAD lied.
        assert len(successful_tag_puts(dst)) == (2 if isinstance(expect, Ok) else 1)
        skopeo.verify(dst, f"{DST}:{TAG}", digest)
    elif isinstance(expect, Ok):
        assert not result.up_to_date
        skopeo.verify(dst, f"{DST}:{TAG}", digest)
    else:
        assert_no_tag(dst)
        assert writes(dst) == []


# ---------------------------------------------------------------- manifest GET (source)

SRC_MANIFEST = rf"^/v2/{SRC}/manifests/oci$"
MANIFEST_GET_CELLS = [
    *transient(True),
    cell("reset-after-bytes", {"reset_after_bytes": 100}, Ok()),
    cell("truncate", {"truncate": 100}, Ok()),
    cell("stall-after-bytes", {"stall_after_bytes": (100, STALL)}, Ok()),
    cell("slow-body", {"stall_after_bytes": (100, 0.05)}, Ok(redo=0)),
    cell("drip", {"drip": DRIP}, Ok()),
    # By tag, the bytes are checked against Docker-Content-Digest.
    cell("corrupt", {"corrupt": True, "times": -1}, Fails(regcopy.DigestMismatch, "manifest", attempts=1)),
    cell("garbage", {"garbage": b'{"schemaVersion": 2, "layers": []}', "times": -1},
         Fails(regcopy.DigestMismatch, "manifest", attempts=1)),
    cell("503-forever", {"status": 503, "times": -1}, Fails(regcopy.RegistryError, "HTTP 503", attempts=1 + RETRIES)),
    cell("404-forever", {"status": 404, "times": -1}, Fails(regcopy.ManifestNotFound, "", attempts=1)),
]


@pytest.mark.parametrize(("specs", "expect"), MANIFEST_GET_CELLS)
async def test_manifest_get(
    specs: list[dict[str, Any]], expect: Expect, source: tuple[RegistryServer, str], src_proxy: FaultyProxy,
    dst: RegistryServer,
) -> None:
    """``GET`` of the source manifest by tag (by digest: ``test_faults.py``)."""
    _, digest = source
    faults = add(src_proxy, "GET", SRC_MANIFEST, specs)
    _, outcome = await outcome_of(copy(src_proxy.host, dst.host, specs))
    check(src_proxy, faults, "GET", SRC_MANIFEST, 1, expect, outcome)
    if isinstance(expect, Ok):
        skopeo.verify(dst, f"{DST}:{TAG}", digest)
    else:
        assert_no_tag(dst)
        assert writes(dst) == []


# ---------------------------------------------------------------- manifest PUT (destination)

MANIFEST_PUT_CELLS = [
    *transient(True),
    cell("reset-request-body", {"request_reset_after_bytes": 100, "times": 2}, Ok()),
    cell("drop-response", {"drop_response": True, "times": 2}, Ok()),  # stored, but the client never heard
    cell("garbage", {"garbage": HTML}, Ok(redo=0)),
    # The registry stored the manifest (a complete image) but reports another digest.
    cell("wrong-digest-header", {"set_headers": {"Docker-Content-Digest": NO_DIGEST}, "times": -1},
         Fails(regcopy.DigestMismatch, "manifest pushed", attempts=1)),
    cell("500-forever", {"status": 500, "times": -1}, Fails(regcopy.RegistryError, "HTTP 500", attempts=1 + RETRIES)),
    cell("reset-forever", {"reset": True, "times": -1},
         Fails(regcopy.TransportError, "", attempts=2 * (1 + RETRIES))),
]


@pytest.mark.parametrize(("specs", "expect"), MANIFEST_PUT_CELLS)
async def test_manifest_put(
    specs: list[dict[str, Any]], expect: Expect, source: tuple[RegistryServer, str], dst: RegistryServer,
    dst_proxy: FaultyProxy,
) -> None:
    """``PUT`` of the manifest under the destination tag, after every blob is there."""
    src, digest = source
    faults = add(dst_proxy, "PUT", MANIFEST_PATH, specs)
    _, outcome = await outcome_of(copy(src.host, dst_proxy.host, specs))
    check(dst_proxy, faults, "PUT", MANIFEST_PATH, 1, expect, outcome)
    if isinstance(expect, Ok) or "set_headers" in specs[0]:
        skopeo.verify(dst, f"{DST}:{TAG}", digest)  # a lying digest header: the stored image is complete
    else:
        assert_no_tag(dst)


# ---------------------------------------------------------------- blob HEAD (destination)

BLOB_HEAD = rf"^/v2/{DST}/blobs/sha256:"
BLOB_HEAD_CELLS = [
    *transient(True),
    cell("503-forever", {"status": 503, "times": -1}, Fails(regcopy.RegistryError, "HTTP 503", attempts=1 + RETRIES)),
    cell("reset-forever", {"reset": True, "times": -1},
         Fails(regcopy.TransportError, "", attempts=2 * (1 + RETRIES))),
    # A lying 200 for a missing blob: the blob is skipped and 2.8.2 refuses the manifest that needs it.
    cell("wrong-200", {"status": 200, "headers": {"Content-Length": "3"}},
         Fails(regcopy.RegistryError, "MANIFEST_BLOB_UNKNOWN", attempts=3)),
]


@pytest.mark.parametrize(("specs", "expect"), BLOB_HEAD_CELLS)
async def test_blob_head(
    specs: list[dict[str, Any]], expect: Expect, source: tuple[RegistryServer, str], dst: RegistryServer,
    dst_proxy: FaultyProxy,
) -> None:
    """``HEAD`` of each blob on the destination (config + 2 layers, one at a time)."""
    src, digest = source
    faults = add(dst_proxy, "HEAD", BLOB_HEAD, specs)
    _, outcome = await outcome_of(copy(src.host, dst_proxy.host, specs, jobs=1))
    check(dst_proxy, faults, "HEAD", BLOB_HEAD, 3, expect, outcome)
    if isinstance(expect, Ok):
        skopeo.verify(dst, f"{DST}:{TAG}", digest)
    else:
        assert_no_tag(dst)


# ---------------------------------------------------------------- blob GET (source)

BLOB_GET_CELLS = [
    *transient(True),
    # Broken bodies resume with Range: bytes=N- (one more GET, answered 206).
    cell("reset-after-bytes", {"reset_after_bytes": 100_000}, Ok()),
    cell("truncate", {"truncate": 100_000}, Ok()),
    cell("stall-after-bytes", {"stall_after_bytes": (100_000, STALL)}, Ok()),
    # Under the minimum-progress rule: a timeout after 1 s of waiting, resumed with Range.
    cell("drip", {"drip": DRIP}, Ok()),
    cell("corrupt", {"corrupt": True, "times": -1}, Fails(regcopy.DigestMismatch, "", attempts=1)),
    # A short HTML page instead of the blob: the body ends early, the rest comes with Range, and the
    # whole fails its digest.
    cell("garbage", {"garbage": HTML}, Fails(regcopy.DigestMismatch, "", attempts=2)),
    cell("503-forever", {"status": 503, "times": -1},
         Fails(regcopy.RegistryError, "HTTP 503", attempts=1 + RETRIES)),
    cell("reset-after-headers-forever", {"reset_after_bytes": 0, "times": -1},
         Fails(regcopy.TransportError, "/v2/src/app/blobs/", attempts=1 + RESUMES)),
]


@pytest.mark.parametrize(("specs", "expect"), BLOB_GET_CELLS)
async def test_blob_get(
    specs: list[dict[str, Any]], expect: Expect, source: tuple[RegistryServer, str], src_proxy: FaultyProxy,
    dst: RegistryServer, base_layer: str,
) -> None:
    """``GET`` of the 200 KB layer on the source (its bytes stream straight into the upload)."""
    _, digest = source
    path = rf"^/v2/{SRC}/blobs/{base_layer}$"
    faults = add(src_proxy, "GET", path, specs)
    _, outcome = await outcome_of(copy(src_proxy.host, dst.host, specs, jobs=1))
    check(src_proxy, faults, "GET", path, 1, expect, outcome)
    if isinstance(expect, Ok):
        skopeo.verify(dst, f"{DST}:{TAG}", digest)
        if any(k in specs[0] for k in ("reset_after_bytes", "truncate", "stall_after_bytes", "drip")):
            assert matching(src_proxy, "GET", path)[-1].status == 206
    else:
        assert_no_tag(dst)
        assert [w for w in writes(dst) if "/manifests/" in w] == []


# ---------------------------------------------------------------- uploads (destination)

# The session-opening POST asks for a mount by digest alone (2.8.2 answers it with a plain session).
POST = rf"^/v2/{DST}/blobs/uploads/(\?mount=sha256:[0-9a-f]{{64}})?$"
PATCH = rf"^/v2/{DST}/blobs/uploads/[^?]+\?"
CLOSE = rf"^/v2/{DST}/blobs/uploads/[^?]+\?.*digest=sha256"
BOGUS_LOCATION = {"set_headers": {"Location": f"/v2/{DST}/blobs/uploads/00000000-0000-0000-0000-000000000000"
                                              "?_state=bogus"}}
STREAMED = regcopy.UploadPolicy(small_blob=0)  # every blob as POST, one PATCH, closing PUT

UPLOAD_POST_CELLS = [
    *transient(False),
    cell("drop-response", {"drop_response": True}, Ok()),  # a session opened, its Location lost
    cell("garbage", {"garbage": HTML}, Ok(redo=0)),
    # A Location naming no session: its first use is 404 BLOB_UPLOAD_UNKNOWN, the blob starts over.
    cell("wrong-location", BOGUS_LOCATION, Ok()),
    cell("reset-forever", {"reset": True, "times": -1}, Fails(regcopy.TransportError, "", attempts=1 + RESTARTS)),
    cell("500-forever", {"status": 500, "times": -1}, Fails(regcopy.RegistryError, "HTTP 500", attempts=1 + RESTARTS)),
]


@pytest.mark.parametrize(("specs", "expect"), UPLOAD_POST_CELLS)
async def test_upload_post(
    specs: list[dict[str, Any]], expect: Expect, source: tuple[RegistryServer, str], dst: RegistryServer,
    dst_proxy: FaultyProxy,
) -> None:
    """``POST`` opening an upload session (3 blobs, one at a time; monolithic ``PUT`` after it)."""
    src, digest = source
    faults = add(dst_proxy, "POST", POST, specs)
    _, outcome = await outcome_of(copy(src.host, dst_proxy.host, specs, jobs=1))
    check(dst_proxy, faults, "POST", POST, 3, expect, outcome, next_attempt=any_request)
    if isinstance(expect, Ok):
        skopeo.verify(dst, f"{DST}:{TAG}", digest)
    else:
        assert_no_tag(dst)


UPLOAD_PATCH_CELLS = [
    *transient(False),
    cell("reset-request-body", {"request_reset_after_bytes": 50_000}, Ok()),
    # The PATCH took effect: the status GET finds every byte there and only the closing PUT is left.
    cell("drop-response", {"drop_response": True}, Ok(redo=1, exact=False)),
    cell("garbage", {"garbage": HTML}, Ok(redo=0)),
    cell("wrong-location", BOGUS_LOCATION, Ok(redo=1, exact=False)),
    cell("reset-forever", {"reset": True, "times": -1},
         Fails(regcopy.TransportError, "", attempts=1 + RESTARTS)),
]


@pytest.mark.parametrize(("specs", "expect"), UPLOAD_PATCH_CELLS)
async def test_upload_patch(
    specs: list[dict[str, Any]], expect: Expect, source: tuple[RegistryServer, str], dst: RegistryServer,
    dst_proxy: FaultyProxy,
) -> None:
    """The streamed ``PATCH`` carrying a whole blob (``small_blob=0``: every blob goes POST, PATCH, PUT)."""
    src, digest = source
    faults = add(dst_proxy, "PATCH", PATCH, specs)
    _, outcome = await outcome_of(copy(src.host, dst_proxy.host, specs, jobs=1, upload=STREAMED))
    check(dst_proxy, faults, "PATCH", PATCH, 3, expect, outcome, next_attempt=any_request)
    if isinstance(expect, Ok):
        skopeo.verify(dst, f"{DST}:{TAG}", digest)
    else:
        assert_no_tag(dst)


UPLOAD_PUT_CELLS = [
    *transient(True),
    cell("reset-request-body", {"request_reset_after_bytes": 50_000}, Ok()),
    # The blob was committed, the client never heard: a status GET says the session is gone, a fresh one
    # closes on the blob that is already there.
    cell("drop-response", {"drop_response": True}, Ok()),
    cell("garbage", {"garbage": HTML}, Ok(redo=0)),
    cell("wrong-digest-header", {"set_headers": {"Docker-Content-Digest": NO_DIGEST}, "times": -1},
         Fails(regcopy.DigestMismatch, "blob stored", attempts=1)),
    cell("500-forever", {"status": 500, "times": -1},
         Fails(regcopy.RegistryError, "HTTP 500", attempts=1 + RESTARTS)),
]


@pytest.mark.parametrize(("specs", "expect"), UPLOAD_PUT_CELLS)
async def test_upload_put(
    specs: list[dict[str, Any]], expect: Expect, source: tuple[RegistryServer, str], dst: RegistryServer,
    dst_proxy: FaultyProxy,
) -> None:
    """The closing ``PUT ?digest=``, carrying the whole blob (monolithic: every sample blob is < 1 MiB)."""
    src, digest = source
    faults = add(dst_proxy, "PUT", CLOSE, specs)
    _, outcome = await outcome_of(copy(src.host, dst_proxy.host, specs, jobs=1))
    check(dst_proxy, faults, "PUT", CLOSE, 3, expect, outcome, next_attempt=any_request)
    if isinstance(expect, Ok):
        skopeo.verify(dst, f"{DST}:{TAG}", digest)
    else:
        assert_no_tag(dst)


# ---------------------------------------------------------------- mount

MOUNT = rf"^/v2/{DST}/blobs/uploads/\?mount=[^&]+&from="
NO_RETRY = {k: Ok(redo=0) for k in TRANSIENT}
MOUNT_CELLS = [
    # A failed mount is never retried: the blob falls back to a plain upload (3 mounts, one per blob);
    # after a 429 that upload waits out Retry-After (the host pause).
    *transient(False, **NO_RETRY),
    cell("drop-response", {"drop_response": True}, Ok(redo=0)),  # mounted, unheard of: uploaded as well
    cell("garbage", {"garbage": HTML}, Ok(redo=0)),
    cell("202-no-location", {"status": 202}, Ok(redo=0)),  # no session to use: plain upload
    # A lying 201 (nothing mounted): 2.8.2 refuses the manifest that needs the blobs.
    cell("wrong-201", {"status": 201, "times": -1}, Fails(regcopy.RegistryError, "MANIFEST_BLOB_UNKNOWN", attempts=3)),
]


@pytest.mark.parametrize(("specs", "expect"), MOUNT_CELLS)
async def test_mount(
    specs: list[dict[str, Any]], expect: Expect, http_registry: RegistryServer, seed: Any
) -> None:
    """``POST ?mount=&from=``: a copy between two repositories of one registry mounts every blob."""
    digest = seed(http_registry, "oci", SRC)
    with FaultyProxy(http_registry.url) as proxy:
        faults = add(proxy, "POST", MOUNT, specs)
        result, outcome = await outcome_of(copy(proxy.host, proxy.host, specs, jobs=1))
        check(proxy, faults, "POST", MOUNT, 3, expect, outcome, next_attempt=any_request)
    if isinstance(expect, Ok):
        assert result.blobs_mounted + result.blobs_uploaded == 3
        skopeo.verify(http_registry, f"{DST}:{TAG}", digest)
    else:
        assert_no_tag(http_registry)


# ---------------------------------------------------------------- the CLI


def cli(*args: str, authfile: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "regcopy", "copy", *args, "--progress", "none", "--authfile", str(authfile)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)


CLI_CELLS = [
    pytest.param("src", "GET", rf"^/v2/{SRC}/blobs/sha256:", {"reset_after_bytes": 30_000}, 0, "",
                 id="blob-get-reset-after-bytes"),
    pytest.param("src", "GET", rf"^/v2/{SRC}/blobs/sha256:", {"corrupt": True, "times": -1}, 1, "digest mismatch",
                 id="blob-get-corrupt"),
    pytest.param("dst", "GET", PING, {"status": 503, "times": -1}, 1, "no usable /v2/ endpoint",
                 id="ping-503-forever"),
    pytest.param("dst", "HEAD", BLOB_HEAD, {"status": 200, "headers": {"Content-Length": "3"}, "times": -1}, 1,
                 "BLOB_UNKNOWN", id="blob-head-wrong-200"),
    pytest.param("dst", "PUT", CLOSE, {"set_headers": {"Docker-Content-Digest": NO_DIGEST}, "times": -1}, 1,
                 "digest mismatch", id="upload-put-wrong-digest-header"),
]


@pytest.mark.parametrize(("side", "method", "path", "spec", "code", "message"), CLI_CELLS)
def test_cli(
    side: str, method: str, path: str, spec: dict[str, Any], code: int, message: str,
    source: tuple[RegistryServer, str], src_proxy: FaultyProxy, dst: RegistryServer, dst_proxy: FaultyProxy,
    empty_authfile: Path,
) -> None:
    """``regcopy copy`` with its default policy: exit 0 and a correct copy, or exit 1, a one-line error, no tag."""
    _, digest = source
    proxy = src_proxy if side == "src" else dst_proxy
    fault = proxy.add(Fault(method=method, path=path, **spec))
    out = cli(f"{src_proxy.host}/{SRC}:oci", f"{dst_proxy.host}/{DST}:{TAG}", "-o", "json", authfile=empty_authfile)
    assert fault.hits >= 1
    assert out.returncode == code, out.stderr
    if code == 0:
        assert json.loads(out.stdout)["digest"] == digest
        skopeo.verify(dst, f"{DST}:{TAG}", digest)
    else:
        assert out.stdout == "" and "Traceback" not in out.stderr
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("regcopy: "), out.stderr
        assert message.lower() in lines[0].lower(), out.stderr
        assert_no_tag(dst)
