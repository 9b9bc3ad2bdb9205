"""Imported models with code: rebuilt in the NN Dataset contract, counted, linked to a space's architecture."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import pytest
import torch
from test_store_nnd_real import REAL, real_copy

from nnsearch.errors import ExportError, StoreError
from nnsearch.export.student import export_student
from nnsearch.latency.service import profile_nn
from nnsearch.model.contract import ModelCodeError, build_net, matching_arch, network_signature
from nnsearch.model.space import load_space
from nnsearch.model.student import build_student
from nnsearch.nnd.importing import import_nnd
from nnsearch.store.dataset_api import data, run_data
from nnsearch.store.stored_model import stored_arch

CODE = Path(__file__).parent / "data" / "nnd_code" / "LiteDenoiseNet.py"
REFERENCE = load_space("litedenoise").reference("LiteDenoiseNet")

needs_real = pytest.mark.skipif(
    not (REAL / "ab" / "nn" / "stat" / "train").is_dir(),
    reason="the real NN Dataset files (../shared/data/nnd) are not here",
)


def with_code(root: Path, files: dict[str, str]) -> Path:
    (root / "ab" / "nn" / "nn").mkdir(exist_ok=True)
    for name, text in files.items():
        (root / "ab" / "nn" / "nn" / f"{name}.py").write_text(text)
    return root


def test_the_signature_sees_modules_and_wiring_not_names():
    net = build_net(CODE.read_text(), "LiteDenoiseNet", trusted=True)
    assert network_signature(net) == network_signature(build_student(REFERENCE))
    assert matching_arch(net, [REFERENCE]) == REFERENCE
    rewired = CODE.read_text().replace(
        "torch.cat([self.grow(h), skips[level]], 1)", "torch.cat([skips[level], self.grow(h)], 1)"
    )
    assert network_signature(build_net(rewired, "Rewired", trusted=True)) != network_signature(
        net
    )  # same modules, other wiring
    for change in (
        {"skips": ("concat", "concat", "concat", "add")},
        {"global_residual": False},
        {"downsample": "maxpool"},
    ):
        assert matching_arch(net, [dataclasses.replace(REFERENCE, **change)]) is None


def test_broken_code_is_a_clear_error_and_runs_in_its_own_namespace():
    with pytest.raises(ModelCodeError, match="model 'Broken': its code does not build a Net: NameError"):
        build_net(
            "def supported_hyperparameters():\n    return {'lr'}\nclass Net:\n"
            "    def __init__(self, *a):\n        undefined_name\n",
            "Broken",
            trusted=True,
        )
    leaky = (
        "import torch\nSEEN = globals().get('SEEN', 0) + 1\nclass Net(torch.nn.Module):\n"
        "    def __init__(self, i, o, prm, device):\n        super().__init__()\n        self.seen = SEEN\n"
    )
    assert build_net(leaky, "A", trusted=True).seen == build_net(leaky, "B", trusted=True).seen == 1


@needs_real
def test_imported_litedenoisenet_is_counted_linked_profiled_and_exported(tmp_path, store):
    root = with_code(
        real_copy(tmp_path), {"LiteDenoiseNet": CODE.read_text(), "DenoiseUNet": "raise RuntimeError('needs a GPU')\n"}
    )
    summary = import_nnd(root, db=store, trust_code=True)
    assert summary.linked == {"LiteDenoiseNet": "LiteDenoiseNet"} and "1 linked" in summary.line()
    assert "DenoiseUNet" in summary.not_rebuilt and "needs a GPU" in summary.not_rebuilt["DenoiseUNet"]
    lite = data(db=store, nn="LiteDenoiseNet")
    assert len(lite) == 30 and set(lite.params) == {1963411}  # the published count
    assert stored_arch(store, "LiteDenoiseNet") == REFERENCE
    record = profile_nn(store, "LiteDenoiseNet", 32, 32, runs=2, warmup=1)  # real TFLite timing
    assert record.median_ms > 0 and len(run_data(db=store, nn="LiteDenoiseNet")) == 1
    with pytest.raises(ExportError, match="--weights"):
        export_student("LiteDenoiseNet", tmp_path / "ship", db=store, resolution=(32, 32))
    torch.manual_seed(0)
    buffer = io.BytesIO()
    torch.save(build_net(CODE.read_text(), "LiteDenoiseNet", trusted=True).state_dict(), buffer)
    weights = tmp_path / "LiteDenoiseNet.pt"
    weights.write_bytes(buffer.getvalue())
    result = export_student(
        "LiteDenoiseNet", tmp_path / "ship", db=store, resolution=(32, 32), weights_file=weights, trust_code=True
    )
    assert result.tflite_error < 1e-4 and (tmp_path / "ship" / "LiteDenoiseNet.tflite").stat().st_size > 0
    with pytest.raises(StoreError, match="no stored architecture"):  # no code: nothing to rebuild from
        profile_nn(store, "HeavyDenoiseNet", 32, 32, runs=1, warmup=0)


@needs_real
def test_models_are_rebuilt_once(tmp_path, store):
    root = with_code(real_copy(tmp_path), {"LiteDenoiseNet": CODE.read_text()})
    import_nnd(root, db=store, trust_code=True)
    again = import_nnd(root, db=store, trust_code=True)
    assert again.new_stats == 0 and again.rebuilt == [] and "rebuilt" not in again.line()
    assert set(data(db=store, nn="LiteDenoiseNet").params) == {1963411}


def test_a_model_equal_to_a_stored_student_is_linked_to_its_architecture(tmp_path, store):
    import json

    from conftest import ARCH_FIELDS, model_record

    from nnsearch.model.arch import Arch
    from nnsearch.model.counting import count_params
    from nnsearch.store.recording import record_trial

    arch = Arch(**ARCH_FIELDS[0])
    searched = model_record(0, params=count_params(build_student(arch)))
    record_trial(store, "s", 0, searched)
    root = tmp_path / "nnd"
    config = root / "stat" / "train" / "img-denoising_sidd_psnrdb_Twin"
    config.mkdir(parents=True)
    (config / "1.json").write_text(json.dumps([{"accuracy": 30.5, "duration": 7, "lr": 0.01}]))
    (root / "nn").mkdir()
    (root / "nn" / "Twin.py").write_text(arch.model_code())  # the same network under another name
    summary = import_nnd(root, db=store, trust_code=True)
    assert summary.linked == {"Twin": searched.nn}
    assert stored_arch(store, "Twin") == arch


@needs_real
def test_code_added_later_rebuilds_and_links_a_model_imported_without_it(tmp_path, store):
    root = real_copy(tmp_path)
    import_nnd(root, db=store, trust_code=True)
    with pytest.raises(StoreError, match="no stored architecture"):
        stored_arch(store, "LiteDenoiseNet")
    summary = import_nnd(with_code(root, {"LiteDenoiseNet": CODE.read_text()}), db=store, trust_code=True)
    assert summary.new_stats == 0 and summary.linked == {"LiteDenoiseNet": "LiteDenoiseNet"}
    assert stored_arch(store, "LiteDenoiseNet") == REFERENCE
    assert set(data(db=store, nn="LiteDenoiseNet").nn_code) == {CODE.read_text()}
