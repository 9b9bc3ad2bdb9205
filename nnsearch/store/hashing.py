"""The store's hashes and encodings: code ids (md5), hyperparameter-set uids and stored values."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def prm_uid(prm: Mapping[str, Any]) -> str:
    """md5 of the hyperparameter dict's canonical JSON (the NN Dataset's uid)."""
    return md5(json.dumps(dict(prm), sort_keys=True, default=str))


def encode_value(value: Any) -> str:
    """A hyperparameter value as stored in `prm.value` (JSON text)."""
    return json.dumps(value, sort_keys=True, default=str)
