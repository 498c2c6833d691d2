"""Layer members of classic docker-archives: compression by magic bytes, diff_id checks, bad streams."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regcopy.digest import Digest
from regcopy.errors import StoreError
from regcopy.stores.layers import PreparedLayer, prepare_layer, sniff
from regcopy.stores.tarfiles import TarMember

TAR = b"layer tar bytes " * 500


def _member(tmp_path: Path, data: bytes, pad: bytes = b"HEAD") -> tuple[Path, TarMember]:
    """``data`` stored after a few unrelated bytes, as a member sits inside an archive."""
    path = tmp_path / "archive.bin"
    path.write_bytes(pad + data + b"TAIL")
    return path, TarMember(len(pad), len(data))


def _prepare(tmp_path: Path, data: bytes, diff_id: Digest | None) -> PreparedLayer:
    path, member = _member(tmp_path, data)
    return prepare_layer(path, member, tmp_path, where="test: layer 1", diff_id=diff_id)


@pytest.mark.parametrize(("head", "kind"), [
    (b"\x1f\x8b\x08\x00", "gzip"), (b"\x28\xb5\x2f\xfd\x00", "zstd"), (b"BZh91AY", "bzip2"),
    (b"\xfd7zXZ\x00\x00", "xz"), (b"etc/\x00\x00\x00", "none"), (b"", "none"),
])
def test_sniff(head: bytes, kind: str) -> None:
    assert sniff(head) == kind


def test_plain_tar_is_gzipped_and_its_input_checked(tmp_path: Path) -> None:
    layer = _prepare(tmp_path, TAR, Digest.of(TAR))
    assert layer.compression == "gzip" and layer.checked
    assert isinstance(layer.source, Path) and gzip.decompress(layer.source.read_bytes()) == TAR
    assert layer.digest == Digest.of(layer.source.read_bytes())


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
def test_compressed_members_keep_their_bytes(tmp_path: Path, kind: str) -> None:
    data = gzip.compress(TAR, mtime=0) if kind == "gzip" else zstandard.ZstdCompressor().compress(TAR)
    layer = _prepare(tmp_path, data, Digest.of(TAR))
    assert (layer.compression, layer.checked) == (kind, True)
    assert layer.source == TarMember(4, len(data))
    assert (layer.digest, layer.size) == (Digest.of(data), len(data))


def test_multi_frame_zstd_is_read_to_its_end(tmp_path: Path) -> None:
    """pzstd and podman's chunked writer emit several frames: the diff_id covers all of them."""
    half = len(TAR) // 2
    data = zstandard.ZstdCompressor().compress(TAR[:half]) + zstandard.ZstdCompressor().compress(TAR[half:])
    assert _prepare(tmp_path, data, Digest.of(TAR)).checked


def test_mismatch_names_the_layer_and_leaves_no_temp_file(tmp_path: Path) -> None:
    wrong = Digest.of(b"other")
    with pytest.raises(StoreError, match=r"test: layer 1: .*rootfs.diff_ids says sha256:"):
        _prepare(tmp_path, TAR, wrong)
    assert not list(tmp_path.glob("*.tar.gz"))


@pytest.mark.parametrize("data", [b"\x1f\x8b\x08\x00garbage" * 10, b"\x28\xb5\x2f\xfd" + b"\xff" * 40,
                                  gzip.compress(TAR, mtime=0)[:-9]], ids=["gzip", "zstd", "truncated-gzip"])
def test_corrupt_streams_are_store_errors(tmp_path: Path, data: bytes) -> None:
    with pytest.raises(StoreError, match="not a valid"):
        _prepare(tmp_path, data, Digest.of(TAR))


def test_without_a_diff_id_nothing_is_decompressed(tmp_path: Path) -> None:
    data = gzip.compress(TAR, mtime=0)
    layer = _prepare(tmp_path, data, None)
    assert not layer.checked and layer.digest == Digest.of(data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(magic=st.sampled_from([b"", b"\x1f\x8b", b"\x28\xb5\x2f\xfd", b"BZh", b"\xfd7zXZ\x00"]),
       body=st.binary(max_size=300))
def test_any_member_is_a_layer_or_a_store_error(tmp_path: Path, magic: bytes, body: bytes) -> None:
    """Outside input: whatever the member holds, the answer is a prepared layer or a StoreError."""
    data = magic + body
    try:
        layer = _prepare(tmp_path, data, Digest("sha256", hashlib.sha256(data).hexdigest()))
    except StoreError:
        return
    assert layer.compression in ("gzip", "zstd")
