"""SQL schema of the nnsearch store, in the style of the NN Dataset (LEMUR).

Code tables (`nn`, `metric`, `transform`) hold source text keyed by name with
`id` = md5 of the code; `prm` holds hyperparameters by `uid` (md5 of the
hyperparameter dict); `stat` holds one metric value per model x
hyperparameters x epoch x run (`run` numbers repeated trainings of the same
hyperparameters, as the NN Dataset's files hold them; 0 for the first) x rung
(the fidelity level of a multi-fidelity study the row belongs to; 0 for every
single-fidelity training, see `nnsearch.search.multifidelity`);
`duration` is NULL where the source did not record it. Our additions:
`prm_set`, `train_stat`, `nn_stat`, `latency_run`, `latency_lut`, `weights`, `trial_link` (Optuna trial -> nn),
and the measurement queue of device agents: `measure_job` and `measure_agent` (`nnsearch.latency.agents`).
Unlike the NN Dataset, every natural key is unique and foreign keys are
enforced on every engine (on SQLite by `PRAGMA foreign_keys=ON`, set by
`nnsearch.store.engine` on each connection).

`prm_set` has one row per hyperparameter set so that `stat.prm`,
`weights.prm` and `trial_link.prm` have a foreign-key target: a stat can
never name a hyperparameter set that was not written, and an empty set (no
`prm` rows) is still distinguishable from a missing one.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    BigInteger,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from nnsearch.common.precision import Precision

#: Bumped on every schema change; `nnsearch.store.versioning.MIGRATIONS` upgrades older stores.
SCHEMA_VERSION = 5


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


# Types that mean the same on every engine: 8-byte floats, microsecond times, unbounded text and bytes
# (MySQL/MariaDB's plain FLOAT, DATETIME, TEXT and BLOB are 4-byte, whole-second and 64 KiB).
LongText = Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
Bytes = LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")
Timestamp = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


class Base(DeclarativeBase):
    """Declarative base of every nnsearch table."""


class SchemaInfo(Base):
    """Key/value facts about the store itself (schema version, creator)."""

    __tablename__ = "schema_info"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))


class _CodeTable:
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    code: Mapped[str] = mapped_column(LongText)
    id: Mapped[str] = mapped_column(String(32), index=True)


class NN(_CodeTable, Base):
    """A model: its self-contained source file in the NN Dataset contract."""

    __tablename__ = "nn"
    arch: Mapped[str | None] = mapped_column(LongText, default=None)


class Metric(_CodeTable, Base):
    """A quality metric and the code that computes it."""

    __tablename__ = "metric"


class Transform(_CodeTable, Base):
    """A data transform (crop schedule, augmentation) and its code."""

    __tablename__ = "transform"


class PrmSet(Base):
    """One hyperparameter set; the parent of its `prm` rows and the target of `*.prm` keys."""

    __tablename__ = "prm_set"
    uid: Mapped[str] = mapped_column(String(32), primary_key=True)


def _prm_fk(ondelete: str = "RESTRICT") -> ForeignKey:
    return ForeignKey("prm_set.uid", ondelete=ondelete)


class Prm(Base):
    """One hyperparameter of one hyperparameter set (`uid` = md5 of the set; `value` = JSON text)."""

    __tablename__ = "prm"
    uid: Mapped[str] = mapped_column(_prm_fk("CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(LongText)


class Stat(Base):
    """One metric value of one model x hyperparameters x epoch x run (repeat index, 0 for the first) x rung."""

    __tablename__ = "stat"
    __table_args__ = (
        # Column order serves the query API: filters on task/dataset/metric/nn use a prefix,
        # and "best accuracy per (task, dataset, metric, nn, epoch)" groups along it.
        UniqueConstraint(
            "task", "dataset", "metric", "nn", "epoch", "transform", "prm", "run", "rung", name="uq_stat_key"
        ),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task: Mapped[str] = mapped_column(String(64))
    dataset: Mapped[str] = mapped_column(String(128))
    metric: Mapped[str] = mapped_column(ForeignKey("metric.name", ondelete="RESTRICT"))
    nn: Mapped[str] = mapped_column(ForeignKey("nn.name", ondelete="RESTRICT"), index=True)
    transform: Mapped[str] = mapped_column(ForeignKey("transform.name", ondelete="RESTRICT"))
    prm: Mapped[str] = mapped_column(_prm_fk(), index=True)
    epoch: Mapped[int] = mapped_column(Integer)
    run: Mapped[int] = mapped_column(Integer, default=0)
    rung: Mapped[int] = mapped_column(Integer, default=0)  # multi-fidelity rung (0: the first, or single-fidelity)
    accuracy: Mapped[float] = mapped_column(Double)
    duration: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # ns; NULL: not recorded


class TrainStat(Base):
    """Training diagnostics that go with one `stat` row."""

    __tablename__ = "train_stat"
    stat_id: Mapped[int] = mapped_column(ForeignKey("stat.id", ondelete="CASCADE"), primary_key=True)
    train_loss: Mapped[float | None] = mapped_column(Double)
    val_loss: Mapped[float | None] = mapped_column(Double)
    grad_norm: Mapped[float | None] = mapped_column(Double)
    samples_per_s: Mapped[float | None] = mapped_column(Double)
    cpu_mem_mb: Mapped[float | None] = mapped_column(Double)
    gpu_mem_mb: Mapped[float | None] = mapped_column(Double)


class NNStat(Base):
    """Static facts about a model: size and cost."""

    __tablename__ = "nn_stat"
    nn: Mapped[str] = mapped_column(ForeignKey("nn.name", ondelete="CASCADE"), primary_key=True)
    params: Mapped[int] = mapped_column(BigInteger)
    macs: Mapped[float] = mapped_column(Double)
    macs_height: Mapped[int] = mapped_column(Integer)
    macs_width: Mapped[int] = mapped_column(Integer)
    depth: Mapped[int] = mapped_column(Integer)
    model_size_bytes: Mapped[int] = mapped_column(BigInteger)


class LatencyRun(Base):
    """One latency figure of one model on one device profile."""

    __tablename__ = "latency_run"
    __table_args__ = (
        Index("ix_latency_run_lookup", "nn", "device", "precision", "threads", "height", "width"),
        # One figure per configuration and instant: re-importing an export adds nothing.
        UniqueConstraint(
            "nn",
            "device",
            "precision",
            "runtime",
            "runtime_version",
            "threads",
            "height",
            "width",
            "kind",
            "created_at",
            name="uq_latency_run_key",
        ),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    nn: Mapped[str] = mapped_column(ForeignKey("nn.name", ondelete="CASCADE"))
    device: Mapped[str] = mapped_column(String(64))
    precision: Mapped[str] = mapped_column(String(16), default=Precision.FP32.value)  # a Precision name
    runtime: Mapped[str] = mapped_column(String(64))
    runtime_version: Mapped[str] = mapped_column(String(64))
    threads: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))  # "measured" or "predicted"
    median_ms: Mapped[float] = mapped_column(Double)
    min_ms: Mapped[float | None] = mapped_column(Double)
    max_ms: Mapped[float | None] = mapped_column(Double)
    runs: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class LatencyLUT(Base):
    """Per-layer latency lookup table entry for one device profile."""

    __tablename__ = "latency_lut"
    __table_args__ = (
        UniqueConstraint(
            "device",
            "precision",
            "runtime",
            "runtime_version",
            "threads",
            "op",
            "in_h",
            "in_w",
            "in_c",
            "out_c",
            "kernel",
            "stride",
            "activation",
            name="uq_latency_lut_key",
        ),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device: Mapped[str] = mapped_column(String(64))
    precision: Mapped[str] = mapped_column(String(16), default=Precision.FP32.value)  # the probes' precision
    runtime: Mapped[str] = mapped_column(String(64))
    runtime_version: Mapped[str] = mapped_column(String(64))
    threads: Mapped[int] = mapped_column(Integer)
    op: Mapped[str] = mapped_column(String(48))
    in_h: Mapped[int] = mapped_column(Integer)
    in_w: Mapped[int] = mapped_column(Integer)
    in_c: Mapped[int] = mapped_column(Integer)
    out_c: Mapped[int] = mapped_column(Integer)
    kernel: Mapped[int] = mapped_column(Integer)
    stride: Mapped[int] = mapped_column(Integer)
    activation: Mapped[str] = mapped_column(String(16))
    median_ms: Mapped[float] = mapped_column(Double)
    min_ms: Mapped[float | None] = mapped_column(Double)
    max_ms: Mapped[float | None] = mapped_column(Double)
    runs: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(32), default="measured")


class Weights(Base):
    """Trained weights (torch state_dict bytes) of one model x hyperparameter set."""

    __tablename__ = "weights"
    nn: Mapped[str] = mapped_column(ForeignKey("nn.name", ondelete="CASCADE"), primary_key=True)
    prm: Mapped[str] = mapped_column(_prm_fk(), primary_key=True)
    state: Mapped[bytes] = mapped_column(Bytes)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class TrialLink(Base):
    """Which nn (and hyperparameter set) an Optuna trial of a study produced, at each rung it reached.

    A single-fidelity trial has one row (rung 0); a multi-fidelity student continued
    to higher rungs has one row per rung, each naming that rung's hyperparameter set.
    """

    __tablename__ = "trial_link"
    __table_args__ = (Index("ix_trial_link_model", "nn", "prm"),)
    study: Mapped[str] = mapped_column(String(128), primary_key=True)
    trial_number: Mapped[int] = mapped_column(Integer, primary_key=True)
    rung: Mapped[int] = mapped_column(Integer, primary_key=True, default=0)
    nn: Mapped[str] = mapped_column(ForeignKey("nn.name", ondelete="CASCADE"))
    prm: Mapped[str] = mapped_column(_prm_fk())
    task: Mapped[str] = mapped_column(String(64))
    dataset: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16))  # complete, infeasible, stopped, failed
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class MeasureJob(Base):
    """One timing a device agent owes: a one-op probe (a lookup-table key) or a whole exported model.

    `target` names what is timed (`nnsearch.latency.agents.jobs`); `round` 0 is
    its first timing, later rounds re-measure it (an entry suspected inflated).
    A claimed job is `running` under a lease (`lease_token`, `lease_expires` in
    seconds on the store's clock) that its agent renews; a lapsed lease lets
    another agent claim it again (`attempts` counts claims). The result columns
    say how it was timed: runtime and version, delegate and its options, threads,
    precision and input size. No foreign key to `nn`: a job may outlive its model.
    """

    __tablename__ = "measure_job"
    __table_args__ = (
        UniqueConstraint("device", "target", "round", name="uq_measure_job_target"),
        Index("ix_measure_job_claim", "device", "state", "priority", "id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # "probe" or "model"
    target: Mapped[str] = mapped_column(String(255))
    round: Mapped[int] = mapped_column(Integer, default=0)
    priority: Mapped[int] = mapped_column(Integer, default=0)  # lower first
    nn: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    op_key: Mapped[str | None] = mapped_column(String(255), nullable=True)  # JSON of the probe's OpKey
    precision: Mapped[str] = mapped_column(String(16), default=Precision.FP32.value)
    threads: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    payload: Mapped[bytes | None] = mapped_column(Bytes, nullable=True)  # the model's .tflite bytes
    study: Mapped[str | None] = mapped_column(String(128), nullable=True)
    predicted_ms: Mapped[float | None] = mapped_column(Double, nullable=True)  # the table's figure at enqueue
    state: Mapped[str] = mapped_column(String(16), default="queued")  # queued, running, done, failed
    agent: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_token: Mapped[str | None] = mapped_column(String(32), nullable=True)
    lease_expires: Mapped[float | None] = mapped_column(Double, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    message: Mapped[str | None] = mapped_column(LongText, nullable=True)
    runtime: Mapped[str | None] = mapped_column(String(64), nullable=True)
    runtime_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    delegate: Mapped[str | None] = mapped_column(String(255), nullable=True)
    options: Mapped[str | None] = mapped_column(LongText, nullable=True)  # JSON of the delegate/runner options
    median_ms: Mapped[float | None] = mapped_column(Double, nullable=True)
    min_ms: Mapped[float | None] = mapped_column(Double, nullable=True)
    max_ms: Mapped[float | None] = mapped_column(Double, nullable=True)
    runs: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)


class MeasureAgent(Base):
    """A device agent that serves (or served) a device profile name, and when it was last seen."""

    __tablename__ = "measure_agent"
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    device: Mapped[str] = mapped_column(String(64), index=True)
    runner: Mapped[str] = mapped_column(String(64))
    runtime: Mapped[str] = mapped_column(String(64))
    runtime_version: Mapped[str] = mapped_column(String(64))
    delegate: Mapped[str | None] = mapped_column(String(255), nullable=True)
    host: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(16), default="running")  # running or stopped
    started_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    seen_at: Mapped[float] = mapped_column(Double)  # seconds on the store's clock
