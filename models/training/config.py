"""What a training run is asked (TrainConfig) and the prepared data it trains on (PreparedData).

Shared by the data preparation (`models/training/data/prepare.py`) and the loop (`models/training/trainer.py`),
so neither imports the other's internals.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from models.registry import model_class
from models.training.series import SeriesSet, ZScore

LOSSES = ("mse", "mae")  # TrainConfig.loss


@dataclass
class TrainConfig:
    """What to train on what. Every field has a default that works (`ms3m train` with no options)."""

    model: str = "s4d"
    model_config: dict[str, Any] = field(default_factory=dict)
    data: str = "synthetic"
    data_options: dict[str, Any] = field(default_factory=dict)
    inputs: list[str] | None = None  # KPI names fed to the model (default: all)
    targets: list[str] | None = None  # KPI names forecast (default: the dataset's main target)
    horizon: int = 8
    window: int = 256  # training window length (positions per sequence)
    burn_in: int = 16  # first positions after a (zero-state) start excluded from the loss
    loss_positions: str = "all"  # "all" positions after burn-in, or only the "last" (window protocol)
    eval_positions: str | None = None  # validation/test protocol: "all" (streaming) or "last"; None = as loss
    stateful: bool = True  # truncated BPTT: lanes walk series in consecutive windows, carrying state
    # (as the model is served); ignored for loss_positions="last", whose windows are independent
    split: str = "auto"  # "time" | "series" | "app" (irish5g: train on train_app's traces, test on the other's)
    # | "auto" (dataset default)
    train_app: str = "Download"  # split "app": the application trained (and validated) on
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    batch_size: int = 32
    max_steps: int = 1500
    lr: float = 3e-3
    ssm_lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05
    schedule: str = "cosine"  # "cosine" (warm-up + cosine) or "halving": lr × 0.5 every `halve_every` steps
    halve_every: int = 0  # steps per halving (LTSF-Linear "type1": one epoch); 0 = eval_every
    grad_clip: float = 1.0
    loss: str = "mse"  # "mse" | "mae": the training error, also the validation metric (early stopping, best step)
    eval_every: int = 100
    patience: int = 8  # evaluations without improvement before stopping
    val_windows: int = 512  # max validation windows per evaluation
    seed: int = 0
    threads: int | None = None

    def __post_init__(self) -> None:
        checks = {
            "horizon": self.horizon >= 1, "window": self.window >= 2, "batch_size": self.batch_size >= 1,
            "max_steps": self.max_steps >= 1, "lr": self.lr > 0, "eval_every": self.eval_every >= 1,
            "burn_in": 0 <= self.burn_in < self.window,
            "loss_positions": self.loss_positions in ("all", "last"),
            "eval_positions": self.eval_positions in (None, "all", "last"),
            "split": self.split in ("auto", "time", "series", "app"),
            "schedule": self.schedule in ("cosine", "halving"), "loss": self.loss in LOSSES,
            "halve_every": self.halve_every >= 0,
            "val_fraction": 0 < self.val_fraction < 1, "test_fraction": 0 <= self.test_fraction < 1,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid training option(s): {', '.join(f'{k}={getattr(self, k)!r}' for k in bad)}")
        model_class(self.model)  # raises KeyError naming the known models

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise TypeError(f"unknown training option(s) {sorted(unknown)}")
        return cls(**d)


@dataclass
class PreparedData:
    """Normalized splits and what the model needs to know about them."""

    train: SeriesSet
    val: SeriesSet
    test: SeriesSet
    scaler: ZScore
    input_index: list[int]
    target_index: list[int]  # into the model's inputs (for the last-value residual)
    target_cols: list[int]  # into the dataset's KPIs
    description: dict[str, Any]

    @property
    def input_names(self) -> list[str]:
        return [self.train.kpis[i] for i in self.input_index]

    @property
    def target_names(self) -> list[str]:
        return [self.train.kpis[i] for i in self.target_cols]
