"""Where nnsearch keeps reusable artefacts (teacher checkpoints, teacher outputs)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """$NNSEARCH_CACHE, else ~/.cache/nnsearch; created on first use."""
    path = Path(os.environ.get("NNSEARCH_CACHE") or Path.home() / ".cache" / "nnsearch")
    path.mkdir(parents=True, exist_ok=True)
    return path
