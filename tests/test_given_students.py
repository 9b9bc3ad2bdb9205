"""Named students trained by the product's paths: as a study's candidates, then further from their own weights."""

from __future__ import annotations

import io
import json

import pytest
import torch
from sqlalchemy import select

from nnsearch.model.arch import Arch
from nnsearch.model.space import load_space
from nnsearch.search.config import LatencyConfig, StudyConfig
from nnsearch.search.given_students import as_module, train_as_candidates, train_further
from nnsearch.store.engine import Store
from nnsearch.store.schema import Prm
from nnsearch.store.stored_model import load_stored_model
from nnsearch.train.datasets import load_data
from nnsearch.train.distill import DistillConfig

SMALL = Arch(widths=(4, 8), blocks=(0, 0), skips=("add",), block="plain")
OTHER = Arch(widths=(8, 16, 16), blocks=(1, 0, 1), skips=("concat", "add"))


@pytest.fixture()
def setting(tmp_path, monkeypatch):
    monkeypatch.setenv("NNSEARCH_CACHE", str(tmp_path / "cache"))
    data = load_data(None, max_side=64)
    config = StudyConfig.build(
        name="given",
        space=load_space("tiny"),
        max_side=64,
        sampler="random",
        early_stop=None,
        distill=DistillConfig(steps=4, epochs=1, batch=2, crops=(32,), alpha=0.0, loader_workers=0),
        latency=LatencyConfig(height=64, width=96, measure=False),
    )
    return config, data, tmp_path


def test_exactly_the_given_students_are_trained_and_their_weights_do_not_depend_on_earlier_random_draws(setting):
    config, data, tmp_path = setting
    frames = []
    for run, noise in enumerate((1, 2)):
        torch.manual_seed(noise)  # what ran before in the process must not change a candidate's initial weights
        torch.rand(noise * 7)
        store = Store(f"sqlite:///{tmp_path / f'run{run}.db'}")
        frames.append(
            train_as_candidates(config, store, [SMALL, OTHER], data=data, verbose=False, results_root=tmp_path)
        )
        store.dispose()
    first, second = frames
    assert first["nn"].tolist() == [SMALL.name, OTHER.name]
    assert (first["state"] == "complete").all()
    assert first["psnr"].tolist() == second["psnr"].tolist()


def test_train_further_continues_from_the_candidate_weights(setting):
    config, data, tmp_path = setting
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    train_as_candidates(config, store, [SMALL], data=data, verbose=False, results_root=tmp_path)
    brief = load_stored_model(store, SMALL.name)
    longer = DistillConfig(steps=2, epochs=1, batch=2, crops=(32, 48), lr=1e-9, alpha=0.0, loader_workers=0)
    stored = train_further(store, SMALL.name, longer, data=data, data_spec=None, max_side=64, verbose=False)
    assert stored.prm_uid != brief.prm_uid
    with store.read() as connection:
        init = connection.scalar(select(Prm.value).where(Prm.uid == stored.prm_uid, Prm.name == "init"))
    assert json.loads(init) == f"prm:{brief.prm_uid}"
    start = torch.load(io.BytesIO(brief.state), weights_only=True)
    end = torch.load(io.BytesIO(stored.state), weights_only=True)
    # with a learning rate of 1e-9 the two steps barely move the weights: they started from the brief ones
    assert all(torch.allclose(start[k], end[k], atol=1e-6) for k in start)
    assert isinstance(as_module(stored), torch.nn.Module)
    store.dispose()


def test_students_outside_the_space_are_refused(setting):
    config, data, tmp_path = setting
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    outside = Arch(widths=(32, 64), blocks=(0, 0), skips=("add",))
    with pytest.raises(Exception, match="not in search space 'tiny'"):
        train_as_candidates(config, store, [outside], data=data, verbose=False, results_root=tmp_path)
    store.dispose()
