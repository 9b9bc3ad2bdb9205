"""The training side of a configuration: data, teacher and distillation settings, validated on creation.

Light on purpose (no torch, numpy or pandas): the CLI shows these defaults in
`--help` without loading the training code. `nnsearch.search.config.StudyConfig`
nests these sections; `nnsearch train` starts from `FINAL_DISTILL`.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field

from nnsearch.errors import DataError, NNSearchError

#: The loss names `nnsearch.train.distill.LOSSES` implements.
LOSS_NAMES = ("l1", "charbonnier")
#: A teacher must beat the noisy input's validation PSNR by at least this much (dB).
MIN_GAIN_DB = 1.0
#: Largest crop side of a training schedule.
MAX_CROP = 1024
#: Crop schedule of the paper's progressive training (`nnsearch train`).
PAPER_CROPS = (64, 128, 256, 512, 1024)


def setting(key: str | None = None, *, runtime: bool = False, fixed: bool = False) -> dict[str, object]:
    """Field metadata of a configuration setting.

    `key`: its keyword-shortcut name where that is not the field name (e.g.
    `teacher_steps` for `teacher.steps`); `runtime`: how this machine runs it,
    not what the study is (not compared on resume); `fixed`: a resumed study
    can never change it (it changes what the objectives mean).
    """
    return {"key": key, "runtime": runtime, "fixed": fixed}


def check_loader_workers(workers: int) -> int:
    """`workers` if it is a valid number of batch-loader processes, else NNSearchError."""
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 0:
        raise NNSearchError(f"--loader-workers must be a non-negative integer, got {workers!r}")
    return workers


@dataclass(frozen=True)
class CropSchedule:
    """Crop sizes used in equal shares of the step budget, e.g. (48, 64, 96)."""

    sizes: tuple[int, ...] = (48, 64)

    def __post_init__(self) -> None:
        sizes = tuple(self.sizes)
        if not sizes or any(not isinstance(s, numbers.Integral) or isinstance(s, bool) for s in sizes):
            raise DataError(f"crop schedule must be a non-empty list of integers, got {list(self.sizes)}")
        if any(not 1 <= s <= MAX_CROP for s in sizes):
            raise DataError(f"crop sizes must be between 1 and {MAX_CROP} px, got {list(sizes)}")
        if list(sizes) != sorted(sizes):
            raise DataError(f"crop sizes must grow over the budget (non-decreasing), got {list(sizes)}")
        object.__setattr__(self, "sizes", tuple(int(s) for s in sizes))

    def size_at(self, step: int, steps: int) -> int:
        """Crop side used at `step` of `steps` (sizes grow over the budget)."""
        index = min(len(self.sizes) - 1, step * len(self.sizes) // max(steps, 1))
        return self.sizes[index]

    def describe(self) -> str:
        return "crops " + "->".join(map(str, self.sizes))


@dataclass(frozen=True)
class DataConfig:
    """Which images: a dataset spec (None: the built-in data) and an optional centre-crop size."""

    spec: str | None = field(default=None, metadata=setting("data"))
    max_side: int | None = None  # centre-crop every image to at most this many px per side

    def __post_init__(self) -> None:
        if self.max_side is not None and (not isinstance(self.max_side, int) or self.max_side < 11):
            raise NNSearchError(f"max_side must be an integer >= 11 px (SSIM's window; or None), got {self.max_side!r}")


@dataclass(frozen=True)
class TeacherConfig:
    """The teacher: a preset name or a teacher file, its training steps, the gain it must show."""

    source: str = field(default="cpu", metadata=setting("teacher"))  # nnsearch.train.teacher_files
    steps: int | None = field(default=None, metadata=setting("teacher_steps"))  # None: the preset's
    margin_db: float = field(default=MIN_GAIN_DB, metadata=setting("teacher_margin_db"))


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
    seed: int = field(default=0, metadata=setting("distill_seed"))  # of the batch plan; a study's follows its seed
    # mixed precision on CUDA (bf16, else fp16); no effect on the CPU; not a hyperparameter
    amp: bool = field(default=True, metadata=setting(runtime=True))
    # background batch processes; None: default_loader_workers()
    loader_workers: int | None = field(default=None, metadata=setting(runtime=True))

    def __post_init__(self) -> None:
        object.__setattr__(self, "crops", CropSchedule(tuple(self.crops)).sizes)  # validates the sizes
        if not 0.0 <= self.alpha <= 1.0:
            raise NNSearchError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.loss not in LOSS_NAMES:
            raise NNSearchError(f"loss '{self.loss}' is not one of {sorted(LOSS_NAMES)}")
        if self.steps < self.epochs or self.epochs < 1:
            raise NNSearchError(f"need steps >= epochs >= 1, got steps={self.steps} epochs={self.epochs}")
        if self.batch < 1:
            raise NNSearchError(f"batch must be >= 1, got {self.batch}")
        if self.loader_workers is not None:
            check_loader_workers(self.loader_workers)

    def hyperparameters(self) -> dict[str, object]:
        """The values recorded as the trial's `prm` set."""
        return {
            "lr": self.lr,
            "batch": self.batch,
            "steps": self.steps,
            "epochs": self.epochs,
            "alpha": self.alpha,
            "loss": self.loss,
            "crops": list(self.crops),
            "seed": self.seed,
        }

    @property
    def schedule(self) -> CropSchedule:
        return CropSchedule(self.crops)


#: The budget of `nnsearch train` (the long, final training): the paper's crops, one validation per crop size.
FINAL_DISTILL = DistillConfig(steps=2000, crops=PAPER_CROPS, epochs=len(PAPER_CROPS))
