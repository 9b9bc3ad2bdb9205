"""Running model code that came from elsewhere, only when the user says so.

A model file from an NN Dataset folder, or model code recorded in the store by
an import, is foreign Python: running it can do anything the user can. nnsearch
runs such code only with the opt-in (`--trust-code` on `import-nnd`, `export`
and `evaluate`, or `NNSEARCH_TRUST_CODE=1` in the environment). nnsearch's own
students never need it: they are rebuilt from their recorded architecture.
`run_code` is the one place where model code is executed.
"""

from __future__ import annotations

import itertools
import os
import types

from nnsearch.errors import NNSearchError

#: Environment variable that gives the opt-in to every command (1, true, yes or on).
TRUST_ENV = "NNSEARCH_TRUST_CODE"
#: How a user gives the opt-in, for messages.
HOW_TO_TRUST = f"pass --trust-code (or set {TRUST_ENV}=1) if you trust its source"
_counter = itertools.count()


class UntrustedCodeError(NNSearchError):
    """Model code from elsewhere would have to run, and the user has not allowed it."""


def code_trusted(flag: bool = False) -> bool:
    """Whether foreign model code may run: `flag` (--trust-code) or the NNSEARCH_TRUST_CODE setting."""
    return bool(flag) or os.environ.get(TRUST_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def run_code(code: str, label: str, *, trusted: bool) -> types.ModuleType:
    """Execute a model file's text in a fresh module (never registered in sys.modules) and return it.

    `trusted`: the caller's decision (the opt-in, or text nnsearch generated
    itself); UntrustedCodeError naming `label` when it is False. Errors the
    code raises propagate to the caller.
    """
    if not trusted:
        raise UntrustedCodeError(
            f"{label}: its code came from elsewhere and is not run without the opt-in; {HOW_TO_TRUST}"
        )
    module = types.ModuleType(f"nnsearch_model_code_{next(_counter)}")
    exec(compile(code, f"<{label}>", "exec"), module.__dict__)
    return module
