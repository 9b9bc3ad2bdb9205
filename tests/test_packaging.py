"""A regular (non-editable) install carries what it needs: every package and the search spaces."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_pyproject_lists_every_package():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {str(p.parent.relative_to(ROOT)).replace(os.sep, ".") for p in (ROOT / "nnsearch").rglob("__init__.py")}
    assert listed == found | {"nnsearch.search_spaces"}


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The wheel of this checkout, unpacked as site-packages would hold it."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(ROOT), "-w", str(out)],
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("nnsearch-*.whl")
    site = out / "site"
    zipfile.ZipFile(wheel).extractall(site)
    return site


def test_the_wheel_ships_the_search_spaces(installed):
    shipped = sorted(p.name for p in (installed / "nnsearch" / "search_spaces").glob("*.yaml"))
    assert shipped == sorted(p.name for p in (ROOT / "search_spaces").glob("*.yaml"))


def test_an_installed_nnsearch_finds_its_spaces_and_a_store_outside_any_checkout(installed, tmp_path):
    work, home = tmp_path / "empty", tmp_path / "home"
    work.mkdir()
    code = (
        "import nnsearch, nnsearch.common.paths as p\n"
        "from nnsearch.model.space import load_space\n"
        "print(nnsearch.__file__); print(load_space('tiny').name); print(p.default_db_path())"
    )
    env = {**os.environ, "PYTHONPATH": str(installed), "HOME": str(home), "XDG_DATA_HOME": ""}
    env.pop("NNSEARCH_DB", None)
    lines = subprocess.run(
        [sys.executable, "-c", code], cwd=work, env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert lines[0].startswith(str(installed))
    assert lines[1] == "tiny"
    assert lines[2] == str(home / ".local" / "share" / "nnsearch" / "nnsearch.db")


def test_the_wheel_ships_the_default_teacher_weights(installed):
    shipped = sorted(p.name for p in (installed / "nnsearch" / "train" / "weights").iterdir())
    assert shipped == ["teacher-cpu-builtin.json", "teacher-cpu-builtin.pt"]
