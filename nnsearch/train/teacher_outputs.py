"""On-disk cache of a teacher's predictions for a seeded batch plan.

Every candidate of a study trains on the same batch plan, so the teacher's
outputs for it are computed once and stored in
``cache_dir()/teacher_outputs/<key>.bin``; other candidates, later runs and
other worker processes on the same machine load them. Only the teacher outputs
are stored (float16: 2 bytes per value, steps x batch x 3 x crop^2 values); the
noisy/clean crops are rebuilt from the seeded plan, which is cheap.

The key is a SHA-256 over the teacher's weights (or a teacher file's content hash), the data fingerprint, the crop
sides (as fitted to the images and the student's size multiple: students whose plans crop the same
sides share one file), steps, batch and seed. A file holds a JSON header (key
fields, tensor shapes, SHA-256 of the payload) and the raw payload; a file whose
header, length or checksum does not match is reported and rebuilt, never used.
Large cached outputs are memory-mapped, not read into memory whole; a plan whose outputs
would exceed the size limit (``NNSEARCH_TEACHER_CACHE_GB``, default 8 GB) is not cached:
its teacher outputs are computed on the fly during training, and the log says so.
Concurrent builders are safe: files are written under a temporary name and moved
into place with os.replace, and a lock file (where the OS offers flock) makes
other processes wait for the first builder instead of repeating its work.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import struct
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nnsearch.common.device import autocast, channels_last
from nnsearch.common.paths import cache_dir, size_limit_bytes
from nnsearch.common.progress import progress
from nnsearch.errors import NNSearchError
from nnsearch.train.crops import BatchPlan

try:  # POSIX advisory locks; elsewhere concurrent builders just race (the first os.replace wins)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

MAGIC = b"NNSTOUT1"
FORMAT_VERSION = 1
DTYPE = torch.float16
_HEADER_LEN = struct.Struct("<Q")
_CHUNK = 1 << 22
#: Default of NNSEARCH_TEACHER_CACHE_GB: plans whose outputs are larger are not cached.
DEFAULT_LIMIT_GB = 8.0
#: Cache files with a larger payload are memory-mapped instead of read into memory.
MAP_ABOVE_BYTES = 256 * 2**20


class CorruptOutputsCache(NNSearchError):
    """A teacher-output cache file cannot be trusted (truncated, altered or for another key)."""


@dataclass(frozen=True)
class OutputsKey:
    """Everything the cached teacher outputs depend on."""

    teacher: str
    data: str
    crops: tuple[int, ...]  # the plan's fitted crop sides, which are all the size multiple changes
    steps: int
    batch: int
    seed: int

    @property
    def digest(self) -> str:
        payload = {**asdict(self), "crops": list(self.crops), "format": FORMAT_VERSION}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def teacher_fingerprint(teacher: nn.Module) -> str:
    """SHA-256 over the names, dtypes, shapes and values of the teacher's state dict."""
    digest = hashlib.sha256()
    for name, tensor in sorted(teacher.state_dict().items()):
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}\0{value.dtype}\0{tuple(value.shape)}\0".encode())
        digest.update(value.view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()


def outputs_key(teacher: nn.Module, data_fingerprint: str, plan: BatchPlan, identity: str | None = None) -> OutputsKey:
    """The cache key; `identity` (e.g. a teacher file's content hash) stands for the teacher when given."""
    return OutputsKey(
        teacher=identity or teacher_fingerprint(teacher),
        data=data_fingerprint,
        crops=tuple(plan.sizes),
        steps=plan.steps,
        batch=plan.batch,
        seed=plan.seed,
    )


def outputs_dir() -> Path:
    return cache_dir() / "teacher_outputs"


def outputs_path(key: OutputsKey) -> Path:
    return outputs_dir() / f"{key.digest}.bin"


def expected_shapes(plan: BatchPlan) -> list[tuple[int, int, int, int]]:
    """Shape of the teacher output for every step of the plan."""
    return [(plan.batch, 3, plan.crop_at(step), plan.crop_at(step)) for step in range(plan.steps)]


def teacher_cache_limit() -> int:
    """Largest teacher-output file the cache writes, in bytes (``NNSEARCH_TEACHER_CACHE_GB``, default 8)."""
    return size_limit_bytes("NNSEARCH_TEACHER_CACHE_GB", DEFAULT_LIMIT_GB)


def plan_output_bytes(plan: BatchPlan) -> int:
    """Bytes the teacher's float16 outputs for every batch of `plan` take."""
    return sum(int(np.prod(shape)) for shape in expected_shapes(plan)) * torch.empty((), dtype=DTYPE).element_size()


def cached_teacher_outputs(
    teacher: nn.Module,
    plan: BatchPlan,
    data_fingerprint: str,
    *,
    device: torch.device | str = "cpu",
    verbose: bool = False,
    amp: torch.dtype | None = None,
    limit_bytes: int | None = None,
    identity: str | None = None,
) -> Sequence[torch.Tensor] | None:
    """The teacher's float16 outputs for every batch of `plan`, from the cache or computed and cached.

    Large outputs are memory-mapped from the cache file, not held in memory. None when they would
    exceed `limit_bytes` (default :func:`teacher_cache_limit`): the caller computes them on the fly.
    `identity` keys the cache instead of the teacher's weights (a teacher file's content hash).
    """
    limit = teacher_cache_limit() if limit_bytes is None else limit_bytes
    needed = plan_output_bytes(plan)
    if needed > limit:
        print(
            f"teacher outputs: this plan needs {needed / 2**30:.2f} GiB, over the cache limit of "
            f"{limit / 2**30:.2f} GiB (NNSEARCH_TEACHER_CACHE_GB); computing them on the fly during training",
            flush=True,
        )
        return None
    key = outputs_key(teacher, data_fingerprint, plan, identity)
    path = outputs_path(key)
    outputs = _try_load(path, key, plan, verbose)
    if outputs is not None:
        return outputs
    with _build_lock(path, verbose):
        outputs = _try_load(path, key, plan, verbose)  # another process may have finished meanwhile
        if outputs is not None:
            return outputs
        if verbose:
            print(f"teacher outputs: computing {plan.steps} batches, caching at {path}", flush=True)
        batches = _teacher_batches(teacher, plan, device, verbose, amp)
        try:
            save_outputs(path, key, batches)
        except OSError as exc:
            print(f"teacher outputs: cannot write the cache {path} ({exc}); computing them on the fly", flush=True)
            return None
    return load_outputs(path, key, plan)


def teacher_prediction(teacher: nn.Module, noisy: torch.Tensor, amp: torch.dtype | None = None) -> torch.Tensor:
    """The teacher's float16 output for a batch already on its device (as cached), under AMP when `amp` is set."""
    with torch.no_grad(), autocast(noisy.device, amp):
        return teacher(noisy).to(DTYPE)


def _teacher_batches(
    teacher: nn.Module, plan: BatchPlan, device: torch.device | str, verbose: bool, amp: torch.dtype | None
) -> Iterator[torch.Tensor]:
    teacher = channels_last(teacher, device).eval()
    for batch in progress(plan, total=len(plan), desc="teacher outputs", enabled=verbose):
        yield teacher_prediction(teacher, channels_last(batch.noisy, device), amp).to("cpu").contiguous()


def compute_teacher_outputs(
    teacher: nn.Module,
    plan: BatchPlan,
    *,
    device: torch.device | str = "cpu",
    verbose: bool = False,
    amp: torch.dtype | None = None,
) -> list[torch.Tensor]:
    """Run the teacher over every batch of the plan; outputs are float16 on the CPU (as cached)."""
    return list(_teacher_batches(teacher, plan, device, verbose, amp))


def save_outputs(path: Path, key: OutputsKey, outputs: Iterable[torch.Tensor]) -> None:
    """Write atomically: the payload streams to a temporary file, then header + payload go to another moved into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    stem = f"{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}"
    payload_tmp, tmp = path.with_name(stem + ".payload"), path.with_name(stem + ".tmp")
    try:
        digest, shapes, size = hashlib.sha256(), [], 0
        with payload_tmp.open("wb") as handle:
            for tensor in outputs:
                block = tensor.contiguous().numpy().tobytes()
                digest.update(block)
                handle.write(block)
                shapes.append(list(tensor.shape))
                size += len(block)
        header = json.dumps(
            {
                "key": asdict(key),
                "digest": key.digest,
                "dtype": str(DTYPE).removeprefix("torch."),
                "shapes": shapes,
                "payload_bytes": size,
                "sha256": digest.hexdigest(),
            },
            sort_keys=True,
        ).encode()
        with tmp.open("wb") as handle, payload_tmp.open("rb") as payload:
            handle.write(MAGIC + _HEADER_LEN.pack(len(header)) + header)
            shutil.copyfileobj(payload, handle, _CHUNK)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        payload_tmp.unlink(missing_ok=True)


def read_header(path: Path) -> dict:
    """The JSON header of a cache file (CorruptOutputsCache when it is not one)."""
    with path.open("rb") as handle:
        return _read_header(handle, path)


def load_outputs(path: Path, key: OutputsKey, plan: BatchPlan) -> list[torch.Tensor]:
    """Outputs stored at `path` (memory-mapped), checked against the key, the plan's shapes and the payload checksum."""
    with path.open("rb") as handle:
        header = _read_header(handle, path)
        offset = handle.tell()
        digest, size = hashlib.sha256(), 0
        while block := handle.read(_CHUNK):
            digest.update(block)
            size += len(block)
    if header.get("digest") != key.digest or header.get("key") != json.loads(json.dumps(asdict(key))):
        raise CorruptOutputsCache(f"{path} holds outputs for another key ({header.get('digest')})")
    shapes = [tuple(s) for s in header.get("shapes", [])]
    if shapes != expected_shapes(plan):
        raise CorruptOutputsCache(f"{path}: stored tensor shapes do not match the batch plan")
    expected = plan_output_bytes(plan)
    if size != expected or header.get("payload_bytes") != expected:
        raise CorruptOutputsCache(f"{path} is truncated or padded: payload has {size} bytes, expected {expected}")
    if digest.hexdigest() != header.get("sha256"):
        raise CorruptOutputsCache(f"{path}: payload checksum does not match its header")
    if not expected:
        return [torch.empty(shape, dtype=DTYPE) for shape in shapes]
    if expected > MAP_ABOVE_BYTES:  # large plans stay on disk (pages are read as training reaches them)
        flat = torch.from_numpy(np.memmap(path, dtype=np.float16, mode="c", offset=offset, shape=(expected // 2,)))
    else:
        with path.open("rb") as handle:
            handle.seek(offset)
            flat = torch.from_numpy(np.frombuffer(bytearray(handle.read()), dtype=np.float16))
    outputs, start = [], 0
    for shape in shapes:
        count = int(np.prod(shape))
        outputs.append(flat[start : start + count].view(shape))
        start += count
    return outputs


def _read_header(handle, path: Path) -> dict:
    start = handle.read(len(MAGIC) + _HEADER_LEN.size)
    if len(start) < len(MAGIC) + _HEADER_LEN.size or not start.startswith(MAGIC):
        raise CorruptOutputsCache(f"{path} is not a teacher-output cache file (bad or missing header)")
    (length,) = _HEADER_LEN.unpack(start[len(MAGIC) :])
    raw = handle.read(length) if length < 1 << 24 else b""
    try:
        header = json.loads(raw)
    except ValueError:
        header = None
    if len(raw) != length or not isinstance(header, dict):
        raise CorruptOutputsCache(f"{path} has an unreadable header")
    return header


def _try_load(path: Path, key: OutputsKey, plan: BatchPlan, verbose: bool) -> list[torch.Tensor] | None:
    """Cached outputs, or None when missing; a corrupt file is reported and removed."""
    if not path.exists():
        return None
    try:
        outputs = load_outputs(path, key, plan)
    except (CorruptOutputsCache, OSError) as exc:
        print(f"teacher outputs: ignoring the cache file ({exc}); rebuilding it", flush=True)
        with contextlib.suppress(OSError):
            path.unlink()
        return None
    if verbose:
        print(
            f"teacher outputs: loaded {len(outputs)} batches from {path} ({path.stat().st_size / 2**20:.1f} MiB)",
            flush=True,
        )
    return outputs


@contextlib.contextmanager
def _build_lock(path: Path, verbose: bool) -> Iterator[None]:
    """Exclusive lock on `path`.lock while building (a no-op where flock is unavailable)."""
    if fcntl is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a+b") as lock:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if verbose:
                print(f"teacher outputs: another process is building {path.name}; waiting for it", flush=True)
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
