"""Brief knowledge distillation of a student from a teacher.

loss = alpha * L(student, teacher) + (1 - alpha) * L(student, clean), with L
being L1 or Charbonnier. Training runs on a fixed, seeded batch plan whose
teacher outputs are computed once (`TeacherTargets`) and shared by every
candidate of a study, through an on-disk cache (nnsearch.train.teacher_outputs).
Validation PSNR/SSIM are measured after every epoch. Batches are cut in background loader
processes; on CUDA, students train under automatic mixed precision (bf16 or fp16).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from nnsearch.common.device import amp_dtype, autocast, channels_last
from nnsearch.common.interrupts import raise_if_interrupted
from nnsearch.common.progress import progress
from nnsearch.errors import NNSearchError
from nnsearch.store.record import EpochRecord
from nnsearch.train.config import DistillConfig
from nnsearch.train.crops import Batch, make_batch_plan
from nnsearch.train.datasets import DenoiseData, Pair
from nnsearch.train.metrics import mean_quality
from nnsearch.train.prefetch import batch_stream, default_loader_workers
from nnsearch.train.teacher_outputs import cached_teacher_outputs, compute_teacher_outputs, teacher_prediction


class DistillationDiverged(NNSearchError):
    """The training loss became NaN or infinite."""


def charbonnier(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    return torch.sqrt((pred - target) ** 2 + eps * eps).mean()


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "l1": nn.functional.l1_loss,
    "charbonnier": charbonnier,
}


@dataclass
class TeacherTargets:
    """A batch plan with the teacher's output for each batch (float16, computed once per plan).

    `outputs[step]` is None when training without a teacher (alpha = 0). `outputs` is None when
    the plan's outputs exceed the cache limit: then `teacher` predicts each batch during training.
    """

    plan: Sequence[Batch]
    outputs: Sequence[torch.Tensor | None] | None
    teacher: nn.Module | None = None
    amp: torch.dtype | None = None

    @classmethod
    def build(
        cls,
        teacher: nn.Module | None,
        data: DenoiseData,
        config: DistillConfig,
        multiple: int = 32,
        device: torch.device | str = "cpu",
        verbose: bool = False,
        *,
        cache: bool = True,
        limit_bytes: int | None = None,
        identity: str | None = None,
    ) -> TeacherTargets:
        """Crops for `config`'s budget and, when a teacher is given, its predictions.

        With `cache` the predictions come from (or go to) the on-disk teacher-output
        cache shared by all candidates and processes (see nnsearch.train.teacher_outputs),
        unless they exceed its size limit (`limit_bytes`); without it the teacher is run
        here. All give identical float16 outputs. `identity` keys the cache instead of
        the teacher's weights (a teacher file's content hash).
        """
        plan = make_batch_plan(data.train, config.schedule, config.steps, config.batch, config.seed, multiple)
        if teacher is None or config.alpha == 0.0:
            return cls(plan, [None] * len(plan))
        amp = amp_dtype(device, config.amp)
        if cache:
            outputs = cached_teacher_outputs(
                teacher,
                plan,
                data.fingerprint,
                device=device,
                verbose=verbose,
                amp=amp,
                limit_bytes=limit_bytes,
                identity=identity,
            )
            if outputs is None:
                return cls(plan, None, channels_last(teacher, device).eval(), amp)
        else:
            outputs = compute_teacher_outputs(teacher, plan, device=device, verbose=verbose, amp=amp)
        return cls(plan, outputs)

    def target(self, step: int, noisy: torch.Tensor) -> torch.Tensor | None:
        """The teacher's output for `step` (whose noisy batch, on the training device, is `noisy`)."""
        if self.outputs is not None:
            output = self.outputs[step]
            return None if output is None else output.to(noisy.device, torch.float32, non_blocking=True)
        assert self.teacher is not None
        return teacher_prediction(self.teacher, noisy, self.amp).float()


@dataclass
class DistillResult:
    """Per-epoch records of one distillation and the trained student."""

    epochs: list[EpochRecord] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def final(self) -> EpochRecord:
        return self.epochs[-1]


EpochCallback = Callable[[EpochRecord], None]
#: Called with a resumable snapshot of the training (see `distill`'s `resume`).
CheckpointCallback = Callable[[dict], None]


def distill(
    student: nn.Module,
    targets: TeacherTargets,
    val: Sequence[Pair],
    config: DistillConfig,
    *,
    device: torch.device | str = "cpu",
    on_epoch: EpochCallback | None = None,
    verbose: bool = False,
    resume: dict | None = None,
    on_checkpoint: CheckpointCallback | None = None,
    checkpoint_every: int = 0,
    stop_requested: Callable[[], bool] | None = None,
) -> DistillResult:
    """Train `student` on the shared batch plan; evaluate on `val` after each epoch.

    `on_epoch` may raise to stop early (the caller's early-stopping rule). Batches are cut by
    `config.loader_workers` background processes; on CUDA the student trains under AMP unless
    `config.amp` is False. `on_checkpoint` receives a snapshot every `checkpoint_every` steps and
    after each epoch; passing one back as `resume` continues from it (weights, optimizer, step).
    When `stop_requested()` turns true (checked between steps), a snapshot is taken and
    KeyboardInterrupt raised.
    """
    torch.manual_seed(config.seed)
    trainer = _Trainer(student, targets, config, device)
    if resume is not None:
        trainer.restore(resume)
    run, result = trainer.run, trainer.result
    workers = default_loader_workers() if config.loader_workers is None else config.loader_workers
    stream = batch_stream(
        targets.plan, run.step, config.steps, workers=workers, pin_memory=torch.device(device).type == "cuda"
    )
    bounds = [round(config.steps * (e + 1) / config.epochs) for e in range(config.epochs)]
    began = time.perf_counter() - run.seconds

    def checkpoint(epoch_start: float) -> None:
        if on_checkpoint is not None:
            run.epoch_seconds, run.seconds = time.perf_counter() - epoch_start, time.perf_counter() - began
            on_checkpoint(trainer.snapshot())

    try:
        for epoch, end in enumerate(bounds):
            if len(result.epochs) > epoch:
                continue  # finished before the resume
            epoch_start = time.perf_counter() - run.epoch_seconds
            student.train()
            for step in progress(range(run.step, end), total=end - run.step, desc=f"epoch {epoch}", enabled=verbose):
                raise_if_interrupted()
                if stop_requested is not None and stop_requested():
                    checkpoint(epoch_start)
                    raise KeyboardInterrupt
                trainer.train_step(next(stream), step, epoch)
                if checkpoint_every and run.step % checkpoint_every == 0 and run.step < end:
                    checkpoint(epoch_start)
            record = trainer.end_epoch(epoch, val, epoch_start)
            if on_epoch is not None:
                on_epoch(record)
            checkpoint(time.perf_counter())
    finally:
        stream.close()  # stops the loader processes, also when training stops early
    result.seconds = time.perf_counter() - began
    return result


@dataclass
class _RunState:
    """Where a distillation stands inside its budget (what a checkpoint adds to the weights)."""

    step: int = 0
    losses: list[float] = field(default_factory=list)  # of the current epoch
    samples: int = 0
    grad_norm: float = 0.0
    epoch_seconds: float = 0.0
    seconds: float = 0.0


class _Trainer:
    """The student with its optimizer, schedule, loss scaling and progress: one step at a time."""

    def __init__(
        self, student: nn.Module, targets: TeacherTargets, config: DistillConfig, device: torch.device | str
    ) -> None:
        self.student, self.targets, self.config, self.device = channels_last(student, device), targets, config, device
        self.optimizer = torch.optim.Adam(student.parameters(), lr=config.lr)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=config.steps)
        self.amp = amp_dtype(device, config.amp)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp == torch.float16)
        self.loss_fn = LOSSES[config.loss]
        self.run, self.result = _RunState(), DistillResult()

    def train_step(self, batch: Batch, step: int, epoch: int) -> None:
        noisy = channels_last(batch.noisy, self.device)
        clean = batch.clean.to(self.device, non_blocking=True)
        teacher_out = self.targets.target(step, noisy)
        with autocast(self.device, self.amp):
            pred = self.student(noisy)
        pred, alpha = pred.float(), self.config.alpha
        loss = (1.0 - alpha) * self.loss_fn(pred, clean)
        if teacher_out is not None:
            loss = loss + alpha * self.loss_fn(pred, teacher_out)
        if not math.isfinite(loss.item()):
            raise DistillationDiverged(f"loss became {loss.item()} at step {step} (epoch {epoch})")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        self.run.grad_norm = float(nn.utils.clip_grad_norm_(self.student.parameters(), max_norm=1.0))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.run.losses.append(loss.item())
        self.run.samples += noisy.shape[0]
        self.run.step = step + 1

    def end_epoch(self, epoch: int, val: Sequence[Pair], epoch_start: float) -> EpochRecord:
        """Validate, record the epoch and reset the per-epoch figures."""
        run = self.run
        train_seconds = time.perf_counter() - epoch_start
        quality = mean_quality(self.student, val, device=self.device)
        record = EpochRecord(
            epoch=epoch,
            psnr=quality["psnr"],
            ssim=quality["ssim"],
            duration_ns=int((time.perf_counter() - epoch_start) * 1e9),
            train_loss=sum(run.losses) / max(len(run.losses), 1),
            grad_norm=run.grad_norm,
            samples_per_s=run.samples / max(train_seconds, 1e-9),
        )
        self.result.epochs.append(record)
        run.losses, run.samples, run.epoch_seconds = [], 0, 0.0
        return record

    def snapshot(self) -> dict:
        """Everything `restore` needs to continue exactly here."""
        return {
            "run": asdict(self.run),
            "epochs": [asdict(e) for e in self.result.epochs],
            "student": {k: v.detach().cpu().clone() for k, v in self.student.state_dict().items()},
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),  # its tensors change in place
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
        }

    def restore(self, snapshot: dict) -> None:
        self.student.load_state_dict(snapshot["student"])
        self.optimizer.load_state_dict(snapshot["optimizer"])
        self.scheduler.load_state_dict(snapshot["scheduler"])
        self.scaler.load_state_dict(snapshot["scaler"])
        self.result.epochs.extend(EpochRecord(**e) for e in snapshot["epochs"])
        self.run = _RunState(**snapshot["run"])
