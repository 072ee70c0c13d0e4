"""Mamba: selective state-space block (Gu & Dao, "Mamba: Linear-Time Sequence Modeling with Selective State
Spaces", 2023), in plain PyTorch, laid out like the reference mamba_simple.py.

With d_inner = E = expand·d_model channels and N states per channel, one block computes

    x, z    = in_proj(u)                                   (B, L, E) each
    x       = SiLU(causal depthwise conv1d of width d_conv over x)
    y       = SSM(x)                                       the selective SSM (models.layers.selective)
    out     = out_proj(y ⊙ SiLU(z))

The selective SSM (Δ, B, C from x_proj(x); h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t B_t x_t; y_t = C_t · h_t + D ⊙ x_t) is
models.layers.selective's. A = -exp(A_log) (E, N) is real and negative by default (S4D-real init: A_n = -n,
n = 1 … N, per channel) and Δ = softplus(·) > 0, so every Ā_t = exp(Δ_t A) lies in (0, 1): the recurrence is stable
for any input. `init` (models.layers.ssm_init; the seed's "inv", "lin", "legs") other than "real" makes A complex
(N/2 conjugate-pair modes, state (2, N/2, E)). Ā is input-dependent, so there is no fixed pole: `discrete_poles()`
reports the poles at the bias Δ (dt_proj's input-dependent part at zero), exp(A·softplus(dt_bias)).

The state is (conv_state (d_conv−1, E): the last d_conv−1 conv inputs, oldest first; ssm_state (N, E)), the
channel axis E last: onnxruntime broadcasts along a contiguous E several times faster than along the short
N or d_conv axis, which makes the exported step about 2× faster at 1,000 cells.
Parallel mode prepends the conv state to the sequence (zero state = the reference's zero padding) and
runs the selective scan from the given ssm state (chunk by chunk, `chunk_size`); `step` is O(1) in history.

Composition (`ssm_layer`, models.layers.cores): the selective SSM is the default core, and then the layer is
MambaLayer, the Mamba mixer proper, with the SSM's parameters (x_proj, dt_proj, A_log, D) on the block itself as in the
reference. Any other core (s4, s4d, s5, lru) makes the layer a MambaBlock: the same in-projection, causal conv,
gate and out-projection around that core on the E channels, state (conv, the core's). `activation` replaces both
SiLUs (the seed's MambaBlock has the conv's and the gate's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from models.base import State, StateField
from models.layers.cores import CORE_NAMES, CoreSpec, core_of, core_state_fields, make_core
from models.layers.selective import SelectiveParams, auto_dt_rank, selective_scan, selective_scan_ref
from models.layers.ssm_options import SSMOptions
from models.registry import register, seed_config
from models.stack import ACTIVATIONS, SequenceLayer, SSMForecaster, StackConfig, check_activation

__all__ = ["Mamba", "MambaBlock", "MambaConfig", "MambaLayer", "MambaModel", "selective_scan", "selective_scan_ref"]


@dataclass
class MambaConfig(StackConfig):
    CORES: ClassVar[tuple[str, ...]] = CORE_NAMES

    ssm_layer: str = "mamba"  # the block's core (models.layers.cores): mamba (selective) | s4 | s4d | s5 | lru
    d_state: int = 8
    d_conv: int = 4
    expand: float = 2  # d_inner = int(expand · d_model)
    init: str | None = None  # the core's A init (models.layers.ssm_init); None: the core's default (mamba: real)
    disc: str | None = None  # None: the core's default (mamba: zoh, the only one)
    dt_rank: int | str = "auto"  # "auto": ceil(d_model / 16)
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    dt_init_floor: float = 1e-4
    conv_bias: bool = True
    bias: bool = False  # bias of in_proj and out_proj
    ssm_lr: float = 1e-3  # lr cap of A_log and the Δ bias
    chunk_size: int | None = 64  # selective-scan chunk along L (None: whole sequence)
    bidirectional: bool = False  # s4 / s4d cores: an anti-causal kernel too (offline only: no state, no step)
    activation: str = "silu"  # of the conv output and the gate (models.stack.ACTIVATIONS)
    layer_options: dict[str, Any] = field(default_factory=dict)  # another core's own options (s5: blocks …)

    def __post_init__(self) -> None:
        super().__post_init__()
        spec = CoreSpec.of(self, "mamba", self.CORES)  # ValueError / TypeError naming a bad core option
        self.ssm_layer, self.init, self.disc = spec.name, spec.init, spec.disc
        if self.ssm_layer == "mamba" and self.layer_options:
            raise TypeError("the selective SSM's options are MambaConfig fields (dt_rank, dt_init_floor, chunk_size), "
                            f"not layer_options; got layer_options {sorted(self.layer_options)}")
        check_activation(self.activation)
        if self.d_state < 1:
            raise ValueError(f"d_state must be ≥ 1, got {self.d_state}")
        if self.d_conv < 2:
            raise ValueError(f"d_conv must be ≥ 2 (the conv state keeps d_conv − 1 inputs), got {self.d_conv}")
        if self.expand <= 0 or int(self.expand * self.d_model) < 1:
            raise ValueError(f"expand must give d_inner = int(expand·d_model) ≥ 1, got expand={self.expand}")
        if self.dt_rank != "auto" and (isinstance(self.dt_rank, str | bool) or int(self.dt_rank) < 1):
            raise ValueError(f"dt_rank must be 'auto' or an int ≥ 1, got {self.dt_rank!r}")
        SSMOptions.of(self)  # ValueError naming a bad dt_min / dt_max / ssm_lr
        if self.dt_init_floor < 0:
            raise ValueError(f"dt_init_floor must be ≥ 0, got {self.dt_init_floor}")
        if self.chunk_size is not None and self.chunk_size < 1:
            raise ValueError(f"chunk_size must be None or ≥ 1, got {self.chunk_size}")


class MambaBlock(SequenceLayer):
    """The Mamba block around a sequence core (models.layers.cores): u (B, L, D) → (B, L, D); state (conv_state
    (B, d_conv−1, E), the core's state), E = expand·d_model. `MambaBlock(MambaConfig(ssm_layer="s4d", ...))`.

    The stack supplies the pre-norm residual around it and scales out_proj by 1/sqrt(n_layers) (Mamba.make_layer).
    Subclasses replace the core through build_core / run_core / step_core / core_fields (MambaLayer)."""

    Config = MambaConfig

    def __init__(self, config: MambaConfig | None = None, **fields: Any):
        super().__init__()
        c = self.layer_config(config, fields)
        d_model, d_conv = c.d_model, c.d_conv
        self.d_model, self.d_conv = d_model, d_conv
        self.d_inner = E = int(c.expand * d_model)
        self.act = ACTIVATIONS[c.activation]
        self.in_proj = nn.Linear(d_model, 2 * E, bias=c.bias)
        # padding 0: the causal left context is the conv state (zeros for a fresh stream), prepended in forward
        self.conv1d = nn.Conv1d(E, E, d_conv, groups=E, bias=c.conv_bias)
        self.build_core(c)
        self.out_proj = nn.Linear(E, d_model, bias=c.bias)

    # -- the core ------------------------------------------------------------------------------
    def build_core(self, c: MambaConfig) -> None:
        self.kernel = make_core(CoreSpec.of(c, "mamba", c.CORES), self.d_inner)

    def core_fields(self) -> list[StateField]:
        return core_state_fields(self.kernel, "the Mamba block")

    def run_core(self, x: Tensor, h0: Tensor | None, return_state: bool) -> tuple[Tensor, Tensor | None]:
        """The core over the conv output x (B, L, E) from h0 (None: zero) → y (B, L, E), final state."""
        return self.kernel(x, h0, return_state)

    def step_core(self, x: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        return self.kernel.step(x, h)

    # -- the block -----------------------------------------------------------------------------
    def state_spec(self) -> list[StateField]:
        return [StateField("conv", (self.d_conv - 1, self.d_inner)), *self.core_fields()]

    def forward(self, u: Tensor, state: State | None = None, return_state: bool = False) -> tuple[Tensor, State | None]:
        """u (B, L, D), state (conv (B, d_conv−1, E), ssm) or None (zero) → y (B, L, D), final state."""
        Bsz, L, _ = u.shape
        x, z = self.in_proj(u).chunk(2, dim=-1)  # (B, L, E) each
        if state is None:
            conv_state, h0 = u.new_zeros(Bsz, self.d_conv - 1, self.d_inner), None
        else:
            conv_state, h0 = state
        xc = torch.cat([conv_state, x], dim=1)  # (B, d_conv−1+L, E)
        x = self.act(self.conv1d(xc.transpose(1, 2))).transpose(1, 2)  # (B, L, E)
        y, h = self.run_core(x, h0, return_state)  # (B, L, E)
        out = self.out_proj(y * self.act(z))
        if not return_state:
            return out, None
        return out, (xc[:, L:], h)  # the last d_conv−1 conv inputs, even when L < d_conv−1

    def step(self, u_t: Tensor, state: State) -> tuple[Tensor, State]:
        """u_t (B, D), state → y_t (B, D), new state. Pure, real, no data-dependent control flow."""
        conv_state, h = state  # (B, d_conv−1, E), core state
        xz = self.in_proj(u_t)  # (B, 2E)
        x, z = xz[:, : self.d_inner], xz[:, self.d_inner :]  # (B, E) each; constant slices (chunk exports as
        # shape arithmetic)
        window = torch.cat([conv_state, x.unsqueeze(1)], dim=1)  # (B, d_conv, E), oldest first
        x = (window * self.conv1d.weight[:, 0].t()).sum(1)  # (B, E)
        if self.conv1d.bias is not None:
            x = x + self.conv1d.bias
        y, h = self.step_core(self.act(x), h)  # (B, E)
        return self.out_proj(y * self.act(z)), (window[:, 1:], h)


class MambaLayer(SelectiveParams, MambaBlock):
    """The Mamba mixer: the block around the selective SSM, whose parameters (x_proj, dt_proj, A_log, D) sit on the
    block as in the reference: `MambaLayer(MambaConfig(...))`, or with the seed's keywords
    `MambaLayer(d_model=64, d_state=16, expand_factor=2, init_method="inv")`.
    u (B, L, D) → (B, L, D); state (conv_state (B, d_conv−1, E), ssm_state (B, N, E)), E = expand·d_model.

    The stack also scales out_proj by 1/sqrt(n_layers) (Mamba.make_layer); a layer built alone is not scaled."""

    Config, core = MambaConfig, "mamba"

    def build_core(self, c: MambaConfig) -> None:
        if c.ssm_layer != "mamba":
            raise ValueError(f"MambaLayer runs the selective SSM (ssm_layer 'mamba'); for {c.ssm_layer!r} use "
                             "MambaBlock (or create_model, which picks it)")
        self.chunk_size = c.chunk_size
        self.init_selective(self.d_inner, self.d_inner, c.d_state, auto_dt_rank(c.d_model, c.dt_rank), c.init,
                            SSMOptions.of(c), c.dt_init_floor)

    def core_fields(self) -> list[StateField]:
        return [StateField("ssm", self.selective_state_shape)]

    def run_core(self, x: Tensor, h0: Tensor | None, return_state: bool) -> tuple[Tensor, Tensor | None]:
        return self.selective_forward(x, h0, self.chunk_size)

    def step_core(self, x: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        return self.selective_step(x, h)


@register("mamba")
class Mamba(SSMForecaster):
    """Stack of Mamba mixers (MambaLayer; a MambaBlock around any other core) with a multi-horizon head."""

    Config, Layer = MambaConfig, MambaLayer

    def make_layer(self, i: int) -> nn.Module:
        layer = (MambaLayer if self.config.ssm_layer == "mamba" else MambaBlock)(self.config)
        # the reference's prenorm-residual rescale (GPT-2 style): out_proj / sqrt(n_layers) keeps the
        # residual stream's variance independent of depth at init
        with torch.no_grad():
            layer.out_proj.weight.div_(math.sqrt(self.config.n_layers))
        return layer


class MambaModel(Mamba):
    """The seed's constructor, `MambaModel(ssm_layer_class=MambaLayer, d_model=…, d_state=…, num_layers=…, d_conv=…,
    expand_factor=…, layer_kwargs={…})`: the Mamba forecaster around that layer class's core (MambaLayer: the
    selective SSM: the Mamba mixer), keywords with the seed's names. It is a `mamba` (its config rebuilds it as
    Mamba)."""

    def __init__(self, ssm_layer_class: type | None, layer_kwargs: dict[str, Any] | None = None, **config: Any):
        super().__init__(seed_config(Mamba, core_of(ssm_layer_class), layer_kwargs, None, **config))
