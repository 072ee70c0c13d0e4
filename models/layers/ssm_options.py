"""Options every SSM layer of the zoo shares: the Δ init range and the optimizer treatment of SSM parameters.

Layer configs keep `dt_min`, `dt_max` and `ssm_lr` as their own (serialized) fields and validate them with
`SSMOptions.of(config)`; kernels take the resulting `SSMOptions`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from models.base import mark_ssm_param


@dataclass(frozen=True)
class SSMOptions:
    """Δ log-uniform in [dt_min, dt_max] at init; parameters tagged with `mark` get no weight decay and a
    learning rate capped at ssm_lr (None: the trainer's ssm_lr). Layers without a Δ (LRU) use ssm_lr only.

    Raises ValueError naming the field unless 0 < dt_min ≤ dt_max and ssm_lr is None or > 0."""

    dt_min: float = 1e-3
    dt_max: float = 1e-1
    ssm_lr: float | None = 1e-3

    def __post_init__(self) -> None:
        if not 0 < self.dt_min <= self.dt_max:
            raise ValueError(f"dt_min and dt_max must satisfy 0 < dt_min ≤ dt_max, got {self.dt_min}, {self.dt_max}")
        if self.ssm_lr is not None and self.ssm_lr <= 0:
            raise ValueError(f"ssm_lr must be > 0, got {self.ssm_lr}")

    @classmethod
    def of(cls, config: Any) -> SSMOptions:
        """The options of a layer config with fields ssm_lr and (where the layer has a Δ) dt_min, dt_max."""
        if hasattr(config, "dt_min"):
            return cls(config.dt_min, config.dt_max, config.ssm_lr)
        return cls(ssm_lr=config.ssm_lr)

    def log_dt(self, n: int) -> Tensor:
        """(n,) float64 log Δ, uniform in [log dt_min, log dt_max] (one torch.rand draw)."""
        lo, hi = math.log(self.dt_min), math.log(self.dt_max)
        return torch.rand(n, dtype=torch.float64) * (hi - lo) + lo

    def mark(self, p: nn.Parameter) -> nn.Parameter:
        """Tag p as an SSM parameter (own optimizer group: no weight decay, lr capped at ssm_lr)."""
        return mark_ssm_param(p, self.ssm_lr)
