"""What every candidate of a study trains on: the data and the teacher's targets, prepared once."""

from __future__ import annotations

from collections.abc import Callable

import torch

from nnsearch.search.config import StudyConfig
from nnsearch.train.datasets import DenoiseData, load_data
from nnsearch.train.distill import TeacherTargets
from nnsearch.train.teacher_check import prepare_teacher


def silent(message: str) -> None:
    """A log that drops its messages."""


class TrainingInputs:
    """The study's data (loaded on first use unless given) and its teacher targets (built on first use)."""

    def __init__(
        self,
        config: StudyConfig,
        device: torch.device,
        *,
        data: DenoiseData | None = None,
        verbose: bool = True,
        log: Callable[[str], None] = silent,
        on_teacher: Callable[[float], None] | None = None,
    ) -> None:
        self.config = config
        self.on_teacher = on_teacher  # told the checked teacher's validation PSNR
        self.device = device
        self.verbose = verbose
        self.log = log
        self._data = data
        self._announced = False
        self._teacher = None  # the checked teacher (prepared on first use)
        self._targets: dict[int, TeacherTargets] = {}

    @property
    def data(self) -> DenoiseData:
        """Training and validation images (announced in the log once)."""
        if self._data is None:
            self._data = load_data(self.config.data.spec, max_side=self.config.data.max_side, seed=self.config.seed)
        if not self._announced:
            self._announced = True
            self.log(
                f"data: {self._data.source}: {len(self._data.train)} train / {len(self._data.val)} validation images"
            )
        return self._data

    def targets(self, rung: int = 0) -> TeacherTargets:
        """The shared batch plan with teacher outputs (teacher trained or loaded once, and checked).

        The teacher (a preset or a file) must beat the noisy input on the validation
        pairs by `teacher_margin_db` (`nnsearch.train.teacher_check`). A rung above 0
        of a multi-fidelity study has a plan of its own (`RungSchedule.segment`).
        """
        if rung not in self._targets:
            config = self.config
            distill = (
                config.distill if rung == 0 or config.rungs is None else config.rungs.segment(config.distill, rung)
            )
            teacher = self._checked_teacher()
            multiple = 2 ** (config.space.max_levels - 1)
            self._targets[rung] = TeacherTargets.build(
                teacher and teacher.module,
                self.data,
                distill,
                multiple=multiple,
                device=self.device,
                verbose=self.verbose,
                identity=teacher and teacher.identity,
            )
        return self._targets[rung]

    def _checked_teacher(self):  # -> PreparedTeacher | None
        """The study's teacher, prepared and checked once (None without one: alpha 0)."""
        if self._teacher is None and self.config.distill.alpha > 0:
            config = self.config
            self._teacher = prepare_teacher(
                config.teacher.source,
                self.data,
                steps=config.teacher.steps,
                device=self.device,
                margin_db=config.teacher.margin_db,
                verbose=self.verbose,
            )
            if self.on_teacher is not None:
                self.on_teacher(self._teacher.quality.psnr)
        return self._teacher
