"""A search study: its configuration, Optuna study, training inputs, candidate trial and trial loop.

`Study` only assembles the pieces, each of which is a module of its own:
`config` (what defines a study), `optuna_setup` (storage, create or resume),
`inputs` (data and teacher targets), `preparation` (lookup table, budget
check), `nnsearch.latency.candidate`, `recorder`, `candidate_trial` (one candidate) and
`trial_loop` (claims, interrupt guard, heartbeats, telling Optuna).
"""

from __future__ import annotations

import gc
from collections.abc import Iterable
from pathlib import Path

import optuna
import torch

from nnsearch.common.device import default_device
from nnsearch.common.paths import default_results_root
from nnsearch.export.candidate_quality import QuantizedQuality
from nnsearch.latency.candidate import CandidateLatency
from nnsearch.model.arch import Arch
from nnsearch.search.candidate_trial import CandidateTrial, TrialOutcome
from nnsearch.search.claims import TrialCounts, claim_trial
from nnsearch.search.config import (  # noqa: F401 - the study's vocabulary, importable from here
    CONFIG_ATTR,
    DIRECTIONS,
    OBJECTIVES,
    PARAMS_OBJECTIVE,
    PHASE_ATTR,
    SPACE_ATTR,
    TEACHER_PSNR_ATTR,
    HeartbeatConfig,
    LatencyConfig,
    StudyConfig,
)
from nnsearch.search.early_stopping import EpochHistory
from nnsearch.search.inputs import TrainingInputs, silent
from nnsearch.search.multifidelity import Promotion, next_promotion, objective_senses
from nnsearch.search.optuna_setup import open_optuna_study, optuna_storage
from nnsearch.search.preparation import check_budget_reachable, fill_lookup_table
from nnsearch.search.recorder import TrialRecorder
from nnsearch.search.samplers import SAMPLERS, SamplerContext
from nnsearch.search.trial_loop import TrialLoop
from nnsearch.store.engine import Store
from nnsearch.store.query import StudyReader
from nnsearch.store.timings import LatencyQuery
from nnsearch.train.datasets import DenoiseData
from nnsearch.train.distill import TeacherTargets

__all__ = ["HeartbeatConfig", "LatencyConfig", "Study", "StudyConfig", "TrialOutcome", "optuna_storage"]


class Study:
    """A named study in a store: prepares data and teacher once, then runs trials.

    A study that exists is resumed with `config` only where it equals the stored
    configuration, or differs in the settings named in `allow_changes`
    (`nnsearch.search.optuna_setup.open_optuna_study`).
    Results (exported .tflite files, worker logs) go to `results_root/<name>`
    (default `nnsearch.common.paths.default_results_root()`). Construction
    changes no global logging or warning filter.
    """

    def __init__(
        self,
        config: StudyConfig,
        store: Store,
        *,
        verbose: bool = True,
        device: torch.device | None = None,
        heartbeat: HeartbeatConfig = HeartbeatConfig(),
        data: DenoiseData | None = None,
        results_root: Path | None = None,
        allow_changes: Iterable[str] = (),
        load_if_exists: bool = True,
    ) -> None:
        self.config = config
        self.store = store
        self.verbose = verbose
        self.device = device or default_device()
        self.log = print_log if verbose else silent
        self.inputs = TrainingInputs(
            config,
            self.device,
            data=data,
            verbose=verbose,
            log=self.log,
            on_teacher=lambda psnr: self.optuna.set_user_attr(TEACHER_PSNR_ATTR, psnr),
        )
        lat = config.latency
        self.latency = CandidateLatency(
            store,
            lat,
            Path(),
            max_latency_ms=config.budget.max_latency_ms,
            precision=config.latency.precision,
            study=config.name,
            log=self.log,
        )
        self.quantized = (
            None
            if not config.latency.precision.quantized
            else QuantizedQuality(config.latency.precision, config.latency.calibration_samples, config.seed)
        )
        self.results_dir = (results_root or default_results_root()) / config.name
        self.recorder = TrialRecorder(
            store, config.name, config.distill, latency=self.latency_query(), macs_hw=(lat.height, lat.width)
        )
        self.candidate_trial = CandidateTrial(
            config.space,
            config.distill,
            self.inputs,
            self.latency,
            self.recorder,
            seed=config.seed,
            early_stop=config.budget.early_stop,
            history=lambda: EpochHistory.of(self.recorder.reader),
            device=self.device,
            verbose=verbose,
            log=self.log,
            quantized=self.quantized,
            rungs=config.rungs,
        )
        self.optuna = open_optuna_study(
            config,
            store,
            self._sampler(config.seed),
            heartbeat,
            allow_changes=allow_changes,
            load_if_exists=load_if_exists,
        )
        self.loop = TrialLoop(
            self.optuna,
            self.candidate_trial.run,
            list(config.objectives),
            claim=self._claim,
            log=self.log,
            after_trial=self._after_trial,
        )
        self._total = 0

    @property
    def results_dir(self) -> Path:
        """Where this study's files go (`<results root>/<study name>`)."""
        return self._results_dir

    @results_dir.setter
    def results_dir(self, path: Path) -> None:
        self._results_dir = Path(path)
        self.latency.tflite_dir = self._results_dir / "tflite"

    @property
    def data(self) -> DenoiseData:
        return self.inputs.data

    def targets(self) -> TeacherTargets:
        """The shared batch plan with teacher outputs (teacher trained or loaded once)."""
        return self.inputs.targets()

    def prepare(self) -> None:
        """Everything workers share, done once: lookup table, budget check, data, teacher and its outputs."""
        if self.quantized is not None:  # calibration crops that do not fit fail here, before any training
            self.quantized.check_calibration(self.data)
        self.fill_lookup_table()
        self.latency.warn_if_table_predicts_badly()
        self.check_budget_reachable()
        self.targets()

    def fill_lookup_table(self) -> None:
        """Measure the space's missing lookup-table entries where the sampler predicts latencies (`preparation`)."""
        fill_lookup_table(self.config, self.store, verbose=self.verbose, log=self.log)

    def check_budget_reachable(self) -> None:
        """Refuse, before any training, a latency budget below the space's fastest student."""
        check_budget_reachable(self.config, self.latency)

    def predicted_ms(self, arch: Arch) -> float:
        """The lookup table's latency prediction for `arch` on the study's device profile."""
        return self.latency.predicted_ms(arch)

    def run(self, trials: int, *, timeout_s: float | None = None, poll_s: float = 1.0) -> TrialCounts:
        """Work on the study until it has `trials` finished trials in all (shared with any other workers).

        A study that exists is resumed, never restarted, and one that already has
        `trials` finished trials runs none. With `timeout_s`, no new trial starts
        after that many seconds. Ctrl-C marks the running trial failed (nothing
        of it is recorded) and re-raises.
        """
        counts = self.counts()
        self.log(
            f"study '{self.config.name}': {counts.finished} of {trials} trials finished "
            f"(space {self.config.space.name}, store {self.store.display_url})"
        )
        if self.complete(trials):
            self.log(f"study '{self.config.name}' already has its {trials} trials; raise --trials to add more")
            return counts
        self.prepare()
        self._total = trials
        self.loop.run(trials, timeout_s=timeout_s, poll_s=poll_s)
        return self.counts()

    def counts(self) -> TrialCounts:
        """How the study's trials stand now (finished, running, waiting, failed; continuations apart)."""
        return TrialCounts.of(self.optuna)

    def complete(self, trials: int) -> bool:
        """Whether the study has `trials` finished candidates and (multi-fidelity) no continuation due or running."""
        counts = self.counts()
        if counts.finished < trials:
            return False
        return self.config.rungs is None or (counts.continuing == 0 and self._promotion(self.optuna) is None)

    def run_trial(self, trial: optuna.Trial) -> TrialOutcome | None:
        """Run one claimed trial and tell Optuna how it ended (`TrialLoop.run_trial`)."""
        return self.loop.run_trial(trial)

    def objective(self, trial: optuna.Trial) -> tuple[float, ...]:
        """Optuna objective for `optuna.Study.optimize` users (`TrialLoop.objective`: the same trial path)."""
        return self.loop.objective(trial)

    def run_candidate(self, trial: optuna.Trial) -> TrialOutcome:
        """Sample, predict, distill, time and record one candidate (`CandidateTrial.run`)."""
        return self.candidate_trial.run(trial)

    def results(self):  # -> pd.DataFrame
        """Recorded trials of this study as a DataFrame (read afresh), latency at the study's configuration."""
        return self.recorder.results()

    def latency_query(self) -> LatencyQuery:
        """The study's latency configuration, for `nnsearch.store.timings` (device, size, threads)."""
        lat = self.config.latency
        return LatencyQuery(lat.device, lat.height, lat.width, lat.threads, self.config.latency.precision)

    def reader(self) -> StudyReader:
        """This process's incremental reader of the study's results (each call reads only new trials)."""
        return self.recorder.reader

    def log_status(self, total: int) -> None:
        if self.verbose:
            from nnsearch.search.live import StudyStatus

            self.log(StudyStatus.read(self.optuna, self.store, total, reader=self.reader()).line())

    def _claim(self, total: int):
        promote = self._promotion if self.config.rungs is not None else None
        return claim_trial(self.optuna, self.store, total, before_ask=self._seed_sampler, promote=promote)

    def _promotion(self, study: optuna.Study) -> Promotion | None:
        """The next student due for a higher rung (multi-fidelity), from the store's records."""
        assert self.config.rungs is not None
        return next_promotion(
            study, self.recorder.reader.rung_results(), self.config.rungs, objective_senses(self.config.objectives)
        )

    def _after_trial(self, outcome: TrialOutcome | None) -> None:
        self.log_status(self._total)
        gc.collect()

    def _seed_sampler(self, number: int) -> None:
        """A sampler seeded by (study seed, trial number): reproducible, and distinct across workers."""
        self.optuna.sampler = self._sampler(self.config.seed * 1_000_003 + number)

    def _sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        """The configured sampler, told the space, the lookup-table latency and the budget."""
        latency = self.latency.predicted_or_none if self.config.latency.predict else None
        context = SamplerContext(self.config.space, latency, self.config.budget.max_latency_ms)
        return SAMPLERS[self.config.sampler.name](seed, context)


def print_log(message: str) -> None:
    """A study's log line on stdout."""
    print(message, flush=True)
