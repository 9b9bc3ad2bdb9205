"""Loading torch files without running code.

Every `torch.load` in nnsearch goes through `load_tensors`, which passes
`weights_only=True`: tensors, numbers, strings and containers of them load,
and a pickle that names any other Python object (a function to call, a class
to build) is refused before anything runs. A file that is not like that raises
`UnsafeFileError`; a damaged one (truncated archive, unreadable) raises
`DamagedFileError`. Both name the file.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import torch

from nnsearch.errors import NNSearchError

_TORCH_PREAMBLE = ("Weights only load failed", "Check the documentation", "Please file an issue")


class UnsafeFileError(NNSearchError):
    """A torch file holds objects that loading it would have to build by running code."""


class DamagedFileError(NNSearchError):
    """A torch file cannot be read at all (truncated, not a torch file, unreadable)."""


def load_tensors(source: str | Path | bytes, what: str, *, map_location: Any = "cpu", hint: str = "") -> Any:
    """`torch.load(source, weights_only=True)`; UnsafeFileError / DamagedFileError naming `what` otherwise.

    `source`: a path, or the bytes of a file (then `what` must say where they came from).
    `hint`: a sentence appended to either error (what the user can do about it).
    """
    handle = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    shown = what if isinstance(source, (bytes, bytearray)) else f"{what} {source}"
    tail = f"; {hint}" if hint else ""
    try:
        return torch.load(handle, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeFileError(
            f"{shown} is not a file of tensors that loads without running code ({_reason(exc)}); nnsearch loads "
            f"only tensors, numbers, strings and containers of them (torch.load with weights_only=True){tail}"
        ) from None
    except (OSError, RuntimeError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise DamagedFileError(
            f"{shown} is not a readable torch file ({type(exc).__name__}: {_first_line(str(exc))}){tail}"
        ) from None


def _reason(exc: Exception) -> str:
    """torch's own explanation without its advice, e.g. 'Unsupported global: GLOBAL posix.system ...'."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if "nsupported" in line or "blocked" in line:
            return line.removeprefix("WeightsUnpickler error:").strip().split(". Please use")[0][:300]
    kept = [line for line in lines if not line.startswith(_TORCH_PREAMBLE) and not line.startswith("(")]
    return " ".join(kept)[:300] or _first_line(str(exc))


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0][:300]
