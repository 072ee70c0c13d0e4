"""H3: Hungry Hungry Hippos (Fu, Dao et al., "Hungry Hungry Hippos: Towards Language Modeling with
State Space Models", 2023).

Per position, with q, k, v = W_q u, W_k u, W_v u (each (D,), split into n_heads heads of d_head):

    k̃ = act(ShiftSSM(k))                  per channel: k̃_t = Σ_{j<W} c_j k_{t-j}; act the identity (the paper)
    KV_t = DiagSSM(k̃_t ⊗ v_t)            per head h: a (d_head × d_head) matrix, one SSM channel per head
    y_t = W_o [q_tᵀ KV_t]_heads           per head: Σ_i q_t[i] · KV_t[i, :]

The shift SSM is an SSM whose A is the W×W shift matrix and B = e_1 (both fixed), so its state is the
last W inputs and its kernel is C itself: a learned causal FIR filter of length W = shift_size. It
remembers the last few k (a local "which token came before" memory); the diagonal SSM accumulates the gated
products k̃ ⊗ v over the long range, as linear attention would. With d_head = 1 (the paper's default and ours)
every channel is its own head and the outer product is the elementwise product k̃ ⊙ v.

The diagonal SSM is a sequence core (models.layers.cores, `ssm_layer`): S4D (the paper's, and the default: its
parameters under `kernel`, as in every h3 bundle), or S4 (DPLR), S5, the LRU or Mamba's selective SSM in its place,
on the n_heads channels (S5, LRU and the selective SSM couple the heads: MIMO). `activation` (the seed's H3 passes one
to the convolution that stands where our shift SSM is) acts on the shift SSM's output; the paper has none.
`bidirectional` (s4, s4d cores) adds an anti-causal kernel: offline use only, no state or step (RuntimeError).

Recurrent state, per cell:
    shift (D, W-1)                          the last W-1 inputs k_{t-W+1} … k_{t-1}, oldest first. The
                                            shift SSM's state x_t = (k_t, …, k_{t-W+1}) minus its oldest
                                            entry, which can no longer reach an output; stepped as a
                                            shift register with torch.cat.
    ssm   (d_head, d_head, *core state)     the diagonal SSM's state per (i, j) entry (S4D: re/im planes
                                            (2, N/2, n_heads)).

Numerics: parallel mode runs the shift SSM as a depthwise conv1d over [state, k] (exact: it is a
finite sum) and the diagonal SSM as its core does (S4D: by FFT with its initial state added in closed form);
recurrent mode runs both in real arithmetic, so the step exports to ONNX. The shift SSM has no D
skip: with B = e_1 fixed, c_0 already weighs the current input. Its A is nilpotent (all poles 0), so
it exposes no `discrete_poles`; only the diagonal SSM's poles are reported, |Ā| < 1 by construction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.base import State, StateField
from models.layers.cores import CORE_NAMES, CoreSpec, core_of, core_state_fields, make_core
from models.registry import register, seed_config
from models.stack import ACTIVATIONS, SequenceLayer, SSMForecaster, StackConfig, causal_conv_step, check_activation


@dataclass
class H3Config(StackConfig):
    CORES: ClassVar[tuple[str, ...]] = CORE_NAMES

    ssm_layer: str = "s4d"  # the diagonal SSM's core (models.layers.cores): s4 | s4d | s5 | lru | mamba
    d_state: int = 8  # N of the diagonal SSM (N/2 complex modes per head)
    shift_size: int | None = None  # W, the shift SSM's length; None: d_state (as in the paper)
    d_head: int = 1  # 1: every channel is a head (paper default); >1: multi-head H3
    init: str | None = None  # the core's A init (models.layers.ssm_init); None: the core's default (s4d: diag-lin)
    disc: str | None = None  # zoh | bilinear; None: the core's default (s4d: zoh)
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    ssm_lr: float = 1e-3
    bidirectional: bool = False  # s4 / s4d cores: an anti-causal kernel too (offline only: no state, no step)
    activation: str = "identity"  # on the shift SSM's output (models.stack.ACTIVATIONS)
    layer_options: dict[str, Any] = field(default_factory=dict)  # the core's own options (s5: blocks, lru: r_min …)

    def __post_init__(self) -> None:
        super().__post_init__()
        spec = CoreSpec.of(self, "h3", self.CORES)  # ValueError / TypeError naming a bad core option
        self.ssm_layer, self.init, self.disc = spec.name, spec.init, spec.disc
        check_activation(self.activation)
        if self.shift_size is not None and self.shift_size < 2:
            raise ValueError(f"shift_size must be ≥ 2 (or None for d_state), got {self.shift_size}")
        if self.d_head < 1 or self.d_model % self.d_head:
            raise ValueError(f"d_head must be ≥ 1 and divide d_model={self.d_model}, got {self.d_head}")


class ShiftSSM(nn.Module):
    """Shift SSM: x_t = S x_{t-1} + e_1 u_t, y_t = C x_t, with S the W×W shift matrix. u (B, L, H) → (B, L, H).

    Its kernel K_j = C S^j e_1 is C[:, j] for j < W and 0 beyond: C[:, j] weighs the input j steps back.
    """

    def __init__(self, d_model: int, size: int):
        super().__init__()
        if size < 2:
            raise ValueError(f"shift SSM size must be ≥ 2, got {size}")
        self.H, self.W = d_model, size
        # Var(y) ≈ Var(u) at init (the reference draws C ~ N(0, 1) plus a D skip, for W = 64 that grows k̃ 8×).
        self.C = nn.Parameter(torch.randn(d_model, size) / math.sqrt(size))  # (H, W)

    def kernel(self) -> Tensor:
        """K (H, W): K[:, j] = C S^j e_1, the weight of u_{t-j} in y_t."""
        return self.C

    def forward(
        self, u: Tensor, state: Tensor | None = None, return_state: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """u (B, L, H), state (B, H, W-1) (the last W-1 inputs, oldest first) or None (zero) → y (B, L, H), state."""
        uT = u.transpose(1, 2)  # (B, H, L)
        if state is None:
            state = uT.new_zeros(uT.shape[0], self.H, self.W - 1)
        window = torch.cat([state, uT], dim=-1)  # (B, H, W-1+L)
        # conv1d is a cross-correlation: the last tap meets the newest input, hence the flip.
        y = F.conv1d(window, self.kernel().flip(-1).unsqueeze(1), groups=self.H)  # (B, H, L)
        new_state = window[..., -(self.W - 1) :].contiguous() if return_state else None
        return y.transpose(1, 2), new_state

    def step(self, u_t: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """u_t (B, H), state (B, H, W-1) → y_t (B, H), the shifted register. Pure."""
        return causal_conv_step(state, u_t, self.kernel().flip(-1), None)


class H3Layer(SequenceLayer):
    """H3 block: q, k, v projections → shift SSM on k → k̃ ⊗ v → diagonal SSM (per head) → q · (…) → W_o.

    `H3Layer(H3Config(...))` or `H3Layer(d_model=…, ssm_layer="s4", …)`; u (B, L, D) → (B, L, D); state (shift
    (B, D, W-1), ssm (B, d_head, d_head, *core state)). The config rejects a d_head that does not divide d_model
    (ValueError). With a bidirectional core: no state, no step (RuntimeError).
    """

    Config = H3Config

    def __init__(self, config: H3Config | None = None, **fields: Any):
        super().__init__()
        c = self.layer_config(config, fields)
        d_model = c.d_model
        self.d_model, self.d_head, self.n_heads = d_model, c.d_head, d_model // c.d_head
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.shift = ShiftSSM(d_model, c.shift_size or c.d_state)
        self.act = ACTIVATIONS[c.activation]
        self.kernel = make_core(CoreSpec.of(c, "h3", c.CORES), self.n_heads)
        self.dropout = nn.Dropout(c.dropout)
        self.out = nn.Linear(d_model, d_model)

    def state_spec(self) -> list[StateField]:
        dh = self.d_head
        return [StateField("shift", (self.d_model, self.shift.W - 1)),
                *core_state_fields(self.kernel, "H3", "ssm", (dh, dh))]

    def _heads(self, x: Tensor) -> Tensor:
        """(..., D) with channels ordered (head, i) → (..., n_heads, d_head)."""
        return x.unflatten(-1, (self.n_heads, self.d_head))

    def forward(self, u: Tensor, state: State | None = None, return_state: bool = False) -> tuple[Tensor, State | None]:
        B, L, D = u.shape
        dh, nh = self.d_head, self.n_heads
        s_shift, s_ssm = (None, None) if state is None else state
        q, k, v = self.qkv(u).chunk(3, dim=-1)  # (B, L, D) each
        k, s_shift = self.shift(k, s_shift, return_state)  # (B, L, D)
        k = self.act(k)
        q, k, v = (self._heads(x).permute(0, 3, 1, 2) for x in (q, k, v))  # (B, d_head, L, n_heads)
        kv = k.unsqueeze(2) * v.unsqueeze(1)  # (B, i, j, L, n_heads): k̃_i v_j per head
        # the d_head² entries of each head share that head's kernel: fold them into the batch
        s_in = None if s_ssm is None else s_ssm.reshape(B * dh * dh, *self.kernel.state_shape)
        y, s_ssm = self.kernel(kv.reshape(B * dh * dh, L, nh), s_in, return_state)  # (B·dh², L, nh)
        y = (q.unsqueeze(2) * y.reshape(B, dh, dh, L, nh)).sum(1)  # (B, j, L, n_heads): Σ_i q_i KV_ij
        y = y.permute(0, 2, 3, 1).reshape(B, L, D)  # (B, L, D)
        y = self.out(self.dropout(y))
        if not return_state:
            return y, None
        return y, (s_shift, s_ssm.reshape(B, dh, dh, *self.kernel.state_shape))

    def step(self, u_t: Tensor, state: State) -> tuple[Tensor, State]:
        dh, nh = self.d_head, self.n_heads
        s_shift, s_ssm = state
        q, k, v = self.qkv(u_t).chunk(3, dim=-1)  # (B, D) each
        k, s_shift = self.shift.step(k, s_shift)  # (B, D)
        k = self.act(k)
        q, k, v = (self._heads(x).transpose(1, 2) for x in (q, k, v))  # (B, d_head, n_heads)
        kv = k.unsqueeze(2) * v.unsqueeze(1)  # (B, i, j, n_heads)
        y, s_ssm = self.kernel.step(kv.reshape(-1, nh), s_ssm.reshape(-1, *self.kernel.state_shape))  # (B·dh², nh)
        y = (q.unsqueeze(2) * y.reshape(-1, dh, dh, nh)).sum(1)  # (B, j, n_heads)
        y = self.out(self.dropout(y.transpose(1, 2).reshape(-1, self.d_model)))  # (B, D)
        return y, (s_shift, s_ssm.reshape(-1, dh, dh, *self.kernel.state_shape))


@register("h3")
class H3(SSMForecaster):
    """Stack of H3 layers with a multi-horizon head."""

    Config, Layer = H3Config, H3Layer


class H3Model(H3):
    """The seed's constructor, `H3Model(ssm_layer_class=S4Layer, d_model=…, d_state=…, num_layers=…,
    layer_kwargs={…})`: the H3 forecaster whose diagonal SSM is that layer class's core (S4Layer → s4), keywords
    with the seed's names (models.registry.seed_config). It is an `h3` (its config rebuilds it as H3)."""

    def __init__(self, ssm_layer_class: type | None, layer_kwargs: dict[str, Any] | None = None, **config: Any):
        super().__init__(seed_config(H3, core_of(ssm_layer_class), layer_kwargs, None, **config))
