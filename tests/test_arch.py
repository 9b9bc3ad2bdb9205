"""Arch: stable identity and self-contained model code."""

import pytest
import torch

from nnsearch.errors import SpaceError
from nnsearch.model.arch import Arch, load_model_code
from nnsearch.model.student import build_student


def make_arch(**changes):
    fields = dict(
        widths=(8, 16, 24),
        blocks=(1, 0, 1),
        skips=("concat", "add"),
        block="residual",
        downsample="maxpool",
        global_residual=True,
    )
    fields.update(changes)
    return Arch(**fields)


def test_hash_depends_only_on_architecture():
    a, b = make_arch(), make_arch(label="named")
    assert a.digest == b.digest and a.name == b.name
    assert make_arch(downsample="conv").name != a.name
    assert a.name.startswith("DenoiseUNet-") and len(a.digest) == 64


def test_dict_round_trip():
    arch = make_arch()
    assert Arch.from_dict(arch.to_dict()) == arch


def test_model_code_rebuilds_same_network():
    arch = make_arch()
    module = load_model_code(arch.model_code())
    assert module.supported_hyperparameters() >= {"lr"}
    net = module.Net((1, 3, 32, 32), (1, 3, 32, 32), {"lr": 1e-3}, "cpu")
    reference = build_student(arch)
    net.load_state_dict(reference.state_dict())
    x = torch.rand(1, 3, 32, 32)
    assert torch.equal(net(x), reference(x))
    loss = net.learn([(x, x)])
    assert loss >= 0.0


def test_invalid_arch_is_refused_with_reason():
    with pytest.raises(SpaceError, match="skips has 1 entries"):
        make_arch(skips=("concat",))
    with pytest.raises(SpaceError, match="widths must be even"):
        make_arch(widths=(9, 16, 24))


@pytest.mark.parametrize("seed", range(5))
def test_conv_work_counts_the_convolutions_thop_counts(seed: int) -> None:
    import random

    from nnsearch.model.counting import count_macs
    from nnsearch.model.space import load_space

    rng = random.Random(seed)
    arch = load_space("litedenoise").sample(lambda _name, choices: rng.choice(list(choices)))
    macs = count_macs(build_student(arch), arch, 64, 96)
    # thop also counts the element-wise operators, which the proxy leaves out
    assert arch.conv_work() * 9 * 64 * 96 == pytest.approx(macs, rel=0.03)


def test_model_file_trains_under_lemurs_hyperparameter_sampling():
    """LEMUR samples lr in its lr range, momentum in [0, 1], every other declared name in [0, 1], and adds
    batch, transform and epoch_max itself: the file must declare nothing else and map momentum itself."""
    import math
    import random

    module = load_model_code(make_arch().model_code())
    declared = module.supported_hyperparameters()
    assert declared == {"lr", "momentum"}  # batch is LEMUR's own choice, never a [0, 1] float
    rng = random.Random(0)
    for _ in range(3):
        prm = {
            "lr": math.exp(rng.uniform(math.log(1e-4), math.log(1e-1))),
            "momentum": rng.uniform(0, 1),
            "batch": 4,
            "transform": "denoise",
            "epoch_max": 1,
        }
        net = module.Net((4, 3, 16, 16), (4, 3, 16, 16), prm, "cpu")
        group = net.optimizer.param_groups[0]
        assert group["lr"] == prm["lr"] and group["betas"] == (0.5 + 0.499 * prm["momentum"], 0.999)
        x = torch.rand(4, 3, 16, 16)
        assert math.isfinite(net.learn(torch.utils.data.DataLoader(list(zip(x, x)), batch_size=prm["batch"])))
    default = module.Net((1, 3, 16, 16), (1, 3, 16, 16), {}, "cpu").optimizer.param_groups[0]
    assert default["betas"] == (0.9, 0.999)  # nnsearch's own training (no momentum) keeps Adam's default
