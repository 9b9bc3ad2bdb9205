"""`nnsearch teacher train|show`: train, reuse, resume after an interruption, bad input."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import nnsearch.train.teacher
from nnsearch.cli import main
from nnsearch.train.teacher import read_checkpoint_info


@pytest.fixture
def images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A clean-image folder spec (4 small smooth images) and a private cache."""
    monkeypatch.setenv("NNSEARCH_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "clean"
    folder.mkdir()
    ramp = np.linspace(0.1, 0.9, 40, dtype=np.float32)
    for index in range(4):
        texture = np.random.default_rng(index).random((40, 40, 3)) * 0.2
        pixels = np.clip(ramp[:, None, None] * (0.5 + 0.1 * index) + texture, 0, 1)
        Image.fromarray((pixels * 255).astype(np.uint8)).save(folder / f"img{index}.png")
    return f"clean:{folder}"


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(["teacher", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def checkpoint_of(out: str) -> Path:
    return Path(re.search(r"checkpoint (\S+\.pt)", out).group(1))


def test_train_prints_the_checkpoint_and_reuses_it(images: str, capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    code, out, _ = run(capsys, "train", "--data", images, "--steps", "4")
    assert code == 0 and "trained in" in out and "validation PSNR" in out
    path = checkpoint_of(out)
    assert path.exists() and path.is_relative_to(tmp_path / "cache")
    assert read_checkpoint_info(path)["steps"] == 4
    code, out, _ = run(capsys, "train", "--data", images, "--steps", "4")
    assert code == 0 and f"teacher: reusing {path}" in out and ", reused in" in out
    code, out, _ = run(capsys, "show", "--data", images)
    assert code == 0 and "cpu: 4 steps on clean-clean" in out and str(path) in out
    code, out, _ = run(capsys, "show", "--data", images, "--seed", "1")  # other noise: another dataset
    assert code == 0 and "no cached teachers for this data" in out


def _interrupt_after(count: int):
    """A stand-in for nnsearch.common.progress.progress that raises KeyboardInterrupt (Ctrl-C) after `count` items."""

    def interrupted(items: Iterable, **_: object) -> Iterator:
        for index, item in enumerate(items):
            if index == count:
                raise KeyboardInterrupt
            yield item

    return interrupted


def test_an_interrupted_training_resumes_where_it_stopped(
    images: str, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with monkeypatch.context() as patch:
        patch.setattr(nnsearch.train.teacher, "progress", _interrupt_after(2))
        code, out, _ = run(capsys, "train", "--data", images, "--steps", "4")
    assert code == 130 and "saved step 2 of 4" in out
    (partial,) = (tmp_path / "cache" / "teachers").glob("*.partial")
    assert read_checkpoint_info(partial)["step"] == 2
    assert "unfinished, stopped at step 2" in run(capsys, "show")[1]

    code, out, _ = run(capsys, "train", "--data", images, "--steps", "4")
    assert code == 0 and "resuming from step 2" in out and ", resumed in" in out
    assert not partial.exists()
    resumed = torch.load(checkpoint_of(out))["model"]

    monkeypatch.setenv("NNSEARCH_CACHE", str(tmp_path / "other-cache"))
    code, out, _ = run(capsys, "train", "--data", images, "--steps", "4")
    assert code == 0 and "resuming" not in out
    straight = torch.load(checkpoint_of(out))["model"]
    for name, value in straight.items():  # the resumed teacher is the one an uninterrupted run trains
        torch.testing.assert_close(resumed[name], value, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--preset", "huge"], "unknown teacher preset 'huge'"),
        (["--steps", "0"], "teacher steps must be a positive integer, got 0"),
        (["--steps", "-3"], "got -3"),
        (["--data", "/no/such/folder"], "dataset path /no/such/folder does not exist"),
    ],
)
def test_bad_input_is_a_one_line_error(
    argv: list[str], message: str, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NNSEARCH_CACHE", str(tmp_path / "cache"))
    code, _out, err = run(capsys, "train", *argv)
    assert code == 2 and message in err and err.startswith("nnsearch: error:") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "cache" / "teachers").exists()


def test_training_is_reproducible_and_the_key_covers_versions(
    images: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nnsearch.train.datasets import load_data
    from nnsearch.train.teacher import load_or_train_teacher, teacher_config, teacher_path

    config, data = teacher_config("cpu", 6), load_data(images)
    weights = []
    for run in ("a", "b"):  # two fresh caches: two trainings from scratch
        monkeypatch.setenv("NNSEARCH_CACHE", str(tmp_path / run))
        weights.append(load_or_train_teacher(config, data, verbose=False).state_dict())
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])
    before = teacher_path(config, data)
    monkeypatch.setattr(torch, "__version__", "9.9.9")
    assert teacher_path(config, data) != before  # a teacher trained under another torch is not reused


def test_the_shipped_teacher_matches_the_built_in_data_of_this_code() -> None:
    """Changing the noise synthesis or the built-in photos without re-running
    `python -m nnsearch.train.ship_teacher` would make the demo train a teacher on first use."""
    from nnsearch.train.datasets import load_data
    from nnsearch.train.teacher import shipped_teacher, teacher_config

    assert shipped_teacher(teacher_config("cpu"), load_data()) is not None


def test_the_shipped_teacher_is_matched_on_the_recipe_not_on_float_rounding() -> None:
    """The synthesised pixels differ by float rounding between CPUs: the same recipe keeps the
    shipped teacher (no 1500-step training on first use); another noise seed does not."""
    from dataclasses import replace

    from nnsearch.train.datasets import load_data
    from nnsearch.train.teacher import shipped_teacher, teacher_config

    config = teacher_config("cpu")
    rounded_elsewhere = replace(load_data(), fingerprint="0" * 64)
    assert shipped_teacher(config, rounded_elsewhere) is not None
    assert shipped_teacher(config, load_data(seed=1)) is None
