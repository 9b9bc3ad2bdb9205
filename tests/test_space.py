"""Search-space files: parsing, validation errors, sampling."""

import random

import pytest
import torch
from thop import profile

from nnsearch.errors import SpaceError
from nnsearch.model.space import load_space, parse_space
from nnsearch.model.student import build_student


def test_litedenoisenet_point_has_published_params_and_macs():
    arch = load_space("litedenoise").reference("LiteDenoiseNet")
    model = build_student(arch).eval()
    assert sum(p.numel() for p in model.parameters()) == 1_963_411
    with torch.no_grad():
        macs, _ = profile(model, (torch.zeros(1, 3, 1088, 1920),), verbose=False)
    assert macs / 1e9 == pytest.approx(112.6, abs=0.1)


def test_sampled_archs_lie_in_space_and_run():
    space = load_space("tiny")
    rng = random.Random(3)
    for _ in range(20):
        arch = space.sample(lambda _name, choices: rng.choice(list(choices)))
        assert space.contains(arch)
        out = build_student(arch)(torch.rand(1, 3, 32, 32))
        assert out.shape == (1, 3, 32, 32)
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_params_of_inverts_sample():
    space = load_space("litedenoise")
    arch = space.reference("LiteDenoiseNet")
    params = space.params_of(arch)
    assert space.sample(lambda name, choices: params[name]) == arch


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("levels: [2]\nwidths: [[8], [16]]\ncolour: red\n", "unknown key(s) ['colour']"),
        ("levels: [2]\nwidths: [[8], [16]]\nskip: [concat, sum]\n", "'sum' is not a known option"),
        ("levels: [2]\nwidths: [[8], [16]]\nblock: [transposed]\n", "'transposed' is not a known option"),
        ("widths: [[8], [16]]\n", "missing required key(s) ['levels']"),
        ("levels: [3]\nwidths: [[8], [16]]\n", "choices for 2 levels"),
        ("levels: [2]\nwidths: [[8], [16]\n", "not valid YAML"),
        ("- just\n- a list\n", "expected a mapping"),
        ("levels: [2]\nwidths: [[7], [16]]\n", "odd"),
        (
            "levels: [2]\nwidths: [[8], [16]]\nreference:\n  big: {widths: [64, 16], blocks: [1, 1], skips: [concat]}\n",
            "lies outside the space",
        ),
    ],
)
def test_bad_space_files_name_file_and_problem(tmp_path, text, fragment):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SpaceError) as info:
        load_space(path)
    assert str(path) in str(info.value)
    assert fragment in str(info.value)


def test_missing_space_file_is_reported(tmp_path):
    with pytest.raises(SpaceError, match="does not exist"):
        load_space(tmp_path / "nope.yaml")


def test_shared_choices_apply_to_every_level():
    space = parse_space({"levels": [2, 3], "widths": [8, 16], "blocks": [0, 2]})
    assert space.widths == ((8, 16),) * 3
    assert space.blocks == ((0, 2),) * 3


def test_to_mapping_round_trips_through_parse_space():
    for name in ("tiny", "litedenoise"):
        space = load_space(name)
        again = parse_space(space.to_mapping(), source=space.source)
        assert again == space  # every field, references and source included


def test_suggest_samples_the_space_through_an_optuna_trial():
    import optuna

    space = load_space("litedenoise")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(10):
        trial = study.ask()
        arch = space.suggest(trial)
        assert space.contains(arch)
        assert trial.params == space.params_of(arch)
        study.tell(trial, 0.0)
