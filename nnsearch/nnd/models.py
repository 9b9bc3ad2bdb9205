"""Imported NN Dataset models with code: rebuilt from it, counted, and linked to a search-space architecture.

With the user's opt-in (`--trust-code`, `nnsearch.common.trust`), a model
file is run in a fresh namespace and its `Net` built on the CPU with the
contract's arguments (`nnsearch.model.contract.build_net`); its size and cost are counted like nnsearch's own students (parameters, thop MACs at
256x256, convolution count, float32 size). When the network computes what a
reference point of a shipped search space computes (same modules, settings,
parameter shapes and wiring; names do not matter), that architecture is stored
as the model's `nn.arch` (so is the architecture of a stored nnsearch student
it equals, found among the students with the same parameter count), so `nnsearch profile` and `nnsearch export` can
rebuild it. Only image-to-image tasks (`img-denoising`) are rebuilt: other
tasks' `Net` needs an output shape the statistics do not give.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from nnsearch.common.paths import spaces_dir
from nnsearch.errors import NNSearchError
from nnsearch.model.arch import Arch
from nnsearch.model.contract import IMAGE_SHAPE, build_net, matching_arch
from nnsearch.model.counting import conv_depth, count_module_macs, count_params
from nnsearch.model.space import load_space
from nnsearch.store.engine import Store
from nnsearch.store.schema import NN, NNStat

#: Tasks whose models map an image to an image of the same shape (the only ones rebuilt).
IMAGE_TASKS = ("img-denoising",)


@dataclass(frozen=True)
class RebuiltModel:
    """What an imported model's code gave: `nn_stat` fields and, when it is a space's student, its Arch JSON."""

    nn_stat: dict[str, Any]
    arch_json: str | None
    arch_label: str | None


def reference_archs() -> list[Arch]:
    """The reference points of every shipped search space (e.g. LiteDenoiseNet of litedenoise.yaml)."""
    archs: dict[str, Arch] = {}
    for path in sorted(spaces_dir().glob("*.yaml")):
        for arch in load_space(path).references:
            archs.setdefault(arch.digest, arch)
    return list(archs.values())


def stored_archs(store: Store, params: int) -> list[Arch]:
    """Architectures of the stored students with `params` parameters (labelled with their model names)."""
    query = (
        select(NN.name, NN.arch)
        .join(NNStat, NNStat.nn == NN.name)
        .where(NNStat.params == params, NN.arch.is_not(None))
        .order_by(NN.name)
    )
    archs = []
    for name, arch in store.reading(lambda conn: conn.execute(query).all()):
        if arch is None:
            continue
        try:
            archs.append(Arch.from_dict(json.loads(arch), label=name))
        except (NNSearchError, ValueError, TypeError):  # an unreadable record is not a candidate
            continue
    return archs


def rebuild(
    name: str, code: str, task: str, prm: Mapping[str, Any], candidates: Callable[[int], list[Arch]]
) -> RebuiltModel | None:
    """Build `name` from its code and count it; None for tasks that are not rebuilt. NNSearchError if it fails.

    Runs the code: the caller has the user's opt-in (`nnsearch.common.trust`).
    `candidates(params)`: the architectures to compare the network with, given its parameter count.
    """
    if task not in IMAGE_TASKS:
        return None
    net = build_net(code, name, IMAGE_SHAPE, IMAGE_SHAPE, prm, trusted=True)
    params = count_params(net)
    stat = {
        "params": params,
        "macs": count_module_macs(net, IMAGE_SHAPE),
        "macs_height": IMAGE_SHAPE[2],
        "macs_width": IMAGE_SHAPE[3],
        "depth": conv_depth(net),
        "model_size_bytes": params * 4,
    }
    try:
        arch = matching_arch(net, candidates(params))
    except NNSearchError:  # not traceable with torch.fx: counted, but not linked
        arch = None
    if arch is None:
        return RebuiltModel(stat, None, None)
    return RebuiltModel(stat, json.dumps(arch.to_dict(), sort_keys=True), arch.label)
