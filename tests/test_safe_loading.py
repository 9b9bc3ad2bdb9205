"""torch files load without running code: a crafted pickle is refused naming the file, nothing runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import RunsCode

from nnsearch.common.torch_files import DamagedFileError, UnsafeFileError, load_tensors
from nnsearch.train.teacher import read_checkpoint_info


def test_tensors_numbers_and_containers_load(tmp_path: Path) -> None:
    path = tmp_path / "good.pt"
    torch.save({"model": {"w": torch.ones(2)}, "step": 3, "config": {"preset": "cpu"}}, path)
    loaded = load_tensors(path, "checkpoint")
    assert loaded["step"] == 3 and torch.equal(loaded["model"]["w"], torch.ones(2))


def test_a_pickle_that_would_run_code_is_refused_before_it_runs(tmp_path: Path) -> None:
    path, marker = tmp_path / "crafted.pt", tmp_path / "ran"
    torch.save({"model": RunsCode(marker)}, path)
    with pytest.raises(
        UnsafeFileError, match=f"checkpoint {path} is not a file of tensors that loads without running code .*GLOBAL"
    ):
        load_tensors(path, "checkpoint")
    assert not marker.exists()


def test_random_and_truncated_files_are_named(tmp_path: Path) -> None:
    noise, cut = tmp_path / "noise.pt", tmp_path / "cut.pt"
    noise.write_bytes(bytes(range(256)) * 8)
    torch.save({"w": torch.ones(100)}, cut)
    cut.write_bytes(cut.read_bytes()[:300])
    with pytest.raises((UnsafeFileError, DamagedFileError), match=str(noise)):
        load_tensors(noise, "weights file")
    with pytest.raises(DamagedFileError, match=f"weights file {cut} is not a readable torch file"):
        load_tensors(cut, "weights file")


def test_a_crafted_teacher_checkpoint_in_the_cache_is_refused(tmp_path: Path) -> None:
    path, marker = tmp_path / "cpu-0123456789abcdef.pt", tmp_path / "ran"
    torch.save({"model": {"w": torch.ones(1)}, "config": RunsCode(marker)}, path)
    with pytest.raises(UnsafeFileError, match=f"teacher checkpoint {path} .*delete it to train the teacher again"):
        read_checkpoint_info(path)
    assert not marker.exists()
