"""Live study status: trials finished/running/failed, the last candidates, the Pareto set size.

In a multi-fidelity study each student counts at the highest rung it reached,
and the status says how many continuations ran and at which rungs the front's
students stand.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import optuna
import pandas as pd

from nnsearch.analysis.pareto import pareto
from nnsearch.common.precision import Precision
from nnsearch.search.claims import TrialCounts
from nnsearch.store.engine import Store
from nnsearch.store.query import StudyReader
from nnsearch.store.timings import study_configuration


@dataclass(frozen=True)
class StudyStatus:
    """A snapshot of a study, read from Optuna's trials and the store."""

    total: int
    counts: TrialCounts
    states: dict[str, int]  # recorded trial states: complete, stopped, infeasible, failed
    pareto_size: int
    recent: list[dict] = field(default_factory=list)  # last finished trials, newest last
    front_rungs: dict[int, int] = field(default_factory=dict)  # rung -> students of the front at that rung

    @classmethod
    def read(
        cls,
        study: optuna.Study,
        store: Store,
        total: int,
        device: str = "host-cpu",
        recent: int = 3,
        *,
        reader: StudyReader | None = None,
        precision: str = Precision.FP32,
    ) -> StudyStatus:
        """The status now; `reader` (the study's incremental reader) reads only new trials, else all are read."""
        counts = TrialCounts.of(study)
        if reader is None:
            reader = StudyReader(
                store, study.study_name, study_configuration(store, study.study_name, device, precision)
            )
        rows = reader.results()
        complete = rows[rows["state"] == "complete"].dropna(subset=["psnr", "latency_ms"])
        front = (
            pareto(complete.drop_duplicates("nn"), {"psnr": "max", "latency_ms": "min"}) if len(complete) else complete
        )
        return cls(
            total,
            counts,
            rows["state"].value_counts().to_dict(),
            len(front),
            _recent_rows(rows, recent),
            {int(k): int(v) for k, v in front["rung"].value_counts().items()},
        )

    def line(self) -> str:
        """One status line, e.g. for the end of every trial."""
        c = self.counts
        parts = [f"{c.finished}/{self.total} finished", f"{c.running} running"]
        if c.waiting:
            parts.append(f"{c.waiting} queued")  # retries of lost trials, given or reference students
        parts.append(f"{c.failed} lost (retried)" if c.failed else "0 lost")
        for state, label in (("stopped", "stopped early"), ("infeasible", "infeasible"), ("failed", "diverged")):
            if self.states.get(state):
                parts.append(f"{self.states[state]} {label}")
        if c.continued or c.continuing:
            parts.append(f"{c.continued} continued to a higher rung, {c.continuing} continuing")
        rungs = ""
        if any(self.front_rungs.get(r) for r in self.front_rungs if r > 0):
            rungs = (
                " (" + ", ".join(f"{n} at rung {r}" for r, n in sorted(self.front_rungs.items(), reverse=True)) + ")"
            )
        parts.append(f"Pareto set {self.pareto_size}{rungs}")
        return "status: " + ", ".join(parts)

    def recent_lines(self) -> list[str]:
        """The last finished candidates with their PSNR and latency."""
        return [_describe(row) for row in self.recent]


def _recent_rows(rows: pd.DataFrame, count: int) -> list[dict]:
    return rows.sort_values("trial").tail(count).to_dict("records")


def _describe(row: dict) -> str:
    psnr = "-" if pd.isna(row.get("psnr")) else f"{row['psnr']:.2f} dB"
    latency = "-" if pd.isna(row.get("latency_ms")) else f"{row['latency_ms']:.1f} ms"
    rung = f" at rung {int(row['rung'])}" if row.get("rung") else ""
    return f"  trial {int(row['trial'])}: {row['nn']} {row['state']}{rung}, PSNR {psnr}, latency {latency}"


class LiveDisplay:
    """Shows a study's progress while workers run: a bar on a terminal, lines otherwise."""

    def __init__(self, total: int, *, stream=None) -> None:
        import sys

        from tqdm.auto import tqdm

        self.stream = stream or sys.stderr
        self._bar = (
            tqdm(total=total, desc="trials", file=self.stream, dynamic_ncols=True, leave=True)
            if self.stream.isatty()
            else None
        )
        self._seen: set[tuple[int, int]] = set()  # (trial, rung) shown
        self._last_line = ""

    def update(self, status: StudyStatus) -> None:
        """Print newly finished trials and the status line when it changed."""
        for row, text in zip(status.recent, status.recent_lines()):
            key = (int(row["trial"]), int(row.get("rung") or 0))
            if key not in self._seen:
                self._seen.add(key)
                self._write(text.strip())
        line = status.line()
        if self._bar is not None:
            self._bar.n = min(status.counts.finished, status.total)
            self._bar.set_postfix_str(line.removeprefix("status: "), refresh=True)
        elif line != self._last_line:
            self._write(line)
        self._last_line = line

    def _write(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
