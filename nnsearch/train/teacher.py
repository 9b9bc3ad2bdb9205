"""Teachers: presets, training on a dataset, and checkpoints keyed by config, data and versions.

A teacher may use any ops. The default CPU preset (391k parameters, 1500 steps on
64->96 px crops, evaluated as an 8-way flip/transpose self-ensemble) ships trained
on the built-in data inside the package (``nnsearch/train/weights``), so the demo
needs no teacher training; on other data it trains on first use (a few minutes on
a laptop CPU) and is cached. The paper preset (about 41.6M parameters) is meant
for GPUs.

Training is reproducible: the initial weights and every batch are seeded, and the
cache key covers the config, the data fingerprint, the nnsearch and torch versions
and a digest of the code that decides the result (the student builder, the crop
plan, the noise synthesis and the training loop), so a teacher trained by older code is never reused.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch import nn

from nnsearch.common.device import channels_last, default_device
from nnsearch.common.paths import cache_dir
from nnsearch.common.progress import progress
from nnsearch.common.torch_files import load_tensors
from nnsearch.errors import NNSearchError
from nnsearch.model.arch import Arch
from nnsearch.model.student import build_student
from nnsearch.train.crops import CropSchedule, make_batch_plan
from nnsearch.train.datasets import DenoiseData
from nnsearch.train.datasets.loader import recipe_fingerprint


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
    ensemble: bool = True  # predict as the mean over the 8 flips/transposes (any op is fine for a teacher)

    def describe(self) -> dict[str, object]:
        """Plain-JSON form of the config (stored in checkpoints)."""
        return {**asdict(self), "arch": self.arch.to_dict(), "crops": list(self.crops)}

    def key(self, data_fingerprint: str) -> str:
        """Cache key: changes with any config field, the training data, the versions or the training code."""
        payload = {**asdict(self), "arch": self.arch.to_dict(), "data": data_fingerprint, **training_versions()}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def training_versions() -> dict[str, str]:
    """nnsearch and torch versions and a digest of the code that decides a trained teacher's weights."""
    from nnsearch import __version__
    from nnsearch.model import student
    from nnsearch.train import crops
    from nnsearch.train.datasets import noise, synthetic

    code = hashlib.sha256()
    for source in (student, crops, noise, synthetic, train_teacher):
        code.update(inspect.getsource(source).encode())
    return {"nnsearch": __version__, "torch": torch.__version__.split("+")[0], "code": code.hexdigest()[:16]}


TEACHER_PRESETS: dict[str, TeacherConfig] = {
    "cpu": TeacherConfig(
        preset="cpu",
        arch=Arch(widths=(24, 48, 96), blocks=(1, 2, 2), skips=("concat", "concat")),
        steps=1500,
        batch=8,
        crops=(64, 96),
    ),
    "paper": TeacherConfig(
        preset="paper",
        arch=Arch(widths=(64, 128, 256, 512, 1024), blocks=(3, 3, 3, 3, 1), skips=("concat",) * 4),
        steps=200_000,
        batch=16,
        crops=(128, 256, 512, 1024),
        lr=2e-4,
        ensemble=False,
    ),
}


def teacher_config(preset: str = "cpu", steps: int | None = None) -> TeacherConfig:
    """A preset, optionally with a different step budget."""
    if preset not in TEACHER_PRESETS:
        raise NNSearchError(f"unknown teacher preset '{preset}'; expected one of {sorted(TEACHER_PRESETS)}")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise NNSearchError(f"teacher steps must be a positive integer, got {steps!r}")
    config = TEACHER_PRESETS[preset]
    return replace(config, steps=steps) if steps else config


def teacher_path(config: TeacherConfig, data: DenoiseData) -> Path:
    return teachers_dir() / f"{config.preset}-{config.key(data.fingerprint)}.pt"


def teachers_dir() -> Path:
    return cache_dir() / "teachers"


def partial_path(path: Path) -> Path:
    """Where an unfinished training of the checkpoint `path` is kept."""
    return path.with_suffix(".partial")


def load_or_train_teacher(
    config: TeacherConfig, data: DenoiseData, *, device: torch.device | None = None, verbose: bool = True
) -> nn.Module:
    """The cached teacher for (config, data), training (and caching) it first if needed."""
    device = device or default_device()
    path = teacher_path(config, data)
    torch.manual_seed(config.seed)  # the initial weights are part of what the key stands for
    model: nn.Module = build_student(config.arch)
    shipped = shipped_teacher(config, data)
    if shipped is not None:
        model.load_state_dict(_load(shipped, "cpu")["model"])
        if verbose:
            print(f"teacher: using the weights shipped for preset '{config.preset}' on {data.name} ({shipped})")
    elif path.exists():
        model.load_state_dict(_load(path, "cpu")["model"])
        if verbose:
            print(f"teacher: reusing {path}")
    else:
        train_teacher(model, config, data, path, device=device, verbose=verbose)
    model = channels_last(model, device).eval()
    return channels_last(FlipEnsemble(model), device).eval() if config.ensemble else model


#: Folder of the teacher weights that ship inside the package.
SHIPPED_DIR = Path(__file__).resolve().parent / "weights"


def shipped_teacher(config: TeacherConfig, data: DenoiseData) -> Path | None:
    """The packaged checkpoint trained with exactly `config` on `data` (same pixels or same recipe), if any."""
    path = SHIPPED_DIR / f"teacher-{config.preset}-{data.name}.pt"
    if not path.is_file():
        return None
    state = _load(path, "cpu")
    recorded = state.get("data", {})
    same_data = recorded.get("fingerprint") == data.fingerprint or recorded.get("recipe") == recipe_fingerprint(data)
    return path if same_data and state.get("config") == json.loads(json.dumps(config.describe())) else None


class FlipEnsemble(nn.Module):
    """The mean of a model's outputs over the 8 flips/transposes of its input (self-ensemble)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = torch.zeros_like(x)
        for transpose in (False, True):
            view = x.transpose(2, 3) if transpose else x
            for dims in ((), (2,), (3,), (2, 3)):
                out = self.model(view.flip(dims) if dims else view)
                out = out.flip(dims) if dims else out
                total = total + (out.transpose(2, 3) if transpose else out)
        return total / 8


def train_teacher(
    model: nn.Module,
    config: TeacherConfig,
    data: DenoiseData,
    path: Path,
    *,
    device: torch.device,
    verbose: bool = True,
    checkpoint_every: int = 100,
) -> None:
    """Train with L1 to the clean images; resumable from `path`.partial.

    A checkpoint is written every `checkpoint_every` steps and on Ctrl-C, so an
    interrupted training continues where it stopped.
    """
    partial = partial_path(path)
    channels_last(model, device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.steps)
    start = 0
    if partial.exists():
        state = _load(partial, device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start = state["step"]
    plan = make_batch_plan(data.train, CropSchedule(config.crops), config.steps, config.batch, config.seed + 7919)
    began = time.perf_counter()
    if verbose:
        resumed = f", resuming from step {start} ({partial})" if start else ""
        print(
            f"teacher: training preset '{config.preset}' for {config.steps} steps on {data.name} ({device}){resumed}",
            flush=True,
        )
    loss_fn = nn.L1Loss()

    def checkpoint(step: int) -> None:
        _save(
            partial,
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "step": step,
            },
        )

    step = start
    try:
        for step in progress(range(start, config.steps), total=config.steps - start, desc="teacher", enabled=verbose):
            batch = plan[step]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(channels_last(batch.noisy, device)), batch.clean.to(device))
            loss.backward()
            optimizer.step()
            scheduler.step()
            if (step + 1) % checkpoint_every == 0 and step + 1 < config.steps:
                checkpoint(step + 1)
    except KeyboardInterrupt:
        done = scheduler.last_epoch  # optimizer steps taken, counting resumed ones
        if done > start:
            checkpoint(done)
            print(f"teacher: interrupted; saved step {done} of {config.steps} to {partial}", flush=True)
        raise
    _save(
        path,
        {
            "model": model.state_dict(),
            "config": config.describe(),
            "data": {
                "name": data.name,
                "fingerprint": data.fingerprint,
                "recipe": recipe_fingerprint(data),
                "source": data.source,
            },
            "versions": training_versions(),
            "seconds": time.perf_counter() - began,
        },
    )
    partial.unlink(missing_ok=True)
    if verbose:
        print(f"teacher: trained in {time.perf_counter() - began:.0f} s, cached at {path}")


def read_checkpoint_info(path: Path) -> dict:
    """What a teacher checkpoint (or `.partial`) was trained with, for listings."""
    state = _load(path, "cpu")
    info = {
        "path": path,
        "preset": path.name.split("-")[0],
        "partial": path.suffix == ".partial",
        "params": sum(t.numel() for t in state["model"].values()),
    }
    if info["partial"]:
        info["step"] = state["step"]
    else:
        config = state.get("config")
        info.update(config if isinstance(config, dict) else {})
        info["data"] = state.get("data", {})
    return info


def _load(path: Path, device: torch.device | str) -> dict:
    state = load_tensors(path, "teacher checkpoint", map_location=device, hint="delete it to train the teacher again")
    if not isinstance(state, dict):
        raise NNSearchError(
            f"teacher checkpoint {path} is not a checkpoint nnsearch wrote (it holds a "
            f"{type(state).__name__}, not a dict); delete it to train the teacher again"
        )
    return state


def _save(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # several processes may train the same teacher
    torch.save(state, tmp)
    tmp.replace(path)
