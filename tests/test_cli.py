from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from service.cli import build_parser, main


def _subcommands() -> list[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return list(action.choices)


def test_console_script_lists_subcommands():
    exe = str(Path(sys.executable).with_name("ms3m"))
    if not Path(exe).exists():
        exe = shutil.which("ms3m") or pytest.fail("the ms3m console script is not installed")
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True).stdout
    for name in _subcommands():
        assert name in out


@pytest.mark.parametrize("name", _subcommands())
def test_every_subcommand_has_help(name, capsys):
    with pytest.raises(SystemExit) as e:
        main([name, "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert f"ms3m {name}" in text and len(text) > 150


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "commands" in capsys.readouterr().out


def test_config_prints_json(capsys, monkeypatch):
    import json

    monkeypatch.setenv("MS3M_GRPC_PORT", "6000")
    assert main(["config"]) == 0
    assert json.loads(capsys.readouterr().out)["grpc_port"] == 6000


def test_serve_help_does_not_import_torch():
    code = "import sys; from service.cli import main\ntry: main(['serve','--help'])\nexcept SystemExit: pass\n" \
           "assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_eval_app_split_is_the_irish_protocol_only(capsys):
    assert main(["eval", "ett", "--split", "app", "--steps", "1", "--quiet"]) == 2
    assert "cross-application" in capsys.readouterr().err


def test_eval_with_seeds_reports_mean_and_std(tmp_path, capsys):
    """`ms3m eval compare --seeds 2`: one row per model with the mean over the seeds and its std, the last value
    beside; the report folders of both seeds are written."""
    import json

    rc = main(["eval", "compare", "--data", "synthetic", "--model", "linear", "--steps", "2", "--seeds", "2",
               "--quiet", "--json", "--out", str(tmp_path)])
    assert rc == 0
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    rows = {r["model"]: r for r in doc["rows"]}
    assert set(rows) == {"linear", "last value"} and doc["summary"]["seeds"] == [0, 1]
    assert rows["linear"]["seeds"] == 2 and rows["linear"]["mse_std"] >= 0 and "mse_std" in doc["columns"]
    assert (tmp_path / "h10" / "seed0" / "report.md").exists() and (tmp_path / "h10" / "seed1" / "report.md").exists()
