"""nnsearch: hardware-aware search for small denoising networks that run fast on mobile NPUs.

Everything a search learns is kept in an SQL store in the style of the NN Dataset.
"""

import os

# With OpenMP's default busy-wait policy, torch's intra-op threads slow down by an
# order of magnitude when another process competes for the same cores (measured
# 13x on a 2-core machine). Passive waiting avoids that; set before torch starts.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"


def __getattr__(name: str):  # lazy, so `import nnsearch` stays light
    if name in ("data", "run_data"):
        from nnsearch.store import dataset_api

        return getattr(dataset_api, name)
    if name == "pareto":
        from nnsearch.analysis.pareto import pareto

        return pareto
    raise AttributeError(f"module 'nnsearch' has no attribute {name!r}")
