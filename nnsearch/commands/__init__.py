"""Sub-commands of the `nnsearch` CLI, one module per area, and the options they share (defined once, here).

Each module defines `register(subparsers)`, which adds its sub-commands and sets
`handler` (a function of the parsed arguments returning an exit code). Building
the parser imports no torch, pandas, SQLAlchemy or Optuna: handlers import what
they need when they run.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from typing import Any

from nnsearch.common.precision import NAMES, Precision
from nnsearch.errors import NNSearchError

#: Modules (in nnsearch.commands) whose sub-commands the CLI offers, in help order.
COMMAND_MODULES = ("study", "store", "lut", "agent", "select", "evaluate", "teacher", "train", "replay")


def register_all(subparsers: argparse._SubParsersAction) -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(f"nnsearch.commands.{name}").register(subparsers)


class NotGiven:
    """The default of an option that sets a study setting: not given, so the setting keeps its value."""

    def __init__(self, shown: Any) -> None:
        self.shown = shown

    def __repr__(self) -> str:
        return str(self.shown)


#: Prefix of the argparse dest of options that set a study setting (`nnsearch.search.config.SETTINGS`).
SETTING_DEST = "setting__"


def add_setting(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    flag: str,
    key: str,
    help: str,
    *,
    shown: Callable[[Any], Any] = lambda value: "none" if value is None else value,
    **kwargs: Any,
) -> None:
    """An option that sets study setting `key`; its help shows the setting's default (`SETTINGS`).

    When the option is not given, the configuration keeps its value (the
    default for a new study, the stored value for a study resumed).
    """
    from nnsearch.search.config import SETTINGS  # light: no torch, pandas or Optuna

    setting = SETTINGS[key]
    kwargs.setdefault("metavar", None if "choices" in kwargs else flag.lstrip("-").upper().replace("-", "_"))
    parser.add_argument(
        flag,
        dest=f"{SETTING_DEST}{key}",
        default=NotGiven(shown(setting.default)),
        help=f"{help} (default %(default)s; setting {setting.path})",
        **kwargs,
    )


def add_switch(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, flag: str, key: str, value: Any, help: str
) -> None:
    """A flag without argument that sets study setting `key` to `value` (e.g. --no-measure: measure=False)."""
    from nnsearch.search.config import SETTINGS  # light: no torch, pandas or Optuna

    parser.add_argument(
        flag,
        dest=f"{SETTING_DEST}{key}",
        action="store_const",
        const=value,
        default=NotGiven(None),
        help=f"{help} (setting {SETTINGS[key].path})",
    )


def given_settings(args: argparse.Namespace) -> dict[str, Any]:
    """{setting key: value} of the setting options given on the command line."""
    return {
        dest[len(SETTING_DEST) :]: value
        for dest, value in vars(args).items()
        if dest.startswith(SETTING_DEST) and not isinstance(value, NotGiven)
    }


def add_db_option(parser: argparse.ArgumentParser) -> None:
    """The shared `--db` option."""
    parser.add_argument(
        "--db", default=None, help="database URL or SQLite file (default: $NNSEARCH_DB, else db/nnsearch.db)"
    )


def add_trust_option(parser: argparse.ArgumentParser, what: str) -> None:
    """The shared `--trust-code` opt-in: run model code that came from elsewhere (`nnsearch.common.trust`)."""
    parser.add_argument(
        "--trust-code",
        action="store_true",
        help=f"run model code from elsewhere (an NN Dataset folder, an imported model) to {what}; "
        "without it such code is never run (also: NNSEARCH_TRUST_CODE=1)",
    )


TEACHER_HELP = (
    "teacher: a preset (cpu or paper) or a file: TorchScript, a torch.export program (.pt2) or a "
    "Python file with build_teacher() and STATE_DICT"
)
DATA_HELP = "dataset path, 'clean:PATH', or omitted for the built-in data"
MAX_SIDE_HELP = "centre-crop every image to at most PX per side (no downscaling)"


def add_teacher_option(parser: argparse.ArgumentParser) -> None:
    """The shared `--teacher` option of commands that are not a study (default: `TeacherConfig.source`)."""
    from nnsearch.train.config import TeacherConfig  # light: no torch

    parser.add_argument(
        "--teacher", default=TeacherConfig().source, metavar="PRESET|PATH", help=f"{TEACHER_HELP} (default %(default)s)"
    )


def add_data_options(parser: argparse.ArgumentParser, *, required: bool = False, data_help: str = DATA_HELP) -> None:
    """The shared `--data` and `--max-side` options of commands that are not a study."""
    parser.add_argument("--data", default=None, required=required, metavar="SPEC", help=data_help)
    add_max_side_option(parser)


def add_max_side_option(parser: argparse.ArgumentParser) -> None:
    """The shared `--max-side` option (it centre-crops; `nnsearch.train.datasets.load_data`)."""
    parser.add_argument("--max-side", type=max_side, default=None, metavar="PX", help=MAX_SIDE_HELP)


def add_out_option(
    parser: argparse.ArgumentParser, help: str, *, required: bool = False, old: tuple[str, ...] = ()
) -> None:
    """The shared output-folder option `--out DIR`; `old` spellings keep working, hidden from --help."""
    group: Any = parser.add_mutually_exclusive_group(required=True) if required else parser
    group.add_argument("--out", dest="out", default=None, metavar="DIR", help=help)
    for spelling in old:
        group.add_argument(spelling, dest="out", help=argparse.SUPPRESS)


def add_sampler_option(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, help: str, *, repeat: bool = False, **kwargs: Any
) -> None:
    """The shared `--sampler NAME` option: one name of `nnsearch.search.config.SAMPLER_NAMES` each time."""
    from nnsearch.search.config import SAMPLER_NAMES  # light: no Optuna

    names = ", ".join(SAMPLER_NAMES)
    if repeat:
        parser.add_argument("--sampler", action="append", default=None, metavar="NAME", help=f"{help}; one of {names}")
    else:
        add_setting(
            parser,
            "--sampler",
            "sampler",
            f"{help}; one of {names}",
            choices=list(SAMPLER_NAMES),
            metavar="NAME",
            **kwargs,
        )


def max_side(text: str) -> int:
    """The `--max-side` value: an integer of at least 11 px (SSIM's window), else an argparse error (exit 2)."""
    minimum = 11  # nnsearch.train.datasets.images.MIN_SIDE (not imported here, to keep --help light)
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer number of pixels, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(
            f"images are scored with {minimum}x{minimum} SSIM windows, so it must be >= {minimum}, got {value}"
        )
    return value


def parse_resolution(text: str) -> tuple[int, int]:
    """'1088x1920' -> (1088, 1920), with a clear error otherwise."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise NNSearchError(f"resolution must look like HEIGHTxWIDTH (e.g. 1088x1920), got {text!r}") from None
    if height <= 0 or width <= 0:
        raise NNSearchError(f"resolution must be positive, got {text!r}")
    return height, width


def parse_crops(text: str) -> tuple[int, ...]:
    """'48,64' -> (48, 64), with a clear error otherwise."""
    try:
        crops = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise NNSearchError(f"--crops must be comma-separated integers such as 64,128,256, got {text!r}") from None
    if not crops or min(crops) < 8 or max(crops) > 1024:
        raise NNSearchError(f"--crops sizes must be between 8 and 1024 px, got {text!r}")
    return crops


PRECISION_HELP = f"one of {', '.join(NAMES)} (int8 = static_wi8_ai8, w8a16 = static_wi8_ai16, fp16 = float16 weights)"


def add_precision_option(parser: argparse.ArgumentParser, what: str) -> None:
    """The shared `--precision` option (checked by `parse_precision` in the handler: one-line error, exit 2)."""
    parser.add_argument(
        "--precision", default=Precision.FP32.value, metavar="P", help=f"{what}: {PRECISION_HELP} (default %(default)s)"
    )


def parse_precision(text: str) -> Precision:
    """The precision `text` names, else NNSearchError (the CLI prints one line and exits 2)."""
    return Precision.parse(text)
