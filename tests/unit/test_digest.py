"""Digests, incremental hashing and the VerifyingStream size/digest checks."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import AsyncIterator, Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regcopy.digest import Digest, Hasher, VerifyingStream, verify_chunks
from regcopy.errors import ContentError, DigestMismatch, InvalidReference, SizeMismatch

EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
EMPTY_SHA512 = hashlib.sha512(b"").hexdigest()


# --- Digest.parse ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "algorithm", "hex_"),
    [
        (f"sha256:{EMPTY_SHA256}", "sha256", EMPTY_SHA256),
        (f"sha512:{EMPTY_SHA512}", "sha512", EMPTY_SHA512),
        ("sha256:" + "0" * 64, "sha256", "0" * 64),
        ("sha256:" + "f" * 64, "sha256", "f" * 64),
    ],
)
def test_parse_valid(text: str, algorithm: str, hex_: str) -> None:
    d = Digest.parse(text)
    assert (d.algorithm, d.hex) == (algorithm, hex_)
    assert str(d) == text
    assert d.short == f"{algorithm}:{hex_[:12]}"


@pytest.mark.parametrize(
    "text",
    [
        "sha256:" + "a" * 63,  # too short
        "sha256:" + "a" * 65,  # too long
        "sha512:" + "a" * 64,  # sha256 length under sha512
        "sha256:" + "A" * 64,  # uppercase hex
        "SHA256:" + "a" * 64,  # uppercase algorithm
        "sha256:" + "g" * 64,  # not hex
        "sha256:" + " " + "a" * 63,
        "md5:" + "a" * 32,  # unknown algorithm
        "sha384:" + "a" * 96,
        "blake3:" + "a" * 64,
        "a" * 64,  # missing colon
        "sha256" + "a" * 64,
        "",
        ":",
        "sha256:",
    ],
)
def test_parse_invalid(text: str) -> None:
    with pytest.raises(InvalidReference) as info:
        Digest.parse(text)
    assert info.value.part == "digest"
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("value", [None, 42, b"sha256:" + b"a" * 64, ["sha256:" + "a" * 64]])
def test_parse_non_string(value: object) -> None:
    with pytest.raises(InvalidReference):
        Digest.parse(value)  # type: ignore[arg-type]


@given(st.binary(max_size=256))
@settings(max_examples=200)
def test_parse_str_roundtrip(data: bytes) -> None:
    for algorithm in ("sha256", "sha512"):
        d = Digest.of(data, algorithm)
        assert Digest.parse(str(d)) == d


@given(st.text(max_size=150))
@settings(max_examples=300)
def test_parse_arbitrary_text_value_or_invalid_reference(text: str) -> None:
    try:
        d = Digest.parse(text)
    except InvalidReference:
        return
    assert str(d) == text


# --- Digest.of / ordering ---------------------------------------------------


def test_of_known_values() -> None:
    assert str(Digest.of(b"")) == f"sha256:{EMPTY_SHA256}"
    assert Digest.of(b"", "sha512") == Digest("sha512", EMPTY_SHA512)
    assert Digest.of(b"hello") == Digest("sha256", hashlib.sha256(b"hello").hexdigest())
    assert Digest.of(b"a") != Digest.of(b"b")


def test_digest_is_hashable_and_frozen() -> None:
    a, b = Digest.of(b"x"), Digest.parse(str(Digest.of(b"x")))
    assert a == b and hash(a) == hash(b)
    assert len({a, b}) == 1
    with pytest.raises(AttributeError):
        a.hex = "0" * 64  # type: ignore[misc]


# --- Hasher ---------------------------------------------------------------------------------


def test_hasher_counts_and_hashes() -> None:
    h = Hasher()
    h.update(b"hello ")
    h.update(b"")
    h.update(b"world")
    assert h.size == 11
    assert h.digest() == Digest.of(b"hello world")
    assert Digest.of(b"").hasher().digest() == Digest.of(b"")
    assert Digest.of(b"", "sha512").hasher().algorithm == "sha512"


def test_hasher_copy_is_independent() -> None:
    h = Hasher()
    h.update(b"abc")
    snapshot = h.copy()
    h.update(b"def")
    assert snapshot.size == 3 and snapshot.digest() == Digest.of(b"abc")
    assert h.size == 6 and h.digest() == Digest.of(b"abcdef")
    snapshot.update(b"XYZ")
    assert snapshot.digest() == Digest.of(b"abcXYZ")
    assert h.digest() == Digest.of(b"abcdef")  # the original did not see the copy's bytes


# --- verify_chunks --------------------------------------------------------------------------


def test_verify_chunks() -> None:
    data = b"0123456789"
    verify_chunks([data[:3], data[3:]], Digest.of(data), 10)
    verify_chunks([data], Digest.of(data))
    with pytest.raises(SizeMismatch) as size_info:
        verify_chunks([data], Digest.of(data), 11)
    assert (size_info.value.expected, size_info.value.actual) == (11, 10)
    with pytest.raises(DigestMismatch) as digest_info:
        verify_chunks([b"x" * 10], Digest.of(data), 10)
    assert digest_info.value.expected == str(Digest.of(data))
    assert digest_info.value.actual == str(Digest.of(b"x" * 10))


# --- VerifyingStream ------------------------------------------------------------------------


async def agen(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def collect(stream: VerifyingStream) -> list[bytes]:
    return [chunk async for chunk in stream]


async def test_stream_passes_all_bytes() -> None:
    data = bytes(range(256)) * 10
    chunks = [data[i : i + 100] for i in range(0, len(data), 100)]
    stream = VerifyingStream(agen(chunks), Digest.of(data), len(data))
    out = await collect(stream)
    assert out == chunks
    assert stream.hasher.size == len(data)


async def test_stream_without_size_checks_digest_only() -> None:
    data = b"payload"
    assert b"".join(await collect(VerifyingStream(agen([data]), Digest.of(data)))) == data
    with pytest.raises(DigestMismatch):
        await collect(VerifyingStream(agen([data + b"!"]), Digest.of(data)))


async def test_stream_wrong_bytes_fail_at_end() -> None:
    data = b"a" * 30
    wrong = b"b" * 30
    stream = VerifyingStream(agen([wrong[:10], wrong[10:20], wrong[20:]]), Digest.of(data), 30, what="blob X")
    seen: list[bytes] = []

    async def drain() -> None:
        async for chunk in stream:
            seen.append(chunk)  # noqa: PERF401 - keep what flowed before the error

    with pytest.raises(DigestMismatch) as info:
        await drain()
    # Same size: every chunk flows, and the mismatch surfaces only when the source ends.
    assert b"".join(seen) == wrong
    assert info.value.expected == str(Digest.of(data))
    assert info.value.actual == str(Digest.of(wrong))
    assert "blob X" in str(info.value)


async def test_stream_short_is_size_mismatch() -> None:
    data = b"0123456789"
    with pytest.raises(SizeMismatch) as info:
        await collect(VerifyingStream(agen([data[:4], data[4:7]]), Digest.of(data), 10))
    assert (info.value.expected, info.value.actual) == (10, 7)


async def test_stream_overlong_fails_before_source_ends() -> None:
    produced = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal produced
        while True:
            produced += 1
            yield b"x" * 4

    data = b"x" * 10
    stream = VerifyingStream(endless(), Digest.of(data), 10)
    passed: list[bytes] = []

    async def drain() -> None:
        async for chunk in stream:
            passed.append(chunk)  # noqa: PERF401 - keep what flowed before the error

    with pytest.raises(SizeMismatch) as info:
        await drain()
    assert (info.value.expected, info.value.actual) == (10, 12)
    assert produced == 3  # cut off at the chunk that overran
    assert sum(map(len, passed)) == 8  # the overrunning chunk is not handed on


async def test_stream_overlong_finite_is_size_mismatch_not_digest() -> None:
    data = b"abc"
    with pytest.raises(SizeMismatch):
        await collect(VerifyingStream(agen([b"abcd"]), Digest.of(data), 3))


async def test_stream_ignores_empty_chunks() -> None:
    data = b"hello"
    stream = VerifyingStream(agen([b"", b"he", b"", b"", b"llo", b""]), Digest.of(data), 5)
    assert await collect(stream) == [b"he", b"llo"]
    empty = VerifyingStream(agen([b"", b""]), Digest.of(b""), 0)
    assert await collect(empty) == []
    assert empty.hasher.size == 0


async def test_stream_sha512() -> None:
    data = b"z" * 1000
    expected = Digest.of(data, "sha512")
    assert b"".join(await collect(VerifyingStream(agen([data[:1], data[1:]]), expected, 1000))) == data
    with pytest.raises(DigestMismatch):
        await collect(VerifyingStream(agen([b"y" * 1000]), expected, 1000))


def _chunkings(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@given(data=st.binary(max_size=2048), cuts=st.lists(st.integers(min_value=0, max_value=4096), max_size=20),
       empties=st.integers(min_value=0, max_value=3))
@settings(max_examples=300, deadline=None)
async def test_stream_any_chunking_verifies(data: bytes, cuts: list[int], empties: int) -> None:
    chunks = _chunkings(data, cuts)
    chunks = [b""] * empties + chunks  # empty chunks anywhere are ignored
    stream = VerifyingStream(agen(chunks), Digest.of(data), len(data))
    assert b"".join(await collect(stream)) == data
    assert stream.hasher.size == len(data)


@given(data=st.binary(min_size=1, max_size=512), cuts=st.lists(st.integers(0, 1024), max_size=10),
       flip=st.integers(min_value=0))
@settings(max_examples=200, deadline=None)
async def test_stream_any_corruption_is_detected(data: bytes, cuts: list[int], flip: int) -> None:
    i = flip % len(data)
    bad = data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]
    with pytest.raises(ContentError):
        await collect(VerifyingStream(agen(_chunkings(bad, cuts)), Digest.of(data), len(data)))
