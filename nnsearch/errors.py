"""User-facing error types.

Every error a user can cause (bad files, bad values, unknown names) is raised as a
subclass of :class:`NNSearchError`; the command line prints its message as one
paragraph and exits non-zero without a traceback.
"""

from __future__ import annotations


class NNSearchError(Exception):
    """Base class for errors caused by user input or environment, not by bugs."""


class SpaceError(NNSearchError):
    """A search-space file is missing, malformed or names an unknown option."""


class DataError(NNSearchError):
    """A dataset path or image cannot be used; the message names the file."""


class StoreError(NNSearchError):
    """The SQL store cannot be opened or holds inconsistent records."""


class LatencyError(NNSearchError):
    """A latency cannot be given: missing lookup-table entries, a bad latency CSV or resolution, an unknown device."""


class ExportError(NNSearchError):
    """A model cannot be exported (unsupported op, numeric mismatch, bad path)."""
