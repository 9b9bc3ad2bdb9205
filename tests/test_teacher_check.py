"""Teachers worth distilling from: the check against the noisy input, and teachers brought as files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from nnsearch.cli import main
from nnsearch.train.datasets import load_data
from nnsearch.train.teacher_check import TeacherTooWeak, prepare_teacher

TINY_SEARCH = [
    "--space",
    "tiny",
    "--sampler",
    "random",
    "--steps",
    "4",
    "--epochs",
    "1",
    "--batch",
    "2",
    "--crops",
    "32",
    "--resolution",
    "32x32",
    "--threads",
    "1",
    "--no-early-stop",
]


class Blur(nn.Module):
    """A 5x5 box filter per channel: a real (classical) denoiser for smooth images."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 5, padding=2, padding_mode="replicate", groups=3, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def box_blur() -> Blur:
    model = Blur()
    with torch.no_grad():
        model.conv.weight.fill_(1 / 25)
    return model.eval()


class Identity(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class FirstChannel(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1]


@pytest.fixture
def data_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Four smooth 96 px images (synthetic camera noise is added by load_data), a private cache and results."""
    monkeypatch.setenv("NNSEARCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("NNSEARCH_RESULTS", str(tmp_path / "results"))
    folder = tmp_path / "clean"
    folder.mkdir()
    yy, xx = np.mgrid[0:96, 0:96] / 95.0
    for index in range(4):
        pixels = np.stack([0.2 + 0.6 * yy, 0.3 + 0.4 * xx, 0.5 + 0.3 * (yy - xx) * (index % 2 * 2 - 1)], axis=2)
        Image.fromarray((np.clip(pixels, 0, 1) * 255).round().astype(np.uint8)).save(folder / f"img{index}.png")
    return f"clean:{folder}"


def script(module: nn.Module, path: Path) -> str:
    torch.jit.save(torch.jit.script(module), str(path))
    return str(path)


def factory_file(folder: Path) -> str:
    """A Python file with build_teacher() and STATE_DICT, and the state dict it names."""
    torch.save(box_blur().state_dict(), folder / "blur.pth")
    path = folder / "blur_teacher.py"
    path.write_text(
        "from torch import nn\n\n"
        "STATE_DICT = 'blur.pth'\n\n\n"
        "class Blur(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.conv = nn.Conv2d(3, 3, 5, padding=2, padding_mode='replicate', groups=3, bias=False)\n\n"
        "    def forward(self, x):\n"
        "        return self.conv(x)\n\n\n"
        "def build_teacher():\n"
        "    return Blur()\n"
    )
    return str(path)


def search(capsys: pytest.CaptureFixture, db: Path, data: str, teacher: str, trials: int = 2):
    code = main(
        [
            "search",
            "--db",
            str(db),
            "--study",
            "t",
            "--trials",
            str(trials),
            "--data",
            data,
            "--teacher",
            teacher,
            *TINY_SEARCH,
        ]
    )
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_teacher_no_better_than_the_input_is_refused(
    data_spec: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    identity = script(Identity(), tmp_path / "identity.pt")
    with pytest.raises(TeacherTooWeak, match=r"not clearly better than the noisy input .*--teacher-steps"):
        prepare_teacher(identity, load_data(data_spec), verbose=False)
    code, _, err = search(capsys, tmp_path / "s.db", data_spec, identity)
    assert code == 2 and "Traceback" not in err
    assert err.startswith("nnsearch: error: teacher file identity.pt: validation PSNR") and "+0.00 dB" in err
    assert "not clearly better than the noisy input (needs at least +1.0 dB)" in err and len(err.splitlines()) == 1
    assert main(["teacher", "check", "--data", data_spec, "--teacher", identity]) == 2


@pytest.mark.parametrize("form", ["torchscript", "factory"])
def test_a_teacher_file_runs_a_two_trial_study(
    form: str, data_spec: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    teacher = script(box_blur(), tmp_path / "blur.pt") if form == "torchscript" else factory_file(tmp_path)
    code, out, err = search(capsys, tmp_path / "s.db", data_spec, teacher)
    assert code == 0, err
    line = next(row for row in out.splitlines() if row.startswith(f"teacher file {Path(teacher).name}:"))
    noisy, taught = (float(v) for v in (line.split("noisy input ")[1].split()[0], line.split("PSNR ")[1].split()[0]))
    assert taught >= noisy + 1.0
    summary = out.strip().splitlines()[-1]
    assert summary.startswith("search: 2 trials complete") and f"teacher {taught:.1f} dB" in summary
    assert "dB over the noisy input" in summary
    assert "teacher outputs: computing" in out


def test_teacher_outputs_are_keyed_by_the_file_content(
    data_spec: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    first = script(box_blur(), tmp_path / "a.pt")
    assert search(capsys, tmp_path / "a.db", data_spec, first, trials=1)[0] == 0
    copy = tmp_path / "elsewhere" / "b.pt"
    copy.parent.mkdir()
    copy.write_bytes(Path(first).read_bytes())
    code, out, _ = search(capsys, tmp_path / "b.db", data_spec, str(copy), trials=1)
    assert code == 0 and "teacher outputs: loaded" in out and "teacher outputs: computing" not in out


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda d: str(d / "missing.pt"), "missing.pt does not exist"),
        (
            lambda d: (d / "junk.pt").write_text("not a model") and str(d / "junk.pt"),
            "junk.pt does not load as TorchScript",
        ),
        (lambda d: script(FirstChannel(), d / "gray.pt"), "gray.pt returns (1, 1, 64, 96) for a (1, 3, 64, 96) input"),
        (
            lambda d: (d / "nofactory.py").write_text("x = 1\n") and str(d / "nofactory.py"),
            "nofactory.py defines no build_teacher",
        ),
    ],
)
def test_a_bad_teacher_file_gives_a_one_line_error_naming_it(
    make, expected: str, data_spec: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    code, _, err = search(capsys, tmp_path / "s.db", data_spec, make(tmp_path))
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_torch_export_program_loads_and_a_static_one_is_refused(tmp_path: Path) -> None:
    from nnsearch.train.teacher_files import TeacherFileError, load_teacher_file

    x = torch.rand(2, 3, 64, 64)
    dims = {
        0: torch.export.Dim("b"),
        2: torch.export.Dim("h", min=8, max=4096),
        3: torch.export.Dim("w", min=8, max=4096),
    }
    torch.export.save(torch.export.export(box_blur(), (x,), dynamic_shapes={"x": dims}), tmp_path / "blur.pt2")
    loaded = load_teacher_file(tmp_path / "blur.pt2")
    noisy = torch.rand(1, 3, 96, 128)
    assert loaded.form == "export" and torch.allclose(loaded.module(noisy), box_blur()(noisy), atol=1e-6)
    torch.export.save(torch.export.export(box_blur(), (x,)), tmp_path / "static.pt2")
    with pytest.raises(TeacherFileError, match=r"static.pt2 fails on a \(1, 3, 64, 96\) input .*any batch size"):
        load_teacher_file(tmp_path / "static.pt2")
