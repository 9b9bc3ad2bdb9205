"""Brief knowledge distillation of a student from a teacher.

loss = alpha * L(student, teacher) + (1 - alpha) * L(student, clean), with L
being L1 or Charbonnier. Training runs on a fixed, seeded batch plan whose
teacher outputs are computed once (`TeacherTargets`) and shared by every
candidate of a study, through an on-disk cache (nnsearch.train.teacher_outputs).
Validation PSNR/SSIM are measured after every epoch.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import nn

from nnsearch.common.device import channels_last
from nnsearch.common.interrupts import raise_if_interrupted
from nnsearch.common.progress import progress
from nnsearch.errors import NNSearchError
from nnsearch.store.record import EpochRecord
from nnsearch.train.crops import Batch, CropSchedule, make_batch_plan
from nnsearch.train.datasets import DenoiseData
from nnsearch.train.metrics import evaluate
from nnsearch.train.teacher_outputs import (
    cached_teacher_outputs,
    compute_teacher_outputs,
)


class DistillationDiverged(NNSearchError):
    """The training loss became NaN or infinite."""


@dataclass(frozen=True)
class DistillConfig:
    """Budget and loss of one candidate's distillation."""

    steps: int = 240
    epochs: int = 2
    batch: int = 8
    crops: tuple[int, ...] = (48, 64)
    lr: float = 2e-3
    alpha: float = 0.9
    loss: str = "l1"
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise NNSearchError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.loss not in LOSSES:
            raise NNSearchError(f"loss '{self.loss}' is not one of {sorted(LOSSES)}")
        if self.steps < self.epochs or self.epochs < 1:
            raise NNSearchError(f"need steps >= epochs >= 1, got steps={self.steps} epochs={self.epochs}")
        if self.batch < 1:
            raise NNSearchError(f"batch must be >= 1, got {self.batch}")
        CropSchedule(tuple(self.crops))  # validates the sizes

    def hyperparameters(self) -> dict[str, object]:
        """The values recorded as the trial's `prm` set."""
        return {"lr": self.lr, "batch": self.batch, "steps": self.steps, "epochs": self.epochs,
                "alpha": self.alpha, "loss": self.loss, "crops": list(self.crops), "seed": self.seed}

    @property
    def schedule(self) -> CropSchedule:
        return CropSchedule(self.crops)


def charbonnier(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    return torch.sqrt((pred - target) ** 2 + eps * eps).mean()


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "l1": nn.functional.l1_loss,
    "charbonnier": charbonnier,
}


@dataclass
class TeacherTargets:
    """A batch plan with the teacher's output for each batch (float16, computed once per plan).

    `outputs[step]` is None when training without a teacher (alpha = 0).
    """

    plan: Sequence[Batch]
    outputs: list[torch.Tensor | None]

    @classmethod
    def build(cls, teacher: nn.Module | None, data: DenoiseData, config: DistillConfig,
              multiple: int = 32, device: torch.device | str = "cpu", verbose: bool = False, *,
              cache: bool = True, identity: str | None = None) -> "TeacherTargets":
        """Crops for `config`'s budget and, when a teacher is given, its predictions.

        With `cache` the predictions come from (or go to) the on-disk teacher-output
        cache shared by all candidates and processes (see nnsearch.train.teacher_outputs);
        without it the teacher is run here. Both give identical float16 outputs. `identity`
        keys the cache instead of the teacher's weights (a teacher file's content hash).
        """
        plan = make_batch_plan(data.train, config.schedule, config.steps, config.batch, config.seed, multiple)
        if teacher is None or config.alpha == 0.0:
            return cls(plan, [None] * len(plan))
        if cache:
            outputs = cached_teacher_outputs(teacher, plan, data.fingerprint, device=device, verbose=verbose,
                                             identity=identity)
        else:
            outputs = compute_teacher_outputs(teacher, plan, device=device, verbose=verbose)
        return cls(plan, list(outputs))


@dataclass
class DistillResult:
    """Per-epoch records of one distillation and the trained student."""

    epochs: list[EpochRecord] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def final(self) -> EpochRecord:
        return self.epochs[-1]


EpochCallback = Callable[[EpochRecord], None]


def distill(
    student: nn.Module, targets: TeacherTargets, val: Sequence[object], config: DistillConfig, *,
    device: torch.device | str = "cpu", on_epoch: EpochCallback | None = None, verbose: bool = False,
) -> DistillResult:
    """Train `student` on the shared batch plan; evaluate on `val` after each epoch.

    `on_epoch` may raise to stop early (the caller's early-stopping rule).
    """
    torch.manual_seed(config.seed)
    channels_last(student, device)
    optimizer = torch.optim.Adam(student.parameters(), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.steps)
    loss_fn = LOSSES[config.loss]
    bounds = [round(config.steps * (e + 1) / config.epochs) for e in range(config.epochs)]
    result, step, began = DistillResult(), 0, time.perf_counter()
    for epoch, end in enumerate(bounds):
        epoch_start, samples, losses, grad_norm = time.perf_counter(), 0, [], 0.0
        student.train()
        for step in progress(range(step, end), total=end - step, desc=f"epoch {epoch}", enabled=verbose):
            raise_if_interrupted()
            batch, teacher_out = targets.plan[step], targets.outputs[step]
            noisy, clean = channels_last(batch.noisy, device), batch.clean.to(device)
            pred = student(noisy)
            loss = (1.0 - config.alpha) * loss_fn(pred, clean)
            if teacher_out is not None:
                loss = loss + config.alpha * loss_fn(pred, teacher_out.to(device, torch.float32))
            if not math.isfinite(loss.item()):
                raise DistillationDiverged(f"loss became {loss.item()} at step {step} (epoch {epoch})")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = float(nn.utils.clip_grad_norm_(student.parameters(), max_norm=1.0))
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            samples += noisy.shape[0]
        step = end
        train_seconds = time.perf_counter() - epoch_start
        quality = evaluate(student, val, device=device)
        record = EpochRecord(
            epoch=epoch, psnr=quality["psnr"], ssim=quality["ssim"],
            duration_ns=int((time.perf_counter() - epoch_start) * 1e9),
            train_loss=sum(losses) / max(len(losses), 1), grad_norm=grad_norm,
            samples_per_s=samples / max(train_seconds, 1e-9),
        )
        result.epochs.append(record)
        if on_epoch is not None:
            on_epoch(record)
    result.seconds = time.perf_counter() - began
    return result
