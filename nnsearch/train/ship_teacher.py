"""Maintainer tool: train the default teacher on the built-in data and write the shipped weights.

``python -m nnsearch.train.ship_teacher`` trains preset ``cpu`` on the built-in data (or reuses
the cached training), copies the checkpoint to ``nnsearch/train/weights/`` and records the data,
command, steps, versions and validation PSNR next to it. Run it whenever the training code, the
noise synthesis or the built-in data change (the shipped file is then no longer used: its data
fingerprint no longer matches).
"""

from __future__ import annotations

import argparse
import json
import shutil

import torch

from nnsearch.common.torch_files import load_tensors
from nnsearch.train.datasets import load_data
from nnsearch.train.metrics import mean_quality
from nnsearch.train.teacher import SHIPPED_DIR, load_or_train_teacher, teacher_config, teacher_path
from nnsearch.train.teacher_check import noisy_psnr

DATA_LICENCE = "scikit-image bundled photos, BSD-3-Clause"


def ship(preset: str = "cpu") -> dict[str, object]:
    """Train (or reuse) the preset on the built-in data, copy it into the package, return the record."""
    config = teacher_config(preset)
    data = load_data()
    ensemble = load_or_train_teacher(config, data, device=torch.device("cpu"))
    trained = teacher_path(config, data)
    state = load_tensors(trained, "teacher checkpoint")
    single = ensemble.model if config.ensemble else ensemble
    assert isinstance(single, torch.nn.Module)
    target = SHIPPED_DIR / f"teacher-{preset}-{data.name}.pt"
    shutil.copyfile(trained, target)
    record = {
        "file": target.name,
        "preset": preset,
        "config": config.describe(),
        "data": state["data"],
        "data_licence": DATA_LICENCE,
        "versions": state["versions"],
        "command": f"python -m nnsearch.train.ship_teacher --preset {preset}",
        "train_seconds": round(float(state["seconds"]), 1),
        "steps": config.steps,
        "validation_psnr_db": round(mean_quality(ensemble, data.val)["psnr"], 3),
        "validation_psnr_single_pass_db": round(mean_quality(single, data.val)["psnr"], 3),
        "noisy_input_psnr_db": round(noisy_psnr(data.val), 3),
    }
    target.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu", help="teacher preset to ship (default cpu)")
    record = ship(parser.parse_args(argv).preset)
    print(
        f"shipped {record['file']}: validation PSNR {record['validation_psnr_db']:.2f} dB "
        f"(single pass {record['validation_psnr_single_pass_db']:.2f} dB), noisy input "
        f"{record['noisy_input_psnr_db']:.2f} dB"
    )


if __name__ == "__main__":
    main()
