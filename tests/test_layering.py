"""Architecture rules: nothing in models/ imports the service; the serving path never imports torch."""

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
