"""The code blocks of README.md and docs/ do what they say.

Which blocks the suite runs is decided by the fence's language (docs/development.md says the same):

- ```` ```python ````: run, page by page, in order, in one empty folder; the Python API guide
  (docs/python-api.md) runs first, so other pages may use its store `readme.db`.
- ```` ```sh ````: every `nnsearch ...` command line is parsed by the real CLI parser (not run),
  and every `python benchmarks/X.py` names a script that exists.
- ```` ```console ````: the `$ nnsearch ...` lines are parsed the same way; the output is illustrative.
- ```` ```text ````, ```` ```yaml ```` and the rest: illustrative (synopses, transcripts, figures).
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

import nnsearch
from nnsearch.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
API_GUIDE = DOCS / "python-api.md"
FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w-]*)[^\n]*\n(?P<code>.*?)^(?P=indent)```[ \t]*$", re.M | re.S)
#: The last line a benchmark prints (`name: key=value ...`); each is quoted once in the docs.
SUMMARY_LINE = re.compile(
    r"^(?:demo|builtin_transfer|real_quality|distill|search_efficiency|latency_accuracy|"
    r"quantization|data_scale|store|agents): \w+=.*$",
    re.M,
)


def blocks(page: Path, lang: str) -> list[str]:
    """The code of the page's blocks fenced as `lang`, in order, with their indentation removed."""
    found = []
    for match in FENCE.finditer(page.read_text()):
        if match["lang"] == lang:
            indent = len(match["indent"])
            found.append("".join(line[indent:] for line in match["code"].splitlines(keepends=True)))
    return found


def rel(page: Path) -> str:
    return str(page.relative_to(ROOT))


def command_lines(page: Path) -> list[str]:
    """Shell command lines of the page's `sh` blocks (continuations joined) and `console` blocks ($ lines)."""
    lines = []
    for block in blocks(page, "sh"):
        lines += [line.strip() for line in block.replace("\\\n", " ").splitlines() if shlex.split(line, comments=True)]
    for block in blocks(page, "console"):
        lines += [line[2:].strip() for line in block.splitlines() if line.startswith("$ ")]
    return lines


@pytest.fixture(scope="module")
def api_guide_run(tmp_path_factory):
    """Run the Python API guide's blocks in an empty folder; (folder, namespace, printed output)."""
    folder = tmp_path_factory.mktemp("docs")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setenv("NNSEARCH_RESULTS", str(folder / "results"))
        namespace: dict = {}
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            for block in blocks(API_GUIDE, "python"):
                exec(compile(block, str(API_GUIDE), "exec"), namespace)
    return folder, namespace, out.getvalue()


def test_python_api_guide_runs(api_guide_run):
    folder, namespace, printed = api_guide_run
    python_blocks = blocks(API_GUIDE, "python")
    assert len(python_blocks) >= 3 and python_blocks[0].startswith("import nnsearch\n")
    for block in python_blocks:
        assert re.search(r"^\s*(from|import) nnsearch\.", block, flags=re.M) is None, "facade names only"
    assert (folder / "readme.db").exists()
    assert len(namespace["rows"]) == 2 and len(namespace["again"].results()) == 3
    assert set(namespace["again"].results()["state"]) <= {"complete", "stopped", "infeasible", "failed"}
    assert not namespace["front"].empty and namespace["students"] is not None
    assert namespace["result"].samplers == ["guided", "random"]
    assert "HV@100%" in printed
    assert {"create_study", "load_study", "load_space", "data", "pareto", "replay"} <= set(nnsearch.__all__)


OTHER_PYTHON_PAGES = [page for page in PAGES if page != API_GUIDE and blocks(page, "python")]


@pytest.mark.parametrize("page", OTHER_PYTHON_PAGES, ids=[rel(p) for p in OTHER_PYTHON_PAGES])
def test_python_blocks_run(page, api_guide_run, monkeypatch, capsys):
    folder, _, _ = api_guide_run
    monkeypatch.chdir(folder)
    monkeypatch.setenv("NNSEARCH_RESULTS", str(folder / "results"))
    namespace: dict = {}
    for block in blocks(page, "python"):
        exec(compile(block, str(page), "exec"), namespace)
    assert capsys.readouterr().out.strip(), f"{rel(page)}: its examples print what they show"


@pytest.mark.parametrize("page", PAGES, ids=[rel(p) for p in PAGES])
def test_shell_commands_match_the_cli(page):
    parser = build_parser()
    for line in command_lines(page):
        words = shlex.split(line, comments=True)
        if words[0] in ("nnsearch", ".venv/bin/nnsearch"):
            try:
                parser.parse_args(words[1:])
            except SystemExit:
                pytest.fail(f"{rel(page)}: `{line}` is not a valid nnsearch command line (see the message above)")
        scripts = [w for w in words if w.startswith("benchmarks/") and w.endswith(".py")]
        for script in scripts:
            assert (ROOT / script).is_file(), f"{rel(page)}: `{line}` names a benchmark that does not exist"


def test_docs_have_runnable_examples():
    """The fence rules find what they should: Python that runs and command lines that parse."""
    assert len(blocks(API_GUIDE, "python")) >= 3
    assert OTHER_PYTHON_PAGES
    assert sum(len(command_lines(page)) for page in PAGES) >= 20
    assert any(line.startswith("nnsearch search") for line in command_lines(ROOT / "README.md"))


def test_every_page_is_in_the_site_navigation():
    nav = (ROOT / "mkdocs.yml").read_text()
    missing = [rel(p) for p in DOCS.rglob("*.md") if str(p.relative_to(DOCS)) not in nav]
    assert not missing, f"pages missing from mkdocs.yml's nav: {missing}"


def test_each_benchmark_summary_line_is_quoted_once():
    seen: dict[str, str] = {}
    for page in PAGES:
        for line in SUMMARY_LINE.findall(page.read_text()):
            assert line not in seen, f"{line!r} is quoted in {seen[line]} and again in {rel(page)}"
            seen[line] = rel(page)
    assert len(seen) >= 9


def test_readme_stays_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250
