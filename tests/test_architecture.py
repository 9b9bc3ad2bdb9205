"""The package layout: imports run one way, between modules and between stage subpackages."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import nnsearch

PACKAGE_ROOT = Path(nnsearch.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> nnsearch modules it imports anywhere (module level or inside functions)."""
    modules = {_module_name(p): p for p in PACKAGE_ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            for target in targets:
                if target in modules and target != name:
                    graph[name].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph.get(node, ()):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "nnsearch"


#: The stages, top to bottom: a stage imports only stages below it (`nnsearch` itself, the facade, any).
#: docs/architecture.md says what each holds.
STAGES = [
    "__main__",
    "cli",
    "commands",  # the command line
    "replay",
    "search",  # studies: replaying one, running one
    "analysis",
    "export",  # reading results; writing a student's files
    "latency",  # lookup tables, probes, TFLite, the latency of a candidate
    "train",  # data, teacher, distillation, final training, quality metrics
    "nnd",  # the NN Dataset's file layout: import and export
    "store",  # the SQL store, and loading a stored student
    "model",  # search spaces, architectures, students
    "common",
    "errors",  # shared helpers, the error types
]


def test_no_import_cycle_among_modules():
    assert _cycles(import_graph()) == []


def test_stage_subpackages_import_one_way():
    stages: dict[str, set[str]] = {}
    for module, targets in import_graph().items():
        # the package itself is the facade and the CLI sits on top: both may import any stage
        if _stage(module) in ("nnsearch", "cli", "commands", "__main__"):
            continue
        stages.setdefault(_stage(module), set()).update(
            _stage(t) for t in targets if _stage(t) not in ("nnsearch", _stage(module))
        )
    assert _cycles(stages) == [], stages


def test_every_stage_is_declared_in_order():
    assert {_stage(m) for m in import_graph()} - {"nnsearch"} == set(STAGES)


def test_stages_import_only_downwards():
    upward = sorted(
        f"{module} -> {target}"
        for module, targets in import_graph().items()
        if _stage(module) != "nnsearch"
        for target in targets
        if _stage(target) != "nnsearch" and STAGES.index(_stage(target)) < STAGES.index(_stage(module))
    )
    assert upward == []


def test_latency_lives_in_one_stage():
    strays = [m for m in import_graph() if _stage(m) != "latency" and m.rsplit(".", 1)[-1].startswith("latency")]
    assert strays == []


def test_every_subpackage_says_what_it_is_for():
    for init in PACKAGE_ROOT.rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc, f"{init} has no docstring"


def test_importing_nnsearch_does_not_load_torch():
    code = "import sys, nnsearch; print('torch' in sys.modules, 'optuna' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
