"""Writing a folder of exported files without clobbering files nnsearch did not write.

`.nnsearch-export.json` in the folder records the sha256 of every file an
export wrote. A file that exists with other content is overwritten only when
that record says an export wrote it and it has not changed since (or with
`force`); otherwise nothing at all is written and the error lists such files.
Each file is written to a temporary name and moved into place.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from nnsearch.common.paths import contained_path
from nnsearch.errors import StoreError

MANIFEST = ".nnsearch-export.json"


def write_files(root: Path, files: Mapping[str, str], force: bool = False) -> tuple[int, int]:
    """Write `files` (path relative to `root` -> text) without clobbering files nnsearch did not write.

    Returns (written, already up to date). Raises StoreError listing the files
    that exist with other content and that no earlier export wrote (unless `force`).
    """
    manifest_path = root / MANIFEST
    manifest = _read_manifest(manifest_path)
    todo, same, foreign = {}, 0, []
    for relative, text in sorted(files.items()):
        if not text:
            continue
        path = contained_path(root, relative, f"cannot export into {root}")
        if path.is_file():
            current = _sha256(path.read_bytes())
            if current == _sha256(text.encode()):
                same += 1
                manifest[relative] = current
                continue
            if manifest.get(relative) != current and not force:
                foreign.append(relative)
        todo[relative] = text
    if foreign:
        shown = ", ".join(foreign[:10]) + (f" and {len(foreign) - 10} more" if len(foreign) > 10 else "")
        raise StoreError(
            f"cannot export into {root}: {len(foreign)} file(s) exist that nnsearch did not write "
            f"(or that changed since): {shown}; nothing was written. Export into another folder, "
            "or pass --force to overwrite them"
        )
    for relative, text in todo.items():
        _write_atomic(contained_path(root, relative, f"cannot export into {root}"), text)
        manifest[relative] = _sha256(text.encode())
    _write_atomic(manifest_path, json.dumps({"files": dict(sorted(manifest.items()))}, indent=4) + "\n")
    return len(todo), same


def _read_manifest(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    try:
        found = json.loads(path.read_text(encoding="utf-8")).get("files", {})
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as exc:
        raise StoreError(
            f"{path}: unreadable record of an earlier export ({exc}); remove it to start afresh, "
            "which makes every existing file count as not written by nnsearch"
        ) from None
    if not isinstance(found, dict):
        raise StoreError(f"{path}: unreadable record of an earlier export ('files' is not an object)")
    return found


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write_atomic(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=".export-", dir=path.parent)
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from None
