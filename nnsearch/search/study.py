"""Search studies: an Optuna objective that samples, distills, times and records students."""

from __future__ import annotations

import gc
import io
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import optuna
import torch

from nnsearch.common.device import default_device
from nnsearch.common.interrupts import InterruptGuard, raise_if_interrupted
from nnsearch.common.paths import default_results_root
from nnsearch.errors import NNSearchError
from nnsearch.latency.table import LatencyError
from nnsearch.latency.tflite import export_tflite, time_tflite
from nnsearch.model.arch import Arch
from nnsearch.model.counting import conv_depth, count_macs, count_params
from nnsearch.model.space import SearchSpace
from nnsearch.model.student import build_student
from nnsearch.search.claims import OUTCOME_ATTR, TrialCounts, advisory_lock, claim_trial
from nnsearch.search.early_stopping import (
    EarlyStopRule,
    EpochHistory,
    StoppedEarly,
    check_epoch,
)
from nnsearch.search.heartbeat import Heartbeat
from nnsearch.search.latency import (
    HOST_DEVICE,
    fill_space_table,
    predict_latency,
    prediction_record,
)
from nnsearch.search.samplers import (
    CONSTRAINT_ATTR,
    PREDICTS_LATENCY,
    SAMPLERS,
    SamplerContext,
)
from nnsearch.store.engine import Store
from nnsearch.store.query import study_results
from nnsearch.store.record import LatencyRecord, ModelRecord, record_trial
from nnsearch.train.datasets import DenoiseData, load_data
from nnsearch.train.distill import (
    DistillationDiverged,
    DistillConfig,
    TeacherTargets,
    distill,
)
from nnsearch.train.teacher_check import MIN_GAIN_DB, prepare_teacher

OBJECTIVES = ("psnr", "latency_ms")
DIRECTIONS = ("maximize", "minimize")
#: The optional third objective (`StudyConfig.minimize_params`).
PARAMS_OBJECTIVE = ("params", "minimize")


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
    teacher: str = "cpu"  # a preset name or a teacher file (nnsearch.train.teacher_files)
    teacher_steps: int | None = None
    teacher_margin_db: float = MIN_GAIN_DB  # refuse a teacher less than this much better than the noisy input
    sampler: str = "guided"  # a name of nnsearch.search.samplers.SAMPLERS
    seed: int = 0
    max_side: int | None = None
    max_latency_ms: float | None = None  # candidates predicted slower are recorded infeasible, not trained
    early_stop: EarlyStopRule | None = field(default_factory=EarlyStopRule)  # None: train every candidate fully
    minimize_params: bool = False  # a third objective: parameter count

    @property
    def objectives(self) -> dict[str, str]:
        """Objective name -> Optuna direction, in the order trials report them."""
        pairs = list(zip(OBJECTIVES, DIRECTIONS)) + ([PARAMS_OBJECTIVE] if self.minimize_params else [])
        return dict(pairs)


#: Trial user attribute saying what a running trial is doing ("distill" once training starts).
PHASE_ATTR = "phase"
#: Study user attribute holding the teacher's validation PSNR (dB), set when the teacher is checked.
TEACHER_PSNR_ATTR = "teacher_psnr"
#: Study user attribute holding the search space (`SearchSpace.to_mapping`).
SPACE_ATTR = "space"


@dataclass(frozen=True)
class HeartbeatConfig:
    """A running trial beats every `interval_s`; silent for `grace_s` means its worker died."""

    interval_s: int = 30
    grace_s: int = 120
    max_retry: int = 2  # how often a lost trial is run again

    def __post_init__(self) -> None:
        if self.interval_s < 1 or self.grace_s <= self.interval_s:
            raise NNSearchError(f"need heartbeat interval >= 1 s and grace period > interval, got "
                                f"interval={self.interval_s} grace={self.grace_s}")


def optuna_storage(store: Store, heartbeat: HeartbeatConfig = HeartbeatConfig()) -> optuna.storages.RDBStorage:
    """The Optuna storage inside the same database as the nnsearch tables, with heartbeats."""
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if store.url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 60}
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=heartbeat.max_retry)
    with advisory_lock(store, "optuna-schema"):  # Optuna's table creation is not safe to run concurrently
        return optuna.storages.RDBStorage(store.url, engine_kwargs=kwargs, heartbeat_interval=heartbeat.interval_s,
                                          grace_period=heartbeat.grace_s, heartbeat_stale_trial_callback=retry)


@dataclass
class TrialOutcome:
    """What one trial produced, for progress display and the objective values."""

    number: int
    arch: Arch
    state: str  # complete, infeasible, stopped or failed (as recorded in the store)
    psnr: float = math.nan
    latency_ms: float = math.nan
    params: int = 0
    message: str = ""

    def values(self, objectives: Iterable[str] = OBJECTIVES) -> list[float]:
        """Objective values for Optuna (an infeasible candidate scores PSNR 0 at its predicted latency)."""
        known = {"psnr": 0.0 if self.state == "infeasible" else self.psnr,
                 "latency_ms": self.latency_ms, "params": float(self.params)}
        return [known[name] for name in objectives]


class Study:
    """A named study in a store: prepares data and teacher once, then runs trials."""

    def __init__(self, config: StudyConfig, store: Store, *, verbose: bool = True,
                 device: torch.device | None = None, heartbeat: HeartbeatConfig = HeartbeatConfig(),
                 data: DenoiseData | None = None) -> None:
        self.config = config
        self.store = store
        self.verbose = verbose
        self.device = device or default_device()
        self.results_dir = default_results_root() / config.name
        self._data: DenoiseData | None = data  # loaded on first use when not given
        self._data_announced = False
        self._targets: TeacherTargets | None = None
        self._interrupts: InterruptGuard | None = None
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.optuna = optuna.create_study(
            storage=optuna_storage(store, heartbeat), study_name=config.name,
            directions=list(config.objectives.values()),
            sampler=self._sampler(config.seed), load_if_exists=True,
        )
        if len(self.optuna.directions) != len(config.objectives):
            raise NNSearchError(
                f"study '{config.name}' in {store.display_url} has {len(self.optuna.directions)} objectives, "
                f"this run asks for {list(config.objectives)}; use another --study name")
        self.optuna.set_metric_names(list(config.objectives))
        self._check_space()

    def _check_space(self) -> None:
        """Store the study's search space with it (replay reads it); refuse resuming it with another space."""
        mine = self.config.space.to_mapping()
        stored = self.optuna.user_attrs.get(SPACE_ATTR)
        if stored is None:
            self.optuna.set_user_attr(SPACE_ATTR, mine)
        elif stored != mine:
            raise NNSearchError(
                f"study '{self.config.name}' in {self.store.display_url} was created with search space "
                f"'{stored.get('name')}' and this run gives a different one ('{mine['name']}' from "
                f"{self.config.space.source or 'memory'}); use the same --space or another --study name")

    def log(self, message: str) -> None:
        if self.verbose:
            print(message, flush=True)

    @property
    def data(self) -> DenoiseData:
        if self._data is None:
            self._data = load_data(self.config.data_spec, max_side=self.config.max_side, seed=self.config.seed)
        if not self._data_announced:
            self._data_announced = True
            self.log(f"data: {self._data.source}: {len(self._data.train)} train / {len(self._data.val)} validation images")
        return self._data

    def targets(self) -> TeacherTargets:
        """The shared batch plan with teacher outputs (teacher trained or loaded once)."""
        if self._targets is None:
            teacher = None
            if self.config.distill.alpha > 0:
                teacher = prepare_teacher(self.config.teacher, self.data, steps=self.config.teacher_steps,
                                          device=self.device, margin_db=self.config.teacher_margin_db,
                                          verbose=self.verbose)
                self.optuna.set_user_attr(TEACHER_PSNR_ATTR, teacher.quality.psnr)
            multiple = 2 ** (self.config.space.max_levels - 1)
            self._targets = TeacherTargets.build(teacher and teacher.module, self.data, self.config.distill,
                                                 multiple=multiple, device=self.device, verbose=self.verbose,
                                                 identity=teacher and teacher.identity)
        return self._targets

    def prepare(self) -> None:
        """Everything workers share, done once: lookup table, budget check, data, teacher and its outputs."""
        self.fill_lookup_table()
        self.check_budget_reachable()
        self.targets()

    def fill_lookup_table(self) -> None:
        """For a sampler that predicts latencies, on this host: measure the space's missing lookup-table entries.

        The sampler predicts the latency of dozens of candidates per trial; done
        here, the measuring shows progress once instead of slowing early trials.
        """
        lat = self.config.latency
        if self.config.sampler not in PREDICTS_LATENCY or not lat.predict or lat.device != HOST_DEVICE:
            return
        with advisory_lock(self.store, f"lut-{lat.height}x{lat.width}-{lat.threads}"):
            measured, total = fill_space_table(self.store, self.config.space, lat.height, lat.width, lat.threads,
                                               verbose=self.verbose)
        if measured:
            self.log(f"lookup table: measured {measured} of the space's {total} layer latencies at "
                     f"{lat.height}x{lat.width} on {lat.device}")

    def check_budget_reachable(self) -> None:
        """Refuse, before any training, a latency budget below the space's fastest student."""
        budget = self.config.max_latency_ms
        if budget is None or not self.config.latency.predict:
            return
        fastest = min(self.config.space.fastest_candidates(), key=self._predicted_ms)
        best = self._predicted_ms(fastest)
        if best > budget:
            lat = self.config.latency
            raise NNSearchError(
                f"--max-latency-ms {budget:g} is below anything space '{self.config.space.name}' can reach: its "
                f"fastest student ({fastest.describe()}) is predicted at {best:.1f} ms on '{lat.device}' at "
                f"{lat.height}x{lat.width}, {lat.threads} thread(s)")

    def _predicted_ms(self, arch: Arch) -> float:
        lat = self.config.latency
        return predict_latency(self.store, arch, lat.device, lat.height, lat.width, lat.threads)

    def _predicted_or_none(self, arch: Arch) -> float | None:
        """The prediction a sampler may use, None where the device's table cannot give one."""
        try:
            return self._predicted_ms(arch)
        except LatencyError:
            return None

    def run(self, n_trials: int, *, timeout_s: float | None = None) -> TrialCounts:
        """Run `n_trials` more finished trials (a study that exists is resumed, never restarted)."""
        return self.run_until(TrialCounts.of(self.optuna).finished + n_trials, timeout_s=timeout_s)

    def run_until(self, total: int, *, timeout_s: float | None = None, poll_s: float = 1.0) -> TrialCounts:
        """Work on the study until it has `total` finished trials (shared with any other workers).

        With `timeout_s`, no new trial starts after that many seconds. Ctrl-C marks
        the running trial failed (nothing of it is recorded) and re-raises.
        """
        began = time.monotonic()
        counts = TrialCounts.of(self.optuna)
        self.log(f"study '{self.config.name}': {counts.finished} of {total} trials finished "
                 f"(space {self.config.space.name}, store {self.store.display_url})")
        if counts.finished >= total:
            self.log(f"study '{self.config.name}' already has its {total} trials; raise --trials to add more")
            return counts
        self.prepare()
        while timeout_s is None or time.monotonic() - began < timeout_s:
            claim = claim_trial(self.optuna, self.store, total, before_ask=self._seed_sampler)
            counts = claim.counts
            if claim.done:
                break
            if claim.trial is None:
                time.sleep(poll_s)
                continue
            self.run_trial(claim.trial)
            self.log_status(total)
            gc.collect()
        else:
            self.log(f"study '{self.config.name}': timeout of {timeout_s:g} s reached, no new trials started")
        return TrialCounts.of(self.optuna)

    def _seed_sampler(self, number: int) -> None:
        """A sampler seeded by (study seed, trial number): reproducible, and distinct across workers."""
        self.optuna.sampler = self._sampler(self.config.seed * 1_000_003 + number)

    def _sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        """The configured sampler, told the space, the lookup-table latency and the budget."""
        latency = self._predicted_or_none if self.config.latency.predict else None
        context = SamplerContext(self.config.space, latency, self.config.max_latency_ms)
        return SAMPLERS[self.config.sampler](seed, context)

    def log_status(self, total: int) -> None:
        if self.verbose:
            from nnsearch.search.live import StudyStatus

            self.log(StudyStatus.read(self.optuna, self.store, total, self.config.latency.device).line())

    def run_trial(self, trial: optuna.Trial) -> TrialOutcome | None:
        """Evaluate one claimed trial and tell Optuna how it ended.

        Ctrl-C before the trial's rows are written fails the trial (nothing recorded);
        once writing has begun it waits until the record and Optuna agree.
        """
        with InterruptGuard() as self._interrupts:
            try:
                with Heartbeat(self.optuna, trial):
                    outcome = self.evaluate(trial)
            except DistillationDiverged as exc:
                trial.set_user_attr(OUTCOME_ATTR, "failed")
                self.optuna.tell(trial, state=optuna.trial.TrialState.FAIL)
                self.log(f"trial {trial.number}: failed: {exc}")
                return None
            except BaseException:
                self.optuna.tell(trial, state=optuna.trial.TrialState.FAIL)
                self.log(f"trial {trial.number}: interrupted, nothing of it was recorded")
                raise
            if outcome.state == "stopped":
                self.optuna.tell(trial, state=optuna.trial.TrialState.PRUNED)
            else:
                self.optuna.tell(trial, outcome.values(self.config.objectives))
            self._interrupts = None
        return outcome

    def objective(self, trial: optuna.Trial) -> tuple[float, ...]:
        """Optuna objective (for `optuna.Study.optimize` users): values of a finished candidate."""
        outcome = self.evaluate(trial)
        if outcome.state == "stopped":
            raise optuna.TrialPruned(outcome.message)
        return tuple(outcome.values(self.config.objectives))

    def evaluate(self, trial: optuna.Trial) -> TrialOutcome:
        """Sample, predict, distill, time and record one candidate."""
        began = time.perf_counter()
        arch = self.config.space.suggest(trial)
        trial.set_user_attr("nn", arch.name)
        trial.set_user_attr("arch", arch.describe())
        self.log(f"trial {trial.number}: {arch.name} {arch.describe()}")
        earlier = self._earlier_result(arch)
        if earlier is not None:
            self._link_repeat(trial.number, arch)
            self.log(f"trial {trial.number}: same student as trial {earlier['trial']}, reusing its results")
            return TrialOutcome(trial.number, arch, "complete", float(earlier["psnr"]), float(earlier["latency_ms"]),
                                int(earlier["params"]))
        student = build_student(arch)
        params = count_params(student)
        predicted = self._predict_latency(arch)
        excess = self._budget_excess(predicted)
        trial.set_user_attr(CONSTRAINT_ATTR, excess)
        if excess > 0:
            self._record(trial.number, arch, student, epochs=[], latencies=[predicted], state="infeasible")
            self.log(f"trial {trial.number}: infeasible, predicted {predicted.median_ms:.1f} ms exceeds the "
                     f"{self.config.max_latency_ms:g} ms budget; not trained")
            return TrialOutcome(trial.number, arch, "infeasible", latency_ms=predicted.median_ms, params=params)
        torch.manual_seed(self.config.seed + trial.number)
        trial.set_user_attr(PHASE_ATTR, "distill")
        epochs: list = []
        on_epoch = self._epoch_callback(epochs, predicted)
        try:
            result = distill(student, self.targets(), self.data.val, self.config.distill,
                             device=self.device, verbose=self.verbose, on_epoch=on_epoch)
        except DistillationDiverged:
            self._record(trial.number, arch, student, epochs=[], latencies=_present(predicted), state="failed")
            raise
        except StoppedEarly as exc:
            self._record(trial.number, arch, student, epochs=epochs, latencies=_present(predicted), state="stopped")
            self.log(f"trial {trial.number}: {exc}")
            return TrialOutcome(trial.number, arch, "stopped", epochs[-1].psnr, predicted.median_ms, params, str(exc))
        measured = self._measure_latency(student, arch) if self._can_measure() else None
        latency = _best_ms(measured or predicted)  # min of runs, like the table's entries
        self._record(trial.number, arch, student, epochs=result.epochs, latencies=_present(predicted, measured),
                     state="complete")
        outcome = TrialOutcome(trial.number, arch, "complete", result.final.psnr, latency, params)
        guess = f" (predicted {predicted.median_ms:.1f})" if predicted and measured else ""
        self.log(f"trial {trial.number}: PSNR {outcome.psnr:.2f} dB, SSIM {result.final.ssim:.4f}, "
                 f"latency {outcome.latency_ms:.1f} ms{guess} @ {self.config.latency.height}x{self.config.latency.width}, "
                 f"{params:,} params ({time.perf_counter() - began:.0f} s)")
        return outcome

    def _epoch_callback(self, epochs: list, predicted: LatencyRecord | None) -> Callable[[Any], None]:
        """Collects epoch records and applies the early-stopping rule after each epoch."""
        rule = self.config.early_stop
        history = None
        if rule is not None and predicted is not None:
            history = EpochHistory.load(self.store, self.config.name, self.config.latency.device)
        last = self.config.distill.epochs - 1

        def on_epoch(record: Any) -> None:
            epochs.append(record)
            check_epoch(rule, history, record.epoch, last, record.psnr, predicted.median_ms if predicted else None)

        return on_epoch

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
        self._begin_commit()
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

    def _begin_commit(self) -> None:
        """From here on, Ctrl-C waits until the trial is recorded and told (see run_trial)."""
        raise_if_interrupted()  # a Ctrl-C that was lost on the way still stops the trial unrecorded
        if self._interrupts is not None:
            self._interrupts.defer()

    def _record(self, number: int, arch: Arch, student: torch.nn.Module, *, epochs: list, latencies: list,
                state: str) -> None:
        self._begin_commit()
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


def _best_ms(record: LatencyRecord) -> float:
    return record.min_ms if record.min_ms is not None else record.median_ms


def _present(*records: LatencyRecord | None) -> list[LatencyRecord]:
    return [r for r in records if r is not None]


def _json(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True)


def _transform_name(config: DistillConfig) -> str:
    return "crops_" + "-".join(map(str, config.crops)) + "_hflip"


def _transform_code(config: DistillConfig) -> str:
    return (f"# random crops {' -> '.join(map(str, config.crops))} px (progressive over the step budget), "
            "random horizontal flip; see nnsearch.train.crops\n")
