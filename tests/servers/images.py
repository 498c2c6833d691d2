"""Deterministic test images: spec dataclasses and a stdlib-only writer of OCI image layouts.

This module owns the bytes of every generated image. The same :class:`LayerSpec` always gives the same
gzip bytes (tar headers pinned, gzip ``mtime=0`` and no file name, a seeded PRNG), so layers shared
between specs are stored once and digests are stable across runs and machines. Layers are generated
streaming to disk in 1 MiB blocks (bounded memory, usable for 1 GiB benchmark layers) and can be cached
by spec in a directory reused across layouts and sessions.

Layout written (OCI image-layout spec): ``oci-layout``, ``index.json`` whose entries carry
``org.opencontainers.image.ref.name`` = tag (what ``skopeo copy oci:DIR:TAG`` looks up), and
``blobs/sha256/<hex>`` for every layer, config and manifest.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import random
import shutil
import tarfile
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal

__all__ = (
    "DOCKER_CONFIG",
    "DOCKER_LAYER",
    "DOCKER_LIST",
    "DOCKER_MANIFEST",
    "INDEX_TYPES",
    "MANIFEST_TYPES",
    "OCI_CONFIG",
    "OCI_INDEX",
    "OCI_LAYER",
    "OCI_MANIFEST",
    "REF_NAME",
    "Descriptor",
    "ImageSpec",
    "IndexSpec",
    "LayerInfo",
    "LayerSpec",
    "LayoutContents",
    "Spec",
    "blob_path",
    "layer_blob",
    "layout_contents",
    "read_blob",
    "tag_digest",
    "write_layout",
)

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
REF_NAME = "org.opencontainers.image.ref.name"

# Bump when the byte layout of generated layers changes, so stale cache entries are never reused.
_GENERATOR_VERSION = 1
_BLOCK = 1 << 20
# Pinned tar metadata: any wall-clock or host value here would break determinism.
_TAR_MTIME = 1_700_000_000
_WORD_TEXT = (
    "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau "
    "upsilon phi chi psi omega config server client registry layer manifest index digest blob upload "
    "mount token scope pull push delete catalog tag repository library binary shared object package "
    "version release build install usr lib share doc bin etc var log cache tmp run opt local include"
)
_WORDS = tuple(_WORD_TEXT.split())

Media = Literal["oci", "docker"]


@dataclass(frozen=True, slots=True)
class LayerSpec:
    """One layer: a gzip-compressed tar whose content is fully determined by the fields.

    ``size`` is the number of payload bytes stored in the tar (not the compressed size). ``content``
    ``"random"`` gives one file of PRNG bytes (incompressible, like binaries); ``"text"`` gives a tree of
    word-salad text files (compressible, like /usr/share/doc).
    """

    size: int
    seed: int | str = 0
    content: Literal["random", "text"] = "random"

    @property
    def cache_key(self) -> str:
        raw = json.dumps([_GENERATOR_VERSION, self.size, str(self.seed), self.content])
        return hashlib.sha256(raw.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class ImageSpec:
    """A single-platform image manifest with its config and layers."""

    layers: Sequence[LayerSpec] = ()
    os: str = "linux"
    arch: str = "amd64"
    variant: str | None = None
    media: Media = "oci"
    labels: Mapping[str, str] = field(default_factory=dict)
    created: str = "2024-01-01T00:00:00Z"
    # OCI manifest annotations; ignored for Docker schema2 which has no such field.
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class IndexSpec:
    """A multi-platform index (OCI) or manifest list (Docker); children may be indexes (nested)."""

    children: Sequence[ImageSpec | IndexSpec]
    media: Media = "oci"
    annotations: Mapping[str, str] = field(default_factory=dict)


Spec = ImageSpec | IndexSpec


@dataclass(frozen=True, slots=True)
class LayerInfo:
    """Result of generating a layer: compressed digest and size plus the uncompressed diff_id."""

    digest: str
    size: int
    diff_id: str


@dataclass(frozen=True, slots=True)
class Descriptor:
    """An OCI descriptor reduced to what tests compare."""

    media_type: str
    digest: str
    size: int


@dataclass(slots=True)
class LayoutContents:
    """Everything reachable from one root: manifests/indexes (with media types) and config/layer blobs."""

    root: Descriptor
    manifests: dict[str, Descriptor]
    blobs: dict[str, Descriptor]

    @property
    def all_digests(self) -> dict[str, int]:
        """Digest → size of every blob in the layout reachable from the root, manifests included."""
        return {d.digest: d.size for d in (*self.manifests.values(), *self.blobs.values())}


# ---------------------------------------------------------------------------------------------- layers


class _PrngReader(io.RawIOBase):
    """File-like of ``size`` seeded PRNG bytes.

    Bytes come from fixed 1 MiB ``randbytes`` blocks so the stream does not depend on the read sizes
    tarfile happens to use (``randbytes(a) + randbytes(b)`` need not equal ``randbytes(a + b)``).
    """

    def __init__(self, seed: str, size: int) -> None:
        self._rng = random.Random(seed)
        self._left = size
        self._buf = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        want = min(len(view), self._left)
        if want == 0:
            return 0
        if not self._buf:
            self._buf = memoryview(self._rng.randbytes(_BLOCK))
        n = min(want, len(self._buf))
        view[:n] = self._buf[:n]
        # Slicing a memoryview is O(1); re-slicing bytes would copy the rest of the block on every read.
        self._buf = self._buf[n:]
        self._left -= n
        return n


class _HashingWriter(io.RawIOBase):
    """Forward writes to ``target`` while hashing and counting them."""

    def __init__(self, target: BinaryIO | io.RawIOBase | gzip.GzipFile) -> None:
        self._target = target
        self.hash = hashlib.sha256()
        self.count = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        self.hash.update(data)
        self.count += len(data)
        self._target.write(data)
        return len(data)


def _tarinfo(name: str, size: int, *, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = 0 if directory else size
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = 0o755 if directory else 0o644
    info.mtime = _TAR_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def _text_files(spec: LayerSpec) -> Iterator[tuple[str, bytes]]:
    """Yield (path, content) of a deterministic text tree totalling ``spec.size`` bytes."""
    rng = random.Random(f"text:{spec.seed}")
    # A per-layer pool of lines drawn once: picking whole lines is ~50x faster than drawing words, and
    # the result still compresses like real text (about 4-8x with gzip -6).
    pool = [" ".join(rng.choices(_WORDS, k=rng.randint(4, 14))) + "\n" for _ in range(4096)]
    left = spec.size
    n = 0
    while left > 0:
        # Files of 1-64 KiB like package docs; bounded so memory stays small for big layers.
        want = min(left, rng.randint(1024, 64 * 1024))
        data = "".join(rng.choices(pool, k=want // 40 + 1)).encode()
        while len(data) < want:
            data += rng.choice(pool).encode()
        data = data[:want]
        yield f"usr/share/doc/pkg{n // 8:04d}/file{n % 8}.txt", data
        left -= len(data)
        n += 1


def _write_layer_tar(spec: LayerSpec, out: BinaryIO) -> LayerInfo:
    """Stream the gzip(tar) of ``spec`` into ``out`` and return its digests."""
    compressed = _HashingWriter(out)
    # filename="" and mtime=0: GzipFile would otherwise embed the temp file's name and the current
    # time in the gzip header and every run would produce different bytes.
    # Random bytes do not compress: level 0 (stored deflate blocks) yields a valid gzip member of the same
    # size as level 1 would, at ~2 GB/s instead of ~45 MB/s, which matters for 1 GiB benchmark layers.
    level = 0 if spec.content == "random" else 6
    with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, compresslevel=level, mtime=0) as gz:
        raw = _HashingWriter(gz)
        with tarfile.open(fileobj=raw, mode="w|", format=tarfile.GNU_FORMAT) as tar:
            if spec.content == "random":
                tar.addfile(_tarinfo("data", 0, directory=True))
                payload = _PrngReader(f"random:{spec.seed}", spec.size)
                tar.addfile(_tarinfo(f"data/blob-{spec.seed}.bin", spec.size), payload)
            else:
                seen_dirs: set[str] = set()
                for path, data in _text_files(spec):
                    parent = path.rsplit("/", 1)[0]
                    parts = parent.split("/")
                    for i in range(1, len(parts) + 1):
                        d = "/".join(parts[:i])
                        if d not in seen_dirs:
                            seen_dirs.add(d)
                            tar.addfile(_tarinfo(d, 0, directory=True))
                    tar.addfile(_tarinfo(path, len(data)), io.BytesIO(data))
        diff_id = "sha256:" + raw.hash.hexdigest()
    return LayerInfo(digest="sha256:" + compressed.hash.hexdigest(), size=compressed.count, diff_id=diff_id)


_memo: dict[tuple[str, str], LayerInfo] = {}
_memo_lock = threading.Lock()


def blob_path(layout: Path, digest: str) -> Path:
    """Path of ``digest`` inside an OCI layout (``blobs/<alg>/<hex>``)."""
    alg, _, hex_ = digest.partition(":")
    return layout / "blobs" / alg / hex_


def _link_or_copy(src: Path, dst: Path) -> None:
    if dst.exists():
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + f".tmp{os.getpid()}")
    try:
        os.link(src, tmp)
    except OSError:
        # Cross-device or no hard-link support: a copy is slower but equivalent.
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def layer_blob(spec: LayerSpec, cache_dir: Path) -> tuple[LayerInfo, Path]:
    """Generate (or reuse) the layer for ``spec`` under ``cache_dir``.

    The cache holds ``blobs/sha256/<hex>`` plus ``layers/<spec key>.json`` with the digests, so a
    repeated spec costs a stat instead of recompressing up to a GiB.

    :param spec: the layer to produce.
    :param cache_dir: directory kept between calls (created if needed).
    :returns: the layer's digests and the path of its blob file.
    """
    cache_dir = Path(cache_dir)
    key = spec.cache_key
    with _memo_lock:
        memo = _memo.get((str(cache_dir), key))
    meta_path = cache_dir / "layers" / f"{key}.json"
    if memo is None and meta_path.exists():
        data = json.loads(meta_path.read_text())
        memo = LayerInfo(digest=data["digest"], size=data["size"], diff_id=data["diff_id"])
    if memo is not None:
        path = blob_path(cache_dir, memo.digest)
        if path.is_file() and path.stat().st_size == memo.size:
            with _memo_lock:
                _memo[(str(cache_dir), key)] = memo
            return memo, path
    (cache_dir / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    meta_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=cache_dir / "blobs", prefix=".layer-")
    try:
        with os.fdopen(fd, "wb") as out:
            info = _write_layer_tar(spec, out)
        # mkstemp creates 0600; layouts are read by skopeo and humans, so match write_bytes' mode.
        os.chmod(tmp_name, 0o644)
        path = blob_path(cache_dir, info.digest)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    tmp_meta = meta_path.with_name(meta_path.name + f".tmp{os.getpid()}")
    tmp_meta.write_text(json.dumps({"digest": info.digest, "size": info.size, "diff_id": info.diff_id}))
    os.replace(tmp_meta, meta_path)
    with _memo_lock:
        _memo[(str(cache_dir), key)] = info
    return info, path


# ---------------------------------------------------------------------------------------------- manifests


def _dumps(obj: object) -> bytes:
    # Compact, insertion-ordered JSON: the bytes are what gets pushed and digested, never re-serialized.
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


class _Writer:
    def __init__(self, layout: Path, cache_dir: Path) -> None:
        self.layout = layout
        self.cache_dir = cache_dir

    def put(self, data: bytes) -> tuple[str, int]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        path = blob_path(self.layout, digest)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + f".tmp{os.getpid()}")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return digest, len(data)

    def image(self, spec: ImageSpec) -> Descriptor:
        docker = spec.media == "docker"
        infos: list[LayerInfo] = []
        for layer in spec.layers:
            info, src = layer_blob(layer, self.cache_dir)
            _link_or_copy(src, blob_path(self.layout, info.digest))
            infos.append(info)
        config: dict[str, Any] = {"created": spec.created, "architecture": spec.arch, "os": spec.os}
        if spec.variant:
            config["variant"] = spec.variant
        config["config"] = {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Labels": dict(spec.labels),
        }
        config["rootfs"] = {"type": "layers", "diff_ids": [i.diff_id for i in infos]}
        config["history"] = [
            {"created": spec.created, "created_by": f"regcopy-test layer {n}"} for n in range(len(infos))
        ]
        cfg_digest, cfg_size = self.put(_dumps(config))
        layer_type = DOCKER_LAYER if docker else OCI_LAYER
        manifest: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST if docker else OCI_MANIFEST,
            "config": {
                "mediaType": DOCKER_CONFIG if docker else OCI_CONFIG,
                "digest": cfg_digest,
                "size": cfg_size,
            },
            "layers": [{"mediaType": layer_type, "digest": i.digest, "size": i.size} for i in infos],
        }
        if spec.annotations and not docker:
            manifest["annotations"] = dict(spec.annotations)
        digest, size = self.put(_dumps(manifest))
        return Descriptor(manifest["mediaType"], digest, size)

    def index(self, spec: IndexSpec) -> Descriptor:
        docker = spec.media == "docker"
        entries: list[dict[str, Any]] = []
        for child in spec.children:
            desc = self.write(child)
            entry: dict[str, Any] = {"mediaType": desc.media_type, "digest": desc.digest, "size": desc.size}
            if isinstance(child, ImageSpec):
                platform = {"architecture": child.arch, "os": child.os}
                if child.variant:
                    platform["variant"] = child.variant
                entry["platform"] = platform
            entries.append(entry)
        index: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": DOCKER_LIST if docker else OCI_INDEX,
            "manifests": entries,
        }
        if spec.annotations and not docker:
            index["annotations"] = dict(spec.annotations)
        digest, size = self.put(_dumps(index))
        return Descriptor(index["mediaType"], digest, size)

    def write(self, spec: Spec) -> Descriptor:
        return self.image(spec) if isinstance(spec, ImageSpec) else self.index(spec)


def write_layout(layout: Path, tags: Mapping[str, Spec], *, cache_dir: Path | None = None) -> dict[str, str]:
    """Write (or extend) an OCI image layout with one root per tag.

    An existing ``index.json`` is kept; entries with the same tag are replaced.

    :param layout: layout directory (created if needed).
    :param tags: tag → image or index spec.
    :param cache_dir: layer cache shared across layouts; defaults to ``<layout>/../.layer-cache``
        so two layouts written next to each other share generated layers.
    :returns: tag → root manifest digest (``sha256:…``).
    """
    layout = Path(layout)
    layout.mkdir(parents=True, exist_ok=True)
    cache = Path(cache_dir) if cache_dir is not None else layout.parent / ".layer-cache"
    writer = _Writer(layout, cache)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    index_path = layout / "index.json"
    existing: list[dict[str, Any]] = []
    if index_path.exists():
        existing = json.loads(index_path.read_text()).get("manifests", [])
    result: dict[str, str] = {}
    entries = [e for e in existing if e.get("annotations", {}).get(REF_NAME) not in tags]
    for tag, spec in tags.items():
        desc = writer.write(spec)
        result[tag] = desc.digest
        entries.append(
            {
                "mediaType": desc.media_type,
                "digest": desc.digest,
                "size": desc.size,
                "annotations": {REF_NAME: tag},
            }
        )
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
    tmp = index_path.with_name("index.json.tmp")
    tmp.write_bytes(_dumps(index))
    os.replace(tmp, index_path)
    return result


# ---------------------------------------------------------------------------------------------- reading


def read_blob(layout: Path, digest: str) -> bytes:
    """Bytes of ``digest`` in ``layout`` (small blobs such as manifests and configs)."""
    return blob_path(Path(layout), digest).read_bytes()


def _index_entry(layout: Path, tag: str) -> dict[str, Any]:
    index = json.loads((Path(layout) / "index.json").read_text())
    for entry in index["manifests"]:
        if entry.get("annotations", {}).get(REF_NAME) == tag:
            return dict(entry)
    raise KeyError(f"tag {tag!r} not in {layout}/index.json")


def tag_digest(layout: Path, tag: str) -> str:
    """Root manifest digest of ``tag`` in ``layout``."""
    return str(_index_entry(layout, tag)["digest"])


def layout_contents(layout: Path, tag: str) -> LayoutContents:
    """Walk ``tag`` recursively (indexes of indexes included) and list every manifest and blob.

    :raises KeyError: the tag is not in ``index.json``.
    """
    layout = Path(layout)
    entry = _index_entry(layout, tag)
    root = Descriptor(entry["mediaType"], entry["digest"], entry["size"])
    out = LayoutContents(root=root, manifests={}, blobs={})

    def walk(desc: Descriptor) -> None:
        out.manifests[desc.digest] = desc
        doc = json.loads(read_blob(layout, desc.digest))
        if desc.media_type in INDEX_TYPES:
            for child in doc["manifests"]:
                walk(Descriptor(child["mediaType"], child["digest"], child["size"]))
            return
        for d in (doc["config"], *doc["layers"]):
            out.blobs[d["digest"]] = Descriptor(d["mediaType"], d["digest"], d["size"])

    walk(root)
    return out
