"""Gated-MLP SSM block: the Gated State Space layer (GSS; Mehta, Gupta, Cutkosky, Neyshabur, "Long Range
Language Modeling via Gated State Spaces", 2022), the "gated MLP with an SSM on the gate" pattern.

Per position, u (D,) → y (D,):

    v  = act(W_v u)             (d_ff,)    the wide branch, as in a gated MLP (GSS: F = 4·D); act GELU (GSS)
    z  = act(W_z u)             (d_ssm,)   the narrow branch (GSS: H = D/4) that the SSM runs on
    z' = SSM(z)                 (d_ssm,)   the core (D skip included): S4D by default, as GSS's DSS
    y  = W_o (v ⊙ W_up z')      (D,)       W_up: d_ssm → d_ff, no activation

The SSM runs on the narrow branch only, which is what makes GSS cheap: the recurrent state is the core's over
d_ssm channels ((2, N/2, d_ssm) per cell for S4D), not (D, …). Everything but the SSM is position-wise, so the
block's only state is the SSM's, and its step is the core's step (real arithmetic, exportable) between two MLPs.

The SSM is a sequence core (models.layers.cores, `ssm_layer`): s4d (default; its parameters under `kernel`, as in
every gated_mlp bundle), s4, s5, lru, mamba, or none: the identity, the seed's pure gated MLP (ssm_layer=None), a
position-wise block without state. d_ff = expand·d_model when d_ff is not given (the seed's expand_factor), else
4·d_model. `bidirectional` (s4, s4d cores) adds an anti-causal kernel: offline use only, no state or step
(RuntimeError).

Numerics: the core's (S4D: FFT convolution plus the closed-form initial-state term in parallel mode; the same
recurrence in real arithmetic in recurrent mode; |Ā| < 1 by construction).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import Tensor, nn

from models.base import State, StateField
from models.layers.cores import CORE_NAMES, CoreSpec, core_of, core_state_fields, make_core
from models.registry import register, seed_config
from models.stack import ACTIVATIONS, SequenceLayer, SSMForecaster, StackConfig, check_activation


@dataclass
class GatedMLPConfig(StackConfig):
    CORES: ClassVar[tuple[str, ...]] = (*CORE_NAMES, "none")

    ssm_layer: str = "s4d"  # the SSM branch's core (models.layers.cores); "none": no SSM (a pure gated MLP)
    d_ff: int | None = None  # wide (gate) branch; None: expand·d_model
    expand: float | None = None  # d_ff = int(expand·d_model) when d_ff is None; None: 4 (GSS's F = 4E)
    d_ssm: int | None = None  # narrow (SSM) branch; None: max(1, d_model // 4) (GSS's H = E/4)
    d_state: int = 16
    init: str | None = None  # the core's A init (models.layers.ssm_init); None: the core's default (s4d: diag-lin)
    disc: str | None = None  # zoh | bilinear; None: the core's default (s4d: zoh)
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    ssm_lr: float = 1e-3
    bidirectional: bool = False  # s4 / s4d cores: an anti-causal kernel too (offline only: no state, no step)
    activation: str = "gelu"  # of both branches (models.stack.ACTIVATIONS)
    layer_options: dict[str, Any] = field(default_factory=dict)  # the core's own options (s5: blocks, lru: r_min …)

    def __post_init__(self) -> None:
        super().__post_init__()
        spec = CoreSpec.of(self, "gated_mlp", self.CORES)  # ValueError / TypeError naming a bad core option
        self.ssm_layer, self.init, self.disc = spec.name, spec.init, spec.disc
        check_activation(self.activation)
        for name in ("d_ff", "d_ssm"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be ≥ 1 (or None for the GSS default), got {value}")
        if self.expand is not None and int(self.expand * self.d_model) < 1:
            raise ValueError(f"expand must give d_ff = int(expand·d_model) ≥ 1, got expand={self.expand}")

    @property
    def widths(self) -> tuple[int, int]:
        """(d_ff, d_ssm) with the GSS defaults filled in."""
        d_ff = self.d_ff if self.d_ff is not None else int((self.expand or 4) * self.d_model)
        d_ssm = self.d_ssm if self.d_ssm is not None else max(1, self.d_model // 4)
        return d_ff, d_ssm


class GatedMLPLayer(SequenceLayer):
    """GSS block: u (B, L, D) → W_o(act(W_v u) ⊙ W_up SSM(act(W_z u))) (B, L, D); state: the core's over d_ssm
    channels (S4D: (B, 2, N/2, d_ssm); none with ssm_layer "none").

    `GatedMLPLayer(GatedMLPConfig(...))` or `GatedMLPLayer(d_model=…, …)`, widths (d_ff, d_ssm) from
    `config.widths`."""

    Config = GatedMLPConfig

    def __init__(self, config: GatedMLPConfig | None = None, **fields: Any):
        super().__init__()
        c = self.layer_config(config, fields)
        d_model, (d_ff, d_ssm) = c.d_model, c.widths
        self.d_model, self.d_ff, self.d_ssm = d_model, d_ff, d_ssm
        self.act = ACTIVATIONS[c.activation]
        self.to_v = nn.Linear(d_model, d_ff)
        self.to_z = nn.Linear(d_model, d_ssm)
        self.kernel = make_core(CoreSpec.of(c, "gated_mlp", c.CORES), d_ssm)
        self.up = nn.Linear(d_ssm, d_ff)
        self.dropout = nn.Dropout(c.dropout)
        self.out = nn.Linear(d_ff, d_model)

    def state_spec(self) -> list[StateField]:
        return core_state_fields(self.kernel, "the gated MLP")

    def _gate(self, u: Tensor, z: Tensor) -> Tensor:
        """u (..., D) the block input, z (..., d_ssm) the SSM output → (..., D)."""
        v = self.act(self.to_v(u))  # (..., d_ff)
        return self.out(self.dropout(v * self.up(z)))

    def forward(self, u: Tensor, state: State | None = None, return_state: bool = False) -> tuple[Tensor, State | None]:
        z = self.act(self.to_z(u))  # (B, L, d_ssm)
        z, s = self.kernel(z, state[0] if state else None, return_state)  # (B, L, d_ssm)
        return self._gate(u, z), ((() if s is None else (s,)) if return_state else None)

    def step(self, u_t: Tensor, state: State) -> tuple[Tensor, State]:
        z = self.act(self.to_z(u_t))  # (B, d_ssm)
        z, s = self.kernel.step(z, state[0] if state else None)  # (B, d_ssm)
        return self._gate(u_t, z), (() if s is None else (s,))


@register("gated_mlp")
class GatedMLP(SSMForecaster):
    """Stack of gated-MLP SSM (GSS) blocks with a multi-horizon head."""

    Config, Layer = GatedMLPConfig, GatedMLPLayer


class GatedMLPModel(GatedMLP):
    """The seed's constructor, `GatedMLPModel(ssm_layer_class=S5Layer | None, d_model=…, d_state=…, num_layers=…,
    expand_factor=…, layer_kwargs={…})`: the gated-MLP forecaster whose SSM branch is that layer class's core
    (None: no SSM), keywords with the seed's names. It is a `gated_mlp` (its config rebuilds it as GatedMLP)."""

    def __init__(self, ssm_layer_class: type | None, layer_kwargs: dict[str, Any] | None = None, **config: Any):
        super().__init__(seed_config(GatedMLP, core_of(ssm_layer_class), layer_kwargs, None, **config))
