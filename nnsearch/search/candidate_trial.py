"""One candidate trial of a study: sample it, predict its latency, distill, time and record it.

`CandidateTrial.run(trial)` is the whole story of one trial and needs
only what it is given: the search space and distillation settings, the
training inputs (data and teacher targets), the candidate latency provider,
the recorder, and the early-stopping rule with the history it compares with.
It does not tell Optuna anything; the trial loop (`nnsearch.search.trial_loop`)
does that with the `TrialOutcome` it returns.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import optuna
import torch

from nnsearch.errors import NNSearchError
from nnsearch.export.candidate_quality import QuantizedQuality
from nnsearch.latency.candidate import CandidateLatency
from nnsearch.model.arch import Arch
from nnsearch.model.counting import count_params
from nnsearch.model.space import SearchSpace
from nnsearch.model.student import build_student
from nnsearch.search.config import OBJECTIVES, PHASE_ATTR
from nnsearch.search.early_stopping import EarlyStopRule, EpochHistory, StoppedEarly, check_epoch
from nnsearch.search.inputs import TrainingInputs, silent
from nnsearch.search.multifidelity import CONTINUES_ATTR, RUNG_ATTR, RungSchedule, is_continuation
from nnsearch.search.recorder import TrialRecorder
from nnsearch.search.samplers import CONSTRAINT_ATTR, set_latency_constraint
from nnsearch.store.record import LatencyRecord, PrecisionRecord
from nnsearch.train.distill import DistillationDiverged, DistillConfig, distill
from nnsearch.train.teacher_check import noisy_psnr


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
        known = {
            "psnr": 0.0 if self.state == "infeasible" else self.psnr,
            "latency_ms": self.latency_ms,
            "params": float(self.params),
        }
        return [known[name] for name in objectives]


#: What runs one claimed trial: a study's `CandidateTrial.run`, or a replay's table lookup.
RunTrial = Callable[[optuna.Trial], TrialOutcome]


#: A student less than this far above the noisy input on validation has not started denoising.
NO_GAIN_DB = 0.05


def no_gain_note(psnr: float, noisy_input_psnr: float) -> str:
    """What a trial line adds when the student is no better than its noisy input ('' otherwise)."""
    if psnr >= noisy_input_psnr + NO_GAIN_DB:
        return ""
    if psnr <= noisy_input_psnr - NO_GAIN_DB:
        return f"; worse than the noisy input ({noisy_input_psnr:.2f} dB)"
    return f"; no better than the noisy input ({noisy_input_psnr:.2f} dB): it still outputs about its input"


class CandidateTrial:
    """Runs a study's candidate trials: each trial's architecture is sampled from `space`.

    A candidate predicted over the latency budget is recorded `infeasible` and
    not trained; a continuation trial (multi-fidelity) trains a promoted student
    from its weights at the rung below to its next rung; one the early-stopping rule gives up on is recorded `stopped`;
    one whose loss diverges is recorded `failed` (and `DistillationDiverged`
    propagates); a repeat of a completed student reuses its result.
    """

    def __init__(
        self,
        space: SearchSpace,
        distill_config: DistillConfig,
        inputs: TrainingInputs,
        latency: CandidateLatency,
        recorder: TrialRecorder,
        *,
        seed: int = 0,
        early_stop: EarlyStopRule | None = None,
        history: Callable[[], EpochHistory] | None = None,
        device: torch.device | None = None,
        verbose: bool = False,
        log: Callable[[str], None] = silent,
        quantized: QuantizedQuality | None = None,
        rungs: RungSchedule | None = None,
    ) -> None:
        self.space = space
        self.distill_config = distill_config
        self.inputs = inputs
        self.latency = latency
        self.recorder = recorder
        self.seed = seed
        self.early_stop = early_stop
        self.history = history
        self.device = device or torch.device("cpu")
        self.verbose = verbose
        self.log = log
        self.quantized = quantized  # the quantized-quality step of a search at another precision than fp32
        self.rungs = rungs  # a multi-fidelity study's schedule: continuations train the next rung

    @functools.cached_property
    def noisy_input_psnr(self) -> float:
        """Mean validation PSNR of the noisy input: what every student must beat."""
        return noisy_psnr(self.inputs.data.val)

    def run(self, trial: optuna.Trial) -> TrialOutcome:
        """Sample, predict, distill, time and record one candidate (or continue a promoted student)."""
        if is_continuation(trial):
            return self._continue(trial)
        began = time.perf_counter()
        arch = self.space.suggest(trial)
        trial.set_user_attr("nn", arch.name)
        trial.set_user_attr("arch", arch.describe())
        self.log(f"trial {trial.number}: {arch.name} {arch.describe()}")
        earlier = self.recorder.earlier_result(arch)
        if earlier is not None:
            set_latency_constraint(trial, 0.0)
            self.recorder.link_repeat(trial.number, arch, self.inputs.data.name)
            self.log(f"trial {trial.number}: same student as trial {earlier['trial']}, reusing its results")
            return TrialOutcome(
                trial.number,
                arch,
                "complete",
                float(earlier["psnr"]),
                float(earlier["latency_ms"]),
                int(earlier["params"]),
            )
        torch.manual_seed(self.seed + trial.number)  # the initial weights: reproducible, whatever ran before
        student = build_student(arch)
        params = count_params(student)
        predicted = self.latency.predict(arch)
        excess = self.latency.budget_excess(predicted)
        trial.set_user_attr(CONSTRAINT_ATTR, excess)
        set_latency_constraint(trial, excess)
        if excess > 0:
            assert predicted is not None  # a budget needs predictions (CandidateLatency.predict says so)
            self._record(trial.number, arch, student, epochs=[], latencies=[predicted], state="infeasible")
            self.log(
                f"trial {trial.number}: infeasible, predicted {predicted.ms:.1f} ms exceeds the "
                f"{self.latency.max_latency_ms:g} ms budget; not trained"
            )
            return TrialOutcome(trial.number, arch, "infeasible", latency_ms=predicted.ms, params=params)
        trial.set_user_attr(PHASE_ATTR, "distill")
        return self._train(trial.number, arch, student, predicted, rung=0, began=began)

    def _continue(self, trial: optuna.Trial) -> TrialOutcome:
        """Train a promoted student from its weights at the rung below to the trial's rung, and record it."""
        began = time.perf_counter()
        number, rung = int(trial.user_attrs[CONTINUES_ATTR]), int(trial.user_attrs[RUNG_ATTR])
        arch = self.space.suggest(trial)  # the enqueued parameters: the student's own architecture
        trial.set_user_attr("nn", arch.name)
        below = self.recorder.rung_result(number, rung - 1)
        if below is None or below["nn"] != arch.name or self.rungs is None:
            raise NNSearchError(
                f"trial {trial.number} continues trial {number} to rung {rung}, but the store holds "
                f"no rung {rung - 1} record of {arch.name} for that trial"
            )
        student = build_student(arch)
        student.load_state_dict(self.recorder.weights(arch.name, below["prm"]))
        self.log(
            f"trial {number}: continuing {arch.name} from its rung {rung - 1} weights to rung {rung} "
            f"({self.rungs.steps[rung]} steps in all; continuation trial {trial.number})"
        )
        trial.set_user_attr(PHASE_ATTR, "distill")
        return self._train(number, arch, student, None, rung=rung, began=began, latency_ms=float(below["latency_ms"]))

    def _train(
        self,
        number: int,
        arch: Arch,
        student: torch.nn.Module,
        predicted: LatencyRecord | None,
        *,
        rung: int,
        began: float,
        latency_ms: float = math.nan,
    ) -> TrialOutcome:
        """Distill `student` for `rung` (from scratch at rung 0), evaluate, time (rung 0) and record it."""
        config, prm = self.distill_config, None
        if rung:
            assert self.rungs is not None
            prm = self.rungs.hyperparameters(self.distill_config, rung)
            config = self.rungs.segment(self.distill_config, rung)
        offset = rung * self.distill_config.epochs  # a later rung continues the epoch numbers
        epochs: list = []
        record = functools.partial(self._record, number, arch, student, rung=rung, prm=prm)
        try:
            result = distill(
                student,
                self.inputs.targets(rung),
                self.inputs.data.val,
                config,
                device=self.device,
                verbose=self.verbose,
                on_epoch=self._epoch_callback(epochs, predicted, offset),
            )
        except DistillationDiverged:
            record(epochs=[], latencies=_present(predicted), state="failed")
            raise
        except StoppedEarly as exc:
            record(epochs=epochs, latencies=_present(predicted), state="stopped")
            self.log(f"trial {number}: {exc}")
            return TrialOutcome(
                number,
                arch,
                "stopped",
                epochs[-1].psnr,
                math.nan if predicted is None else predicted.ms,
                count_params(student),
                str(exc),
            )
        quantized: list[PrecisionRecord] = []
        measure = rung == 0 and self.latency.can_measure  # a continuation keeps the student's latency figures
        if self.quantized is None:
            measured = self.latency.measure(student, arch) if measure else None
        else:  # quantized quality: the objectives are the quantized model's
            data = self.inputs.data
            with self.quantized.quantizer(student, arch, data) as quantizer:
                quantized.append(self.quantized.quality(quantizer, data))
                measured = self.latency.measure(student, arch, quantizer) if measure else None
            student.to(self.device)
        record(epochs=epochs, latencies=_present(predicted, measured), state="complete", precisions=quantized)
        measured = self.latency.land(arch, predicted, self.log) or measured  # a device served by agents
        figure = measured or predicted
        latency = figure.ms if figure is not None else latency_ms  # min of runs, like the table's entries
        quality = quantized[0].psnr if quantized else result.final.psnr
        params = count_params(student)
        outcome = TrialOutcome(number, arch, "complete", quality, latency, params)
        lat = self.latency.config
        guess = f" (predicted {predicted.ms:.1f})" if predicted and measured else ""
        at = f" ({quantized[0].precision}; fp32 {result.final.psnr:.2f})" if quantized else ""
        ssim = quantized[0].ssim if quantized else result.final.ssim
        where = f" at rung {rung}" if self.rungs is not None else ""
        self.log(
            f"trial {number}{where}: PSNR {outcome.psnr:.2f} dB{at}, SSIM {ssim:.4f}, "
            f"latency {outcome.latency_ms:.1f} ms{guess} @ {lat.height}x{lat.width}, "
            f"{params:,} params ({time.perf_counter() - began:.0f} s){no_gain_note(quality, self.noisy_input_psnr)}"
        )
        return outcome

    def _record(
        self,
        number: int,
        arch: Arch,
        student: torch.nn.Module,
        *,
        epochs: list,
        latencies: list[LatencyRecord],
        state: str,
        precisions: list[PrecisionRecord] | None = None,
        rung: int = 0,
        prm: dict[str, Any] | None = None,
    ) -> None:
        self.recorder.record(
            number,
            arch,
            student,
            dataset=self.inputs.data.name,
            epochs=epochs,
            latencies=latencies,
            state=state,
            precisions=precisions,
            rung=rung,
            prm=prm,
        )

    def _epoch_callback(self, epochs: list, predicted: LatencyRecord | None, offset: int = 0) -> Callable[[Any], None]:
        """Collects epoch records (numbered from `offset`) and applies the early-stopping rule after each epoch.

        Only a first training is stopped early (`predicted` given); a continuation trains its rung out.
        """
        rule = self.early_stop
        history = self.history() if rule is not None and predicted is not None and self.history else None
        last = self.distill_config.epochs - 1

        def on_epoch(record: Any) -> None:
            epochs.append(dataclasses.replace(record, epoch=record.epoch + offset))
            check_epoch(rule, history, record.epoch, last, record.psnr, predicted.ms if predicted else None)

        return on_epoch


def _present(*records: LatencyRecord | None) -> list[LatencyRecord]:
    return [r for r in records if r is not None]
