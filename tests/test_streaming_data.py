"""Streamed datasets, the decoded-pair cache, loader workers, AMP choice and the teacher-output cache limit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nnsearch.common.device import amp_dtype
from nnsearch.model.space import load_space
from nnsearch.model.student import build_student
from nnsearch.train.crops import CropSchedule, make_batch_plan
from nnsearch.train.datasets import load_data, read_image
from nnsearch.train.datasets.streaming import DecodedCache, StreamedPair
from nnsearch.train.distill import DistillConfig, TeacherTargets, distill
from nnsearch.train.prefetch import batch_stream


def _folder(root: Path, count: int = 4, size: tuple[int, int] = (70, 90), seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for role in ("noisy", "clean"):
        (root / role).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(root / role / f"p{index}.png")
    return root


def test_pairs_stream_from_disk_and_match_decoding_the_files(tmp_path: Path) -> None:
    data = load_data(str(_folder(tmp_path / "d")), max_side=64)
    pair = data.train[0]
    assert isinstance(pair, StreamedPair) and pair.shape == (64, 64, 3)
    full = read_image(pair.noisy_path)
    top, left = (70 - 64) // 2, (90 - 64) // 2
    np.testing.assert_array_equal(pair.noisy, full[top : top + 64, left : left + 64])
    noisy, clean = pair.crop(5, 7, 16)
    np.testing.assert_array_equal(noisy, full[top + 5 : top + 21, left + 7 : left + 23])
    np.testing.assert_array_equal(clean, read_image(pair.clean_path)[top + 5 : top + 21, left + 7 : left + 23])


def test_the_fingerprint_follows_file_contents_and_is_not_recomputed(tmp_path: Path, monkeypatch) -> None:
    root = _folder(tmp_path / "d")
    first = load_data(str(root)).fingerprint
    import hashlib

    hashed = []
    real = hashlib.sha256

    class Counting:
        def __init__(self, data: bytes = b"") -> None:
            self.inner = real(data)
            hashed.append(len(data))

        def update(self, data) -> None:
            hashed.append(len(memoryview(data).cast("B")))
            self.inner.update(data)

        def hexdigest(self) -> str:
            return self.inner.hexdigest()

    monkeypatch.setattr(hashlib, "sha256", Counting)
    assert load_data(str(root)).fingerprint == first
    smallest_file = min(p.stat().st_size for p in root.rglob("*.png"))
    assert 0 < sum(hashed) < smallest_file  # names and digests only: no file (let alone pixels) hashed again
    monkeypatch.undo()
    Image.fromarray(np.zeros((70, 90, 3), np.uint8)).save(root / "clean" / "p3.png")
    assert load_data(str(root)).fingerprint != first


def test_batch_plans_of_streamed_data_are_deterministic_and_cached(tmp_path: Path) -> None:
    data = load_data(str(_folder(tmp_path / "d")))
    plan = make_batch_plan(data.train, CropSchedule((16, 32)), steps=6, batch=3, seed=4, multiple=8)
    again = make_batch_plan(load_data(str(tmp_path / "d")).train, CropSchedule((16, 32)), 6, 3, 4, 8)
    for step in range(6):
        assert torch.equal(plan[step].noisy, again[step].noisy) and torch.equal(plan[step].clean, again[step].clean)
    cache = data.train[0].cache
    assert isinstance(cache, DecodedCache) and len(list(cache.folder.glob("*.npy"))) >= 2
    inline = list(batch_stream(plan, 0, 6))
    workers = list(batch_stream(plan, 0, 6, workers=2))
    assert all(torch.equal(a.noisy, b.noisy) and torch.equal(a.clean, b.clean) for a, b in zip(inline, workers))


def test_the_decoded_cache_stays_under_its_limit(tmp_path: Path) -> None:
    root = _folder(tmp_path / "d", count=3)
    per_image = 70 * 90 * 3 + 128  # uint8 pixels + the .npy header
    cache = DecodedCache(tmp_path / "cache", limit_bytes=2 * per_image)
    for path in sorted((root / "noisy").glob("*.png")):
        np.testing.assert_array_equal(cache.raw(path), np.asarray(Image.open(path)))
    assert sum(p.stat().st_size for p in cache.folder.glob("*.npy")) <= 2 * per_image
    assert len(list(cache.folder.glob("*.npy"))) == 2  # the oldest was evicted


def test_teacher_outputs_beyond_the_cache_limit_are_computed_on_the_fly(tmp_path: Path, capsys) -> None:
    data = load_data(str(_folder(tmp_path / "d")))
    config = DistillConfig(steps=4, epochs=1, batch=2, crops=(16,), loader_workers=0)
    teacher = build_student(load_space("tiny").fastest_candidates()[0]).eval()
    cached = TeacherTargets.build(teacher, data, config, multiple=8)
    live = TeacherTargets.build(teacher, data, config, multiple=8, limit_bytes=100)
    assert live.outputs is None and "computing them on the fly" in capsys.readouterr().out
    for step in range(4):
        noisy = cached.plan[step].noisy.contiguous(memory_format=torch.channels_last)
        assert torch.equal(cached.target(step, noisy), live.target(step, noisy))
    student = build_student(load_space("tiny").fastest_candidates()[0])
    result = distill(student, live, data.val, config)
    assert len(result.epochs) == 1 and np.isfinite(result.final.psnr)


def test_amp_is_used_on_cuda_only_and_can_be_turned_off(monkeypatch) -> None:
    assert amp_dtype("cpu") is None
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert amp_dtype("cuda") == torch.bfloat16 and amp_dtype("cuda", enabled=False) is None
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert amp_dtype("cuda") == torch.float16
    monkeypatch.setenv("NNSEARCH_AMP", "0")
    assert amp_dtype("cuda") is None


@pytest.mark.parametrize("workers", [0, 2])
def test_distillation_with_loader_workers_matches_inline(tmp_path: Path, workers: int) -> None:
    data = load_data(str(_folder(tmp_path / "d")))
    config = DistillConfig(steps=4, epochs=2, batch=2, crops=(16,), alpha=0.0, loader_workers=0)
    arch = load_space("tiny").fastest_candidates()[0]
    targets = TeacherTargets.build(None, data, config, multiple=8)
    torch.manual_seed(0)
    base = distill(build_student(arch), targets, data.val, config)
    torch.manual_seed(0)
    other = distill(
        build_student(arch), targets, data.val, DistillConfig(**{**config.__dict__, "loader_workers": workers})
    )
    assert [e.train_loss for e in base.epochs] == pytest.approx([e.train_loss for e in other.epochs], rel=1e-6)


def test_a_distillation_resumed_from_a_snapshot_ends_where_an_uninterrupted_one_does(tmp_path: Path) -> None:
    data = load_data(str(_folder(tmp_path / "d")))
    config = DistillConfig(steps=6, epochs=2, batch=2, crops=(16,), alpha=0.0, loader_workers=0)
    arch = load_space("tiny").fastest_candidates()[0]
    targets = TeacherTargets.build(None, data, config, multiple=8)
    torch.manual_seed(0)
    first = build_student(arch)
    snapshots: list[dict] = []
    straight = distill(first, targets, data.val, config, on_checkpoint=snapshots.append, checkpoint_every=2)
    assert [s["run"]["step"] for s in snapshots] == [2, 3, 4, 6]  # every 2 steps and after each epoch
    resumed_student = build_student(arch)
    resumed = distill(resumed_student, targets, data.val, config, resume=snapshots[0])
    assert [e.psnr for e in resumed.epochs] == pytest.approx([e.psnr for e in straight.epochs])
    for a, b in zip(first.state_dict().values(), resumed_student.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)
