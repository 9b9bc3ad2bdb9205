"""The README's Python API examples run as written (in an empty folder, on a small study)."""

from __future__ import annotations

import re
from pathlib import Path

import nnsearch

README = Path(__file__).resolve().parents[1] / "README.md"


def python_api_blocks() -> list[str]:
    """The ```python blocks of the README's "Python API" section, in order."""
    text = README.read_text()
    section = text[text.index("## Python API\n"):]
    section = section[:section.index("\n## ", 1)]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_readme_python_api_runs(tmp_path, monkeypatch, capsys):
    blocks = python_api_blocks()
    assert len(blocks) >= 3 and blocks[0].startswith("import nnsearch\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NNSEARCH_RESULTS", str(tmp_path / "results"))
    namespace: dict = {}
    for block in blocks:
        assert re.search(r"^\s*(from|import) nnsearch\.", block, flags=re.M) is None, "facade names only"
        exec(compile(block, str(README), "exec"), namespace)
    assert len(namespace["rows"]) == 2 and len(namespace["again"].results()) == 3
    assert set(namespace["again"].results()["state"]) <= {"complete", "stopped", "infeasible", "failed"}
    assert not namespace["front"].empty and namespace["students"] is not None
    assert namespace["result"].samplers == ["guided", "random"]
    assert "HV@100%" in capsys.readouterr().out
    assert {"create_study", "load_study", "load_space", "data", "pareto", "replay"} <= set(nnsearch.__all__)
