"""The `nnsearch` command line: parses arguments, runs a sub-command, reports errors plainly."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from nnsearch.commands import register_all
from nnsearch.errors import NNSearchError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nnsearch", description="Hardware-aware search for NPU-friendly denoisers.")
    register_all(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: user errors print one paragraph and exit 2; Ctrl-C exits 130."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except NNSearchError as exc:
        print(f"nnsearch: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nnnsearch: interrupted; finished trials are saved, run the same command again to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
