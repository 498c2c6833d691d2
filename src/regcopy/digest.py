"""Content digests: the :class:`Digest` value, hashing helpers and :class:`VerifyingStream`.

A digest is ``algorithm:hex`` (OCI image-spec §Digests). sha256 and sha512 are accepted, with the
hex part length-checked; other registered algorithms are rejected because no registry serves them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Final, Self

from regcopy.errors import DigestMismatch, InvalidReference, SizeMismatch

__all__ = ("Digest", "Hasher", "VerifyingStream", "verify_chunks")

_LENGTHS: Final = {"sha256": 64, "sha512": 128}
_HEX = re.compile(r"[a-f0-9]+")


@dataclass(frozen=True, slots=True, order=True)
class Digest:
    """A validated content digest such as ``sha256:e3b0…``."""

    algorithm: str
    hex: str

    @classmethod
    def parse(cls, text: str) -> Self:
        """Parse ``algorithm:hex``.

        :raises InvalidReference: unknown algorithm, wrong length or non-hex characters
        """
        if not isinstance(text, str):
            raise InvalidReference(repr(text), "digest must be a string", part="digest")
        algorithm, sep, encoded = text.partition(":")
        if not sep:
            raise InvalidReference(text, "digest must look like algorithm:hex", part="digest")
        expected = _LENGTHS.get(algorithm)
        if expected is None:
            raise InvalidReference(text, f"unsupported digest algorithm {algorithm!r}", part="digest")
        if len(encoded) != expected:
            raise InvalidReference(
                text, f"{algorithm} digest needs {expected} hex characters, got {len(encoded)}", part="digest"
            )
        if not _HEX.fullmatch(encoded):
            raise InvalidReference(text, "digest hex must be lowercase [a-f0-9]", part="digest")
        return cls(algorithm, encoded)

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> Self:
        """The digest of ``data``."""
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    def hasher(self) -> Hasher:
        """A fresh incremental hasher of this digest's algorithm."""
        return Hasher(self.algorithm)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    @property
    def short(self) -> str:
        """``algorithm:`` plus the first 12 hex characters, for humans."""
        return f"{self.algorithm}:{self.hex[:12]}"


class Hasher:
    """Incremental hashing that also counts bytes."""

    __slots__ = ("_h", "algorithm", "size")

    def __init__(self, algorithm: str = "sha256") -> None:
        self.algorithm = algorithm
        self._h = hashlib.new(algorithm)
        self.size = 0

    def update(self, data: bytes) -> None:
        """Feed ``data``."""
        self._h.update(data)
        self.size += len(data)

    def digest(self) -> Digest:
        """The digest of everything fed so far."""
        return Digest(self.algorithm, self._h.hexdigest())

    def copy(self) -> Hasher:
        """An independent copy of the current state (used to checkpoint a resumable stream)."""
        other = Hasher.__new__(Hasher)
        other.algorithm = self.algorithm
        other._h = self._h.copy()
        other.size = self.size
        return other


def _check(hasher: Hasher, expected: Digest, size: int | None, what: str) -> None:
    if size is not None and hasher.size != size:
        raise SizeMismatch(size, hasher.size, what=what)
    actual = hasher.digest()
    if actual != expected:
        raise DigestMismatch(str(expected), str(actual), what=what)


class VerifyingStream:
    """Wraps an async byte-chunk iterator; checks size and digest while bytes flow.

    The size check fires as soon as the stream overruns ``size`` (so a registry sending an endless
    body is cut off early); the size and digest checks fire when the source ends, so an upload fed
    by this stream fails before its closing ``PUT ?digest=`` and nothing wrong is committed.
    """

    def __init__(
        self,
        chunks: AsyncIterator[bytes],
        expected: Digest,
        size: int | None = None,
        *,
        what: str = "blob",
    ) -> None:
        self._chunks = chunks
        self.expected = expected
        self.size = size
        self.what = what
        self.hasher = expected.hasher()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes]:
        async for chunk in self._chunks:
            if not chunk:
                continue
            self.hasher.update(chunk)
            if self.size is not None and self.hasher.size > self.size:
                raise SizeMismatch(self.size, self.hasher.size, what=self.what)
            yield chunk
        _check(self.hasher, self.expected, self.size, self.what)


def verify_chunks(chunks: Iterable[bytes], expected: Digest, size: int | None = None, what: str = "blob") -> None:
    """Verify an in-memory sequence of chunks against ``expected`` and ``size``.

    :raises DigestMismatch: the content hashes to another digest
    :raises SizeMismatch: the content has another length
    """
    hasher = expected.hasher()
    for chunk in chunks:
        hasher.update(chunk)
    _check(hasher, expected, size, what)
