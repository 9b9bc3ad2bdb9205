"""The teacher-output cache: reuse, keys, corruption, concurrent builders; a short distillation."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from test_crops import synthetic_data

from nnsearch.model.arch import Arch
from nnsearch.model.student import build_student
from nnsearch.train.distill import DistillConfig, TeacherTargets, distill
from nnsearch.train.teacher_outputs import outputs_dir

CONFIG = DistillConfig(steps=6, epochs=2, batch=2, crops=(16, 32), seed=0)


@pytest.fixture(autouse=True)
def cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("NNSEARCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def make_teacher(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_student(Arch(widths=(8, 16), blocks=(1, 1), skips=("concat",)))


def count_calls(model: torch.nn.Module) -> list[int]:
    """A list whose length grows by one for every forward pass of `model`."""
    calls: list[int] = []
    model.register_forward_hook(lambda *_: calls.append(1))
    return calls


def cached_files() -> list[Path]:
    return sorted(outputs_dir().glob("*.bin")) if outputs_dir().exists() else []


DATA = synthetic_data([(40, 48), (48, 40), (36, 36)])


def build(teacher: torch.nn.Module, config: DistillConfig = CONFIG, data=DATA, **kwargs) -> TeacherTargets:
    return TeacherTargets.build(teacher, data, config, multiple=4, **kwargs)


def assert_same_outputs(a: TeacherTargets, b: TeacherTargets) -> None:
    assert len(a.outputs) == len(b.outputs) == CONFIG.steps
    for x, y in zip(a.outputs, b.outputs):
        assert x.dtype == y.dtype == torch.float16 and torch.equal(x, y)


def test_second_build_loads_the_cache_and_equals_the_first_exactly(capsys: pytest.CaptureFixture) -> None:
    teacher = make_teacher()
    calls = count_calls(teacher)
    first = build(teacher, verbose=True)
    assert len(calls) == CONFIG.steps and len(cached_files()) == 1
    second = build(teacher, verbose=True)
    assert len(calls) == CONFIG.steps  # the teacher did not run again
    assert_same_outputs(first, second)
    assert "loaded 6 batches" in capsys.readouterr().out
    uncached = build(teacher, cache=False)
    assert len(calls) == 2 * CONFIG.steps
    assert_same_outputs(first, uncached)
    assert first.outputs[0].shape == (2, 3, 16, 16) and first.outputs[-1].shape == (2, 3, 32, 32)


@pytest.mark.parametrize("change", ["seed", "crops", "steps", "batch", "teacher", "data"])
def test_the_key_changes_with_everything_the_outputs_depend_on(change: str) -> None:
    teacher, config, data = make_teacher(), CONFIG, DATA
    base = build(teacher)
    if change == "teacher":
        teacher = make_teacher(seed=1)
    elif change == "data":
        data = synthetic_data([(40, 48), (48, 40), (36, 36)], seed=5)
    else:
        config = replace(config, **{change: {"seed": 1, "crops": (16, 24), "steps": 8, "batch": 3}[change]})
    other = TeacherTargets.build(teacher, data, config, multiple=4)
    assert len(cached_files()) == 2
    if change in ("seed", "teacher", "data"):  # same shapes, different values
        assert not all(torch.equal(x, y) for x, y in zip(base.outputs, other.outputs))


def test_students_whose_plans_crop_the_same_sides_share_one_teacher_output_file() -> None:
    """A 2-level and a 3-level student (multiples 4 and 8) crop 16 and 32 px alike: the teacher runs once."""
    teacher = make_teacher()
    calls = count_calls(teacher)
    two_levels = TeacherTargets.build(teacher, DATA, CONFIG, multiple=4)
    three_levels = TeacherTargets.build(teacher, DATA, CONFIG, multiple=8)
    assert len(cached_files()) == 1 and len(calls) == CONFIG.steps
    assert_same_outputs(two_levels, three_levels)
    odd = replace(CONFIG, crops=(20, 28))  # fitted to 20, 28 px for multiple 4 but 16, 24 px for multiple 8
    TeacherTargets.build(teacher, DATA, odd, multiple=4)
    TeacherTargets.build(teacher, DATA, odd, multiple=8)
    assert len(cached_files()) == 3


def test_changed_weights_of_the_same_teacher_object_are_not_served_from_the_cache() -> None:
    teacher = make_teacher()
    before = build(teacher)
    with torch.no_grad():
        next(teacher.parameters()).add_(0.5)
    after = build(teacher)
    assert len(cached_files()) == 2
    assert not torch.equal(before.outputs[0], after.outputs[0])


def _flip_last_byte(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize(
    "damage",
    [
        lambda path: path.write_bytes(path.read_bytes()[:-100]),  # truncated payload
        lambda path: path.write_bytes(path.read_bytes()[:20]),  # truncated header
        _flip_last_byte,  # altered payload, same length
        lambda path: path.write_bytes(b"not a cache file at all"),
    ],
    ids=["truncated", "header-cut", "bit-flip", "garbage"],
)
def test_a_damaged_cache_file_is_detected_and_rebuilt(damage, capsys: pytest.CaptureFixture) -> None:
    teacher = make_teacher()
    good = build(teacher)
    (path,) = cached_files()
    damage(path)
    calls = count_calls(teacher)
    rebuilt = build(teacher)
    assert len(calls) == CONFIG.steps  # recomputed, not loaded
    assert "rebuilding" in capsys.readouterr().out
    assert_same_outputs(good, rebuilt)
    assert_same_outputs(good, build(teacher))  # the rewritten file is good again
    assert len(calls) == CONFIG.steps


def test_concurrent_builders_compute_once_and_agree() -> None:
    teachers = [make_teacher() for _ in range(3)]  # same weights, as in separate worker processes
    calls = [count_calls(t) for t in teachers]
    results: list[TeacherTargets | None] = [None] * 3
    start = threading.Barrier(3)

    def worker(index: int) -> None:
        start.wait()
        results[index] = build(teachers[index])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(len(c) for c in calls) == CONFIG.steps  # one builder ran the teacher, the others waited and loaded
    assert all(r is not None for r in results)
    for other in results[1:]:
        assert_same_outputs(results[0], other)
    assert len(cached_files()) == 1 and not list(outputs_dir().glob("*.tmp"))


def test_distillation_uses_the_cached_targets_and_alpha_zero_needs_no_teacher() -> None:
    teacher = make_teacher()
    targets = build(teacher)
    student_arch = Arch(widths=(4, 8), blocks=(0, 1), skips=("add",))
    torch.manual_seed(0)
    result = distill(build_student(student_arch), targets, DATA.val, CONFIG)
    assert len(result.epochs) == 2 and all(torch.isfinite(torch.tensor(e.psnr)) for e in result.epochs)
    no_teacher = build(teacher, replace(CONFIG, alpha=0.0))
    assert no_teacher.outputs == [None] * CONFIG.steps and len(cached_files()) == 1
    plain = distill(build_student(student_arch), no_teacher, DATA.val, replace(CONFIG, alpha=0.0))
    assert plain.final.psnr != result.final.psnr
