"""`Arch`: a frozen description of one student, with a stable content hash.

An `Arch` is what a search samples and what the store keys models by. Its hash
depends only on the architecture fields, so the same network always gets the
same name, and `model_code()` renders it as a self-contained Python module that
follows the NN Dataset model-file contract.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from nnsearch.errors import SpaceError
from nnsearch.model import student as _student

ARCH_FIELDS = ("widths", "blocks", "skips", "block", "downsample", "global_residual", "in_channels")

#: Inclusive bounds of a student's fields. Wider, deeper or more levels than this no
#: target NPU holds (a 1088x1920 activation of 1024 float channels is 8.5 GB) and
#: training runs out of memory; a space is checked against them when it is read.
LIMITS = {"widths": (2, 1024), "blocks": (0, 16), "levels": (1, 8)}


def outside_limits(field_name: str, values: Any) -> list[int]:
    """The values of `field_name` ('widths', 'blocks' or 'levels') outside `LIMITS`."""
    low, high = LIMITS[field_name]
    return [v for v in values if not low <= v <= high]


def limit_text(field_name: str) -> str:
    """'between 2 and 1024' for the field's bounds."""
    return "between {} and {}".format(*LIMITS[field_name])


@dataclass(frozen=True)
class Arch:
    """One U-Net student: per-level widths and block counts, per-skip layouts."""

    widths: tuple[int, ...]
    blocks: tuple[int, ...]
    skips: tuple[str, ...]
    block: str = "residual"
    downsample: str = "conv"
    global_residual: bool = True
    in_channels: int = 3
    label: str | None = field(default=None, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        object.__setattr__(self, "blocks", tuple(int(b) for b in self.blocks))
        object.__setattr__(self, "skips", tuple(str(s) for s in self.skips))
        object.__setattr__(self, "global_residual", bool(self.global_residual))
        self.validate()

    @property
    def levels(self) -> int:
        """Number of resolution levels (the last one is the bottleneck)."""
        return len(self.widths)

    @property
    def min_divisor(self) -> int:
        """Input height and width must be multiples of this."""
        return 2 ** (self.levels - 1)

    def validate(self) -> None:
        """Raise `SpaceError` if the fields do not describe a buildable student."""
        problems = []
        if outside_limits("levels", [self.levels]):
            problems.append(f"a student has {limit_text('levels')} levels, got {self.levels}")
        if len(self.blocks) != self.levels:
            problems.append(f"blocks has {len(self.blocks)} entries, expected one per level ({self.levels})")
        if len(self.skips) != self.levels - 1:
            problems.append(f"skips has {len(self.skips)} entries, expected levels - 1 = {self.levels - 1}")
        if outside_limits("widths", self.widths):
            problems.append(f"widths must be {limit_text('widths')}, got {list(self.widths)}")
        if self.block == "residual" and any(w % 2 for w in self.widths):
            problems.append(f"the residual block halves the width, so widths must be even, got {list(self.widths)}")
        if outside_limits("blocks", self.blocks):
            problems.append(f"blocks must be {limit_text('blocks')}, got {list(self.blocks)}")
        for name, value, allowed in (
            ("block", self.block, _student.BLOCK_TYPES),
            ("downsample", self.downsample, _student.DOWNSAMPLE_TYPES),
        ):
            if value not in allowed:
                problems.append(f"{name} '{value}' is not one of {list(allowed)}")
        bad_skips = [s for s in self.skips if s not in _student.SKIP_TYPES]
        if bad_skips:
            problems.append(f"skip layout {bad_skips} not in {list(_student.SKIP_TYPES)}")
        if problems:
            raise SpaceError("invalid architecture: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """The architecture fields as plain JSON-able values (no label)."""
        data = asdict(self)
        data.pop("label")
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], label: str | None = None) -> Arch:
        """Inverse of `to_dict`; unknown keys are an error."""
        unknown = sorted(set(data) - set(ARCH_FIELDS))
        if unknown:
            raise SpaceError(f"unknown architecture field(s) {unknown}; expected {list(ARCH_FIELDS)}")
        try:
            return cls(**{k: data[k] for k in data}, label=label)
        except TypeError as exc:
            raise SpaceError(f"incomplete architecture {dict(data)}: {exc}") from None

    @property
    def digest(self) -> str:
        """sha256 of the canonical JSON of the architecture fields."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    @property
    def name(self) -> str:
        """Stable model name, e.g. `DenoiseUNet-3f2a9c1b7e` (no '_': NN Dataset folder names split on it)."""
        return f"DenoiseUNet-{self.digest[:10]}"

    def conv_work(self) -> float:
        """Approximate 3x3-conv multiply-accumulates per input pixel, divided by 9 (a cheap cost proxy).

        Counts every convolution of the student (stem, blocks, down- and
        up-path, head) at its level's resolution; element-wise operators are
        left out. Microseconds to compute, against milliseconds for an exact
        lookup-table prediction, so a sampler can rank many candidates by it.
        """
        levels, inputs = self.levels, self.in_channels
        work = inputs * self.widths[0] * 2.0  # stem and head
        for i, (width, blocks) in enumerate(zip(self.widths, self.blocks)):
            stages = 1 if i == levels - 1 else 2  # the bottleneck has no decoder stage
            work += stages * blocks * width * width / 4.0**i  # residual w->w/2->w and plain w->w: both w^2
        for i in range(levels - 1):
            wide, narrow = self.widths[i + 1], self.widths[i]
            work += narrow * wide / 4.0 ** (i + 1)  # downsampling conv (strided, or after a max-pool)
            fused_in = wide + (narrow if self.skips[i] == "concat" else 0)
            work += fused_in * narrow / 4.0**i  # fuse conv after upsampling
        return work

    def describe(self) -> str:
        """One-line human summary."""
        skips = "/".join(self.skips) or "-"
        return (
            f"L{self.levels} w={'-'.join(map(str, self.widths))} b={''.join(map(str, self.blocks))} "
            f"{self.block} {self.downsample} skip={skips} gres={'y' if self.global_residual else 'n'}"
        )

    def model_code(self) -> str:
        """A self-contained model file in the NN Dataset contract for this architecture."""
        return render_model_code(self)


_CONTRACT_TEMPLATE = '''

# ---- NN Dataset model-file contract -------------------------------------
ARCH = {arch}


def supported_hyperparameters():
    """Hyperparameters `train_setup` reads; LEMUR's loop samples them (batch and transform it picks itself).

    lr: Adam's learning rate as given (LEMUR samples it log-uniformly in its lr range).
    momentum: a value in [0, 1] mapped to Adam's beta1 = 0.5 + 0.499 * momentum (0.5 to 0.999).
    """
    return {{"lr", "momentum"}}


def adam_betas(prm):
    """Adam's (beta1, beta2): beta1 from prm['momentum'] in [0, 1], torch's 0.9 without it."""
    if prm.get("momentum") is None:
        return 0.9, 0.999
    momentum = min(max(float(prm["momentum"]), 0.0), 1.0)
    return 0.5 + 0.499 * momentum, 0.999


class Net(Student):
    """{name}: {summary}."""

    def __init__(self, in_shape=(1, 3, 256, 256), out_shape=(1, 3, 256, 256), prm=None, device="cpu"):
        super().__init__(
            widths=tuple(ARCH["widths"]),
            blocks=tuple(ARCH["blocks"]),
            skips=tuple(ARCH["skips"]),
            block=ARCH["block"],
            downsample=ARCH["downsample"],
            global_residual=ARCH["global_residual"],
            in_channels=ARCH["in_channels"],
        )
        self.device = torch.device(device)
        self.to(self.device)
        self.train_setup(prm or {{}})

    def train_setup(self, prm):
        """Adam with learning rate prm['lr'] and beta1 from prm['momentum'], and an L1 criterion."""
        self.criteria = (nn.L1Loss().to(self.device),)
        self.optimizer = torch.optim.Adam(self.parameters(), lr=float(prm.get("lr", 1e-3)), betas=adam_betas(prm))

    def learn(self, train_data):
        """One pass over (noisy, clean) batches; returns the mean loss."""
        self.train()
        total, count = 0.0, 0
        for noisy, clean in train_data:
            noisy, clean = noisy.to(self.device), clean.to(self.device)
            self.optimizer.zero_grad()
            loss = self.criteria[0](self(noisy), clean)
            loss.backward()
            self.optimizer.step()
            total, count = total + float(loss), count + 1
        return total / max(count, 1)
'''


def render_model_code(arch: Arch) -> str:
    """Student builder source + this architecture + the contract's `Net` class."""
    header = f"# {arch.name}: generated by nnsearch; {arch.describe()}\n"
    body = inspect.getsource(_student)
    contract = _CONTRACT_TEMPLATE.format(
        arch=repr(dict(sorted(arch.to_dict().items()))),
        name=arch.name,
        summary=arch.describe(),
    )
    return header + body + contract


def load_model_code(code: str, module_name: str = "nnsearch_model") -> Any:
    """Execute the text of a model file nnsearch generated (`model_code()`) and return it as a module object.

    Code from elsewhere goes through `nnsearch.common.trust.run_code` with the user's opt-in instead.
    """
    from nnsearch.common.trust import run_code

    return run_code(code, module_name, trusted=True)
