"""nnsearch: hardware-aware search for small denoising networks that run fast on mobile NPUs.

Everything a search learns is kept in an SQL store in the style of the NN Dataset.
The names in `__all__` are the public API; they load lazily, so `import nnsearch`
loads neither torch nor Optuna.
"""

import importlib
import os

# With OpenMP's default busy-wait policy, torch's intra-op threads slow down by an
# order of magnitude when another process competes for the same cores (measured
# 13x on a 2-core machine). Passive waiting avoids that; set before torch starts.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

#: Public name -> (module, attribute); an attribute of None means the module itself.
_EXPORTS = {
    "create_study": ("nnsearch.search.api", "create_study"),
    "load_study": ("nnsearch.search.api", "load_study"),
    "Study": ("nnsearch.search.study", "Study"),
    "load_space": ("nnsearch.model.space", "load_space"),
    "Arch": ("nnsearch.model.arch", "Arch"),
    "build_student": ("nnsearch.model.student", "build_student"),
    "data": ("nnsearch.store.dataset_api", "data"),
    "run_data": ("nnsearch.store.dataset_api", "run_data"),
    "pareto": ("nnsearch.analysis.pareto", "pareto"),
    "replay": ("nnsearch.replay", None),  # the package is callable: nnsearch.replay.compare.replay_study
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):  # lazy, so `import nnsearch` stays light
    if name not in _EXPORTS:
        raise AttributeError(f"module 'nnsearch' has no attribute {name!r}")
    module, attribute = _EXPORTS[name]
    found = importlib.import_module(module)
    return found if attribute is None else getattr(found, attribute)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
