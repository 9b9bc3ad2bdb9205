"""Teachers: presets, training on a dataset, and checkpoints keyed by config and data.

A teacher may use any ops. The default CPU preset trains in about a minute on the
built-in data; the paper preset (about 41.6M parameters) is meant for GPUs.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch import nn

from nnsearch.arch import Arch
from nnsearch.cache import cache_dir
from nnsearch.crops import CropSchedule, make_batch_plan
from nnsearch.datasets import DenoiseData
from nnsearch.device import default_device
from nnsearch.errors import NNSearchError
from nnsearch.progress import progress
from nnsearch.student import build_student


@dataclass(frozen=True)
class TeacherConfig:
    """Architecture and training budget of a teacher."""

    preset: str
    arch: Arch
    steps: int
    batch: int
    crops: tuple[int, ...]
    lr: float = 2e-3
    seed: int = 0

    def key(self, data_fingerprint: str) -> str:
        """Cache key: changes with any config field or the training data."""
        payload = {**asdict(self), "arch": self.arch.to_dict(), "data": data_fingerprint}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


TEACHER_PRESETS: dict[str, TeacherConfig] = {
    "cpu": TeacherConfig(
        preset="cpu",
        arch=Arch(widths=(24, 48, 96), blocks=(1, 2, 2), skips=("concat", "concat")),
        steps=400, batch=8, crops=(48, 64),
    ),
    "paper": TeacherConfig(
        preset="paper",
        arch=Arch(widths=(64, 128, 256, 512, 1024), blocks=(3, 3, 3, 3, 1), skips=("concat",) * 4),
        steps=200_000, batch=16, crops=(128, 256, 512, 1024), lr=2e-4,
    ),
}


def teacher_config(preset: str = "cpu", steps: int | None = None) -> TeacherConfig:
    """A preset, optionally with a different step budget."""
    if preset not in TEACHER_PRESETS:
        raise NNSearchError(f"unknown teacher preset '{preset}'; expected one of {sorted(TEACHER_PRESETS)}")
    config = TEACHER_PRESETS[preset]
    return replace(config, steps=steps) if steps else config


def teacher_path(config: TeacherConfig, data: DenoiseData) -> Path:
    return cache_dir() / "teachers" / f"{config.preset}-{config.key(data.fingerprint)}.pt"


def load_or_train_teacher(
    config: TeacherConfig, data: DenoiseData, *, device: torch.device | None = None, verbose: bool = True
) -> nn.Module:
    """The cached teacher for (config, data), training (and caching) it first if needed."""
    device = device or default_device()
    path = teacher_path(config, data)
    model = build_student(config.arch)
    if path.exists():
        model.load_state_dict(torch.load(path, map_location="cpu")["model"])
        if verbose:
            print(f"teacher: reusing {path}")
    else:
        train_teacher(model, config, data, path, device=device, verbose=verbose)
    return model.to(device).eval()


def train_teacher(
    model: nn.Module, config: TeacherConfig, data: DenoiseData, path: Path, *,
    device: torch.device, verbose: bool = True, checkpoint_every: int = 100,
) -> None:
    """Train with L1 to the clean images; resumable from `path`.partial."""
    partial = path.with_suffix(".partial")
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.steps)
    start = 0
    if partial.exists():
        state = torch.load(partial, map_location=device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start = state["step"]
    plan = make_batch_plan(data.train, CropSchedule(config.crops), config.steps, config.batch, config.seed + 7919)
    began = time.perf_counter()
    if verbose:
        print(f"teacher: training preset '{config.preset}' for {config.steps} steps on {data.name} ({device})")
    loss_fn = nn.L1Loss()
    for step in progress(range(start, config.steps), total=config.steps - start, desc="teacher", enabled=verbose):
        batch = plan[step]
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(batch.noisy.to(device)), batch.clean.to(device))
        loss.backward()
        optimizer.step()
        scheduler.step()
        if (step + 1) % checkpoint_every == 0 and step + 1 < config.steps:
            _save(partial, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                            "scheduler": scheduler.state_dict(), "step": step + 1})
    _save(path, {"model": model.state_dict(), "config": config.preset})
    partial.unlink(missing_ok=True)
    if verbose:
        print(f"teacher: trained in {time.perf_counter() - began:.0f} s, cached at {path}")


def _save(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)
