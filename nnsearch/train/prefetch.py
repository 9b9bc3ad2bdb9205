"""Batches of a seeded plan prepared ahead of the training loop, in background loader processes.

`--loader-workers N` starts N processes (torch's DataLoader) that cut the plan's batches
(`plan[step]`, the same batch in every process) while the model trains; 0 cuts them inline.
On CUDA the batches come in pinned memory so the copy to the GPU can overlap compute.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Generator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from nnsearch.errors import DataError
from nnsearch.train.config import check_loader_workers
from nnsearch.train.crops import Batch


def default_loader_workers() -> int:
    """One loader process per four cores, at least 1 and at most 4 (1 on a 2-core machine)."""
    return max(1, min(4, (os.cpu_count() or 1) // 4))


_FAILED = "nnsearch: batch failed"


class _PlanSteps(Dataset):
    """Steps start..end-1 of a plan as a map-style dataset of (noisy, clean) tensors."""

    def __init__(self, plan: Sequence[Batch], start: int, end: int) -> None:
        self.plan, self.start, self.end = plan, start, end

    def __len__(self) -> int:
        return self.end - self.start

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor] | tuple[str, str]:
        try:
            batch = self.plan[self.start + index]
        except DataError as exc:  # sent back as text: the parent raises it with the original one-line message
            return _FAILED, str(exc)
        return batch.noisy, batch.clean


def _init_worker(_: int) -> None:
    """One torch thread (cutting crops is numpy work; the cores are for training); Ctrl-C is the parent's to handle."""
    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def batch_stream(
    plan: Sequence[Batch], start: int, end: int, *, workers: int = 0, pin_memory: bool = False
) -> Generator[Batch, None, None]:
    """The plan's batches for steps start..end-1, in order; cut by `workers` background processes when > 0."""
    check_loader_workers(workers)
    if workers == 0 or end - start <= 1:
        for step in range(start, end):
            batch = plan[step]
            yield Batch(batch.noisy.pin_memory(), batch.clean.pin_memory()) if pin_memory else batch
        return
    loader = DataLoader(
        _PlanSteps(plan, start, end),
        batch_size=None,
        shuffle=False,
        num_workers=workers,
        pin_memory=pin_memory,
        worker_init_fn=_init_worker,
        prefetch_factor=4,
        persistent_workers=False,
    )
    for noisy, clean in loader:
        if isinstance(noisy, str) and noisy == _FAILED:
            raise DataError(clean)
        yield Batch(noisy, clean)
