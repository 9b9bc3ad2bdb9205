"""The trial loop every study and every replay runs: claim a trial, run it, tell Optuna.

One code path for a trial (`TrialLoop.run_trial`): under an interrupt guard
and with the trial's heartbeat, the trial backend (`RunTrial`: a study's
`CandidateTrial`, or a replay's recorded table) produces a `TrialOutcome`,
and Optuna is told: complete with the objective values, pruned when stopped
early, failed on a diverged loss (a recorded failure) or on an interruption
(nothing recorded). `TrialLoop.objective` is the same path for
`optuna.Study.optimize` users, except that Optuna tells itself.

Which trial to run next comes from a claim source: `claim_trial` for a study in
a store (shared with other workers), `AskClaims` for a private in-memory study.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import optuna

from nnsearch.common.interrupts import InterruptGuard
from nnsearch.search.candidate_trial import RunTrial, TrialOutcome
from nnsearch.search.claims import Claim, TrialCounts
from nnsearch.search.heartbeat import Heartbeat
from nnsearch.search.inputs import silent
from nnsearch.search.outcomes import OUTCOME_ATTR
from nnsearch.search.quiet import quiet_optuna
from nnsearch.train.distill import DistillationDiverged

#: Claims the next trial of a study that should end with `total` finished trials.
ClaimFn = Callable[[int], Claim]


class AskClaims:
    """Claims for a study only this loop works on: a new trial until `total` trials were asked for."""

    def __init__(self, study: optuna.Study) -> None:
        self.study = study
        self.asked = 0

    def __call__(self, total: int) -> Claim:
        counts = TrialCounts(self.asked, 0, 0, 0)
        if self.asked >= total:
            return Claim(None, True, counts)
        self.asked += 1
        return Claim(self.study.ask(), False, counts)


class TrialLoop:
    """Runs trials of `study` with `run_candidate` until it has enough finished ones.

    `objectives` name the values Optuna is told, in order; `after_trial(outcome)`
    runs after each trial (the outcome is None for a recorded failure).
    """

    def __init__(
        self,
        study: optuna.Study,
        run_candidate: RunTrial,
        objectives: Sequence[str],
        *,
        claim: ClaimFn | None = None,
        log: Callable[[str], None] = silent,
        after_trial: Callable[[TrialOutcome | None], None] | None = None,
    ) -> None:
        self.study = study
        self.run_candidate = run_candidate
        self.objectives = list(objectives)
        self.claim = claim or AskClaims(study)
        self.log = log
        self.after_trial = after_trial

    def run(self, total: int, *, timeout_s: float | None = None, poll_s: float = 1.0) -> None:
        """Claim and run trials until the study has `total` finished; with `timeout_s`, start none after that.

        A Ctrl-C while a trial is claimed waits until the trial exists, then fails
        it: no trial is left RUNNING by an interrupted run.
        """
        began = time.monotonic()
        with quiet_optuna():
            while timeout_s is None or time.monotonic() - began < timeout_s:
                with InterruptGuard() as guard:
                    guard.defer()
                    claim = self.claim(total)
                    if claim.trial is not None:
                        outcome = self._run(claim.trial, guard, tells=True)
                if claim.done:
                    return
                if claim.trial is None:  # other workers run the remaining trials
                    time.sleep(poll_s)
                    continue
                if self.after_trial is not None:
                    self.after_trial(outcome)
        self.log(f"study '{self.study.study_name}': timeout of {timeout_s:g} s reached, no new trials started")

    def run_trial(self, trial: optuna.Trial) -> TrialOutcome | None:
        """Run one claimed trial and tell Optuna how it ended (None: a recorded failure).

        Ctrl-C before the trial's rows are written fails the trial (nothing recorded);
        once writing has begun it waits until the record and Optuna agree.
        """
        return self._guarded(trial, tells=True)

    def objective(self, trial: optuna.Trial) -> tuple[float, ...]:
        """Optuna objective (for `optuna.Study.optimize`): the same path as `run_trial`, but Optuna tells.

        A candidate stopped early raises `optuna.TrialPruned`, a diverged one its
        `DistillationDiverged` (Optuna fails the trial; it is recorded as failed).
        Optuna tells only after the objective returns, so a Ctrl-C held back while
        the rows were written is raised then, and Optuna fails a recorded trial;
        `run` has no such gap (it tells inside the guard).
        """
        outcome = self._guarded(trial, tells=False)
        assert outcome is not None  # without telling, a diverged loss propagates
        if outcome.state == "stopped":
            raise optuna.TrialPruned(outcome.message)
        return tuple(outcome.values(self.objectives))

    def _guarded(self, trial: optuna.Trial, *, tells: bool) -> TrialOutcome | None:
        with InterruptGuard() as guard:
            return self._run(trial, guard, tells=tells)

    def _run(self, trial: optuna.Trial, guard: InterruptGuard, *, tells: bool) -> TrialOutcome | None:
        """The trial under `guard` (Ctrl-C raises again from here on); tells Optuna if `tells`."""
        try:
            guard.allow()
            with Heartbeat(self.study, trial):
                outcome = self.run_candidate(trial)
        except DistillationDiverged as exc:
            trial.set_user_attr(OUTCOME_ATTR, "failed")
            self.log(f"trial {trial.number}: failed: {exc}")
            if not tells:
                raise
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            return None
        except BaseException:
            if tells:
                self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            self.log(f"trial {trial.number}: interrupted, nothing of it was recorded")
            raise
        if tells:
            self._tell(trial, outcome)
        return outcome

    def _tell(self, trial: optuna.Trial, outcome: TrialOutcome) -> None:
        if outcome.state == "stopped":
            self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            self.study.tell(trial, outcome.values(self.objectives))
