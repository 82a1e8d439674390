"""Guards on the package's shape: one road through public stages (docs/design.md).

- no import cycles between emgdx modules (function-level imports included);
- the paths built on the pipeline (streaming, report, clinic, federated, demo) import no
  preprocessing, QC, normalisation or training internals: they go through the front end,
  the pipeline, the model adapter and the diagnosis;
- the model's library is asked about in one module only (emgdx.models), never switched on
  elsewhere;
- ``emgdx --help`` imports no heavy library.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "emgdx"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, modules: set[str]) -> set[str]:
    """emgdx modules a module imports at run time (anywhere in it, not under TYPE_CHECKING)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "emgdx")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] == "emgdx":
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    found.add(sub if sub in modules else node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {m for m in found if m in modules}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    files = {
        _module_name(p): p
        for p in PACKAGE.rglob("*.py")
        if "migrations" not in p.parts  # Alembic's scripts, run by Alembic
    }
    modules = set(files)
    return {name: _imports(ast.parse(path.read_text()), modules) for name, path in files.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def test_the_guard_sees_imports(graph: dict[str, set[str]]) -> None:
    # the parser finds module-level and function-level imports (else the guards prove nothing)
    assert "emgdx.frontend" in graph["emgdx.pipeline"]
    assert "emgdx.models.adapters" in graph["emgdx.pipeline"]
    assert "emgdx.diagnosis" in graph["emgdx.streaming.monitor"]  # inside a method
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles(graph: dict[str, set[str]]) -> None:
    assert _cycles(graph) == []


#: Stages whose internals the paths built on the pipeline must not reach into.
INTERNALS = ("emgdx.preprocess", "emgdx.quality", "emgdx.normalise", "emgdx.training")
PATHS = ("emgdx.streaming", "emgdx.report", "emgdx.clinic", "emgdx.federated", "emgdx.demo")


def test_paths_use_only_public_stages(graph: dict[str, set[str]]) -> None:
    reached = {
        (module, target)
        for module, targets in graph.items()
        if module.startswith(PATHS)
        for target in targets
        if target.startswith(INTERNALS)
    }
    assert reached == set()


def test_no_model_kind_switch_outside_the_models_package() -> None:
    pattern = re.compile(
        r"""[!=]=\s*["'](torch|classical|sklearn)["']|isinstance\([^)]*Adapter\b|\b(pipe|pipeline|spec|model_spec)\.kind\s*[!=]="""
    )
    hits = [
        f"{path.relative_to(PACKAGE)}:{n}: {line.strip()}"
        for path in PACKAGE.rglob("*.py")
        if "models" not in path.relative_to(PACKAGE).parts
        for n, line in enumerate(path.read_text().splitlines(), start=1)
        if pattern.search(line) and "method ==" not in line  # a CWT backend named "torch"
    ]
    assert hits == []


def test_help_imports_no_heavy_library() -> None:
    code = (
        "import sys; from emgdx.cli import app; from typer.testing import CliRunner; "
        "CliRunner().invoke(app, ['--help']); "
        "print(sorted({m.split('.')[0] for m in sys.modules}))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(ast.literal_eval(proc.stdout.strip().splitlines()[-1]))
    assert not loaded & {"torch", "scipy", "pandas", "sklearn", "fastapi", "flwr", "matplotlib"}
