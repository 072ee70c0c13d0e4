"""Input framing shared by every model of the zoo: streaming-exact normalization and channel independence.

Two config choices every model has (fields of models.base.ModelConfig); `build_model` wraps the model's own
network (the "core") in `FramedModel` when either is on, so no model carries framing code of its own:

- normalization = "causal": RevIN's idea (Kim et al., ICLR 2022: remove each series' level and scale, put it
  back on the forecast) in a form the recurrent step reproduces exactly. Per input channel, exponentially
  weighted sums with rate α = norm_rate (effective memory ≈ 1/α samples), bias-corrected by their weight:

      n_t = (1 − α) n_{t−1} + 1,   m_t = (1 − α) m_{t−1} + x_t,   q_t = (1 − α) q_{t−1} + x_t²
      μ_t = m_t / n_t,   σ_t = √(max(q_t / n_t − μ_t², 0) + ε)

  The core sees x̃_t = γ (x_t − μ_t) / σ_t + β (γ, β learned per channel when norm_affine) — each input
  normalized with the statistics known at its time — and its forecast made at t is mapped back with the
  statistics of t: ŷ_t = (ỹ_t − β) / γ · σ_t + μ_t (target channels). The sums are state, (3, D) per cell;
  the parallel mode computes them by a scan (models.scan). A zero state is a fresh start: the statistics
  are those of the samples seen so far.
- channels = "independent": one shared core per target channel, channels as batch (PatchTST / DLinear
  style). Channel k's core input is [x_{target k} ; covariates], the covariates being the input columns that
  are not targets (KPI forecasting with exogenous inputs: every target's network sees them; ETT, where every
  column is a target, has none). The core forecasts its own channel (n_targets 1, last-value residual on it);
  its state is kept per channel, (K, …) per cell.

Both are exact in step mode (tests/models/test_contract.py runs the contract with them on).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import torch
from torch import Tensor, nn

from models.base import ModelConfig, State, StateField, StreamingModel
from models.scan import linear_scan

NORM_EPS = 1e-5


def is_framed(config: ModelConfig) -> bool:
    return config.normalization != "none" or config.channels != "mixed"


def build_model(cls: type[StreamingModel], config: ModelConfig) -> StreamingModel:
    """`cls(config)`, wrapped in FramedModel when the config asks for normalization or channel independence."""
    return FramedModel(cls, config) if is_framed(config) else cls(config)


def core_model(model: StreamingModel) -> StreamingModel:
    """The network a model frames (itself when it is not framed)."""
    return model.core if isinstance(model, FramedModel) else model


class CausalNorm(nn.Module):
    """Exponentially weighted causal statistics of D channels (module docstring). State (B, 3, D): n, m, q."""

    def __init__(self, d: int, rate: float, affine: bool):
        super().__init__()
        self.rate = float(rate)
        self.weight = nn.Parameter(torch.ones(d)) if affine else None
        self.bias = nn.Parameter(torch.zeros(d)) if affine else None

    def scan(self, x: Tensor, stats0: Tensor) -> Tensor:
        """x (B, L, D), stats0 (B, 3, D) → statistics after each position (B, L, 3, D)."""
        b = torch.stack([torch.ones_like(x), x, x * x], 2)  # (B, L, 3, D)
        a = torch.full((1, 1, 1, 1), 1.0 - self.rate, dtype=x.dtype, device=x.device)
        return linear_scan(a, b, stats0, dim=1)

    def update(self, x_t: Tensor, stats: Tensor) -> Tensor:
        """x_t (B, D), stats (B, 3, D) → statistics after x_t (B, 3, D)."""
        return (1.0 - self.rate) * stats + torch.stack([torch.ones_like(x_t), x_t, x_t * x_t], 1)

    @staticmethod
    def loc_scale(stats: Tensor) -> tuple[Tensor, Tensor]:
        """stats (..., 3, D) → μ, σ (..., D)."""
        n, m, q = stats.unbind(-2)
        n = n.clamp_min(1e-12)
        mu = m / n
        return mu, torch.sqrt((q / n - mu * mu).clamp_min(0.0) + NORM_EPS)

    def normalize(self, x: Tensor, mu: Tensor, sigma: Tensor) -> Tensor:
        z = (x - mu) / sigma
        return z * self.weight + self.bias if self.weight is not None else z

    def denormalize(self, y: Tensor, mu: Tensor, sigma: Tensor, cols: list[int]) -> Tensor:
        """y (..., K) in normalized units of input columns `cols`, mu / sigma broadcastable (..., D)."""
        if self.weight is not None:
            y = (y - self.bias[cols]) / (self.weight[cols] + NORM_EPS * NORM_EPS)
        return y * sigma[..., cols] + mu[..., cols]


class FramedModel(StreamingModel):
    """A model of the zoo with framing (module docstring): the same contract as the model it frames.

    `config` is the whole config (framing fields included) and `name` the framed model's registry name, so
    bundles rebuild it (models.registry.model_from_config). Extra keyword arguments of forward / step (MS³M's
    objective and active mask, (B, …)) pass through to the core, repeated per channel when channels are
    independent."""

    def __init__(self, cls: type[StreamingModel], config: ModelConfig):
        super().__init__()
        self.config = config
        self.name = cls.name
        c = config
        if c.target_index is None:
            raise ValueError(f"{cls.name}: normalization / channel independence need target_index (which input "
                             f"columns the {c.n_targets} targets are; d_input is {c.d_input})")
        self.targets = list(c.target_index)
        self.covariates = [d for d in range(c.d_input) if d not in self.targets]
        self.independent = c.channels == "independent"
        self.norm = CausalNorm(c.d_input, c.norm_rate, c.norm_affine) if c.normalization == "causal" else None
        core_fields: dict[str, Any] = {"normalization": "none", "channels": "mixed"}
        if self.independent:
            core_fields.update(d_input=1 + len(self.covariates), n_targets=1, target_index=(0,))
        self.core = cls(dataclasses.replace(c, **core_fields))
        self.sequential_forward = cls.sequential_forward

    # -- state -----------------------------------------------------------------------------------
    def state_spec(self) -> list[StateField]:
        spec = [StateField("norm.stats", (3, self.config.d_input))] if self.norm is not None else []
        K = self.config.n_targets
        for f in self.core.state_spec():
            spec.append(StateField(f"core.{f.name}", (K, *f.shape) if self.independent else f.shape))
        return spec

    def _split(self, state: State | None, batch: int) -> tuple[Tensor | None, State | None]:
        """Framed state → (norm stats (B, 3, D) or None, the core's state, per channel rows when independent)."""
        if state is None:
            return None, None
        stats, core = (state[0], state[1:]) if self.norm is not None else (None, state)
        if self.independent:
            core = tuple(s.reshape(batch * self.config.n_targets, *s.shape[2:]) for s in core)
        return stats, tuple(core)

    def _join(self, stats: Tensor | None, core: State, batch: int) -> State:
        if self.independent:
            core = tuple(s.reshape(batch, self.config.n_targets, *s.shape[1:]) for s in core)
        return ((stats,) if stats is not None else ()) + tuple(core)

    # -- input and output framing ----------------------------------------------------------------
    def _frame_in(self, x: Tensor) -> Tensor:
        """x (B, [L,] D) normalized → core input: (B·K, [L,] 1 + C) when independent, else x."""
        if not self.independent:
            return x
        B, K = x.shape[0], self.config.n_targets
        own = x[..., self.targets].movedim(x.dim() - 1, 1).unsqueeze(-1)  # (B, K, [L,] 1); positive dims: the
        # ONNX exporter writes a negative movedim axis into Transpose's perm as it is
        cov = x[..., self.covariates].unsqueeze(1).expand(B, K, *x.shape[1:-1], len(self.covariates))
        return torch.cat([own, cov], -1).flatten(0, 1)  # (B·K, [L,] 1 + C)

    def _frame_out(self, y: Tensor, batch: int, mu: Tensor | None, sigma: Tensor | None, time_axis: bool) -> Tensor:
        """Core forecasts (N, [L,] …, H, Kc) → (B, [L,] …, H, K) in the model's units. mu / sigma: (B, [L,] D)."""
        if self.independent:
            y = y.squeeze(-1).unflatten(0, (batch, self.config.n_targets))  # (B, K, [L,] …, H)
            y = y.movedim(1, y.dim() - 1)  # (B, [L,] …, H, K)
        if self.norm is None:
            return y
        lead = 2 if time_axis else 1  # mu's leading axes: (B, L) or (B,)
        shape = (*mu.shape[:lead], *([1] * (y.dim() - lead - 1)), mu.shape[-1])
        return self.norm.denormalize(y, mu.reshape(shape), sigma.reshape(shape), self.targets)

    def _per_channel(self, kw: dict[str, Any]) -> dict[str, Any]:
        if not self.independent:
            return kw
        K = self.config.n_targets
        return {k: v.repeat_interleave(K, 0) if isinstance(v, Tensor) else v for k, v in kw.items()}

    # -- the contract ----------------------------------------------------------------------------
    def _parallel(self, x: Tensor, state: State | None) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor | None]:
        """x (B, L, D) → (core input, stats after the chunk, μ, σ (B, L, D))."""
        if self.norm is None:
            return self._frame_in(x), None, None, None
        stats0 = state[0] if state is not None else x.new_zeros(x.shape[0], 3, x.shape[-1])
        stats = self.norm.scan(x, stats0)  # (B, L, 3, D)
        mu, sigma = CausalNorm.loc_scale(stats)
        return self._frame_in(self.norm.normalize(x, mu, sigma)), stats[:, -1], mu, sigma

    def forward_with_state(self, x: Tensor, state: State | None = None, **kw: Any) -> tuple[Tensor, State]:
        B = x.shape[0]
        if state is None:
            state = self.init_state(B, x.device, x.dtype)
        u, stats, mu, sigma = self._parallel(x, state)
        y, core = self.core.forward_with_state(u, self._split(state, B)[1], **self._per_channel(kw))
        return self._frame_out(y, B, mu, sigma, True), self._join(stats, core, B)

    def forward(self, x: Tensor, state: State | None = None, **kw: Any) -> Tensor:
        B = x.shape[0]
        u, _, mu, sigma = self._parallel(x, state)
        y = self.core(u, self._split(state, B)[1], **self._per_channel(kw))
        return self._frame_out(y, B, mu, sigma, True)

    def step(self, x_t: Tensor, state: State, **kw: Any) -> tuple[Tensor, State]:
        B = x_t.shape[0]
        stats, core = self._split(state, B)
        mu = sigma = None
        if self.norm is not None:
            stats = self.norm.update(x_t, stats)
            mu, sigma = CausalNorm.loc_scale(stats)
            x_t = self.norm.normalize(x_t, mu, sigma)
        y, core = self.core.step(self._frame_in(x_t), core, **self._per_channel(kw))
        return self._frame_out(y, B, mu, sigma, False), self._join(stats, core, B)

    def forward_last(self, x: Tensor, state: State | None = None, **kw: Any) -> Tensor:
        B = x.shape[0]
        u, _, mu, sigma = self._parallel(x, state)
        y = self.core.forward_last(u, self._split(state, B)[1], **self._per_channel(kw))  # (N, H, Kc)
        last = (mu[:, -1], sigma[:, -1]) if mu is not None else (None, None)
        return self._frame_out(y, B, *last, False)

    def training_forward(self, x: Tensor, state: State | None = None,
                         last_only: bool = False) -> tuple[Tensor, dict[str, Any], State]:
        """The core's training forward, framed; auxiliary member forecasts (weight, (N, L, E, H, Kc)) are framed
        like the forecast (see StreamingModel.training_forward)."""
        B = x.shape[0]
        if state is None:
            state = self.init_state(B, x.device, x.dtype)
        u, stats, mu, sigma = self._parallel(x, state)
        y, aux, core = self.core.training_forward(u, self._split(state, B)[1], last_only)
        if last_only and mu is not None:
            mu, sigma = mu[:, -1:], sigma[:, -1:]
        aux = {k: (v[0], self._frame_out(v[1], B, mu, sigma, True)) if isinstance(v, tuple) else v
               for k, v in aux.items()}
        return self._frame_out(y, B, mu, sigma, True), aux, self._join(stats, core, B)

    def param_groups(self, lr: float, weight_decay: float, ssm_lr: float = 1e-3) -> list[dict[str, Any]]:
        """The core's groups, plus the normalization's affine parameters (no weight decay)."""
        groups = self.core.param_groups(lr, weight_decay, ssm_lr)
        if self.norm is not None and self.norm.weight is not None:
            groups.append({"params": [self.norm.weight, self.norm.bias], "weight_decay": 0.0, "lr": lr,
                           "group": "norm"})
        return groups

    def training_event(self, step: int, plateau: bool) -> dict[str, Any] | None:
        return self.core.training_event(step, plateau)

    def describe(self) -> dict[str, Any]:
        return self.core.describe()

    def export_form(self) -> StreamingModel:
        """The same framing around the core's export form; the framed config takes the core's changed fields
        (NSM's compacted node count), the framing's own fields stay."""
        served = self.core.export_form()
        if served is self.core:
            return self
        framed = copy.copy(self)
        framed._modules = dict(self._modules)  # a shallow copy shares the module dict: give the copy its own
        framed.core = served
        own = {"normalization", "channels", "d_input", "n_targets", "target_index"}
        changed = {f.name: getattr(served.config, f.name) for f in dataclasses.fields(served.config)
                   if f.name not in own and getattr(served.config, f.name) != getattr(self.config, f.name)}
        framed.config = dataclasses.replace(self.config, **changed)
        return framed


__all__ = ["CausalNorm", "FramedModel", "build_model", "core_model", "is_framed"]
