"""Search spaces: YAML files that say which students a study may sample.

A space gives, for each architecture field, the choices a sampler may pick.
Per-level fields (`widths`, `blocks`, `skip`) take either one list shared by
all levels or a list of lists, one per level (level 0 = full resolution). A
space may name reference points (such as the published LiteDenoiseNet) that
must lie inside it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from nnsearch.common.paths import spaces_dir
from nnsearch.errors import SpaceError
from nnsearch.model import student as _student
from nnsearch.model.arch import Arch, limit_text, outside_limits

#: The keys a space file may hold.
SPACE_KEYS = {
    "name",
    "description",
    "levels",
    "widths",
    "blocks",
    "skip",
    "block",
    "downsample",
    "global_residual",
    "reference",
}
REQUIRED_KEYS = ("levels", "widths")

Chooser = Callable[[str, Sequence[Any]], Any]


def numeric_choices(choices: Sequence[Any]) -> bool:
    """Whether every choice is a number (bools are names here, not numbers)."""
    return all(isinstance(c, int | float) and not isinstance(c, bool) for c in choices)


def decision_names(deepest: int) -> list[str]:
    """The parameters `SearchSpace.sample` may ask for in a space of up to `deepest` levels."""
    return (
        ["levels", "block", "downsample", "global_residual"]
        + [f"width_{i}" for i in range(deepest)]
        + [f"blocks_{i}" for i in range(deepest)]
        + [f"skip_{i}" for i in range(deepest - 1)]
    )


@dataclass(frozen=True)
class SearchSpace:
    """Choices per architecture field; `sample` turns a chooser into an `Arch`."""

    name: str
    levels: tuple[int, ...]
    widths: tuple[tuple[int, ...], ...]
    blocks: tuple[tuple[int, ...], ...]
    skip: tuple[tuple[str, ...], ...]
    block: tuple[str, ...]
    downsample: tuple[str, ...]
    global_residual: tuple[bool, ...]
    references: tuple[Arch, ...] = ()
    description: str = ""
    source: str = ""

    @property
    def max_levels(self) -> int:
        return max(self.levels)

    def sample(self, choose: Chooser) -> Arch:
        """Build an `Arch` by asking `choose(param_name, choices)` for each decision.

        For random sampling, any function that picks one of the choices;
        with an Optuna trial, use `suggest`.
        """
        levels = int(choose("levels", self.levels))
        block = choose("block", self.block)
        widths = [int(choose(f"width_{i}", self.widths[i])) for i in range(levels)]
        blocks = [int(choose(f"blocks_{i}", self.blocks[i])) for i in range(levels)]
        skips = [choose(f"skip_{i}", self.skip[i]) for i in range(levels - 1)]
        return Arch(
            widths=tuple(widths),
            blocks=tuple(blocks),
            skips=tuple(skips),
            block=block,
            downsample=choose("downsample", self.downsample),
            global_residual=bool(choose("global_residual", self.global_residual)),
        )

    def suggest(self, trial: Any) -> Arch:
        """Build an `Arch` through an Optuna trial: every decision is a categorical parameter.

        Numeric decisions (levels, widths, blocks) were also tried as ordered
        integer ranks, which lets TPE interpolate between neighbouring widths;
        on the replay benchmark (benchmarks/search_efficiency.py) that made TPE
        collapse onto fewer students and end below random (final hypervolume
        0.89x random's vs 1.01x as categories), so they stay categorical.
        """
        return self.sample(trial.suggest_categorical)

    def to_mapping(self) -> dict[str, Any]:
        """The space as a mapping `parse_space` reads back (references included), e.g. to store with a study."""
        return {
            "name": self.name,
            "description": self.description,
            "levels": list(self.levels),
            "widths": [list(w) for w in self.widths],
            "blocks": [list(b) for b in self.blocks],
            "skip": [list(s) for s in self.skip],
            "block": list(self.block),
            "downsample": list(self.downsample),
            "global_residual": list(self.global_residual),
            "reference": {a.label: a.to_dict() for a in self.references},
        }

    def fastest_candidates(self) -> list[Arch]:
        """Students among which the space's fastest one lies (for a lower latency bound).

        Fewest levels, narrowest widths, fewest blocks and the cheapest skip per
        level (none < add < concat); every combination of the remaining choices.
        """
        levels = min(self.levels)
        cost = {"none": 0, "add": 1, "concat": 2}
        widths = tuple(min(self.widths[i]) for i in range(levels))
        blocks = tuple(min(self.blocks[i]) for i in range(levels))
        skips = tuple(min(self.skip[i], key=lambda s: cost.get(s, 3)) for i in range(levels - 1))
        return [
            Arch(widths=widths, blocks=blocks, skips=skips, block=block, downsample=down, global_residual=residual)
            for block in self.block
            for down in self.downsample
            for residual in self.global_residual
        ]

    def decision_names(self) -> list[str]:
        """Every parameter `sample` may ask for, deepest level included (shallower students skip some)."""
        return decision_names(self.max_levels)

    def params_of(self, arch: Arch) -> dict[str, Any]:
        """The chooser decisions that produce `arch` (inverse of `sample`)."""
        params: dict[str, Any] = {
            "levels": arch.levels,
            "block": arch.block,
            "downsample": arch.downsample,
            "global_residual": arch.global_residual,
        }
        params.update({f"width_{i}": w for i, w in enumerate(arch.widths)})
        params.update({f"blocks_{i}": b for i, b in enumerate(arch.blocks)})
        params.update({f"skip_{i}": s for i, s in enumerate(arch.skips)})
        return params

    def contains(self, arch: Arch) -> bool:
        """Whether every decision of `arch` is one of this space's choices."""
        return not self._outside(arch)

    def _outside(self, arch: Arch) -> list[str]:
        problems = []
        if arch.levels not in self.levels:
            return [f"levels {arch.levels} not in {list(self.levels)}"]
        for key, value in self.params_of(arch).items():
            choices = self.choices_of(key)
            if value not in choices:
                problems.append(f"{key}={value!r} not in {list(choices)}")
        return problems

    def choices_of(self, key: str) -> Sequence[Any]:
        """The choices of one parameter of `decision_names` (e.g. 'width_1')."""
        if "_" in key and key.rsplit("_", 1)[1].isdigit():
            base, level = key.rsplit("_", 1)
            table = {"width": self.widths, "blocks": self.blocks, "skip": self.skip}[base]
            return table[int(level)]
        return getattr(self, key)

    def reference(self, label: str) -> Arch:
        """A named reference point of this space, e.g. 'LiteDenoiseNet'."""
        for arch in self.references:
            if arch.label == label:
                return arch
        known = [a.label for a in self.references]
        raise SpaceError(f"search space '{self.name}' has no reference point '{label}'; it has {known}")


def resolve_space_path(spec: str | Path) -> Path:
    """A space file path, or a bare name looked up in `search_spaces/`."""
    path = Path(spec)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    for folder in (spaces_dir(), Path.cwd() / "search_spaces"):
        candidate = folder / f"{spec}.yaml"
        if candidate.exists():
            return candidate
    return path


def load_space(spec: str | Path) -> SearchSpace:
    """Read and validate a search-space YAML file (or a bare name like 'tiny')."""
    path = resolve_space_path(spec)
    if not path.exists():
        raise SpaceError(
            f"search-space file {path} does not exist (expected a YAML file or one of the names in {spaces_dir()})"
        )
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SpaceError(f"search-space file {path} is not valid YAML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpaceError(f"search-space file {path} cannot be read: {exc}") from None
    try:
        return parse_space(raw, source=str(path))
    except SpaceError as exc:
        raise SpaceError(f"search-space file {path}: {exc}") from None


def parse_space(raw: Any, source: str = "<memory>") -> SearchSpace:
    """Validate a mapping (as read from YAML) into a `SearchSpace`."""
    if not isinstance(raw, dict):
        raise SpaceError(f"expected a mapping of keys {sorted(SPACE_KEYS)}, got {type(raw).__name__}")
    unknown = sorted(set(raw) - SPACE_KEYS)
    if unknown:
        raise SpaceError(f"unknown key(s) {unknown}; allowed keys are {sorted(SPACE_KEYS)}")
    missing = [k for k in REQUIRED_KEYS if k not in raw]
    if missing:
        raise SpaceError(f"missing required key(s) {missing}")
    levels = _bounded("levels", _choice_list("levels", raw["levels"], int))
    n = max(levels)
    space = SearchSpace(
        name=str(raw.get("name") or Path(source).stem),
        description=str(raw.get("description", "")),
        levels=levels,
        widths=_per_level("widths", raw["widths"], n, int),
        blocks=_per_level("blocks", raw.get("blocks", [1]), n, int),
        skip=_per_level("skip", raw.get("skip", ["concat"]), max(n - 1, 1), str, _student.SKIP_TYPES),
        block=_choice_list("block", raw.get("block", ["residual"]), str, _student.BLOCK_TYPES),
        downsample=_choice_list("downsample", raw.get("downsample", ["conv"]), str, _student.DOWNSAMPLE_TYPES),
        global_residual=_choice_list("global_residual", raw.get("global_residual", [True]), bool),
        source=source,
    )
    if "residual" in space.block:
        odd = sorted({w for level in space.widths for w in level if w % 2})
        if odd:
            raise SpaceError(f"widths {odd} are odd, but the residual block needs even widths (it halves them)")
    refs = tuple(_reference(space, label, fields) for label, fields in (raw.get("reference") or {}).items())
    return SearchSpace(**{**space.__dict__, "references": refs})


def _reference(space: SearchSpace, label: str, fields: Any) -> Arch:
    if not isinstance(fields, dict):
        raise SpaceError(f"reference '{label}' must be a mapping of architecture fields")
    arch = Arch.from_dict(fields, label=str(label))
    problems = space._outside(arch)
    if problems:
        raise SpaceError(f"reference '{label}' lies outside the space: " + "; ".join(problems))
    return arch


def _choice_list(key: str, value: Any, kind: type, allowed: Sequence[Any] | None = None) -> tuple:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise SpaceError(f"'{key}' must list at least one choice")
    out = []
    for item in items:
        if kind is bool and not isinstance(item, bool):
            raise SpaceError(f"'{key}' choices must be true/false, got {item!r}")
        if kind is int and (isinstance(item, bool) or not isinstance(item, int)):
            raise SpaceError(f"'{key}' choices must be integers, got {item!r}")
        if kind is str and not isinstance(item, str):
            raise SpaceError(f"'{key}' choices must be names, got {item!r}")
        if allowed is not None and item not in allowed:
            raise SpaceError(f"'{key}' choice '{item}' is not a known option; expected one of {list(allowed)}")
        out.append(item)
    return tuple(dict.fromkeys(out))


def _bounded(key: str, items: tuple[int, ...], field_name: str | None = None) -> tuple[int, ...]:
    """`items` if all lie within the student limits (`nnsearch.model.arch.LIMITS`) of `field_name`."""
    bad = outside_limits(field_name or key, items)
    if bad:
        raise SpaceError(f"'{key}' choices must be integers {limit_text(field_name or key)}, got {bad}")
    return items


def _per_level(key: str, value: Any, levels: int, kind: type, allowed: Sequence[Any] | None = None) -> tuple:
    """One list for all levels, or a list of per-level lists."""
    if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
        if len(value) < levels:
            raise SpaceError(f"'{key}' gives choices for {len(value)} levels, but the space has up to {levels}")
        per_level = [(f"{key}[{i}]", _choice_list(f"{key}[{i}]", v, kind, allowed)) for i, v in enumerate(value)]
    else:
        per_level = [(key, _choice_list(key, value, kind, allowed))] * levels
    if kind is int:
        for name, choices in per_level:
            _bounded(name, choices, key)
    return tuple(choices for _, choices in per_level)
