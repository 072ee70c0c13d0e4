"""Deep SSM stack: input projection → N pre-norm residual blocks of a sequence layer → norm → head.

Every SSM of the zoo (S4, S4D, S5, Mamba, H3, LRU, gated-MLP) is this stack around its own layer.
A sequence layer (`SequenceLayer`) is built from its model's config, `Layer(config)`, maps (B, L, D) → (B, L, D)
and has the same three streaming methods as a model:

    forward(u, state=None, return_state=False) -> (y, state | None)   # u (B, L, D)
    step(u_t, state) -> (y_t, state)                                  # u_t (B, D)
    state_spec() -> list[StateField]                                  # per-cell shapes

A layer is built from its config, `Layer(config)`, or, as the seed's layers are, from keywords (the seed's names
included): `S4Layer(d_model=64, d_state=16, init_method="legs")`.

A new SSM is one file in models/layers/: its config, its layer, and
`@register("name") class Name(SSMForecaster): Config, Layer = NameConfig, NameLayer`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Self

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.base import ForecastHead, ModelConfig, State, StateField, StreamingModel, split_state
from models.registry import seed_fields

ACTIVATIONS = {"gelu": F.gelu, "silu": F.silu, "relu": F.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
               "identity": lambda x: x}


@dataclass
class StackConfig(ModelConfig):
    d_model: int = 32
    n_layers: int = 2
    norm: str = "layer"  # "layer" | "rms"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.norm not in ("layer", "rms"):
            raise ValueError(f"norm must be 'layer' or 'rms', got {self.norm!r}")
        if self.d_model < 1 or self.n_layers < 1:
            raise ValueError("d_model and n_layers must be ≥ 1")


def check_activation(name: str) -> None:
    """ValueError unless `name` is one of ACTIVATIONS."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")


class SequenceLayer(nn.Module):
    """A layer of the stack: `Layer(config)` with config a `Layer.Config` (a StackConfig), or `Layer(**fields)`.

    `Layer.build(d_model, **fields)` builds that config from keywords (its fields and defaults; TypeError names
    the valid fields, ValueError a bad value) and the layer from it. `core` names the sequence core the layer class
    stands for where the seed passes layer classes (`H3Model(ssm_layer_class=S4Layer)`: "s4")."""

    Config: ClassVar[type[StackConfig]] = StackConfig
    core: ClassVar[str | None] = None

    @classmethod
    def build(cls, d_model: int, **fields: Any) -> Self:
        return cls(cls.Config.from_dict({"d_model": d_model, **fields}))

    @classmethod
    def layer_config(cls, config: StackConfig | None, fields: dict[str, Any]) -> StackConfig:
        """`config` itself, or the config built from keywords with the seed's names (init_method, expand_factor, …)."""
        if config is None:
            return cls.Config.from_dict(seed_fields(fields))
        if fields:
            raise TypeError(f"{cls.__name__} takes a config or keywords, not both (got {sorted(fields)})")
        return config

    def state_spec(self) -> list[StateField]:
        """Names and per-cell shapes of the layer's state tensors."""
        raise NotImplementedError

    def forward(self, u: Tensor, state: State | None = None, return_state: bool = False) -> tuple[Tensor, State | None]:
        """u (B, L, D), state or None (zero) → y (B, L, D), final state (None unless return_state)."""
        raise NotImplementedError

    def step(self, u_t: Tensor, state: State) -> tuple[Tensor, State]:
        """u_t (B, D), state → y_t (B, D), new state. Pure (traces to ONNX)."""
        raise NotImplementedError


class SSMForecaster(StreamingModel):
    """The stack; subclasses set `Config` (derived from StackConfig) and `Layer` (a SequenceLayer built from it),
    or override `make_layer(i)`."""

    Config = StackConfig
    Layer: ClassVar[type[SequenceLayer]]

    def __init__(self, config: StackConfig):
        super().__init__()
        self.config = config
        d = config.d_model
        self.encoder = nn.Linear(config.d_input, d)
        norm = nn.LayerNorm if config.norm == "layer" else nn.RMSNorm
        self.layers = nn.ModuleList(self.make_layer(i) for i in range(config.n_layers))
        self.norms = nn.ModuleList(norm(d) for _ in range(config.n_layers))
        self.dropout = nn.Dropout(config.dropout)
        self.final_norm = norm(d)
        self.head = ForecastHead(d, config.horizon, config.n_targets, config.target_index)

    def make_layer(self, i: int) -> nn.Module:
        """Layer i of the stack: `Layer(config)`."""
        return self.Layer(self.config)

    def _layer_sizes(self) -> list[int]:
        return [len(layer.state_spec()) for layer in self.layers]

    def state_spec(self) -> list[StateField]:
        return [
            StateField(f"layer{i}.{f.name}", f.shape) for i, layer in enumerate(self.layers) for f in layer.state_spec()
        ]

    def _run(self, x: Tensor, state: State | None, return_state: bool) -> tuple[Tensor, State]:
        h = self.encoder(x)  # (B, L, d)
        states = split_state(state, self._layer_sizes()) if state is not None else [None] * len(self.layers)
        new_states: list[Tensor] = []
        for layer, norm, s in zip(self.layers, self.norms, states):
            z, s_out = layer(norm(h), state=s, return_state=return_state)
            h = h + self.dropout(z)
            if return_state:
                new_states.extend(s_out)
        y = self.head(self.final_norm(h), x)  # (B, L, H, K)
        return y, tuple(new_states)

    def forward(self, x: Tensor, state: State | None = None) -> Tensor:
        return self._run(x, state, return_state=False)[0]

    def forward_with_state(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        if state is None:
            state = self.init_state(x.shape[0], x.device, x.dtype)
        return self._run(x, state, return_state=True)

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        h = self.encoder(x_t)  # (B, d)
        new_states: list[Tensor] = []
        for layer, norm, s in zip(self.layers, self.norms, split_state(state, self._layer_sizes())):
            z, s_out = layer.step(norm(h), s)
            h = h + self.dropout(z)
            new_states.extend(s_out)
        return self.head(self.final_norm(h), x_t), tuple(new_states)


def glu_linear(linear: nn.Linear, x: Tensor) -> Tensor:
    """F.glu(linear(x)) as two half-width products on slices of the same weight: identical result and
    parameters, but the exported graph has two GEMMs instead of one GEMM and a split (a full pass less)."""
    h = linear.out_features // 2
    w, b = linear.weight, linear.bias
    return F.linear(x, w[:h], b[:h]) * torch.sigmoid(F.linear(x, w[h:], b[h:]))


def causal_conv_step(conv_state: Tensor, u_t: Tensor, weight: Tensor, bias: Tensor | None) -> tuple[Tensor, Tensor]:
    """One step of a causal depthwise conv1d with kernel width W.

    conv_state (B, D, W-1) holds the previous W-1 inputs (oldest first), u_t (B, D), weight (D, W).
    Returns y_t (B, D) and the shifted conv state. Pure (no in-place writes).
    """
    window = torch.cat([conv_state, u_t.unsqueeze(-1)], dim=-1)  # (B, D, W)
    y = (window * weight).sum(-1)
    if bias is not None:
        y = y + bias
    return y, window[..., 1:]
