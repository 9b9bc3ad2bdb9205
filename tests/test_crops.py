"""The progressive crop schedule and the seeded batch plan."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nnsearch.errors import DataError, NNSearchError
from nnsearch.train.crops import MAX_CROP, CropSchedule, make_batch_plan
from nnsearch.train.datasets import DenoiseData, ImagePair
from nnsearch.train.distill import DistillConfig


def synthetic_data(sizes: list[tuple[int, int]], seed: int = 0, name: str = "synthetic") -> DenoiseData:
    """Random clean images of the given (height, width) with Gaussian noise; the last one validates."""
    rng = np.random.default_rng(seed)
    pairs = []
    for index, (height, width) in enumerate(sizes):
        clean = rng.random((height, width, 3), dtype=np.float32)
        noisy = np.clip(clean + rng.normal(0, 0.1, clean.shape), 0, 1).astype(np.float32)
        pairs.append(ImagePair(f"img{index}", noisy, clean))
    return DenoiseData(
        name=name,
        train=tuple(pairs[:-1]),
        val=tuple(pairs[-1:]),
        fingerprint=f"{name}-{seed}-{sizes}",
        source="test images",
    )


def test_sizes_grow_over_the_budget_in_equal_shares() -> None:
    schedule = CropSchedule((32, 48, 64))
    assert [schedule.size_at(step, 12) for step in range(12)] == [32] * 4 + [48] * 4 + [64] * 4
    data = synthetic_data([(80, 80), (80, 96), (64, 64)])
    plan = make_batch_plan(data.train, schedule, steps=9, batch=2, seed=0, multiple=16)
    assert [plan[step].noisy.shape[-1] for step in range(9)] == [32] * 3 + [48] * 3 + [64] * 3
    assert all(plan[step].clean.shape == (2, 3, plan.crop_at(step), plan.crop_at(step)) for step in range(9))


def test_a_schedule_up_to_1024_is_accepted_and_clipped_to_the_smallest_image() -> None:
    schedule = CropSchedule((128, 256, 512, MAX_CROP))
    assert schedule.sizes == (128, 256, 512, 1024)
    data = synthetic_data([(300, 260), (200, 230), (50, 50)])  # smallest training image: 200 px
    plan = make_batch_plan(data.train, schedule, steps=4, batch=1, seed=0, multiple=16)
    assert plan.sizes == (128, 192, 192, 192)  # 200 rounded down to a multiple of 16
    assert plan[3].noisy.shape == (1, 3, 192, 192)
    with pytest.raises(DataError, match="between 1 and 1024"):
        CropSchedule((512, 2048))


def test_crops_are_rounded_down_to_the_multiple() -> None:
    data = synthetic_data([(70, 90), (100, 100), (40, 40)])
    plan = make_batch_plan(data.train, CropSchedule((40, 96)), steps=2, batch=3, seed=1, multiple=16)
    assert plan.sizes == (32, 64)
    assert plan[0].noisy.shape == (3, 3, 32, 32) and plan[1].noisy.shape == (3, 3, 64, 64)


def test_a_schedule_that_cannot_fit_names_the_sizes() -> None:
    data = synthetic_data([(12, 40), (30, 30), (30, 30)])
    with pytest.raises(DataError) as error:
        make_batch_plan(data.train, CropSchedule((48, 64)), steps=4, batch=2, seed=0, multiple=16)
    message = str(error.value)
    assert "[48, 64]" in message and "12 px" in message and "16" in message


@pytest.mark.parametrize("sizes", [(), (64, 48), (0, 32), (32.5,)])
def test_bad_schedules_are_rejected(sizes: tuple) -> None:
    with pytest.raises(DataError, match="crop"):
        CropSchedule(sizes)


def test_distill_config_validates_its_crops() -> None:
    with pytest.raises(NNSearchError, match="grow"):
        DistillConfig(crops=(96, 48))
    assert DistillConfig(crops=(64, 128, 256, 512, 1024)).schedule.sizes[-1] == 1024


def test_the_plan_is_deterministic_for_a_seed_and_differs_for_another() -> None:
    data = synthetic_data([(64, 80), (72, 64), (48, 48)])
    schedule = CropSchedule((32, 48))
    first = make_batch_plan(data.train, schedule, steps=6, batch=4, seed=3, multiple=16)
    again = make_batch_plan(data.train, schedule, steps=6, batch=4, seed=3, multiple=16)
    other = make_batch_plan(data.train, schedule, steps=6, batch=4, seed=4, multiple=16)
    listed = list(first)
    for step in range(6):
        assert torch.equal(first[step].noisy, again[step].noisy) and torch.equal(first[step].clean, again[step].clean)
        assert torch.equal(listed[step].noisy, first[step].noisy)  # random access == iteration
    assert not all(torch.equal(first[s].noisy, other[s].noisy) for s in range(6))
    assert torch.equal(first[-1].clean, first[5].clean)
    with pytest.raises(IndexError):
        first[6]


def test_crops_are_aligned_cuts_of_the_training_pairs() -> None:
    data = synthetic_data([(40, 56), (40, 40)])
    image = data.train[0]
    batch = make_batch_plan(data.train, CropSchedule((32,)), steps=1, batch=8, seed=0, multiple=16)[0]
    for noisy, clean in zip(batch.noisy, batch.clean):
        noisy, clean = noisy.permute(1, 2, 0).numpy(), clean.permute(1, 2, 0).numpy()
        found = [
            (y, x, flip)
            for flip in (False, True)
            for y in range(9)
            for x in range(25)
            if np.array_equal((image.clean[:, ::-1] if flip else image.clean)[y : y + 32, x : x + 32], clean)
        ]
        assert len(found) == 1
        y, x, flip = found[0]
        assert np.array_equal((image.noisy[:, ::-1] if flip else image.noisy)[y : y + 32, x : x + 32], noisy)


def test_synthetic_pairs_get_fresh_noise_per_crop_and_the_plan_stays_reproducible() -> None:
    from nnsearch.train.datasets import load_data

    data = load_data(max_side=128)
    plan = make_batch_plan(data.train, CropSchedule((64,)), steps=2, batch=2, seed=5)
    again = make_batch_plan(data.train, CropSchedule((64,)), steps=2, batch=2, seed=5)
    torch.testing.assert_close(plan[1].noisy, again[1].noisy)
    fixed = {pair.name: pair.noisy for pair in data.train}
    residual = plan[0].noisy - plan[0].clean
    assert residual.abs().mean() > 1 / 255
    for crop in plan[0].noisy:  # no crop is cut from the stored (validation-style) realisation
        image = crop.permute(1, 2, 0).numpy()
        assert not any(_contains(stored, image) for stored in fixed.values())


def _contains(image: np.ndarray, crop: np.ndarray) -> bool:
    size = crop.shape[0]
    return any(
        np.array_equal(np.sort(image[y : y + size, x : x + size], axis=2), np.sort(crop, axis=2))
        for y in range(image.shape[0] - size + 1)
        for x in range(image.shape[1] - size + 1)
    )
