"""Architecture rules: nothing in models/ imports the service; the serving path never imports torch; no
import cycle among the project's modules."""

from __future__ import annotations

import ast
import subprocess
import sys

from tests.conftest import REPO


def _imports(path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_models_never_import_the_service():
    offenders = [str(p.relative_to(REPO)) for p in (REPO / "models").rglob("*.py")
                 if any(n == "service" or n.startswith("service.") for n in _imports(p))]
    assert offenders == []


def test_serving_modules_do_not_import_torch():
    mods = ["service.app", "service.api.rest", "service.api.grpc_services", "service.engine.engine",
            "service.engine.host", "service.router.router", "service.buffer.redis_buffer", "service.sim",
            "service.runtime", "service.runtime.ms3m_stepper", "service.actions", "service.demo"]
    code = "import sys\n" + "".join(f"import {m}\n" for m in mods) + \
        "bad = [m for m in ('torch', 'models') if m in sys.modules]\nassert not bad, bad\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]


def _module_graph() -> dict[str, set[str]]:
    """Project module → project modules it imports at run time (imports under TYPE_CHECKING excluded)."""
    files = {}
    for root in ("models", "service"):
        for f in (REPO / root).rglob("*.py"):
            parts = list(f.relative_to(REPO).with_suffix("").parts)
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    graph: dict[str, set[str]] = {}
    for mod, f in files.items():
        tree = ast.parse(f.read_text())
        skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(
            node.test) for sub in node.body for n in ast.walk(sub)}
        deps = set()
        for node in ast.walk(tree):
            if id(node) in skip or not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    pkg = mod.split(".") if f.name == "__init__.py" else mod.split(".")[:-1]
                    base = ".".join(pkg[: len(pkg) - node.level + 1] + ([base] if base else []))
                names = [base] + [f"{base}.{a.name}" for a in node.names]
            for n in names:
                while n and n not in files:
                    n = n.rpartition(".")[0]
                if n and n != mod:
                    deps.add(n)
        graph[mod] = {d for d in deps if not d.startswith(mod + ".")}  # a package re-exporting its modules
    return graph


def test_no_import_cycle_among_the_project_modules():
    graph = _module_graph()
    assert graph.get("service.app")
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    cycles: list[list[str]] = []

    def visit(mod: str, path: list[str]) -> None:
        state[mod] = 1
        for dep in sorted(graph.get(mod, ())):
            if state.get(dep) == 1:
                cycles.append([*path[path.index(dep):], dep] if dep in path else [mod, dep])
            elif dep not in state:
                visit(dep, [*path, dep])
        state[mod] = 2

    for mod in sorted(graph):
        if mod not in state:
            visit(mod, [mod])
    assert cycles == [], "import cycles: " + "; ".join(" → ".join(c) for c in cycles)


def _project_files():
    for root in ("models", "service", "bench"):
        if (REPO / root).is_dir():
            yield from (p for p in (REPO / root).rglob("*.py") if "_pb2" not in p.name)


def test_objective_names_and_series_separator_are_written_only_in_contract():
    """The objective tuple (all names in one literal) and the series-key separator used to build or parse
    keys (`|ue=`, `|s=`, split/partition on "|", `"|" in key`) appear only in contract/."""
    from contract.objectives import OBJECTIVES

    offenders = []
    for path in _project_files():
        tree = ast.parse(path.read_text())
        where = str(path.relative_to(REPO))
        for node in ast.walk(tree):
            if isinstance(node, ast.Tuple | ast.List | ast.Set):
                names = {e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
                if set(OBJECTIVES) <= names:
                    offenders.append(f"{where}:{node.lineno} objective tuple")
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and (
                    "|ue=" in node.value or "|s=" in node.value):
                offenders.append(f"{where}:{node.lineno} series-key literal {node.value!r}")
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in (
                    "partition", "rpartition", "split", "rsplit") and any(
                    isinstance(a, ast.Constant) and a.value == "|" for a in node.args):
                offenders.append(f"{where}:{node.lineno} {node.func.attr}('|')")
            elif isinstance(node, ast.Compare) and isinstance(node.left, ast.Constant) and node.left.value == "|" \
                    and any(isinstance(op, ast.In | ast.NotIn) for op in node.ops):
                offenders.append(f"{where}:{node.lineno} '|' in …")
    assert offenders == [], "use contract.objectives / contract.series instead:\n" + "\n".join(offenders)


def test_no_source_file_in_models_or_service_is_over_450_lines():
    """Files stay readable top to bottom (docs/architecture.md, "Layout"); generated code excepted."""
    long = [f"{p.relative_to(REPO)} ({n} lines)" for root in ("models", "service")
            for p in (REPO / root).rglob("*.py") if "_pb2" not in p.name
            and (n := len(p.read_text().splitlines())) > 450]
    assert long == []
