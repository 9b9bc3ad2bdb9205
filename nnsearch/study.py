"""Search studies: an Optuna objective that samples, distills, times and records students."""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import warnings

import optuna
import torch

from nnsearch.arch import Arch
from nnsearch.datasets import DenoiseData, load_data
from nnsearch.device import default_device
from nnsearch.distill import DistillConfig, DistillationDiverged, TeacherTargets, distill
from nnsearch.profile import conv_depth, count_macs, count_params
from nnsearch.space import SearchSpace
from nnsearch.store.engine import Store
from nnsearch.store.query import study_results
from nnsearch.store.record import LatencyRecord, ModelRecord, record_trial
from nnsearch.student import build_student
from nnsearch.errors import NNSearchError
from nnsearch.latency_service import HOST_DEVICE, predict_latency, prediction_record
from nnsearch.teacher import load_or_train_teacher, teacher_config
from nnsearch.tflite import export_tflite, time_tflite

OBJECTIVES = ("psnr", "latency_ms")
DIRECTIONS = ("maximize", "minimize")


@dataclass(frozen=True)
class LatencyConfig:
    """How candidates are timed: device profile name, input resolution, threads, runs."""

    device: str = "host-cpu"
    height: int = 1088
    width: int = 1920
    threads: int = 1
    runs: int = 3
    warmup: int = 1
    predict: bool = True  # predict from the per-layer lookup table before training
    measure: bool = True  # also time the whole exported model (only possible on 'host-cpu')


@dataclass(frozen=True)
class StudyConfig:
    """Everything that defines a study; stored alongside it."""

    name: str
    space: SearchSpace
    data_spec: str | None = None
    distill: DistillConfig = field(default_factory=DistillConfig)
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    teacher: str = "cpu"
    teacher_steps: int | None = None
    sampler: str = "tpe"
    seed: int = 0
    max_side: int | None = None
    max_latency_ms: float | None = None  # candidates predicted slower are recorded infeasible, not trained


#: Trial user attribute holding the latency budget excess (<= 0 means feasible).
CONSTRAINT_ATTR = "latency_excess_ms"


def latency_constraint(trial: optuna.trial.FrozenTrial) -> list[float]:
    """Optuna constraint: predicted latency minus the budget (feasible when <= 0)."""
    return [float(trial.user_attrs.get(CONSTRAINT_ATTR, 0.0))]


SAMPLERS: dict[str, Callable[[int], optuna.samplers.BaseSampler]] = {
    "tpe": lambda seed: optuna.samplers.TPESampler(seed=seed, n_startup_trials=5, multivariate=True,
                                                   constraints_func=latency_constraint),
    "nsga2": lambda seed: optuna.samplers.NSGAIISampler(seed=seed, population_size=8,
                                                        constraints_func=latency_constraint),
    "random": lambda seed: optuna.samplers.RandomSampler(seed=seed),
}


def optuna_storage(store: Store) -> optuna.storages.RDBStorage:
    """The Optuna storage inside the same database as the nnsearch tables."""
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if store.url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 60}
    return optuna.storages.RDBStorage(store.url, engine_kwargs=kwargs, heartbeat_interval=30, grace_period=120)


@dataclass
class TrialOutcome:
    """What one trial produced, for progress display and the objective values."""

    number: int
    arch: Arch
    psnr: float
    ssim: float
    latency_ms: float
    params: int
    seconds: float


class Study:
    """A named study in a store: prepares data and teacher once, then runs trials."""

    def __init__(self, config: StudyConfig, store: Store, *, verbose: bool = True,
                 device: torch.device | None = None) -> None:
        self.config = config
        self.store = store
        self.verbose = verbose
        self.device = device or default_device()
        self.results_dir = Path("results") / config.name
        self._data: DenoiseData | None = None
        self._targets: TeacherTargets | None = None
        self.optuna = optuna.create_study(
            storage=optuna_storage(store), study_name=config.name, directions=list(DIRECTIONS),
            sampler=SAMPLERS[config.sampler](config.seed), load_if_exists=True,
        )
        self.optuna.set_metric_names(list(OBJECTIVES))

    def log(self, message: str) -> None:
        if self.verbose:
            print(message, flush=True)

    @property
    def data(self) -> DenoiseData:
        if self._data is None:
            self._data = load_data(self.config.data_spec, max_side=self.config.max_side, seed=self.config.seed)
            self.log(f"data: {self._data.source}: {len(self._data.train)} train / {len(self._data.val)} validation images")
        return self._data

    def targets(self) -> TeacherTargets:
        """The shared batch plan with teacher outputs (teacher trained or loaded once)."""
        if self._targets is None:
            teacher = None
            if self.config.distill.alpha > 0:
                config = teacher_config(self.config.teacher, self.config.teacher_steps)
                teacher = load_or_train_teacher(config, self.data, device=self.device, verbose=self.verbose)
            multiple = 2 ** (self.config.space.max_levels - 1)
            self._targets = TeacherTargets.build(teacher, self.data, self.config.distill, multiple=multiple,
                                                 device=self.device, verbose=self.verbose)
        return self._targets

    def run(self, n_trials: int) -> None:
        """Run `n_trials` more trials (a study that exists is resumed, never restarted)."""
        done = len(self.optuna.trials)
        self.log(f"study '{self.config.name}': {done} trials so far, running {n_trials} more "
                 f"(space {self.config.space.name}, store {self.store.display_url})")
        self.targets()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.optuna.optimize(self.objective, n_trials=n_trials, catch=(DistillationDiverged,),
                             gc_after_trial=True)

    def objective(self, trial: optuna.Trial) -> tuple[float, float]:
        """Sample, distill, time and record one candidate."""
        began = time.perf_counter()
        arch = self.config.space.sample(trial.suggest_categorical)
        trial.set_user_attr("nn", arch.name)
        trial.set_user_attr("arch", arch.describe())
        self.log(f"trial {trial.number}: {arch.name} {arch.describe()}")
        earlier = self._earlier_result(arch)
        if earlier is not None:
            self._link_repeat(trial.number, arch)
            self.log(f"trial {trial.number}: same student as trial {earlier['trial']}, reusing its results")
            return float(earlier["psnr"]), float(earlier["latency_ms"])
        student = build_student(arch)
        predicted = self._predict_latency(arch)
        excess = self._budget_excess(predicted)
        trial.set_user_attr(CONSTRAINT_ATTR, excess)
        if excess > 0:
            self._record(trial.number, arch, student, epochs=[], latencies=[predicted], state="infeasible")
            self.log(f"trial {trial.number}: infeasible, predicted {predicted.median_ms:.1f} ms exceeds the "
                     f"{self.config.max_latency_ms:g} ms budget; not trained")
            return 0.0, predicted.median_ms
        torch.manual_seed(self.config.seed + trial.number)
        try:
            result = distill(student, self.targets(), self.data.val, self.config.distill,
                             device=self.device, verbose=self.verbose)
        except DistillationDiverged as exc:
            self._record(trial.number, arch, student, epochs=[], latencies=_present(predicted), state="failed")
            self.log(f"trial {trial.number}: failed: {exc}")
            raise
        measured = self._measure_latency(student, arch) if self._can_measure() else None
        latency = (measured or predicted).median_ms
        self._record(trial.number, arch, student, epochs=result.epochs, latencies=_present(predicted, measured),
                     state="complete")
        outcome = TrialOutcome(trial.number, arch, result.final.psnr, result.final.ssim, latency,
                               count_params(student), time.perf_counter() - began)
        guess = f" (predicted {predicted.median_ms:.1f})" if predicted and measured else ""
        self.log(f"trial {trial.number}: PSNR {outcome.psnr:.2f} dB, SSIM {outcome.ssim:.4f}, "
                 f"latency {outcome.latency_ms:.1f} ms{guess} @ {self.config.latency.height}x{self.config.latency.width}, "
                 f"{outcome.params:,} params ({outcome.seconds:.0f} s)")
        return outcome.psnr, outcome.latency_ms

    def _earlier_result(self, arch: Arch) -> dict[str, Any] | None:
        """This study's completed result for `arch`, if a trial already trained it."""
        rows = self.results()
        rows = rows[(rows["nn"] == arch.name) & (rows["state"] == "complete")].dropna(subset=["psnr", "latency_ms"])
        return None if rows.empty else rows.iloc[0].to_dict()

    def _link_repeat(self, number: int, arch: Arch) -> None:
        """Link a repeated trial to the student an earlier trial recorded."""
        from nnsearch.store.record import TASK, prm_uid
        from nnsearch.store.schema import TrialLink

        uid = prm_uid(self.config.distill.hyperparameters())
        self.store.write(lambda session: session.merge(TrialLink(
            study=self.config.name, trial_number=number, nn=arch.name, prm=uid,
            task=TASK, dataset=self.data.name, state="complete")))

    def _can_measure(self) -> bool:
        lat = self.config.latency
        return lat.measure and lat.device == HOST_DEVICE

    def _predict_latency(self, arch: Arch) -> LatencyRecord | None:
        """The lookup-table prediction on the study's device profile (None when disabled)."""
        lat = self.config.latency
        if not lat.predict:
            if self.config.max_latency_ms is not None:
                raise NNSearchError("a latency budget needs lookup-table predictions (predict=True)")
            if not self._can_measure():
                raise NNSearchError(f"device '{lat.device}' cannot be timed here; enable lookup-table predictions")
            return None
        ms = predict_latency(self.store, arch, lat.device, lat.height, lat.width, lat.threads)
        return prediction_record(self.store, ms, lat.device, lat.height, lat.width, lat.threads)

    def _budget_excess(self, predicted: LatencyRecord | None) -> float:
        if self.config.max_latency_ms is None or predicted is None:
            return 0.0
        return predicted.median_ms - self.config.max_latency_ms

    def _measure_latency(self, student: torch.nn.Module, arch: Arch) -> LatencyRecord:
        lat = self.config.latency
        path = self.results_dir / "tflite" / f"{arch.name}.tflite"
        export_tflite(student.cpu().eval(), path, (1, arch.in_channels, lat.height, lat.width))
        student.to(self.device)
        timing = time_tflite(path, runs=lat.runs, warmup=lat.warmup, threads=lat.threads)
        return LatencyRecord(
            device=lat.device, runtime=timing.runtime, runtime_version=timing.runtime_version,
            threads=lat.threads, height=lat.height, width=lat.width, kind="measured",
            median_ms=timing.median_ms, min_ms=timing.min_ms, max_ms=timing.max_ms, runs=timing.runs,
        )

    def _record(self, number: int, arch: Arch, student: torch.nn.Module, *, epochs: list, latencies: list,
                state: str) -> None:
        lat = self.config.latency
        buffer = io.BytesIO()
        torch.save({k: v.cpu() for k, v in student.state_dict().items()}, buffer)
        params = count_params(student)
        record = ModelRecord(
            nn=arch.name, code=arch.model_code(), arch_json=_json(arch.to_dict()),
            prm=self.config.distill.hyperparameters(), dataset=self.data.name,
            transform=_transform_name(self.config.distill), transform_code=_transform_code(self.config.distill),
            params=params, macs=count_macs(student, arch, lat.height, lat.width), macs_hw=(lat.height, lat.width),
            depth=conv_depth(student), model_size_bytes=params * 4,
            epochs=epochs, latencies=latencies, weights=buffer.getvalue() if epochs else None,
        )
        record_trial(self.store, self.config.name, number, record, state=state)

    def results(self):  # -> pd.DataFrame
        """Recorded trials of this study as a DataFrame."""
        return study_results(self.store, self.config.name, device=self.config.latency.device)


def _present(*records: LatencyRecord | None) -> list[LatencyRecord]:
    return [r for r in records if r is not None]


def _json(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True)


def _transform_name(config: DistillConfig) -> str:
    return "crops_" + "-".join(map(str, config.crops)) + "_hflip"


def _transform_code(config: DistillConfig) -> str:
    return (f"# random crops {' -> '.join(map(str, config.crops))} px (progressive over the step budget), "
            "random horizontal flip; see nnsearch.crops\n")
