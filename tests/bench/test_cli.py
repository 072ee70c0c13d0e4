"""`ms3m bench …` lives in bench/: registered by service/cli.py without importing torch or the benchmarks,
absent (not broken) where bench/ is not installed, never imported by models/ or service/ otherwise; every
benchmark takes --json and then prints one JSON document last."""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys

from service.cli import build_parser, main
from tests.conftest import REPO

BENCHMARKS = ["step", "runtime", "service", "memory", "controllability", "train", "e2sm"]


def _choices(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_bench_registers_every_benchmark_with_json_and_quiet():
    benches = _choices(_choices(build_parser())["bench"])
    assert list(benches) == BENCHMARKS
    for name, p in benches.items():
        options = {o for a in p._actions for o in a.option_strings}
        assert {"--json", "--quiet"} <= options, name


def test_bench_without_a_benchmark_prints_help_and_fails(capsys):
    assert main(["bench"]) == 2
    assert "benchmarks" in capsys.readouterr().out


def test_registering_bench_imports_neither_torch_nor_a_benchmark():
    code = ("import sys\nfrom service.cli import build_parser\nbuild_parser()\n"
            "bad = [m for m in sys.modules if m in ('torch', 'models') or m.startswith('bench.')]\n"
            "bad.remove('bench.cli')\n"
            "assert not bad, bad\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]


def test_without_bench_installed_the_cli_has_no_bench_command_and_still_serves_help():
    code = ("import sys\n"
            "class NoBench:  # as in the images, which carry no bench/\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'bench':\n"
            "            raise ModuleNotFoundError(\"No module named 'bench'\", name='bench')\n"
            "sys.meta_path.insert(0, NoBench())\n"
            "from service.cli import build_parser\np = build_parser()\n"
            "a = next(a for a in p._actions if a.__class__.__name__ == '_SubParsersAction')\n"
            "assert 'bench' not in a.choices and 'serve' in a.choices and 'train' in a.choices\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]


def test_models_and_service_never_import_bench_except_the_cli_registration():
    offenders = []
    for root in ("models", "service"):
        for path in (REPO / root).rglob("*.py"):
            where = str(path.relative_to(REPO))
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names = [node.module]
                else:
                    continue
                for n in names:
                    if (n == "bench" or n.startswith("bench.")) and (where, n) != ("service/cli.py", "bench.cli"):
                        offenders.append(f"{where}:{node.lineno} imports {n}")
    assert offenders == []


def test_print_result_with_json_prints_one_json_document_on_stdout(capsys):
    from service.output import print_result

    result = {"benchmark": "x", "columns": ["model", "v"], "rows": [{"model": "a", "v": 1.5}], "summary": {"n": 1}}
    print_result(result, as_json=True)
    out, err = capsys.readouterr()
    assert json.loads(out) == result and len(out.strip().splitlines()) == 1
    assert "ms3m bench x" in err


def test_bench_step_json_prints_one_json_document_last():
    exe = [sys.executable, "-m", "service.cli", "bench", "step", "--json", "--quiet", "--model", "s4d", "--history",
           "16", "--batch", "1", "--rounds", "1", "--min-seconds", "0.01"]
    out = subprocess.run(exe, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    assert doc["benchmark"] == "step" and [(r["model"], r["history"]) for r in doc["rows"]] == [("s4d", 16)]


def test_service_benchmark_bundle_uses_the_contract_kpis(tmp_path):
    from bench.service import default_bundle
    from contract.kpis import DEFAULT_TARGETS, SYNTHETIC_KPIS

    manifest = json.loads((default_bundle(tmp_path) / "config.json").read_text())
    assert manifest["inputs"] == list(SYNTHETIC_KPIS) and manifest["targets"] == list(DEFAULT_TARGETS)
