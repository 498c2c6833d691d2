"""Random response headers (and a few hostile bodies) through the real code paths: only regcopy errors
(or success) come out.

One hostile registry per test (``servers.hostile_registry``, real aiohttp on loopback) answers with a
generated value for one header; a fresh client drives the operation that reads it (the probe, tag
listing, manifest HEAD/GET, blob GET with resume, upload POST/PATCH/status/PUT, a 429's wait). Every
name resolves to 127.0.0.1 (a Location or realm naming some host must not leave the machine), and
every example is bounded by ``fail_after``: a hang fails like a traceback does.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import regcopy
from regcopy.registry import blobs, manifests
from regcopy.registry.transport import Transport
from servers.hostile_registry import HostileRegistry
from servers.images import layout_contents

EXAMPLES = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
Operation = Callable[[Transport], Awaitable[Any]]

# ---------------------------------------------------------------------------------- values

_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=80)
_ascii = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80)
_number = st.one_of(st.integers(-5, 10**25).map(str), st.sampled_from(["", " 1", "1.5", "0x10", "²", "١٢", "-0",
                                                                        "9" * 5000]))
_host = st.sampled_from(["127.0.0.1", "localhost", "[::1]", "[bad", "", "user:pw@127.0.0.1", "127.0.0.1:99999",
                         "127.0.0.1:0", "é.example", "a b", "%zz"])
_url = st.builds(lambda scheme, host, path, query: f"{scheme}{host}{path}{query}",
                 st.sampled_from(["http://", "https://", "ftp://", "//", "", "http:", "HTTP://", "javascript:"]),
                 _host, st.sampled_from(["", "/", "/v2/app/tags/list", "/../x", "/%2e%2e/", "/\t"]),
                 st.sampled_from(["", "?last=a", "?X-Amz-Credential=SECRET", "#frag", "?" + "a" * 300]))
_digest = st.one_of(
    st.builds(lambda alg, hex_: f"{alg}:{hex_}", st.sampled_from(["sha256", "sha512", "SHA256", "md5", ""]),
              st.text("0123456789abcdefABCDEF", max_size=130)),
    _ascii,
)
_link = st.one_of(st.builds(lambda url, rel: f"<{url}>; rel={rel}", _url,
                            st.sampled_from(['"next"', "next", '"prev"', '"next', "", '"next"; x'])), _ascii)
_content_range = st.one_of(st.builds(lambda a, b, c: f"bytes {a}-{b}/{c}", _number, _number, st.one_of(_number,
                                                                                                        st.just("*"))),
                           _ascii)
_upload_range = st.one_of(st.builds(lambda a, b: f"{a}-{b}", _number, _number),
                          st.builds(lambda a, b: f"bytes={a}-{b}", _number, _number), _ascii)
_retry_after = st.one_of(_number, st.sampled_from(["Wed, 21 Oct 2015 07:28:00 GMT", "Fri, 31 Dec 9999 23:59:59 GMT",
                                                   "Mon, 32 Foo 2020 99:99:99 GMT"]), _ascii)
_challenge = st.one_of(
    st.builds(lambda scheme, realm, rest: f'{scheme} realm="{realm}"{rest}',
              st.sampled_from(["Bearer", "Basic", "bearer", "Digest", "Bearer,", ""]), _url,
              st.sampled_from(["", ',service="s"', ',scope="repository:app:pull"', ",error=insufficient_scope",
                               ', service="', ",,,", ',scope="' + "x:" * 200 + '"'])),
    _ascii,
)


def values(specific: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Mostly header-shaped values, some plain noise (ASCII and any character a header can carry)."""
    return st.one_of(specific, specific, _ascii, _text)


# ---------------------------------------------------------------------------------- the harness


class _Loopback(AbstractResolver):
    """Every name is 127.0.0.1: a generated Location or realm cannot make the client leave the machine."""

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        return [{"hostname": host, "host": "127.0.0.1", "port": port, "family": socket.AF_INET, "proto": 0,
                 "flags": socket.AI_NUMERICHOST}]

    async def close(self) -> None:
        return None


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory,
            sample_layout: tuple[Path, dict[str, str]]) -> Iterator[HostileRegistry]:
    with HostileRegistry(tmp_path_factory.mktemp("fuzzed")) as reg:
        reg.put_image(sample_layout[0], "oci", "app")
        yield reg


def drive(reg: HostileRegistry, kind: str, headers: dict[str, str], operation: Operation,
          status: int | None = None) -> None:
    """Answer ``kind`` requests with ``headers`` (and ``status``), run ``operation`` on a fresh client:
    it succeeds or raises a RegcopyError, within a bound."""
    reg.script.headers = {kind: headers}
    reg.script.status = {kind: status} if status else {}

    async def main() -> None:
        settings_ = regcopy.RegistrySettings(scheme="http", retries=1, backoff=0.001, backoff_max=0.005,
                                             request_timeout=3.0, connect_timeout=2.0, probe_timeout=3.0)
        creds = regcopy.StaticCredentials({reg.host: (reg.username, reg.password)})
        connector = aiohttp.TCPConnector(resolver=_Loopback())
        async with (aiohttp.ClientSession(connector=connector, auto_decompress=False) as session,
                    regcopy.Client(session=session, settings={reg.host: settings_}, credentials=creds) as c):
            # Anything but a regcopy error propagates and fails the example; so does a hang.
            with anyio.fail_after(30), contextlib.suppress(regcopy.RegcopyError):
                await operation(c.transport(reg.host))

    try:
        anyio.run(main)
    finally:
        reg.script.headers, reg.script.status = {}, {}


def blob_of(reg: HostileRegistry, layout: Path) -> tuple[regcopy.Digest, int]:
    desc = max(layout_contents(layout, "oci").blobs.values(), key=lambda d: d.size)
    return regcopy.Digest.parse(desc.digest), desc.size


async def _consume(t: Transport, digest: regcopy.Digest, size: int) -> None:
    async for _ in blobs.blob_chunks(t, "app", digest, size, offset=1000, resumes=1):
        pass


async def _upload(t: Transport, data: bytes = b"x" * 1000) -> None:
    location, _ = await blobs.upload_start(t, "app")
    location, _ = await blobs.upload_chunk(t, "app", location, data, 0)
    location, _ = await blobs.upload_status(t, "app", location)
    await blobs.upload_finish(t, "app", location, regcopy.Digest.of(data))


# ---------------------------------------------------------------------------------- the properties


@EXAMPLES
@given(value=values(_url))
def test_upload_location(hostile: HostileRegistry, value: str) -> None:
    async def start(t: Transport) -> None:
        location, _ = await blobs.upload_start(t, "app")
        assert location.startswith(("http://", "https://"))

    drive(hostile, "upload_post", {"Location": value}, start)


@EXAMPLES
@given(value=values(_url))
def test_redirect_location(hostile: HostileRegistry, value: str, sample_layout: tuple[Path, dict[str, str]]) -> None:
    digest, size = blob_of(hostile, sample_layout[0])
    drive(hostile, "blob", {"Location": value}, lambda t: _consume(t, digest, size), status=307)


@EXAMPLES
@given(value=values(_link))
def test_link(hostile: HostileRegistry, value: str) -> None:
    drive(hostile, "tags", {"Link": value}, lambda t: manifests.tags_list(t, "app"))


@EXAMPLES
@given(value=values(_challenge))
def test_www_authenticate(hostile: HostileRegistry, value: str) -> None:
    drive(hostile, "ping", {"WWW-Authenticate": value}, lambda t: manifests.tags_list(t, "app"))


@EXAMPLES
@given(value=values(_content_range))
def test_content_range(hostile: HostileRegistry, value: str, sample_layout: tuple[Path, dict[str, str]]) -> None:
    digest, size = blob_of(hostile, sample_layout[0])
    drive(hostile, "blob", {"Content-Range": value}, lambda t: _consume(t, digest, size))


@EXAMPLES
@given(value=values(_upload_range), kind=st.sampled_from(["upload_patch", "upload_status"]))
def test_upload_range(hostile: HostileRegistry, value: str, kind: str) -> None:
    drive(hostile, kind, {"Range": value}, _upload)


@EXAMPLES
@given(value=values(_digest), kind=st.sampled_from(["manifest", "upload_put"]))
def test_docker_content_digest(hostile: HostileRegistry, value: str, kind: str) -> None:
    async def operation(t: Transport) -> None:
        if kind == "upload_put":
            await _upload(t)
        else:
            await manifests.manifest_head(t, "app", "oci")
            await manifests.manifest_get(t, "app", "oci")

    drive(hostile, kind, {"Docker-Content-Digest": value}, operation)


@EXAMPLES
@given(value=values(_retry_after))
def test_retry_after(hostile: HostileRegistry, value: str) -> None:
    # backoff_max 5 ms caps any wait at 20 ms: a huge or past date must neither hang nor crash.
    drive(hostile, "tags", {"Retry-After": value}, lambda t: manifests.tags_list(t, "app"), status=429)


@EXAMPLES
@given(limit=values(_number), remaining=values(_number))
def test_ratelimit_headers(hostile: HostileRegistry, limit: str, remaining: str) -> None:
    headers = {"ratelimit-limit": limit, "ratelimit-remaining": remaining}
    drive(hostile, "manifest", headers, lambda t: manifests.manifest_get(t, "app", "oci"))


@EXAMPLES
@given(value=values(_number))
def test_oci_chunk_min_length(hostile: HostileRegistry, value: str) -> None:
    async def start(t: Transport) -> None:
        _, min_length = await blobs.upload_start(t, "app")
        assert 0 <= min_length < 10**18

    drive(hostile, "upload_post", {"OCI-Chunk-Min-Length": value}, start)


@pytest.mark.parametrize("kind", ["tags", "catalog"])
def test_listing_nested_beyond_the_json_parser(hostile: HostileRegistry, kind: str) -> None:
    """``[[[[…`` 100 000 deep makes json.loads raise RecursionError, which must be a ProtocolViolation."""
    hostile.script.bodies = {kind: b"[" * 100_000}

    async def listing(t: Transport) -> None:
        with pytest.raises(regcopy.ProtocolViolation, match="not JSON"):
            await (manifests.tags_list(t, "app") if kind == "tags" else manifests.catalog(t))

    try:
        drive(hostile, kind, {}, listing)
    finally:
        hostile.script.bodies = {}
