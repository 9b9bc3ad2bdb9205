"""Loading a stored student: its code, architecture, hyperparameter set and weights, and the network they build.

`load_stored_model` is how training (`nnsearch train`), evaluation
(`nnsearch evaluate`) and export read a student back from the store;
`stored_arch` reads only its architecture (e.g. to time it).
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from sqlalchemy import select
from torch import nn

from nnsearch.common.torch_files import load_tensors
from nnsearch.common.trust import HOW_TO_TRUST, UntrustedCodeError, code_trusted
from nnsearch.errors import ExportError, StoreError
from nnsearch.model.arch import Arch
from nnsearch.model.contract import build_net
from nnsearch.model.student import build_student
from nnsearch.store.dataset_api import data
from nnsearch.store.engine import Store
from nnsearch.store.schema import NN, Weights

#: `StoredModel.prm_uid` of weights given as a file rather than read from the store.
GIVEN_WEIGHTS = "(given with --weights)"


@dataclass(frozen=True)
class StoredModel:
    """One student as the store holds it: code, architecture, chosen hyperparameter set and weights."""

    nn: str
    code: str
    arch: Arch
    prm_uid: str
    state: bytes


def load_stored_model(
    store: Store, name: str, prm: str | None = None, weights_file: str | Path | None = None
) -> StoredModel:
    """The model `name` with the weights of hyperparameter set `prm` (default: its best-PSNR set); ExportError if unusable.

    `weights_file`: a state_dict (torch.save) of the model's own `Net` to use
    instead, e.g. for a model imported from the NN Dataset, which has no stored weights.
    """
    with store.session() as session:
        row = session.get(NN, name)
        if row is None:
            known = list(session.scalars(select(NN.name)))
            close = difflib.get_close_matches(name, known, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else f" ({len(known)} models are stored)"
            raise ExportError(f"no model named {name!r} in the store {store.display_url}{hint}")
        weights = {w.prm: w.state for w in session.scalars(select(Weights).where(Weights.nn == name))}
        code, arch_json = row.code, row.arch
    if weights_file is not None:
        weights = {GIVEN_WEIGHTS: _read_state_dict(Path(weights_file))}
    if not weights:
        raise ExportError(
            f"no weights recorded for {name}; retrain it with `nnsearch search` (a completed "
            f"trial stores its weights), pick a student that has them with `nnsearch pareto`, "
            f"or give a state_dict of its Net with --weights FILE.pt"
        )
    if not arch_json:
        raise ExportError(
            f"model {name} has no architecture record (it was imported and its network is not "
            "a search-space student); only search-space students can be exported"
        )
    if weights_file is None and prm is not None and prm not in weights:
        raise ExportError(
            f"{name} has no weights for hyperparameter set {prm!r}; it has weights for {', '.join(sorted(weights))}"
        )
    if weights_file is not None:
        uid = GIVEN_WEIGHTS
    else:
        uid = prm if prm is not None else _best_prm(store, name, list(weights))
    return StoredModel(name, code, Arch.from_dict(json.loads(arch_json)), uid, weights[uid])


def _read_state_dict(path: Path) -> bytes:
    """The bytes of a state_dict file given with --weights; ExportError naming it if it is not one."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ExportError(f"cannot read the weights file {path}: {exc.strerror or exc}") from None
    state = load_tensors(raw, f"weights file {path}")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ExportError(
            f"weights file {path} is not a state_dict (a dict of parameter name -> tensor, as "
            f"torch.save(net.state_dict(), path) writes); it holds a {type(state).__name__}"
        )
    return raw


def _best_prm(store: Store, name: str, uids: list[str]) -> str:
    """Among hyperparameter sets with weights, the one with the highest final-epoch PSNR."""
    if len(uids) == 1:
        return uids[0]
    rows = data(nn=name, metric="psnr", prm=uids, db=store)
    if rows.empty:
        return sorted(uids)[0]
    last = rows.sort_values("epoch").groupby("prm_uid").tail(1)
    return str(last.sort_values("accuracy").iloc[-1]["prm_uid"])


def own_code(model: StoredModel) -> bool:
    """Whether the stored code is the model file nnsearch generates for the model's architecture."""
    return model.code == model.arch.model_code()


def check_code_allowed(model: StoredModel, trust_code: bool = False) -> None:
    """UntrustedCodeError unless the model is nnsearch's own student or the user allows running its code."""
    if not own_code(model) and not code_trusted(trust_code):
        raise UntrustedCodeError(
            f"model {model.nn}: its stored code is not the model file nnsearch generates for its architecture "
            f"(it was imported, or recorded by another nnsearch version), and using it runs that code; "
            f"{HOW_TO_TRUST}"
        )


def build_model(model: StoredModel, shape: tuple[int, int, int, int], *, trust_code: bool = False) -> nn.Module:
    """The model's network with its weights loaded, in eval mode.

    nnsearch's own students are built from their architecture, without running
    stored code; any other model runs its stored code (the contract's `Net`),
    with the opt-in only (`nnsearch.common.trust`).
    """
    check_code_allowed(model, trust_code)
    net = (
        build_student(model.arch)
        if own_code(model)
        else build_net(model.code, model.nn, shape, shape, {}, trusted=True)
    )
    return with_weights(net, model.state)


def with_weights(net: nn.Module, state: bytes) -> nn.Module:
    """`net` with a state_dict (torch.save bytes) loaded, in eval mode; ExportError if the weights do not fit."""
    try:
        net.load_state_dict(load_tensors(state, "the model's weights"))
    except RuntimeError as exc:  # missing / unexpected keys, other shapes
        raise ExportError(f"the weights do not fit the model's Net: {str(exc).strip().splitlines()[0]}") from None
    return net.eval()


def stored_arch(store: Store, nn: str) -> Arch:
    """The architecture of a stored model, from `nn.arch`."""
    found = store.reading(lambda conn: conn.execute(select(NN.arch).where(NN.name == nn)).first())
    if found is None:
        raise StoreError(f"no model '{nn}' in {store.display_url}")
    if not found.arch:
        raise StoreError(f"model '{nn}' has no stored architecture (nn.arch is empty), so it cannot be rebuilt")
    try:
        return Arch.from_dict(json.loads(found.arch), label=nn)
    except json.JSONDecodeError as exc:
        raise StoreError(f"model '{nn}' has an unreadable nn.arch: {exc}") from None
