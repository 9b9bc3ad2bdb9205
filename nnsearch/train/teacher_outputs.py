"""On-disk cache of a teacher's predictions for a seeded batch plan.

Every candidate of a study trains on the same batch plan, so the teacher's
outputs for it are computed once and stored in
``cache_dir()/teacher_outputs/<key>.bin``; other candidates, later runs and
other worker processes on the same machine load them. Only the teacher outputs
are stored (float16: 2 bytes per value, steps x batch x 3 x crop^2 values); the
noisy/clean crops are rebuilt from the seeded plan, which is cheap.

The key is a SHA-256 over the teacher's weights (or a teacher file's content hash), the data fingerprint, the crop
schedule, steps, batch, seed and crop multiple. A file holds a JSON header (key
fields, tensor shapes, SHA-256 of the payload) and the raw payload; a file whose
header, length or checksum does not match is reported and rebuilt, never used.
Concurrent builders are safe: files are written under a temporary name and moved
into place with os.replace, and a lock file (where the OS offers flock) makes
other processes wait for the first builder instead of repeating its work.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn

from nnsearch.common.device import channels_last
from nnsearch.common.paths import cache_dir
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


class CorruptOutputsCache(NNSearchError):
    """A teacher-output cache file cannot be trusted (truncated, altered or for another key)."""


@dataclass(frozen=True)
class OutputsKey:
    """Everything the cached teacher outputs depend on."""

    teacher: str
    data: str
    crops: tuple[int, ...]
    steps: int
    batch: int
    seed: int
    multiple: int

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


def outputs_key(teacher: nn.Module, data_fingerprint: str, plan: BatchPlan, identity: str | None = None
                ) -> OutputsKey:
    """The cache key; `identity` (e.g. a teacher file's content hash) stands for the teacher when given."""
    return OutputsKey(teacher=identity or teacher_fingerprint(teacher), data=data_fingerprint, crops=plan.schedule.sizes,
                      steps=plan.steps, batch=plan.batch, seed=plan.seed, multiple=plan.multiple)


def outputs_dir() -> Path:
    return cache_dir() / "teacher_outputs"


def outputs_path(key: OutputsKey) -> Path:
    return outputs_dir() / f"{key.digest}.bin"


def expected_shapes(plan: BatchPlan) -> list[tuple[int, int, int, int]]:
    """Shape of the teacher output for every step of the plan."""
    return [(plan.batch, 3, plan.crop_at(step), plan.crop_at(step)) for step in range(plan.steps)]


def cached_teacher_outputs(teacher: nn.Module, plan: BatchPlan, data_fingerprint: str, *,
                           device: torch.device | str = "cpu", verbose: bool = False,
                           identity: str | None = None) -> list[torch.Tensor]:
    """The teacher's float16 outputs for every batch of `plan`, from the cache or computed and cached."""
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
        outputs = compute_teacher_outputs(teacher, plan, device=device, verbose=verbose)
        try:
            save_outputs(path, key, outputs)
        except OSError as exc:
            print(f"teacher outputs: cannot write the cache {path} ({exc}); continuing without it", flush=True)
    return outputs


def compute_teacher_outputs(teacher: nn.Module, plan: BatchPlan, *, device: torch.device | str = "cpu",
                            verbose: bool = False) -> list[torch.Tensor]:
    """Run the teacher over every batch of the plan; outputs are float16 on the CPU (as cached)."""
    teacher = channels_last(teacher, device).eval()
    outputs = []
    with torch.no_grad():
        for batch in progress(plan, total=len(plan), desc="teacher outputs", enabled=verbose):
            outputs.append(teacher(channels_last(batch.noisy, device)).to("cpu", DTYPE).contiguous())
    return outputs


def save_outputs(path: Path, key: OutputsKey, outputs: list[torch.Tensor]) -> None:
    """Write atomically: a uniquely named temporary file, then os.replace."""
    payload = b"".join(t.contiguous().numpy().tobytes() for t in outputs)
    header = json.dumps({
        "key": asdict(key), "digest": key.digest, "dtype": str(DTYPE).removeprefix("torch."),
        "shapes": [list(t.shape) for t in outputs], "payload_bytes": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(),
    }, sort_keys=True).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        with tmp.open("wb") as handle:
            handle.write(MAGIC + _HEADER_LEN.pack(len(header)) + header)
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_header(path: Path) -> dict:
    """The JSON header of a cache file (CorruptOutputsCache when it is not one)."""
    with path.open("rb") as handle:
        return _read_header(handle, path)


def load_outputs(path: Path, key: OutputsKey, plan: BatchPlan) -> list[torch.Tensor]:
    """Outputs stored at `path`, checked against the key, the plan's shapes and the payload checksum."""
    with path.open("rb") as handle:
        header = _read_header(handle, path)
        payload = handle.read()
    if header.get("digest") != key.digest or header.get("key") != json.loads(json.dumps(asdict(key))):
        raise CorruptOutputsCache(f"{path} holds outputs for another key ({header.get('digest')})")
    shapes = [tuple(s) for s in header.get("shapes", [])]
    if shapes != expected_shapes(plan):
        raise CorruptOutputsCache(f"{path}: stored tensor shapes do not match the batch plan")
    itemsize = torch.empty((), dtype=DTYPE).element_size()
    expected = sum(int(np.prod(s)) for s in shapes) * itemsize
    if len(payload) != expected or header.get("payload_bytes") != expected:
        raise CorruptOutputsCache(f"{path} is truncated or padded: payload has {len(payload)} bytes, "
                                  f"expected {expected}")
    if hashlib.sha256(payload).hexdigest() != header.get("sha256"):
        raise CorruptOutputsCache(f"{path}: payload checksum does not match its header")
    flat = torch.from_numpy(np.frombuffer(bytearray(payload), dtype=np.float16))
    outputs, offset = [], 0
    for shape in shapes:
        count = int(np.prod(shape))
        outputs.append(flat[offset:offset + count].view(shape))
        offset += count
    return outputs


def _read_header(handle, path: Path) -> dict:
    start = handle.read(len(MAGIC) + _HEADER_LEN.size)
    if len(start) < len(MAGIC) + _HEADER_LEN.size or not start.startswith(MAGIC):
        raise CorruptOutputsCache(f"{path} is not a teacher-output cache file (bad or missing header)")
    (length,) = _HEADER_LEN.unpack(start[len(MAGIC):])
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
        print(f"teacher outputs: loaded {len(outputs)} batches from {path} "
              f"({path.stat().st_size / 2**20:.1f} MiB)", flush=True)
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
