"""`nnsearch train NN`: the long, final distillation of a student a search recorded.

The student's stored weights (its best hyperparameter set) are trained further, or from scratch
with `restart`, under a new budget and crop schedule. The run checkpoints to
``cache_dir()/training/<nn>-<uid>.ckpt`` every few steps, after each epoch and on Ctrl-C, and the
same command resumes from there after Ctrl-C or a kill. When the budget is done, its epochs and
final weights are written in one transaction as new rows of the student under the new
hyperparameter set (the checkpoint is then removed); nothing is recorded before that, so a run
that stops (Ctrl-C, a kill, an unreadable image met mid-run) leaves no half-written record.
"""

from __future__ import annotations

import io
import json
import os
import signal
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from sqlalchemy import func, select

from nnsearch.common.device import default_device, describe_device
from nnsearch.common.paths import cache_dir, safe_component
from nnsearch.common.torch_files import DamagedFileError, load_tensors
from nnsearch.errors import NNSearchError
from nnsearch.model.counting import conv_depth, count_macs, count_params
from nnsearch.model.student import build_student
from nnsearch.store.engine import Store
from nnsearch.store.hashing import prm_uid
from nnsearch.store.record import EpochRecord, ModelRecord
from nnsearch.store.recording import write_model
from nnsearch.store.schema import NNStat, Prm, Stat
from nnsearch.store.stored_model import StoredModel, load_stored_model
from nnsearch.train.config import PAPER_CROPS, DataConfig, TeacherConfig  # noqa: F401 - PAPER_CROPS importable
from nnsearch.train.crops import transform_code, transform_name
from nnsearch.train.datasets import DenoiseData, load_data
from nnsearch.train.distill import DistillConfig, TeacherTargets, distill
from nnsearch.train.teacher import load_or_train_teacher, teacher_config

CHECKPOINT_FORMAT = 1


@dataclass(frozen=True)
class FinalTraining:
    """What `nnsearch train` was asked for."""

    nn: str
    distill: DistillConfig
    data: DataConfig = DataConfig()
    teacher: TeacherConfig = TeacherConfig()
    restart: bool = False  # from freshly initialised weights instead of the stored ones
    checkpoint_every: int = 50  # steps
    teacher_cache_bytes: int | None = None  # None: NNSEARCH_TEACHER_CACHE_GB


@dataclass(frozen=True)
class FinalTrainingResult:
    nn: str
    prm_uid: str
    epochs: tuple[EpochRecord, ...]
    resumed_from: int  # step the run resumed from (0: a fresh start)
    recorded: bool  # False when the store already held this training
    exported: bool  # `nnsearch export` now ships these weights

    def line(self) -> str:
        final = self.epochs[-1] if self.epochs else None
        quality = f"final PSNR {final.psnr:.2f} dB, SSIM {final.ssim:.4f}" if final else "no epochs"
        what = "recorded" if self.recorded else "already recorded"
        ships = (
            "ships these weights"
            if self.exported
            else (
                f"ships another set with a higher final PSNR; `nnsearch export {self.nn} --prm {self.prm_uid}` ships these"
            )
        )
        return (
            f"train: {self.nn} {what} under hyperparameter set {self.prm_uid} ({len(self.epochs)} epochs, "
            f"{quality}); `nnsearch export` {ships}"
        )


def hyperparameters(request: FinalTraining, start: StoredModel) -> dict[str, Any]:
    """The new `prm` set: the distillation's values plus teacher and initial weights."""
    return {
        **request.distill.hyperparameters(),
        "teacher": request.teacher.source,
        "teacher_steps": request.teacher.steps,
        "init": "scratch" if request.restart else f"prm:{start.prm_uid}",
    }


def checkpoint_path(nn: str, uid: str) -> Path:
    return cache_dir() / "training" / f"{safe_component(nn, 'model name')}-{uid}.ckpt"


def request_checkpoint(request: FinalTraining, store: Store) -> Path:
    """Where the run `request` asks for checkpoints (and resumes from)."""
    return checkpoint_path(request.nn, prm_uid(hyperparameters(request, _start_model(store, request.nn))))


def train_student(
    request: FinalTraining,
    store: Store,
    *,
    device: torch.device | None = None,
    verbose: bool = True,
    data: DenoiseData | None = None,
) -> FinalTrainingResult:
    """Run (or resume) the final training of `request.nn` and record it; see the module docstring.

    `data` (default: loaded from `request.data.spec` with the distillation's seed) lets a caller keep
    the train/validation split of the search the student came from.
    """
    if request.checkpoint_every < 0:
        raise NNSearchError(f"--checkpoint-every must be >= 0 (0: only after epochs), got {request.checkpoint_every}")
    device = device or default_device()
    say = print if verbose else (lambda *a, **k: None)
    start = _start_model(store, request.nn)
    prm = hyperparameters(request, start)
    uid = prm_uid(prm)
    if data is None:
        data = load_data(
            request.data.spec, seed=request.distill.seed, max_side=request.data.max_side
        )  # bad files fail here
    say(f"data: {data.source}: {len(data.train)} train / {len(data.val)} validation images")
    if _recorded_epochs(store, request.nn, uid, data.name) >= request.distill.epochs:
        say(f"train: {request.nn} already has this training (hyperparameter set {uid}); nothing to do")
        return FinalTrainingResult(request.nn, uid, (), 0, False, _ships(store, request.nn, uid))
    path = checkpoint_path(request.nn, uid)
    key = {"format": CHECKPOINT_FORMAT, "nn": request.nn, "prm": uid, "data": data.fingerprint}
    resume = _load_checkpoint(path, key, say)
    student = build_student(start.arch)
    if not request.restart:
        student.load_state_dict(load_tensors(start.state, f"the stored weights of {start.nn}"))
    teacher = None
    if request.distill.alpha > 0:
        config = teacher_config(request.teacher.source, request.teacher.steps)
        teacher = load_or_train_teacher(config, data, device=device, verbose=verbose)
    say(
        f"train: {request.nn} for {request.distill.steps} steps, {request.distill.schedule.describe()}, "
        f"on {describe_device(device)}" + (f", resuming at step {resume['run']['step']}" if resume else "")
    )
    targets = TeacherTargets.build(
        teacher,
        data,
        request.distill,
        multiple=start.arch.min_divisor,
        device=device,
        verbose=verbose,
        limit_bytes=request.teacher_cache_bytes,
    )
    with _StopOnSignal() as stop:
        result = distill(
            student,
            targets,
            data.val,
            request.distill,
            device=device,
            verbose=verbose,
            resume=resume,
            on_checkpoint=lambda snap: _save_checkpoint(path, key, snap),
            checkpoint_every=request.checkpoint_every,
            stop_requested=stop.requested,
        )
    record = _model_record(store, start, student.cpu(), prm, data, request.distill, result.epochs)
    store.write(lambda session: write_model(session, record))
    path.unlink(missing_ok=True)
    return FinalTrainingResult(
        request.nn,
        uid,
        tuple(result.epochs),
        resume["run"]["step"] if resume else 0,
        True,
        _ships(store, request.nn, uid),
    )


def _start_model(store: Store, nn: str) -> StoredModel:
    """The weights a final training starts from: the best set of the search, never an earlier final training.

    So the same command always names the same hyperparameter set (and finds its checkpoint or record).
    """
    best = load_stored_model(store, nn)
    with store.read() as connection:
        init = connection.scalar(select(Prm.value).where(Prm.uid == best.prm_uid, Prm.name == "init"))
    if init is None:
        return best
    origin = json.loads(init)
    return load_stored_model(store, nn, origin.removeprefix("prm:")) if origin.startswith("prm:") else best


def _recorded_epochs(store: Store, nn: str, uid: str, dataset: str) -> int:
    with store.read() as connection:
        return int(
            connection.scalar(
                select(func.count())
                .select_from(Stat)
                .where(Stat.nn == nn, Stat.prm == uid, Stat.dataset == dataset, Stat.metric == "psnr")
            )
            or 0
        )


def _ships(store: Store, nn: str, uid: str) -> bool:
    return load_stored_model(store, nn).prm_uid == uid


def _model_record(
    store: Store,
    start: StoredModel,
    student: torch.nn.Module,
    prm: dict[str, Any],
    data: DenoiseData,
    config: DistillConfig,
    epochs: list[EpochRecord],
) -> ModelRecord:
    """The new rows: epochs and final weights under `prm`; the student's static facts as already stored."""
    with store.read() as connection:
        stat = connection.execute(select(NNStat).where(NNStat.nn == start.nn)).mappings().first()
    height, width = (stat["macs_height"], stat["macs_width"]) if stat else (1088, 1920)
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in student.state_dict().items()}, buffer)
    params = count_params(student)
    return ModelRecord(
        nn=start.nn,
        code=start.code,
        arch_json=json.dumps(start.arch.to_dict(), sort_keys=True),
        prm=prm,
        dataset=data.name,
        transform=transform_name(config.crops),
        transform_code=transform_code(config.crops),
        params=params,
        macs=stat["macs"] if stat else count_macs(student, start.arch, height, width),
        macs_hw=(height, width),
        depth=conv_depth(student),
        model_size_bytes=params * 4,
        epochs=list(epochs),
        weights=buffer.getvalue(),
    )


def _save_checkpoint(path: Path, key: dict, snapshot: dict) -> None:
    """Write atomically (temporary file + os.replace), so a kill mid-write keeps the previous checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        torch.save({"key": key, "snapshot": snapshot, "saved_at": time.time()}, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _load_checkpoint(path: Path, key: dict, say) -> dict | None:
    """The snapshot to resume from, or None (missing; for other data or settings; unreadable: reported)."""
    if not path.exists():
        return None
    try:
        saved = load_tensors(
            path,
            "training checkpoint",
            hint="nnsearch did not write this file: delete it (or move it away) and run again",
        )
    except DamagedFileError as exc:  # e.g. a disk that filled up under an older version's write
        say(f"train: ignoring the unreadable checkpoint: {exc}; starting over")
        return None
    if not isinstance(saved, dict) or saved.get("key") != key:
        say(f"train: checkpoint {path} is for other data; starting over")
        return None
    return saved["snapshot"]


class _StopOnSignal:
    """Ctrl-C (SIGINT) and SIGTERM ask the training to checkpoint and stop between two steps."""

    def __init__(self) -> None:
        self.stop = False
        self._previous: dict[int, Any] = {}

    def requested(self) -> bool:
        return self.stop

    def _handle(self, signum: int, frame: Any) -> None:
        if self.stop:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.stop = True

    def __enter__(self) -> _StopOnSignal:
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def with_defaults(config: DistillConfig, steps: int, crops: tuple[int, ...], epochs: int | None) -> DistillConfig:
    """`config` with the budget and schedule of a final training (one epoch per crop size by default)."""
    if steps < 1:
        raise NNSearchError(f"--steps must be >= 1, got {steps}")
    if epochs is not None and not 1 <= epochs <= steps:
        raise NNSearchError(f"--epochs must be between 1 and --steps ({steps}), got {epochs}")
    epochs = epochs if epochs is not None else max(1, min(len(crops), steps))
    return replace(config, steps=steps, crops=crops, epochs=epochs)
