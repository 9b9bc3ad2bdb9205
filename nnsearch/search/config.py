"""A study's configuration, owned here: nested frozen sections, validated once, one default per setting.

    StudyConfig(name, space, seed,
                data=DataConfig, teacher=TeacherConfig, distill=DistillConfig,
                latency=LatencyConfig, budget=BudgetConfig, sampler=SamplerConfig)

Every setting has a dotted path (`distill.steps`) and a keyword shortcut
(`steps`; `teacher_steps` for `teacher.steps`, see `SETTINGS`). The CLI
flags, `nnsearch.create_study`, the stored study (`to_dict` / `from_dict`),
`nnsearch train` and the demo all build their configuration through this
module. A study stores its configuration when it is created; resuming it with
another one is refused, naming each differing setting (`differences`), unless
the caller allows the change, which is then recorded (`nnsearch.search.optuna_setup`).

Light on purpose (no torch, numpy, pandas or Optuna), so `--help` shows these defaults quickly.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nnsearch.common.paths import safe_component
from nnsearch.common.precision import CALIBRATION_SAMPLES, Precision
from nnsearch.common.study_attrs import CONFIG_ATTR, SPACE_ATTR  # noqa: F401 - the study's vocabulary
from nnsearch.errors import NNSearchError
from nnsearch.train.config import DataConfig, DistillConfig, TeacherConfig, setting

if TYPE_CHECKING:
    from nnsearch.model.space import SearchSpace

OBJECTIVES = ("psnr", "latency_ms")
DIRECTIONS = ("maximize", "minimize")
#: The optional third objective (`SamplerConfig.minimize_params`).
PARAMS_OBJECTIVE = ("params", "minimize")
#: The names of `nnsearch.search.samplers.SAMPLERS` (here so that checking one does not import Optuna).
SAMPLER_NAMES = ("guided", "tpe", "nsga2", "random")

#: Trial user attribute saying what a running trial is doing ("distill" once training starts).
PHASE_ATTR = "phase"
#: Study user attribute listing the changes allowed on resume ({"at", "setting", "from", "to"} each).
CHANGES_ATTR = "config_changes"
#: Study user attribute holding the teacher's validation PSNR (dB), set when the teacher is checked.
TEACHER_PSNR_ATTR = "teacher_psnr"
#: The format `to_dict` writes (stores of earlier versions hold the flat format 1, still read).
CONFIG_FORMAT = 2


@dataclass(frozen=True)
class EarlyStopRule:
    """Stop when a no-slower finished trial was `margin_db` better at the same epoch."""

    margin_db: float = 1.0
    min_history: int = 3

    def __post_init__(self) -> None:
        if self.margin_db < 0:
            raise NNSearchError(f"the early-stopping margin must be >= 0 dB, got {self.margin_db}")


@dataclass(frozen=True)
class LatencyConfig:
    """The latency target: device profile, input resolution, threads and precision; how candidates are timed."""

    device: str = "host-cpu"
    height: int = 1088
    width: int = 1920
    threads: int = 1
    runs: int = 3
    warmup: int = 1
    predict: bool = True  # predict from the per-layer lookup table before training
    measure: bool = True  # also time the whole exported model (on 'host-cpu', or by a device's agents)
    # A device served by measurement agents (nnsearch.latency.agents): wait for the agent's whole-model timing
    # before the trial completes (True), or go on with the prediction and let the measurement land later.
    wait: bool = field(default=True, metadata=setting("latency_wait", runtime=True))
    # waiting longer goes on with the prediction
    wait_timeout_s: float = field(default=3600.0, metadata=setting("latency_wait_timeout_s", runtime=True))
    # The precision whose lookup table gives the latency objective and whose quantized model's
    # full-resolution PSNR is the quality objective (nnsearch.export.candidate_quality).
    precision: Precision = field(default=Precision.FP32, metadata=setting(fixed=True))
    calibration_samples: int = CALIBRATION_SAMPLES  # seeded training crops calibrating int8 / w8a16

    def __post_init__(self) -> None:
        object.__setattr__(self, "precision", Precision.parse(self.precision))
        if self.height < 1 or self.width < 1 or self.threads < 1 or self.runs < 1 or self.warmup < 0:
            raise NNSearchError(
                f"latency needs positive height, width, threads and runs and warmup >= 0, got "
                f"{self.height}x{self.width}, threads={self.threads}, runs={self.runs}, "
                f"warmup={self.warmup}"
            )
        if self.calibration_samples < 1:
            raise NNSearchError(f"calibration_samples must be >= 1, got {self.calibration_samples}")


@dataclass(frozen=True)
class BudgetConfig:
    """What a candidate may cost: a latency budget, and when a hopeless one stops training."""

    max_latency_ms: float | None = field(default=None, metadata=setting("max_latency_ms"))  # slower: infeasible
    early_stop: EarlyStopRule | None = field(default_factory=EarlyStopRule)  # None: train every candidate fully

    def __post_init__(self) -> None:
        if self.max_latency_ms is not None and not self.max_latency_ms > 0:
            raise NNSearchError(f"max_latency_ms must be > 0 ms (or None), got {self.max_latency_ms}")


@dataclass(frozen=True)
class SamplerConfig:
    """How candidates are chosen: the sampler, the objectives, the first trials."""

    name: str = field(default="guided", metadata=setting("sampler"))
    minimize_params: bool = field(default=False, metadata=setting(fixed=True))  # parameter count as 3rd objective
    start_from_references: bool = False  # a new study trains the space's reference students first

    def __post_init__(self) -> None:
        if self.name not in SAMPLER_NAMES:
            raise NNSearchError(f"unknown sampler {self.name!r}; expected one of {', '.join(SAMPLER_NAMES)}")


#: Section name -> its dataclass, in the order of `StudyConfig`.
SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "teacher": TeacherConfig,
    "distill": DistillConfig,
    "latency": LatencyConfig,
    "budget": BudgetConfig,
    "sampler": SamplerConfig,
}


@dataclass(frozen=True)
class Setting:
    """One leaf of the configuration tree: its dotted path, its keyword shortcut and its default."""

    path: str  # e.g. "teacher.steps"
    key: str  # e.g. "teacher_steps"
    default: Any
    runtime: bool  # how this machine runs it; not compared on resume
    fixed: bool  # never changed on resume


def _settings() -> dict[str, Setting]:
    found = {"seed": Setting("seed", "seed", 0, False, False), "rungs": Setting("rungs", "rungs", None, False, False)}
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            meta = f.metadata or setting()
            factory: Any = f.default_factory
            default = f.default if f.default is not dataclasses.MISSING else factory()
            key = str(meta["key"] or f.name)
            found[key] = Setting(f"{section}.{f.name}", key, default, bool(meta["runtime"]), bool(meta["fixed"]))
    return found


#: Keyword shortcut -> Setting, for every leaf of the configuration.
SETTINGS: dict[str, Setting] = _settings()
_BY_PATH = {s.path: s for s in SETTINGS.values()}


def find_setting(name: str) -> Setting:
    """The setting a keyword shortcut (`steps`) or dotted path (`distill.steps`) names; NNSearchError otherwise."""
    found = SETTINGS.get(name) or _BY_PATH.get(name)
    if found is None:
        raise NNSearchError(
            f"unknown study setting {name!r}; known: {', '.join(sorted(SETTINGS))} "
            f"(or their dotted paths, e.g. distill.steps)"
        )
    return found


@dataclass(frozen=True)
class Difference:
    """A setting whose value differs between two configurations."""

    setting: Setting
    stored: Any
    given: Any

    def describe(self) -> str:
        name = (
            self.setting.key if self.setting.key == self.setting.path else f"{self.setting.key} ({self.setting.path})"
        )
        return f"{name}: stored {self.stored!r}, given {self.given!r}"


@dataclass(frozen=True)
class StudyConfig:
    """Everything that defines a study; stored with it (`to_dict`, `from_dict`). `seed` seeds every part."""

    name: str
    space: SearchSpace
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    # Multi-fidelity search (nnsearch.search.multifidelity.RungSchedule): None trains every candidate for
    # `distill.steps`; given as `rungs=(300, 1200, 4800)` (and `reduction_factor=`) to `replace` / `create_study`.
    rungs: Any = None

    def __post_init__(self) -> None:
        safe_component(self.name, "study name")  # <results>/<study>/ holds the study's files
        for section, cls in SECTIONS.items():
            if not isinstance(getattr(self, section), cls):
                raise NNSearchError(
                    f"StudyConfig.{section} must be a {cls.__name__}, got {type(getattr(self, section)).__name__}"
                )
        if self.rungs is not None and self.rungs.steps[0] != self.distill.steps:
            raise NNSearchError(
                f"the first rung ({self.rungs.steps[0]} steps) must be the distillation's steps "
                f"({self.distill.steps}); leave --steps out with --rungs"
            )

    @classmethod
    def build(cls, name: str, space: SearchSpace, **values: Any) -> StudyConfig:
        """The default configuration with `values` set (as `replace`)."""
        return cls(name=name, space=space).replace(**values)

    def replace(self, **values: Any) -> StudyConfig:
        """This configuration with `values` set: keyword shortcuts (`steps`), dotted paths (`distill.steps`)
        or whole sections (`distill=DistillConfig(...)`); the result is validated."""
        values = _with_rungs(values)
        unknown = sorted(
            name
            for name, value in values.items()
            if name not in SETTINGS and name not in _BY_PATH and not _is_section(name, value)
        )
        if unknown:
            raise NNSearchError(
                f"unknown setting(s) {unknown}; known: {sorted(SETTINGS)} (or their dotted paths, "
                f"e.g. distill.steps, or a whole section: {', '.join(SECTIONS)})"
            )
        if "seed" in values and not {"distill", "distill_seed", "distill.seed"} & set(values):
            values = {**values, "distill.seed": values["seed"]}  # the study's seed seeds its batch plan too
        sections: dict[str, dict[str, Any]] = {}
        top: dict[str, Any] = {}
        for name, value in values.items():
            if _is_section(name, value):
                top[name] = value
                continue
            found = find_setting(name)
            if "." not in found.path:
                top[found.path] = value
                continue
            section, leaf = found.path.split(".")
            sections.setdefault(section, {})[leaf] = _coerce(found, value)
        try:
            rungs = {"rungs": top.pop("rungs")} if "rungs" in top else {}  # checked against the new steps
            cleared: dict[str, Any] = {"rungs": None} if rungs else {}
            base = dataclasses.replace(self, **top, **cleared)
            changed = {
                section: dataclasses.replace(getattr(base, section), **leaves) for section, leaves in sections.items()
            }
            return dataclasses.replace(base, **changed, **rungs)
        except TypeError as exc:
            raise NNSearchError(f"study '{self.name}': {exc}") from None

    def get(self, name: str) -> Any:
        """The value of a setting (keyword shortcut or dotted path)."""
        value: Any = self
        for part in find_setting(name).path.split("."):
            value = getattr(value, part)
        return value

    @property
    def objectives(self) -> dict[str, str]:
        """Objective name -> Optuna direction, in the order trials report them."""
        pairs = list(zip(OBJECTIVES, DIRECTIONS)) + ([PARAMS_OBJECTIVE] if self.sampler.minimize_params else [])
        return dict(pairs)

    def to_dict(self) -> dict[str, Any]:
        """Everything but the name and the space, as JSON-ready nested values (stored with the study)."""
        values: dict[str, Any] = {"format": CONFIG_FORMAT, "seed": self.seed, "rungs": _plain(self.rungs)}
        for section in SECTIONS:
            leaves = {
                s.path.split(".")[1]: _plain(self.get(s.path))
                for s in SETTINGS.values()
                if s.path.startswith(f"{section}.")
            }
            values[section] = leaves
        return values

    @classmethod
    def from_dict(cls, name: str, space: SearchSpace, stored: Mapping[str, Any]) -> StudyConfig:
        """The configuration `to_dict` described (also the flat format of earlier versions; missing keys: defaults)."""
        try:
            flat = _flatten(stored)
            known = {k: v for k, v in flat.items() if k in SETTINGS or k in _BY_PATH}
            return cls(name=name, space=space).replace(**known)
        except (NNSearchError, TypeError, ValueError, AttributeError) as exc:
            raise NNSearchError(f"study '{name}': its stored configuration is not readable ({exc})") from None

    def differences(self, other: StudyConfig) -> list[Difference]:
        """The settings (runtime ones aside) where `other` differs from this configuration."""
        mine, theirs = self.to_dict(), other.to_dict()
        found = []
        for s in SETTINGS.values():
            if s.runtime:
                continue
            a, b = _at(mine, s.path), _at(theirs, s.path)
            if not _same(a, b):
                found.append(Difference(s, a, b))
        return found


@dataclass(frozen=True)
class HeartbeatConfig:
    """A running trial beats every `interval_s`; silent for `grace_s` means its worker died."""

    interval_s: int = 30
    grace_s: int = 120
    max_retry: int = 2  # how often a lost trial is run again

    def __post_init__(self) -> None:
        if self.interval_s < 1 or self.grace_s <= self.interval_s:
            raise NNSearchError(
                f"need heartbeat interval >= 1 s and grace period > interval, got "
                f"interval={self.interval_s} grace={self.grace_s}"
            )


def check_changes(stored: StudyConfig, given: StudyConfig, allowed: Iterable[str] = ()) -> list[Difference]:
    """The differences between a stored study's configuration and the one given to resume it.

    Each must be named in `allowed` (a keyword shortcut or dotted path); a
    difference not allowed, or one in a setting that can never change
    (precision, minimize_params), is a NNSearchError naming every such setting.
    """
    allowed_paths = {find_setting(name).path for name in allowed}
    found = stored.differences(given)
    refused = [d for d in found if d.setting.path not in allowed_paths or d.setting.fixed]
    if refused:
        fixed = [d.setting.key for d in refused if d.setting.fixed]
        listed = "; ".join(d.describe() for d in refused)
        changeable = [d.setting.key for d in refused if not d.setting.fixed]
        how = []
        if changeable:
            how.append(
                f"to change {', '.join(changeable)} on purpose, pass "
                + " ".join(f"--change {k}" for k in changeable)
                + f" (Python: allow_changes={changeable!r}); the change is recorded with the study"
            )
        if fixed:
            how.append(f"{', '.join(fixed)} cannot change in a study (it changes what the objectives mean)")
        raise NNSearchError(
            f"study '{stored.name}' was created with another configuration: {listed}. Leave "
            f"these out (or give the stored values) to resume it as it is, or use another study "
            f"name; " + "; ".join(how)
        )
    return found


def _with_rungs(values: dict[str, Any]) -> dict[str, Any]:
    """`values` with `rungs` (steps, or a mapping) and `reduction_factor` made a RungSchedule; `steps` follows it."""
    if "rungs" not in values and "reduction_factor" not in values:
        return values
    values = dict(values)
    steps, factor = values.pop("rungs", None), values.pop("reduction_factor", None)
    if steps is None:
        if factor is not None:
            raise NNSearchError("reduction_factor needs rungs (e.g. rungs=(300, 1200, 4800), --rungs 300,1200,4800)")
        return {**values, "rungs": None}
    from nnsearch.search.multifidelity import RungSchedule  # only where a study has rungs

    if isinstance(steps, Mapping):
        rungs = RungSchedule(**{**steps, "steps": tuple(steps["steps"])})
    elif isinstance(steps, RungSchedule):
        rungs = steps
    else:
        rungs = RungSchedule(tuple(steps), **({} if factor is None else {"reduction_factor": factor}))
    if not {"steps", "distill.steps", "distill"} & set(values):
        values["steps"] = rungs.steps[0]
    return {**values, "rungs": rungs}


def _is_section(name: str, value: Any) -> bool:
    return name in SECTIONS and isinstance(value, SECTIONS[name])


def _coerce(found: Setting, value: Any) -> Any:
    """A stored or given value in the type its field holds (lists -> tuples, early_stop margins -> rules)."""
    if found.path == "distill.crops" and value is not None:
        return tuple(value)
    if found.path == "budget.early_stop":
        if isinstance(value, EarlyStopRule) or value is None:
            return value
        if isinstance(value, Mapping):
            return EarlyStopRule(**value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return EarlyStopRule(margin_db=float(value))
        raise NNSearchError(f"early_stop must be an EarlyStopRule, a margin in dB or None, got {value!r}")
    return value


def _plain(value: Any) -> Any:
    """A JSON-ready copy (tuples -> lists, rules -> dicts, precisions -> names)."""
    if isinstance(value, EarlyStopRule) or (dataclasses.is_dataclass(value) and not isinstance(value, type)):
        return {k: _plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Precision):
        return value.value
    return value


def _at(values: Mapping[str, Any], path: str) -> Any:
    found: Any = values
    for part in path.split("."):
        found = found[part]
    return found


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


#: The flat keys of format 1 that are not keyword shortcuts of format 2.
_FORMAT1_KEYS = {"data_spec": "data", "precision": "precision", "calibration_samples": "calibration_samples"}


def _flatten(stored: Mapping[str, Any]) -> dict[str, Any]:
    """{dotted path or shortcut: value} of a stored configuration of either format."""
    if stored.get("format") == CONFIG_FORMAT:
        flat = {"seed": stored.get("seed", 0), "rungs": stored.get("rungs")}
        for section in SECTIONS:
            for leaf, value in dict(stored.get(section) or {}).items():
                flat[f"{section}.{leaf}"] = value
        return flat
    flat = {}
    for key, value in stored.items():  # format 1: distill and latency dicts, the rest flat
        if key in ("distill", "latency") and isinstance(value, Mapping):
            flat.update({f"{key}.{leaf}": v for leaf, v in value.items()})
        else:
            flat[_FORMAT1_KEYS.get(key, key)] = value
    return flat
