"""`nnsearch train NN` on a student a tiny study recorded: new rows, resume after SIGKILL, bad data (real processes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import RunsCode, tiny_study_flags
from PIL import Image
from sqlalchemy import select

from nnsearch.store.engine import Store
from nnsearch.store.integrity import check_integrity
from nnsearch.store.schema import NN, Stat, Weights
from nnsearch.store.stored_model import load_stored_model

TINY_SEARCH = tiny_study_flags()
TRAIN = ["--teacher-steps", "20", "--max-side", "64", "--batch", "2", "--loader-workers", "0"]


def nnsearch(*args: str, env: dict, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nnsearch", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def studied(tmp_path_factory) -> tuple[str, str, dict, Path]:
    """(store URL, student name, environment, folder) after a one-trial tiny study."""
    root = tmp_path_factory.mktemp("final")
    env = {**os.environ, "NNSEARCH_CACHE": str(root / "cache"), "PYTHONUNBUFFERED": "1"}
    db = f"sqlite:///{root / 'store.db'}"
    done = nnsearch("search", "--db", db, "--study", "tiny", "--trials", "1", *TINY_SEARCH, env=env, cwd=root)
    assert done.returncode == 0, done.stderr
    with Store(db).session() as session:
        (name,) = session.scalars(select(NN.name)).all()
    return db, name, env, root


def stat_rows(db: str, nn: str) -> dict[str, int]:
    """prm uid -> number of stat rows of `nn`."""
    with Store(db).session() as session:
        rows = session.scalars(select(Stat).where(Stat.nn == nn)).all()
        counts: dict[str, int] = {}
        for row in rows:
            counts[row.prm] = counts.get(row.prm, 0) + 1
        return counts


def test_train_adds_rows_and_weights_that_export_ships(studied) -> None:
    db, name, env, root = studied
    before = stat_rows(db, name)
    done = nnsearch("train", name, "--db", db, "--steps", "40", "--crops", "32,64", *TRAIN, env=env, cwd=root)
    assert done.returncode == 0, done.stderr
    after = stat_rows(db, name)
    (new,) = set(after) - set(before)
    assert after[new] == 4  # psnr and ssim of 2 epochs (one per crop size)
    assert {k: v for k, v in after.items() if k != new} == before  # the search's rows are kept
    with Store(db).session() as session:
        assert session.scalar(select(Weights.prm).where(Weights.nn == name, Weights.prm == new)) == new
    assert load_stored_model(Store(db), name, new).prm_uid == new
    assert f"recorded under hyperparameter set {new}" in done.stdout
    assert check_integrity(db) == []
    again = nnsearch("train", name, "--db", db, "--steps", "40", "--crops", "32,64", *TRAIN, env=env, cwd=root)
    assert again.returncode == 0 and "nothing to do" in again.stdout and stat_rows(db, name) == after


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill", "ctrl-c"])
def test_a_killed_or_interrupted_run_resumes_from_its_checkpoint(studied, sig: int) -> None:
    db, name, env, root = studied
    steps = "400" if sig == signal.SIGKILL else "300"  # another budget: another hyperparameter set
    args = ["train", name, "--db", db, "--steps", steps, "--crops", "32,64", "--checkpoint-every", "5", *TRAIN]
    checkpoints = root / "cache" / "training"
    before = stat_rows(db, name)
    process = subprocess.Popen(
        [sys.executable, "-m", "nnsearch", *args],
        env=env,
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while not list(checkpoints.glob("*.ckpt")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it wrote a checkpoint"
    process.send_signal(sig)
    code = process.wait(timeout=120)
    assert code == (-signal.SIGKILL if sig == signal.SIGKILL else 130)
    assert stat_rows(db, name) == before  # nothing recorded by the stopped run
    done = nnsearch(*args, env=env, cwd=root)
    assert done.returncode == 0, done.stderr
    step = int(done.stdout.split("resuming at step ")[1].split()[0].rstrip(","))
    assert 5 <= step < int(steps)  # a periodic, end-of-epoch or Ctrl-C checkpoint
    assert len(stat_rows(db, name)) == len(before) + 1
    assert not list(checkpoints.glob("*.ckpt"))  # removed once recorded


def test_a_checkpoint_that_would_run_code_is_refused_naming_it(studied, tmp_path) -> None:
    db, name, env, root = studied
    args = ["train", name, "--db", db, "--steps", "500", "--crops", "32,64", "--checkpoint-every", "5", *TRAIN]
    checkpoints = root / "cache" / "training"
    process = subprocess.Popen(
        [sys.executable, "-m", "nnsearch", *args],
        env=env,
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while not list(checkpoints.glob("*.ckpt")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.kill()
    process.wait(timeout=60)
    (checkpoint,) = checkpoints.glob("*.ckpt")
    marker = tmp_path / "ran"
    torch.save({"key": RunsCode(marker), "snapshot": {}}, checkpoint)  # someone else's file in a shared cache
    before = stat_rows(db, name)
    done = nnsearch(*args, env=env, cwd=root)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert str(checkpoint) in done.stderr and "without running code" in done.stderr
    assert not marker.exists()
    assert stat_rows(db, name) == before
    checkpoint.unlink()


def _pairs(folder: Path, count: int, size: tuple[int, int] = (64, 80)) -> None:
    rng = np.random.default_rng(0)
    for role in ("noisy", "clean"):
        (folder / role).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / role / f"p{index}.png")


@pytest.mark.parametrize("damage", ["unreadable", "mismatched"])
def test_a_bad_folder_fails_before_training_naming_the_file(studied, tmp_path, damage: str) -> None:
    db, name, env, root = studied
    _pairs(tmp_path / "data", 4)
    bad = tmp_path / "data" / "clean" / "p2.png"
    if damage == "unreadable":
        bad.write_bytes(b"not an image")
    else:
        Image.fromarray(np.zeros((40, 80, 3), np.uint8)).save(bad)
    before = stat_rows(db, name)
    done = nnsearch(
        "train",
        name,
        "--db",
        db,
        "--steps",
        "20",
        "--crops",
        "32",
        "--alpha",
        "0",
        "--data",
        str(tmp_path / "data"),
        *TRAIN,
        env=env,
        cwd=root,
    )
    assert done.returncode == 2 and str(bad) in done.stderr and "Traceback" not in done.stderr
    assert "train: " not in done.stdout  # stopped before training
    assert stat_rows(db, name) == before


def test_an_image_that_breaks_mid_run_stops_cleanly_without_a_record(studied, tmp_path) -> None:
    db, name, env, root = studied
    _pairs(tmp_path / "data", 4)
    bad = tmp_path / "data" / "noisy" / "p1.png"
    bad.write_bytes(bad.read_bytes()[:120])  # the header reads, the pixels do not
    before = stat_rows(db, name)
    done = nnsearch(
        "train",
        name,
        "--db",
        db,
        "--steps",
        "20",
        "--crops",
        "32",
        "--alpha",
        "0",
        "--data",
        str(tmp_path / "data"),
        *TRAIN[:-1],
        "1",  # met in a loader worker process
        env={**env, "NNSEARCH_DATA_CACHE_GB": "0"},
        cwd=root,
    )
    assert done.returncode == 2 and str(bad) in done.stderr and "Traceback" not in done.stderr
    assert "train: " in done.stdout  # it had started
    assert stat_rows(db, name) == before
    assert check_integrity(db) == []
