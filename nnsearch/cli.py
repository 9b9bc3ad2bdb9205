"""The `nnsearch` command line: parses arguments, runs a sub-command, reports errors plainly."""

from __future__ import annotations

import argparse
import errno
import sys
import threading
import traceback
from collections.abc import Sequence

from nnsearch.commands import register_all
from nnsearch.errors import NNSearchError

#: Write failures the environment causes (full disk or quota, file-size limit, read-only or forbidden folder).
ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM}


def environment_error(exc: OSError) -> str:
    """One paragraph for a failed write: the file, the reason, where the cache is and what to do."""
    from nnsearch.common.paths import cache_dir

    where = f"{exc.filename}: " if exc.filename else ""
    return (
        f"{where}{exc.strerror or exc} ({errno.errorcode.get(exc.errno or 0, 'OSError')}). The cache folder is "
        f"{cache_dir(create=False)} (set NNSEARCH_CACHE to use another); free space or fix the folder's permissions, then "
        "run the same command again: finished work is kept and interrupted work is redone"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nnsearch", description="Hardware-aware search for NPU-friendly denoisers.")
    register_all(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    return parser


def _quiet_dying_loader_handshakes(hook_args: threading.ExceptHookArgs) -> None:
    """Ctrl-C also stops the data loader processes, sometimes in the middle of multiprocessing's
    resource-sharer handshake; that thread's connection error is expected then and prints no traceback."""
    frames = traceback.extract_tb(hook_args.exc_traceback)
    expected = isinstance(hook_args.exc_value, (OSError, EOFError))
    if expected and any(frame.filename.endswith("resource_sharer.py") for frame in frames):
        return
    threading.__excepthook__(hook_args)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: user errors print one paragraph and exit 2; Ctrl-C exits 130."""
    threading.excepthook = _quiet_dying_loader_handshakes
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except NNSearchError as exc:
        print(f"nnsearch: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno not in ENVIRONMENT_ERRNOS:
            raise
        print(f"nnsearch: error: {environment_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "\nnnsearch: interrupted; finished trials are saved, run the same command again to resume", file=sys.stderr
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
