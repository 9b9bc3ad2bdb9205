"""Teachers a user brings as a file: TorchScript, a `torch.export` program, or a factory file.

Accepted forms (any ops are fine for a teacher; it maps a noisy Nx3xHxW batch in
[0, 1] to a denoised batch of the same shape, for any N, H and W that are
multiples of 32):

- ``*.pt2``: a program saved by ``torch.export.save`` (export it with dynamic
  batch, height and width, e.g. ``torch.export.Dim``);
- any other file: TorchScript saved by ``torch.jit.save`` (``.pt``, ``.ts``, ...);
- ``*.py``: a Python file defining ``build_teacher()`` (returns an ``nn.Module``) and
  ``STATE_DICT``, the path of a state dict for it (``torch.save(model.state_dict())``),
  relative to the Python file.

The teacher's identity (what its cached outputs are keyed by) is a SHA-256 over
the content of the file(s), not over their names or places.
"""

from __future__ import annotations

import hashlib
import importlib.util
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from nnsearch.common.torch_files import load_tensors
from nnsearch.errors import NNSearchError

#: Input sizes a loaded teacher is probed with: two batch sizes, non-square, multiples of 32.
PROBE_SHAPES = ((1, 3, 64, 96), (2, 3, 96, 64))
FORMS = (
    "a TorchScript file (torch.jit.save), a torch.export program (.pt2, torch.export.save) or a Python "
    "file defining build_teacher() and STATE_DICT"
)


class TeacherFileError(NNSearchError):
    """A `--teacher` file is missing, does not load, or does not behave like a denoiser."""


@dataclass(frozen=True)
class TeacherFile:
    """A loaded teacher file and the SHA-256 of its content."""

    path: Path
    module: nn.Module
    digest: str
    form: str  # torchscript, export or factory


class _Opaque(nn.Module):
    """Wraps a loaded program whose train/eval switch and device move may not be supported."""

    def __init__(self, program: nn.Module) -> None:
        super().__init__()
        self.program = program

    def train(self, mode: bool = True) -> _Opaque:  # a loaded teacher stays as it was saved
        self.training = mode
        return self

    def to(self, *args, **kwargs) -> _Opaque:
        device = next((a for a in args if isinstance(a, (str, torch.device))), kwargs.get("device"))
        if device is not None and torch.device(device).type != "cpu":
            self.program.to(device)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.program(x.contiguous())


def load_teacher_file(path: str | Path) -> TeacherFile:
    """Load and probe a teacher file; a TeacherFileError names the file and what is wrong."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise TeacherFileError(f"teacher file {path} does not exist; expected {FORMS}")
    if path.suffix == ".py":
        module, weights = _load_factory(path)
        files, form = [path, weights], "factory"
    elif path.suffix == ".pt2":
        module, files, form = _Opaque(_load(path, "a torch.export program", _load_export)), [path], "export"
    else:
        module, files, form = _Opaque(_load(path, "TorchScript", torch.jit.load)), [path], "torchscript"
    probe_teacher(module, path)
    digest = hashlib.sha256()
    for file in files:
        digest.update(hashlib.sha256(file.read_bytes()).digest())
    return TeacherFile(path, module.eval(), digest.hexdigest(), form)


def probe_teacher(module: nn.Module, path: Path) -> None:
    """Run the teacher on small inputs; its output must have the input's shape."""
    module.eval()
    for shape in PROBE_SHAPES:
        x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
        try:
            with torch.no_grad():
                out = module(x)
        except Exception as exc:  # any failure inside a user's model means "unusable teacher"
            raise TeacherFileError(
                f"teacher file {path} fails on a {tuple(shape)} input "
                f"({type(exc).__name__}: {_first_line(exc)}); a teacher must accept any batch "
                f"size and any height and width that are multiples of 32"
            ) from None
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != tuple(shape):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise TeacherFileError(
                f"teacher file {path} returns {got} for a {tuple(shape)} input; a teacher must "
                f"return a denoised image batch of the same shape as its input"
            )


def _load(path: Path, what: str, loader):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load's deprecation notice
            return loader(str(path))
    except Exception as exc:  # corrupt zip, wrong format, unpickling errors
        raise TeacherFileError(
            f"teacher file {path} does not load as {what} ({type(exc).__name__}: {_first_line(exc)}); expected {FORMS}"
        ) from None


def _load_export(path: str) -> nn.Module:
    return torch.export.load(path).module()


def _state_dict_path(path: Path, module) -> Path:
    name = getattr(module, "STATE_DICT", None)
    if not isinstance(name, str):
        raise TeacherFileError(
            f"teacher file {path} defines no STATE_DICT (the path of the state dict to load, relative to the file)"
        )
    weights = (path.parent / name).resolve()
    if not weights.is_file():
        raise TeacherFileError(f"teacher file {path}: its STATE_DICT {weights} does not exist")
    return weights


def _load_factory(path: Path) -> tuple[nn.Module, Path]:
    """The model built by the file's build_teacher() with its STATE_DICT loaded, and that state dict's path."""
    module = _import(path)
    factory = getattr(module, "build_teacher", None)
    if not callable(factory):
        raise TeacherFileError(f"teacher file {path} defines no build_teacher() function returning the model")
    weights = _state_dict_path(path, module)
    try:
        model = factory()
        model.load_state_dict(load_tensors(weights, "teacher state dict"))
    except Exception as exc:
        raise TeacherFileError(
            f"teacher file {path}: building the model and loading {weights} failed "
            f"({type(exc).__name__}: {_first_line(exc)})"
        ) from None
    if not isinstance(model, nn.Module):
        raise TeacherFileError(
            f"teacher file {path}: build_teacher() returned {type(model).__name__}, not a torch.nn.Module"
        )
    return model, weights


def _import(path: Path):
    spec = importlib.util.spec_from_file_location(f"nnsearch_teacher_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    try:
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    except Exception as exc:
        raise TeacherFileError(
            f"teacher file {path} does not import ({type(exc).__name__}: {_first_line(exc)})"
        ) from None
    return module


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else "no message"
