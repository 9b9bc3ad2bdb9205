"""Pairs read from disk when a batch needs them, a bounded on-disk cache of decoded pairs, file identities.

A :class:`StreamedPair` holds only file names and sizes (read from the headers); its pixels are
decoded when a crop or the full image is asked for, so a dataset of any size fits in memory.
Decoding a 12 MP PNG takes a few hundred ms, so decoded images can be kept in a
:class:`DecodedCache`: uncompressed ``.npy`` files (uint8 for 8-bit images, 36 MB for 12 MP) that
crops memory-map and read a few rows of. The cache has a size limit; the least recently used files
are removed to stay under it, and an image that does not fit is decoded every time.

:func:`file_digest` hashes a file's bytes once and remembers the digest under its (path, size,
modification time), so dataset fingerprints need no pixel hashing on later loads.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnsearch.common.paths import cache_dir, size_limit_bytes
from nnsearch.errors import DataError
from nnsearch.train.datasets.images import (
    centre_offset,
    check_min_side,
    image_size,
    raw_to_float,
    read_raw,
)

#: Default size limit of the decoded-pair cache (``NNSEARCH_DATA_CACHE_GB`` overrides it; 0 turns it off).
DEFAULT_DATA_CACHE_GB = 20.0
_CHUNK = 1 << 20


def _identity(path: Path) -> str:
    """A key that changes when the file at `path` is replaced or modified."""
    stat = path.stat()
    return hashlib.sha256(f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()).hexdigest()[:32]


def _write_atomic(path: Path, write) -> None:
    """Write through a uniquely named temporary file moved into place (safe with concurrent writers)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        with tmp.open("wb") as handle:
            write(handle)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def file_digest(path: Path) -> str:
    """SHA-256 of the file's bytes, computed once per (path, size, mtime) and remembered in the cache folder."""
    memo = cache_dir() / "file_digests" / _identity(path)
    try:
        known = memo.read_text().strip()
        if len(known) == 64:
            return known
    except OSError:
        pass
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    value = digest.hexdigest()
    try:
        _write_atomic(memo, lambda handle: handle.write(value.encode()))
    except OSError:
        pass  # a read-only cache only costs the hashing again next time
    return value


def data_cache_limit() -> int:
    """Size limit of the decoded-pair cache in bytes (``NNSEARCH_DATA_CACHE_GB``, default 20 GB)."""
    return size_limit_bytes("NNSEARCH_DATA_CACHE_GB", DEFAULT_DATA_CACHE_GB)


@dataclass(frozen=True)
class DecodedCache:
    """Decoded images as ``.npy`` files under `folder`, at most `limit_bytes` in all (LRU eviction)."""

    folder: Path
    limit_bytes: int

    @classmethod
    def default(cls) -> DecodedCache | None:
        """The cache in ``cache_dir()/decoded`` with :func:`data_cache_limit`; None when the limit is 0."""
        limit = data_cache_limit()
        return cls(cache_dir() / "decoded", limit) if limit > 0 else None

    def raw(self, path: Path) -> np.ndarray:
        """The decoded image of `path` (see :func:`read_raw`): memory-mapped from the cache, else decoded (and cached)."""
        entry = self.folder / f"{_identity(path)}.npy"
        try:
            mapped = np.load(entry, mmap_mode="r", allow_pickle=False)
            os.utime(entry)  # recently used
            return mapped
        except (OSError, ValueError):
            pass
        raw = read_raw(path)
        if raw.nbytes <= self.limit_bytes:
            try:
                self._make_room(raw.nbytes)
                _write_atomic(entry, lambda handle: np.save(handle, raw, allow_pickle=False))
            except OSError:
                pass  # a full or read-only disk only costs decoding again
        return raw

    def _make_room(self, needed: int) -> None:
        """Remove the least recently used entries until `needed` more bytes fit under the limit."""
        if not self.folder.exists():
            return
        entries = []
        for entry in self.folder.glob("*.npy"):
            try:
                stat = entry.stat()
            except OSError:
                continue
            entries.append((stat.st_mtime_ns, stat.st_size, entry))
        used = sum(size for _, size, _ in entries)
        for _, size, entry in sorted(entries, key=lambda item: item[0]):
            if used + needed <= self.limit_bytes:
                break
            entry.unlink(missing_ok=True)
            used -= size


@dataclass(frozen=True)
class StreamedPair:
    """A noisy/clean file pair whose pixels are read when needed; the same interface as ``ImagePair``.

    `top`/`left` place the pair's (centre-cropped) `height` x `width` window in the files' images.
    """

    name: str
    noisy_path: Path
    clean_path: Path
    height: int
    width: int
    top: int = 0
    left: int = 0
    cache: DecodedCache | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.height, self.width, 3

    def _window(self, path: Path, y: int, x: int, height: int, width: int) -> np.ndarray:
        raw = self.cache.raw(path) if self.cache is not None else read_raw(path)
        top, left = self.top + y, self.left + x
        return raw_to_float(raw[top : top + height, left : left + width])

    def crop(self, y: int, x: int, size: int) -> tuple[np.ndarray, np.ndarray]:
        """(noisy, clean) float32 size x size crops at (y, x) of the pair's window."""
        return (self._window(self.noisy_path, y, x, size, size), self._window(self.clean_path, y, x, size, size))

    @property
    def noisy(self) -> np.ndarray:
        """The whole noisy image as float32 HxWx3 (decoded now; not kept)."""
        return self._window(self.noisy_path, 0, 0, self.height, self.width)

    @property
    def clean(self) -> np.ndarray:
        """The whole clean image as float32 HxWx3 (decoded now; not kept)."""
        return self._window(self.clean_path, 0, 0, self.height, self.width)

    def identity(self) -> str:
        """Names, window and content digests of both files (what the dataset fingerprint hashes)."""
        return (
            f"{self.name}\0{self.shape}\0{self.top},{self.left}\0"
            f"{file_digest(self.noisy_path)}\0{file_digest(self.clean_path)}"
        )


def streamed_pair(
    name: str, noisy_path: Path, clean_path: Path, max_side: int | None, cache: DecodedCache | None
) -> StreamedPair:
    """A :class:`StreamedPair` after a header check: both files are images of one size (DataError naming them)."""
    noisy_size, clean_size = image_size(noisy_path), image_size(clean_path)
    if noisy_size != clean_size:
        raise DataError(
            f"size mismatch: noisy {noisy_path} is {noisy_size[1]}x{noisy_size[0]} but clean "
            f"{clean_path} is {clean_size[1]}x{clean_size[0]}; pairs must be aligned and equally sized"
        )
    check_min_side(noisy_path, *noisy_size)
    top, left, height, width = centre_offset(*noisy_size, max_side)
    return StreamedPair(name, noisy_path, clean_path, height, width, top, left, cache)
