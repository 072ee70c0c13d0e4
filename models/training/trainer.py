"""The training loop: AdamW with the models' SSM parameter groups, warm-up + cosine schedule, gradient
clipping, early stopping on validation, deterministic seeds, checkpoint/resume, a progress bar, and
multi-process data-parallel training under torchrun (DDP, gloo on CPU).

A run directory holds everything a run needs and produces:

    train_config.json     the TrainConfig (what `ms3m train` was asked)
    checkpoint.pt         resumable state: tensors and plain values only (loads with weights_only=True)
    best.safetensors      weights of the best validation step
    data.json             input / target KPI names, period, z-score statistics fitted on the training split,
                          and a description of the data (what `ms3m export` needs besides the weights)
    history.jsonl         one JSON line per evaluation
    result.json           final metrics (validation and test)
    bundle/               the deployable bundle (models.export.write_bundle)
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from models.base import StreamingModel
from models.export.run import export_run
from models.registry import create_model
from models.training.config import PreparedData, TrainConfig
from models.training.data.prepare import prepare_data
from models.training.data.windows import Lanes, WindowSampler
from models.training.progress import TrainingProgress


# -- distributed helpers --------------------------------------------------------------------------
def dist_info() -> tuple[int, int]:
    """(rank, world size) from torchrun's environment; (0, 1) when not distributed."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def init_distributed() -> bool:
    _rank, world = dist_info()
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("gloo")
    return world > 1


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def lr_factor(step: int, warmup: int, total: int, min_ratio: float, halve_every: int = 0) -> float:
    """Linear warm-up to 1, then cosine decay to min_ratio at `total`; or, with halve_every > 0,
    0.5^(step // halve_every) (the LTSF-Linear "type1" epoch-halving schedule)."""
    if halve_every > 0:
        return 0.5 ** (step // halve_every)
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def masked_error(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, kind: str = "mse") -> torch.Tensor:
    """Mean squared (kind "mse") or absolute ("mae") error over the positions where mask is True."""
    mask = mask.to(pred.dtype)
    err = (pred - target) ** 2 if kind == "mse" else (pred - target).abs()
    return (err * mask).sum() / mask.sum().clamp_min(1.0)


def training_loss(pred: torch.Tensor, aux: dict[str, Any], target: torch.Tensor, mask: torch.Tensor,
                  kind: str = "mse") -> torch.Tensor:
    """Masked MSE (or MAE, kind "mae") of the forecasts plus the model's auxiliary terms (see
    StreamingModel.training_forward): a tensor is added as it is; a pair (weight, members (B, L, E, H, K)) adds
    weight × Σ_e the same error of member e's own forecast (deep supervision, e.g. MS³M's experts: each learns as
    if trained alone)."""
    loss = masked_error(pred, target, mask, kind)
    for value in aux.values():
        if isinstance(value, tuple):
            weight, members = value
            member_mask = mask.unsqueeze(2).expand_as(members)
            per_member = masked_error(members, target.unsqueeze(2), member_mask, kind)
            loss = loss + weight * members.shape[2] * per_member
        else:
            loss = loss + value
    return loss


class Trainer:
    """Trains one model per TrainConfig into a run directory; `fit()` returns the final metrics."""

    def __init__(self, config: TrainConfig, run_dir: str | Path, data: PreparedData | None = None,
                 progress: bool = True, log=print):
        self.config = config
        self.run_dir = Path(run_dir)
        self.progress = progress
        self.log = log
        self.rank, self.world = dist_info()
        self.distributed = init_distributed()
        if config.threads:
            torch.set_num_threads(config.threads)
        seed_everything(config.seed)

        self.data = data or prepare_data(config)
        d = self.data
        model_cfg = dict(config.model_config)
        model_cfg.setdefault("target_index", d.target_index)
        self.model: StreamingModel = create_model(
            config.model, d_input=len(d.input_index), n_targets=len(d.target_cols), horizon=config.horizon, **model_cfg
        )
        self.net = _TrainingForward(self.model)
        if self.distributed:  # gradients all-reduced over the gloo group; forward must go through the wrapper
            self.net = torch.nn.parallel.DistributedDataParallel(self.net)
        groups = self.model.param_groups(config.lr, config.weight_decay, config.ssm_lr)
        for g in groups:
            g["initial_lr"] = g["lr"]
        self.optimizer = torch.optim.AdamW(groups)
        self.step = 0
        self.best_val = math.inf
        self.best_step = -1
        self.bad_evals = 0
        self.sampler = WindowSampler(self.data.train, config.window, config.horizon, self.data.target_cols,
                                     seed=config.seed + 1000 * self.rank)
        self.lanes = Lanes(self.sampler, config.batch_size)
        self.lane_state = None
        self.events: list[dict[str, Any]] = []  # the model's training events (phases, pruning), in order

    # -- persistence ---------------------------------------------------------------------------
    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def save_checkpoint(self) -> None:
        if not self.is_main:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        ckpt = {
            "model_name": self.config.model,
            "model_config": json.dumps(self.model.config.to_dict(), sort_keys=True, default=_json_default),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "best_val": self.best_val,
            "best_step": self.best_step,
            "bad_evals": self.bad_evals,
            "torch_rng": torch.get_rng_state(),
            "numpy_rng": json.dumps(self.sampler.rng.bit_generator.state),
            "lanes": {k: torch.from_numpy(getattr(self.lanes, k).copy()) for k in ("series", "pos", "fresh")},
            "lane_state": list(self.lane_state) if self.lane_state is not None else [],
        }
        tmp = self.run_dir / "checkpoint.pt.tmp"
        torch.save(ckpt, tmp)
        os.replace(tmp, self.run_dir / "checkpoint.pt")

    def load_checkpoint(self) -> bool:
        path = self.run_dir / "checkpoint.pt"
        if not path.exists():
            return False
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        mine = json.dumps(self.model.config.to_dict(), sort_keys=True, default=_json_default)
        theirs = ckpt.get("model_config", mine)
        if ckpt.get("model_name", self.config.model) != self.config.model or theirs != mine:
            raise ValueError(
                f"{path} was written for another model ({ckpt.get('model_name')} {theirs}), not "
                f"{self.config.model} {mine}; pass --no-resume to start over, or choose another --out")
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.step, self.best_val = int(ckpt["step"]), float(ckpt["best_val"])
        self.best_step, self.bad_evals = int(ckpt["best_step"]), int(ckpt["bad_evals"])
        torch.set_rng_state(ckpt["torch_rng"])
        self.sampler.rng.bit_generator.state = json.loads(ckpt["numpy_rng"])
        self.lanes.series[:] = ckpt["lanes"]["series"].numpy()
        self.lanes.pos[:] = ckpt["lanes"]["pos"].numpy()
        self.lanes.fresh[:] = ckpt["lanes"]["fresh"].numpy()
        self.lane_state = tuple(ckpt["lane_state"]) or None
        return True

    def _write_json(self, name: str, obj: Any) -> None:
        if self.is_main:
            (self.run_dir / name).write_text(json.dumps(obj, indent=2, default=_json_default))

    # -- training --------------------------------------------------------------------------------
    @property
    def eval_positions(self) -> str:
        return self.config.eval_positions or self.config.loss_positions

    @property
    def halve_every(self) -> int:
        c = self.config
        return 0 if c.schedule == "cosine" else (c.halve_every or c.eval_every)

    @property
    def stateful(self) -> bool:
        return self.config.stateful and self.config.loss_positions == "all"

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """x, y, mask and, for truncated BPTT, which lanes continue (B,) bool (others restart at zero)."""
        c = self.config
        if self.stateful:
            b, fresh = self.lanes.next()
        else:
            b, fresh = self.sampler.sample(c.batch_size), np.ones(c.batch_size, bool)
        x, y, m = np.ascontiguousarray(b.x[..., self.data.input_index]), b.y, b.y_mask
        if c.loss_positions == "last":
            m[:, :-1] = False
        else:
            m[fresh, : c.burn_in] = False
        cont = torch.from_numpy(~fresh) if self.stateful else None
        return torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(m), cont

    def train_step(self) -> float:
        c = self.config
        self.net.train()
        factor = lr_factor(self.step, c.warmup_steps, c.max_steps, c.min_lr_ratio, self.halve_every)
        for g in self.optimizer.param_groups:
            g["lr"] = g["initial_lr"] * factor
        x, y, m, cont = self._batch()
        state = None
        if cont is not None and self.lane_state is not None:  # carried state, zero for restarted lanes
            state = tuple(torch.where(cont.view(-1, *([1] * (s.dim() - 1))), s, torch.zeros_like(s))
                          for s in self.lane_state)
        last_only = c.loss_positions == "last"  # window protocol: only the last position's forecast is scored
        pred, aux, new_state = self.net(x, state, last_only)
        if last_only:
            y, m = y[:, -1:], m[:, -1:]
        if cont is not None:
            self.lane_state = tuple(s.detach() for s in new_state)
        loss = training_loss(pred, aux, y, m, c.loss)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if c.grad_clip:
            nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip)
        self.optimizer.step()
        self.step += 1
        return float(loss.detach())

    def validate(self) -> float:
        from models.training.evaluate import evaluate_windows

        c = self.config
        metrics = evaluate_windows(self.model, self.data.val, self.data.input_index, self.data.target_cols,
                                   c.window, c.horizon, burn_in=c.burn_in, positions=self.eval_positions,
                                   max_windows=c.val_windows)
        return metrics[c.loss]  # early stopping and the best checkpoint follow the training loss's metric

    def fit(self, resume: bool = True, stop_at: int | None = None) -> dict[str, Any]:
        """Train until max_steps or early stop; resume from run_dir's checkpoint when there is one.
        `stop_at` leaves the loop after that step as if interrupted (tests and time-sliced training)."""
        c = self.config
        self.run_dir.mkdir(parents=True, exist_ok=True)
        resumed = resume and self.load_checkpoint()
        self._write_json("train_config.json", c.to_dict())
        self._write_json("data.json", {"inputs": self.data.input_names, "targets": self.data.target_names,
                                       "period_ms": self.data.train.period_ms,
                                       "normalization": normalization_for(self.data),
                                       "description": self.data.description})
        if resumed and self.is_main:
            self.log(f"resumed {self.run_dir} at step {self.step} (best val MSE {self.best_val:.4f})")
        start = time.perf_counter()
        losses: list[float] = []
        with TrainingProgress(self.progress and self.is_main, c.max_steps, self.step, f"train {c.model}") as bar:
            while self.step < c.max_steps and self.bad_evals < c.patience and self.step != stop_at:
                losses.append(self.train_step())
                if self.step % c.eval_every == 0 or self.step == c.max_steps:
                    val = self._sync(self.validate() if self.is_main else 0.0)
                    improved = val < self.best_val - 1e-6
                    if improved:
                        self.best_val, self.best_step, self.bad_evals = val, self.step, 0
                        if self.is_main:
                            save_file({k: v.detach().contiguous() for k, v in self.model.state_dict().items()},
                                      str(self.run_dir / "best.safetensors"))
                    else:
                        self.bad_evals += 1
                    if self.is_main:
                        with open(self.run_dir / "history.jsonl", "a") as f:
                            f.write(json.dumps({"step": self.step, "train_loss": float(np.mean(losses[-c.eval_every:])),
                                                "val_mse": val, "lr_factor": lr_factor(self.step, c.warmup_steps,
                                                c.max_steps, c.min_lr_ratio, self.halve_every)}) + "\n")
                    self.save_checkpoint()
                event = self.model.training_event(self.step, self.bad_evals >= c.patience)
                if event is not None:
                    self._on_training_event(event)
                bar(self.step, losses[-1], self.best_val)
        if self.is_main and self.bad_evals >= c.patience:
            self.log(f"early stop at step {self.step}: no improvement for {c.patience} evaluations")
        if (self.run_dir / "best.safetensors").exists():
            self.model.load_state_dict(load_file(str(self.run_dir / "best.safetensors")))
        result = {"model": c.model, "steps": self.step, "best_step": self.best_step, "val_mse": self.best_val,
                  "val_metric": c.loss, "train_seconds": time.perf_counter() - start,
                  "parameters": sum(p.numel() for p in self.model.parameters()),
                  "state_bytes_per_cell": self.model.state_bytes_per_cell()}
        if self.events:
            result["events"] = self.events
        if self.model.describe():
            result["model_info"] = self.model.describe()
        if self.is_main:
            result.update(self.test_metrics())
            self._write_json("result.json", result)
        if self.distributed:
            torch.distributed.barrier()
        return result

    def _on_training_event(self, event: dict[str, Any]) -> None:
        """Log a model's training event (StreamingModel.training_event); a new phase restarts early stopping and
        the best checkpoint, and clears the optimizer's moments when the event asks."""
        event = dict(event)
        reset_optimizer = bool(event.pop("reset_optimizer", False))
        self.events.append({"step": self.step, **event})
        if self.is_main:
            self.log(f"step {self.step}: " + ", ".join(f"{k} {v}" for k, v in event.items()))
            with open(self.run_dir / "history.jsonl", "a") as f:
                f.write(json.dumps({"step": self.step, "event": event}, default=_json_default) + "\n")
        if "phase" in event:
            self.best_val, self.best_step, self.bad_evals = math.inf, -1, 0
            (self.run_dir / "best.safetensors").unlink(missing_ok=True)
            if reset_optimizer:
                self.optimizer.state.clear()

    def _sync(self, value: float) -> float:
        """Broadcast rank 0's value so every rank takes the same early-stopping decision."""
        if not self.distributed:
            return value
        t = torch.tensor([value], dtype=torch.float64)
        torch.distributed.broadcast(t, 0)
        return float(t.item())

    def test_metrics(self) -> dict[str, Any]:
        from models.training.evaluate import evaluate_windows

        c = self.config
        if not self.data.test.series:
            return {}
        m = evaluate_windows(self.model, self.data.test, self.data.input_index, self.data.target_cols, c.window,
                             c.horizon, burn_in=c.burn_in, positions=self.eval_positions, scaler=self.data.scaler,
                             baseline=True, drop_last=c.batch_size if self.eval_positions == "last" else None)
        return {"test": m}

    def write_bundle(self, out: str | Path | None = None) -> Path:
        return export_run(self.run_dir, out or self.run_dir / "bundle", model=self.model)


class _TrainingForward(nn.Module):
    """The model's training_forward as a module forward, so DistributedDataParallel can wrap it."""

    def __init__(self, model: StreamingModel):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, state=None, last_only: bool = False):
        return self.model.training_forward(x, state, last_only)


def normalization_for(d: PreparedData) -> dict[str, Any]:
    s = d.scaler
    return {"kind": "zscore", "input_mean": s.mean[d.input_index].tolist(), "input_std": s.std[d.input_index].tolist(),
            "target_mean": s.mean[d.target_cols].tolist(), "target_std": s.std[d.target_cols].tolist()}


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic | np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")

