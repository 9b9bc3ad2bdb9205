"""SQL schema of the nnsearch store, in the style of the NN Dataset (LEMUR).

Code tables (`nn`, `metric`, `transform`) hold source text keyed by name with
`id` = md5 of the code; `prm` holds hyperparameters by `uid` (md5 of the
hyperparameter dict); `stat` holds one metric value per model x
hyperparameters x epoch. Our additions: `train_stat`, `nn_stat`,
`latency_run`, `latency_lut`, `weights` and `trial_link` (Optuna trial -> nn).
Unlike the NN Dataset, every natural key is unique and foreign keys are
enforced (also on SQLite).
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

#: Bumped on every schema change; `nnsearch.store.migrate` upgrades older stores.
SCHEMA_VERSION = 1


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    """Declarative base of every nnsearch table."""


class SchemaInfo(Base):
    """Key/value facts about the store itself (schema version, creator)."""

    __tablename__ = "schema_info"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))


class _CodeTable:
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    code: Mapped[str] = mapped_column(Text)
    id: Mapped[str] = mapped_column(String(32), index=True)


class NN(_CodeTable, Base):
    """A model: its self-contained source file in the NN Dataset contract."""

    __tablename__ = "nn"
    arch: Mapped[str | None] = mapped_column(Text, default=None)


class Metric(_CodeTable, Base):
    """A quality metric and the code that computes it."""

    __tablename__ = "metric"


class Transform(_CodeTable, Base):
    """A data transform (crop schedule, augmentation) and its code."""

    __tablename__ = "transform"


class Prm(Base):
    """One hyperparameter of one hyperparameter set (`uid` = md5 of the set)."""

    __tablename__ = "prm"
    uid: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Stat(Base):
    """One metric value of one model x hyperparameters x epoch."""

    __tablename__ = "stat"
    __table_args__ = (
        UniqueConstraint("task", "dataset", "metric", "nn", "transform", "prm", "epoch", name="uq_stat_key"),
        Index("ix_stat_query", "task", "dataset", "metric", "nn"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task: Mapped[str] = mapped_column(String(64))
    dataset: Mapped[str] = mapped_column(String(128))
    metric: Mapped[str] = mapped_column(ForeignKey("metric.name", ondelete="RESTRICT"))
    nn: Mapped[str] = mapped_column(ForeignKey("nn.name", ondelete="RESTRICT"), index=True)
    transform: Mapped[str] = mapped_column(ForeignKey("transform.name", ondelete="RESTRICT"))
    prm: Mapped[str] = mapped_column(String(32), index=True)
    epoch: Mapped[int] = mapped_column(Integer)
    accuracy: Mapped[float] = mapped_column(Float)
    duration: Mapped[int] = mapped_column(BigInteger)


class TrainStat(Base):
    """Training diagnostics that go with one `stat` row."""

    __tablename__ = "train_stat"
    stat_id: Mapped[int] = mapped_column(ForeignKey("stat.id", ondelete="CASCADE"), primary_key=True)
    train_loss: Mapped[float | None] = mapped_column(Float)
    val_loss: Mapped[float | None] = mapped_column(Float)
    grad_norm: Mapped[float | None] = mapped_column(Float)
    samples_per_s: Mapped[float | None] = mapped_column(Float)
    cpu_mem_mb: Mapped[float | None] = mapped_column(Float)
    gpu_mem_mb: Mapped[float | None] = mapped_column(Float)


class NNStat(Base):
    """Static facts about a model: size and cost."""

    __tablename__ = "nn_stat"
    nn: Mapped[str] = mapped_column(ForeignKey("nn.name", ondelete="CASCADE"), primary_key=True)
    params: Mapped[int] = mapped_column(BigInteger)
    macs: Mapped[float] = mapped_column(Float)
    macs_height: Mapped[int] = mapped_column(Integer)
    macs_width: Mapped[int] = mapped_column(Integer)
    depth: Mapped[int] = mapped_column(Integer)
    model_size_bytes: Mapped[int] = mapped_column(BigInteger)


class LatencyRun(Base):
    """One latency figure of one model on one device profile."""

    __tablename__ = "latency_run"
    __table_args__ = (Index("ix_latency_run_lookup", "nn", "device", "threads", "height", "width"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    nn: Mapped[str] = mapped_column(ForeignKey("nn.name", ondelete="CASCADE"))
    device: Mapped[str] = mapped_column(String(64))
    runtime: Mapped[str] = mapped_column(String(64))
    runtime_version: Mapped[str] = mapped_column(String(64))
    threads: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))  # "measured" or "predicted"
    median_ms: Mapped[float] = mapped_column(Float)
    min_ms: Mapped[float | None] = mapped_column(Float)
    max_ms: Mapped[float | None] = mapped_column(Float)
    runs: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class LatencyLUT(Base):
    """Per-layer latency lookup table entry for one device profile."""

    __tablename__ = "latency_lut"
    __table_args__ = (
        UniqueConstraint(
            "device", "runtime", "runtime_version", "threads", "op", "in_h", "in_w",
            "in_c", "out_c", "kernel", "stride", "activation", name="uq_latency_lut_key",
        ),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device: Mapped[str] = mapped_column(String(64))
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
    median_ms: Mapped[float] = mapped_column(Float)
    min_ms: Mapped[float | None] = mapped_column(Float)
    max_ms: Mapped[float | None] = mapped_column(Float)
    runs: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(32), default="measured")


class Weights(Base):
    """Trained weights (torch state_dict bytes) of one model x hyperparameter set."""

    __tablename__ = "weights"
    nn: Mapped[str] = mapped_column(ForeignKey("nn.name", ondelete="CASCADE"), primary_key=True)
    prm: Mapped[str] = mapped_column(String(32), primary_key=True)
    state: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class TrialLink(Base):
    """Which nn (and hyperparameter set) an Optuna trial of a study produced."""

    __tablename__ = "trial_link"
    study: Mapped[str] = mapped_column(String(128), primary_key=True)
    trial_number: Mapped[int] = mapped_column(Integer, primary_key=True)
    nn: Mapped[str] = mapped_column(ForeignKey("nn.name", ondelete="CASCADE"), index=True)
    prm: Mapped[str] = mapped_column(String(32))
    task: Mapped[str] = mapped_column(String(64))
    dataset: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16))  # complete, infeasible, stopped, failed
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
