"""`ms3m eval ablation`: one training per value, each row with its errors, state size and exported step cost."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench.ablation import parse_values, run_ablation


def test_parse_values():
    assert parse_values("0.1, 0.25,1") == [0.1, 0.25, 1]
    assert parse_values("gru,lstm") == ["gru", "lstm"]
    assert parse_values("true,false") == [True, False]
    with pytest.raises(ValueError, match="no values"):
        parse_values(" , ")


def test_each_value_is_trained_and_measured(tmp_path):
    result = run_ablation("s4d", "d_state", [4, 16], "synthetic", tmp_path, steps=3, progress=False,
                          log=lambda m: None, data_options={"n_cells": 4, "length": 400},
                          model_config={"d_model": 8, "n_layers": 1})
    rows = result["rows"]
    assert [r["d_state"] for r in rows] == [4, 16]
    assert rows[1]["state_bytes_per_cell"] == 4 * rows[0]["state_bytes_per_cell"]  # the state is d_state wide
    for r in rows:
        assert r["steps"] == 3 and r["mse"] > 0 and r["us_per_step_b1"] > 0 and r["us_per_step_b1000"] > 0
    assert (tmp_path / "ablation.png").stat().st_size > 5000
    assert "| d_state |" in (tmp_path / "ablation.md").read_text()
    assert json.loads((tmp_path / "ablation.json").read_text())["param"] == "d_state"
    with pytest.raises(TypeError, match="no config field 'd_statee'"):
        run_ablation("s4d", "d_statee", [1], "synthetic", tmp_path)


def test_cli_explains_a_bad_request():
    out = subprocess.run([sys.executable, "-m", "service.cli", "eval", "ablation", "--model", "s4d"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--param name=v1,v2" in out.stderr
