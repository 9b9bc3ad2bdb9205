"""Train students you name by the product's own code paths: briefly as a study's candidates, then longer.

`train_as_candidates` runs a study whose trials are the given students (queued, nothing
sampled), so each is distilled, timed and recorded exactly as a search's candidate.
`train_further` continues a recorded student from its own weights as `nnsearch train` does
(`nnsearch.train.final_training`). Benchmarks that compare students train both sides this
way, so a difference between two students is never a difference between two training codes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch

from nnsearch.errors import NNSearchError
from nnsearch.model.arch import Arch
from nnsearch.search.config import StudyConfig
from nnsearch.store.engine import Store
from nnsearch.store.stored_model import StoredModel, build_model, load_stored_model
from nnsearch.train.config import DataConfig, TeacherConfig
from nnsearch.train.datasets import DenoiseData
from nnsearch.train.distill import DistillConfig
from nnsearch.train.final_training import (
    FinalTraining,
    request_checkpoint,
    train_student,
)

#: Trial user attribute naming the student a trial was queued for.
GIVEN_ATTR = "given"


def train_as_candidates(
    config: StudyConfig,
    store: Store,
    archs: Sequence[Arch],
    *,
    data: DenoiseData | None = None,
    verbose: bool = True,
    device: torch.device | None = None,
    results_root: Path | None = None,
) -> pd.DataFrame:
    """Run study `config` on exactly `archs` (in order) and return its results, one row per student.

    A new study queues the students as its trials; an existing one (same name in `store`) is
    resumed. Use `early_stop=None` in `config` for every student to get its whole budget.
    """
    from nnsearch.search.study import Study

    outside = [arch.describe() for arch in archs if not config.space.contains(arch)]
    if outside:
        raise NNSearchError(f"students {outside} are not in search space '{config.space.name}'")
    if len({arch.name for arch in archs}) != len(archs):
        raise NNSearchError("the students to train must be distinct architectures")
    study = Study(config, store, data=data, verbose=verbose, device=device, results_root=results_root)
    if not study.optuna.trials:
        for arch in archs:
            study.optuna.enqueue_trial(config.space.params_of(arch), user_attrs={GIVEN_ATTR: arch.name})
    study.run(len(archs))
    return study.results()


def train_further(
    store: Store,
    nn: str,
    distill: DistillConfig,
    *,
    data: DenoiseData,
    data_spec: str | None,
    max_side: int | None = None,
    teacher: str = "cpu",
    teacher_steps: int | None = None,
    verbose: bool = True,
    device: torch.device | None = None,
    resume: bool = True,
) -> StoredModel:
    """Continue the recorded student `nn` from its search weights as `nnsearch train` does; the new weights.

    `data` is the search's data (same train/validation split); `data_spec` and `max_side`
    are recorded as what it was loaded from. Without `resume`, a checkpoint an interrupted
    earlier run of the same training left is removed first.
    """
    request = FinalTraining(
        nn=nn,
        distill=distill,
        data=DataConfig(data_spec, max_side),
        teacher=TeacherConfig(teacher, teacher_steps),
        checkpoint_every=0,
    )
    if not resume:
        request_checkpoint(request, store).unlink(missing_ok=True)
    result = train_student(request, store, device=device, verbose=verbose, data=data)
    return load_stored_model(store, nn, result.prm_uid)


def as_module(stored: StoredModel) -> torch.nn.Module:
    """The stored student as a torch module in eval mode (its own recorded code and weights)."""
    return build_model(stored, (1, stored.arch.in_channels, 64, 64))
