"""The training loop: a run writes a loadable bundle, resume is exact, bad data fails clearly, DDP works."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from models.export.run import export_run
from models.training.trainer import TrainConfig, Trainer
from service.runtime import create_runtime, load_bundle

TINY = {"d_model": 8, "n_layers": 1, "d_state": 4}
DATA = {"n_cells": 8, "length": 700}


def config(**kw) -> TrainConfig:
    base = dict(model="s4d", data="synthetic", data_options=DATA, model_config=TINY, horizon=4, window=64,
                batch_size=8, max_steps=30, eval_every=10, warmup_steps=5, threads=1)
    base.update(kw)
    return TrainConfig(**base)


def test_run_writes_artifacts_and_a_bundle_that_serves(tmp_path: Path):
    trainer = Trainer(config(), tmp_path / "run", progress=False)
    result = trainer.fit()
    assert result["steps"] == 30 and np.isfinite(result["val_mse"])
    assert "last_value" in result["test"] and "DRB.UEThpDl" in result["test"]["units"]
    for name in ("train_config.json", "data.json", "checkpoint.pt", "best.safetensors", "history.jsonl", "result.json"):
        assert (tmp_path / "run" / name).is_file(), name
    assert len((tmp_path / "run" / "history.jsonl").read_text().splitlines()) == 3
    bundle = load_bundle(trainer.write_bundle())
    assert bundle.manifest.targets == ["DRB.UEThpDl"] and bundle.manifest.metrics["steps"] == 30
    rt = create_runtime(bundle)
    state = [np.zeros((2, *s.shape), np.float32) for s in bundle.manifest.state]
    y, _ = rt.run(np.zeros((2, len(bundle.manifest.inputs)), np.float32), state)
    assert y.shape == (2, 4, 1)
    again = load_bundle(export_run(tmp_path / "run", tmp_path / "exported"))  # `ms3m export` path
    assert again.manifest.normalization == bundle.manifest.normalization


def test_checkpoint_loads_without_pickle_and_resume_is_exact(tmp_path: Path):
    straight = Trainer(config(max_steps=40), tmp_path / "straight", progress=False)
    straight.fit()
    first = Trainer(config(max_steps=40), tmp_path / "resumed", progress=False)
    first.fit(stop_at=20)  # interrupted after the step-20 checkpoint
    torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)  # tensors and plain values only
    second = Trainer(config(max_steps=40), tmp_path / "resumed", progress=False)
    assert second.load_checkpoint() and second.step == 20
    second.fit()
    a, b = straight.model.state_dict(), second.model.state_dict()
    ckpt_a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)["model"]
    ckpt_b = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(ckpt_a[k], ckpt_b[k]) for k in ckpt_a), "resumed run diverged from the straight run"
    assert set(a) == set(b)


def test_resume_with_another_model_config_fails_clearly(tmp_path: Path):
    Trainer(config(max_steps=10), tmp_path / "run", progress=False).fit()
    other = Trainer(config(max_steps=10, model_config={**TINY, "d_state": 8}), tmp_path / "run", progress=False)
    with pytest.raises(ValueError, match="--no-resume"):
        other.load_checkpoint()
    assert other.fit(resume=False)["steps"] == 10


def test_stateful_lanes_carry_state_between_windows(tmp_path: Path):
    t = Trainer(config(), tmp_path / "run", progress=False)
    assert t.stateful
    _, _, _, cont = t._batch()
    assert not cont.any()  # first windows start fresh
    _, _, m2, cont2 = t._batch()
    assert cont2.any() and m2[cont2][:, :16].any()  # continued lanes: no burn-in mask
    last = Trainer(config(loss_positions="last"), tmp_path / "run2", progress=False)
    _, _, m, cont = last._batch()
    assert cont is None and not m[:, :-1].any()


def test_model_training_events_start_phases_and_reach_the_result(tmp_path: Path):
    """A model's own schedule (StreamingModel.training_event): a "phase" event at a plateau restarts early
    stopping instead of stopping, "reset_optimizer" clears AdamW's moments, events reach history and result."""
    t = Trainer(config(max_steps=200, lr=1e-12, ssm_lr=1e-12, patience=1), tmp_path / "run", progress=False)
    seen: list[tuple[int, bool]] = []
    adam_steps: dict[int, float] = {}

    def schedule(step: int, plateau: bool):
        seen.append((step, plateau))
        adam_steps[step] = float(next(iter(t.optimizer.state.values()))["step"])
        if plateau and sum(p for _, p in seen) == 1:  # the first plateau starts phase 2; the second one stops
            return {"phase": "second", "reset_optimizer": True}
        return None

    t.model.training_event = schedule
    t.model.describe = lambda: {"phase": "second"}
    result = t.fit()
    plateaus = [s for s, p in seen if p]
    assert plateaus == [20, 40] and result["steps"] == 40, seen  # lr ≈ 0: flat, but the phase's first eval improves
    assert len(seen) == 40 and result["best_step"] == 30  # the last phase's best
    assert adam_steps[20] == 20 and adam_steps[21] == 1  # the moments restarted with the phase
    assert result["events"] == [{"step": 20, "phase": "second"}] and result["model_info"] == {"phase": "second"}
    history = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert {"step": 20, "event": {"phase": "second"}} in history


@pytest.mark.parametrize("bad, message", [
    ("timestamp,DL\n2024-01-01 00:00:00,1\n", "column"),
    ("ts,DL\n2024-01-01 00:00:00,abc\n2024-01-01 00:00:01,2\n", "DL"),
    ("ts,DL\n2024-01-01 00:00:00,-\n2024-01-01 00:00:01,-\n", "DL"),
])
def test_cli_bad_data_fails_naming_file_and_column(tmp_path: Path, bad: str, message: str):
    path = tmp_path / "kpis.csv"
    path.write_text(bad)
    cmd = [sys.executable, "-m", "service.cli", "train", "--model", "s4d", "--data", str(path), "--quiet",
           "--data-opt", "timestamp=ts", "--data-opt", 'columns={"DL": "DRB.UEThpDl"}', "--data-opt",
           "period_ms=1000", "--out", str(tmp_path / "run")]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "kpis.csv" in out.stderr and message in out.stderr


def test_series_shorter_than_window_is_explained(tmp_path: Path):
    with pytest.raises(ValueError, match="window"):
        Trainer(config(window=5000), tmp_path / "run", progress=False)


def test_invalid_options_are_named():
    with pytest.raises(ValueError, match="horizon"):
        config(horizon=0)
    with pytest.raises(KeyError, match="unknown model"):
        config(model="gpt")


def test_torchrun_data_parallel_two_processes(tmp_path: Path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "service.cli", "train", "--model", "s4d", "--data", "synthetic", "--quiet",
           "--nproc", "2", "--steps", "6", "--eval-every", "3", "--window", "64", "--batch-size", "4",
           "--data-opt", "n_cells=6", "--data-opt", "length=400", "--set", "d_model=8", "--set", "n_layers=1",
           "--set", "d_state=4", "--no-bundle", "--out", str(tmp_path / "ddp")]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    result = json.loads((tmp_path / "ddp" / "result.json").read_text())
    assert result["steps"] == 6
    load_file(str(tmp_path / "ddp" / "best.safetensors"))
