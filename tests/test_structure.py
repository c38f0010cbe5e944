"""The shape of the package: imports flow one way, homes stay separate, modules stay small, and the
command line starts without PyTorch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import rvrt

SRC = Path(rvrt.__file__).resolve().parent


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every rvrt module ``path`` imports, at module level or inside functions (not for type checking)."""
    tree = ast.parse(path.read_text())
    known = {_module_name(p) for p in SRC.rglob("*.py")}
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                out.update(a.name for a in child.names if a.name.startswith("rvrt"))
            elif isinstance(child, ast.ImportFrom) and child.module and child.module.startswith("rvrt"):
                for a in child.names:
                    sub = f"{child.module}.{a.name}"
                    out.add(sub if sub in known else child.module)
            visit(child)

    visit(tree)
    return out & known


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) - {_module_name(p)} for p in SRC.rglob("*.py")}


def test_no_import_cycles_inside_rvrt():
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def strong(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            strong(v)
    assert cycles == []


def test_data_and_inference_do_not_import_each_other():
    graph = _graph()
    for name, deps in graph.items():
        if name.startswith("rvrt.data"):
            assert not any(d.startswith("rvrt.inference") for d in deps), (name, deps)
        if name.startswith("rvrt.inference"):
            assert not any(d.startswith("rvrt.data") for d in deps), (name, deps)
        if name.startswith(("rvrt.media", "rvrt.models", "rvrt.ops", "rvrt.files", "rvrt.compute")):
            assert not any(d.startswith(("rvrt.inference", "rvrt.cli", "rvrt.train", "rvrt.api")) for d in deps), name


def test_no_module_is_over_about_600_lines():
    # STYLE: small modules, "no file over ~600 lines without a reason" (the zoo's records and the
    # trainer sit just above 600)
    long = {p.relative_to(SRC).as_posix(): n for p in SRC.rglob("*.py") if (n := len(p.read_text().splitlines())) > 620}
    assert long == {}


def test_rvrt_help_does_not_load_pytorch():
    heavy = "('torch', 'numpy', 'av')"
    code = f"import sys, rvrt.cli; rvrt.cli._parser(); print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert subprocess.run([sys.executable, "-m", "rvrt", "--help"], capture_output=True).returncode == 0
