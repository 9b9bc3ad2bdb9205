"""Writing a study's trials into the store: a candidate's full record, or a link to an earlier identical one."""

from __future__ import annotations

import io
import json
from typing import Any

import torch
from sqlalchemy import select

from nnsearch.common.interrupts import defer_interrupts
from nnsearch.common.torch_files import load_tensors
from nnsearch.errors import NNSearchError
from nnsearch.model.arch import Arch
from nnsearch.model.counting import conv_depth, count_macs, count_params
from nnsearch.store.engine import Store
from nnsearch.store.hashing import prm_uid
from nnsearch.store.query import StudyReader, study_results
from nnsearch.store.record import TASK, LatencyRecord, ModelRecord, PrecisionRecord
from nnsearch.store.recording import record_trial
from nnsearch.store.schema import TrialLink, Weights
from nnsearch.store.timings import LatencyQuery
from nnsearch.train.crops import transform_code, transform_name
from nnsearch.train.distill import DistillConfig


class TrialRecorder:
    """Records the trials of study `study` (distilled with `distill` on data `dataset`) in `store`.

    Every write first defers Ctrl-C (`defer_interrupts`): once a trial's rows are
    being written, an interrupt waits until the record and Optuna agree.
    """

    def __init__(
        self, store: Store, study: str, distill: DistillConfig, *, latency: LatencyQuery, macs_hw: tuple[int, int]
    ) -> None:
        self.store = store
        self.study = study
        self.distill = distill
        self.latency = latency  # which latency the study's results show (its own configuration)
        self.macs_hw = macs_hw  # resolution MACs are counted at
        self.reader = StudyReader(store, study, latency)  # this process's incremental view

    def results(self):  # -> pd.DataFrame
        """Recorded trials of this study as a DataFrame (read afresh), latency at the study's configuration."""
        return study_results(self.store, self.study, latency=self.latency)

    def earlier_result(self, arch: Arch) -> dict[str, Any] | None:
        """This study's completed result for `arch` at the first rung, if a trial already trained it."""
        rows = self.reader.rung_results()
        rows = rows[(rows["nn"] == arch.name) & (rows["state"] == "complete") & (rows["rung"] == 0)]
        rows = rows.dropna(subset=["psnr", "latency_ms"])
        return None if rows.empty else rows.iloc[0].to_dict()

    def rung_result(self, trial: int, rung: int) -> dict[str, Any] | None:
        """Trial `trial`'s recorded result at `rung` (with its hyperparameter set uid, `prm`), if any."""
        rows = self.reader.rung_results()
        rows = rows[(rows["trial"] == trial) & (rows["rung"] == rung)]
        return None if rows.empty else rows.iloc[0].to_dict()

    def weights(self, nn: str, prm: str) -> dict[str, torch.Tensor]:
        """The stored state_dict of model `nn` trained with hyperparameter set `prm` (a uid)."""

        def read(conn) -> bytes | None:  # conn: a Connection
            return conn.scalar(select(Weights.state).where(Weights.nn == nn, Weights.prm == prm))

        state = self.store.reading(read)
        if state is None:
            raise NNSearchError(f"the store holds no weights of {nn} with hyperparameter set {prm}")
        return load_tensors(state, f"the stored weights of {nn} (hyperparameter set {prm})")

    def link_repeat(self, number: int, arch: Arch, dataset: str) -> None:
        """Link a repeated trial to the student an earlier trial recorded."""
        uid = prm_uid(self.distill.hyperparameters())
        defer_interrupts()
        self.store.write(
            lambda session: session.merge(
                TrialLink(
                    study=self.study,
                    trial_number=number,
                    rung=0,
                    nn=arch.name,
                    prm=uid,
                    task=TASK,
                    dataset=dataset,
                    state="complete",
                )
            )
        )

    def record(
        self,
        number: int,
        arch: Arch,
        student: torch.nn.Module,
        *,
        dataset: str,
        epochs: list,
        latencies: list[LatencyRecord],
        state: str,
        precisions: list[PrecisionRecord] | None = None,
        rung: int = 0,
        prm: dict[str, Any] | None = None,
    ) -> None:
        """One trial's rows at `rung` in one transaction: model, code, epochs, latencies, weights (when trained).

        `prm`: the hyperparameter set to record (default: the study's distillation settings).
        """
        defer_interrupts()
        height, width = self.macs_hw
        buffer = io.BytesIO()
        torch.save({k: v.cpu() for k, v in student.state_dict().items()}, buffer)
        params = count_params(student)
        record = ModelRecord(
            nn=arch.name,
            code=arch.model_code(),
            arch_json=json.dumps(arch.to_dict(), sort_keys=True),
            prm=prm or self.distill.hyperparameters(),
            dataset=dataset,
            transform=transform_name(self.distill.crops),
            transform_code=transform_code(self.distill.crops),
            params=params,
            macs=count_macs(student, arch, height, width),
            macs_hw=(height, width),
            depth=conv_depth(student),
            model_size_bytes=params * 4,
            epochs=epochs,
            latencies=latencies,
            weights=buffer.getvalue() if epochs else None,
            precisions=precisions or [],
            rung=rung,
        )
        record_trial(self.store, self.study, number, record, state=state)
