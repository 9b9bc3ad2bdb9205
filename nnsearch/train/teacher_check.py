"""Prepare the teacher of a study (a preset or a file) and check that it is worth distilling from.

A teacher no better than the noisy input teaches a student to copy noise (or to
blur): distilling from it makes students worse than training them on the clean
targets alone. So before a study uses a teacher, its full-resolution PSNR on the
validation pairs is compared with the noisy input's, and a teacher that is not at
least ``margin_db`` (default :data:`MIN_GAIN_DB` = 1.0 dB) better is refused with
a :class:`TeacherTooWeak` error. 1.0 dB is about a fifth of what a good small
denoiser gains on real camera photos at 31-41 dB and well above run-to-run noise
(< 0.05 dB), so a teacher that passes is clearly learning to denoise.

Results are cached per (teacher identity, data fingerprint) in
``cache_dir()/teacher_checks``, so workers and reruns do not evaluate again.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nnsearch.common.paths import cache_dir
from nnsearch.errors import NNSearchError
from nnsearch.train.config import MIN_GAIN_DB
from nnsearch.train.datasets import DenoiseData, Pair
from nnsearch.train.metrics import mean_quality, psnr
from nnsearch.train.teacher import TEACHER_PRESETS, load_or_train_teacher, teacher_config
from nnsearch.train.teacher_files import load_teacher_file
from nnsearch.train.teacher_outputs import teacher_fingerprint


class TeacherTooWeak(NNSearchError):
    """The teacher is not clearly better than the noisy input on the validation pairs."""


@dataclass(frozen=True)
class TeacherQuality:
    """Validation PSNR of a teacher next to the noisy input's."""

    name: str
    psnr: float
    noisy_psnr: float

    @property
    def gain_db(self) -> float:
        return self.psnr - self.noisy_psnr

    def line(self) -> str:
        return (
            f"teacher {self.name}: validation PSNR {self.psnr:.2f} dB, noisy input {self.noisy_psnr:.2f} dB "
            f"({self.gain_db:+.2f} dB)"
        )


@dataclass
class PreparedTeacher:
    """A teacher ready to use: the module, what it is called and its identity for caches."""

    module: nn.Module
    name: str
    identity: str
    quality: TeacherQuality | None = None


def noisy_psnr(pairs: Sequence[Pair]) -> float:
    """Mean PSNR of the noisy images against the clean ones."""
    return float(np.mean([psnr(p.noisy, p.clean) for p in pairs]))


def is_preset(spec: str) -> bool:
    return spec in TEACHER_PRESETS


def load_teacher(
    spec: str, data: DenoiseData, *, steps: int | None = None, device: torch.device | str = "cpu", verbose: bool = True
) -> PreparedTeacher:
    """A preset name (trained or loaded for `data`) or a teacher file (see nnsearch.train.teacher_files)."""
    if is_preset(spec):
        module = load_or_train_teacher(teacher_config(spec, steps), data, device=torch.device(device), verbose=verbose)
        return PreparedTeacher(module, f"preset '{spec}'", teacher_fingerprint(module))
    looks_like_path = any(sep in spec for sep in ("/", "\\", ".")) or Path(spec).exists()
    if not looks_like_path:
        raise NNSearchError(f"teacher {spec!r} is neither a preset ({', '.join(TEACHER_PRESETS)}) nor a file")
    if steps is not None:
        raise NNSearchError(f"--teacher-steps applies to a teacher preset, not to the teacher file {spec}")
    loaded = load_teacher_file(spec)
    if verbose:
        print(f"teacher: {loaded.form} file {loaded.path} (sha256 {loaded.digest[:12]})", flush=True)
    module = loaded.module.to(device)
    return PreparedTeacher(module, f"file {loaded.path.name}", f"file:{loaded.digest}")


def measure_teacher(
    teacher: PreparedTeacher, data: DenoiseData, *, device: torch.device | str = "cpu"
) -> TeacherQuality:
    """Validation PSNR of the teacher and of the noisy input (cached per teacher and data)."""
    path = (
        cache_dir()
        / "teacher_checks"
        / (hashlib.sha256(f"{teacher.identity}\0{data.fingerprint}".encode()).hexdigest()[:24] + ".json")
    )
    if path.is_file():
        try:
            stored = json.loads(path.read_text())
            return TeacherQuality(teacher.name, float(stored["psnr"]), float(stored["noisy_psnr"]))
        except (ValueError, KeyError, TypeError):
            pass  # an unreadable record is measured again
    quality = TeacherQuality(
        teacher.name, mean_quality(teacher.module, data.val, device=device)["psnr"], noisy_psnr(data.val)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(asdict(quality)))
    tmp.replace(path)
    return quality


def check_teacher(quality: TeacherQuality, margin_db: float = MIN_GAIN_DB) -> None:
    """Raise TeacherTooWeak unless the teacher beats the noisy input by `margin_db`."""
    if quality.gain_db < margin_db:
        raise TeacherTooWeak(
            f"{quality.line()}: not clearly better than the noisy input (needs at least +{margin_db:.1f} dB), so "
            f"distilling from it would make students worse. Train it longer (--teacher-steps), bring a stronger "
            f"one (--teacher PATH), use other training data, or train without a teacher (--alpha 0)."
        )


def prepare_teacher(
    spec: str,
    data: DenoiseData,
    *,
    steps: int | None = None,
    device: torch.device | str = "cpu",
    margin_db: float = MIN_GAIN_DB,
    verbose: bool = True,
) -> PreparedTeacher:
    """Load (or train) the teacher, print its validation PSNR next to the input's, refuse a weak one."""
    teacher = load_teacher(spec, data, steps=steps, device=device, verbose=verbose)
    teacher.quality = measure_teacher(teacher, data, device=device)
    if verbose:
        print(teacher.quality.line(), flush=True)
    check_teacher(teacher.quality, margin_db)
    return teacher
