"""PatchTST baseline (Nie, Nguyen, Sinthong & Kalagnanam, "A Time Series is Worth 64 Words: Long-term
Forecasting with Transformers", ICLR 2023), made streaming.

Channel-independent: target channel k is forecast from its own last W inputs w = (x_{t−W+1}, …, x_t) only,
every channel through the same network (the paper's PatchTST/42-64 supervised model):

    RevIN (revin=True):  μ = mean(w),  σ = √(var(w) + ε) (biased variance, ε = 1e-5),  w ← (w − μ) / σ
    patching:            w padded at the end with S copies of w_{W−1} ("padding_patch = end"), then patches
                         p_n = w[nS : nS + P], n = 0 … N−1, N = ⌊(W − P)/S⌋ + 2      (P = patch_len, S = stride)
    embedding:           z_n = W_p p_n + b_p + E_pos[n]                 (W_p: d × P, E_pos: N × d, learned)
    encoder:             n_layers post-norm Transformer layers over the N patch tokens (no mask: the window is
                         in the past already), each  z ← Norm(z + MHA(z)),  z ← Norm(z + FFN(z)),
                         FFN = Linear(d, d_ff) → GELU → Linear(d_ff, d)
    flatten head:        ŷ = W_h · flatten(z_0 … z_{N−1}) + b_h                       (W_h: H × N·d)
    RevIN⁻¹:             ŷ ← ŷ · σ + μ

Norm is BatchNorm over the feature axis, as the paper (norm="batch", the default; norm="layer": LayerNorm).
BatchNorm keeps the streaming contract where it is checked and served: in eval mode it is a fixed per-feature
affine map (running statistics), so a token's normalization does not depend on the other windows of the batch
and step ≡ forward holds exactly, in exports too. In train mode it normalizes with the statistics of the batch
of windows (the paper's training); a step in train mode is then neither pure (it updates the running
statistics) nor equal to forward, so train with forward / training_forward, serve in eval mode. RevIN has no
affine parameters (the paper's scripts run it with affine = 0) and uses ε, so an all-zero window (the zero
state) stays finite: σ = √ε. Not taken from the reference code: its residual attention (scores carried from
layer to layer) — the paper describes a vanilla encoder. The head flattens patch-major (z_0, z_1, …), a
permutation of the reference's feature-major order, i.e. the same family of maps. The config's dropout acts
after the positional embedding, on both residual branches and inside the FFN (no attention or head dropout,
as the paper's defaults). There is no last-value residual (models.base.ForecastHead is not used): RevIN
handles the level, as in the paper.

Streaming (as models.baselines.dlinear): forward_with_state(x, state) forecasts at every position t from the
window x[t−W+1 … t] of each target channel, the positions before x[:, 0] taken from the state, a shift register
of the last W−1 inputs of each target channel, (K, W−1) per cell, oldest first. The zero state is zero padding
(in normalized units), so at t < W−1 the model sees a zero-padded window; at t ≥ W−1 it is exactly the paper's
model applied to x[t−W+1 … t]. forward unfolds all windows at once, (B, L, K, W), and runs them as one batch of
B·L·K patch sequences, (B·L·K, N, d): memory O(B·L·K·N·d), so long sequences are better served by forward_last
/ training_forward(last_only=True) (the window protocol), which run the last window only. step shifts the
register by one (torch.cat, pure) and runs the same computation on the one window per channel:
O(K·(N·P·d + n_layers·(N²·d + N·d·d_ff) + N·d·H)) per step, and the state grows with W.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.base import ModelConfig, State
from models.baselines.window import WindowModel
from models.registry import register

REVIN_EPS = 1e-5  # ε of RevIN's σ = √(var + ε), the paper's value
NORMS = ("batch", "layer")  # PatchTSTConfig.norm


def n_patches(window: int, patch_len: int, stride: int) -> int:
    """N, the patches of a window of W values padded at the end by S copies of its last one: ⌊(W − P)/S⌋ + 2."""
    return (window - patch_len) // stride + 2


def patch_index(window: int, patch_len: int, stride: int) -> Tensor:
    """(N, P) int64: patch n, offset j reads w[min(nS + j, W − 1)]. Clamping at W − 1 is the end padding (the
    padded positions W … W+S−1 all hold w_{W−1}); one constant gather exports where unfold of a padded window
    does not (ONNX needs a static size along the unfolded axis)."""
    start = torch.arange(n_patches(window, patch_len, stride)).unsqueeze(-1) * stride  # (N, 1)
    return (start + torch.arange(patch_len)).clamp_max(window - 1)  # (N, P)


def patchify(w: Tensor, index: Tensor) -> Tensor:
    """Windows w (M, W), index (N, P) from patch_index → patches (M, N, P)."""
    return w[:, index]


def revin_stats(w: Tensor) -> tuple[Tensor, Tensor]:
    """Windows w (..., W) → μ, σ (..., 1): the window mean and √(biased variance + ε)."""
    mu = w.mean(-1, keepdim=True)
    var = (w - mu).pow(2).mean(-1, keepdim=True)
    return mu, torch.sqrt(var + REVIN_EPS)


class TokenNorm(nn.Module):
    """The encoder's normalization of tokens z (M, N, d) over the feature axis: BatchNorm1d (statistics over
    every token of the batch, per feature; a fixed affine map in eval mode) or LayerNorm (per token)."""

    def __init__(self, d_model: int, kind: str):
        super().__init__()
        self.kind = kind
        self.norm = nn.BatchNorm1d(d_model) if kind == "batch" else nn.LayerNorm(d_model)

    def forward(self, z: Tensor) -> Tensor:
        if self.kind == "batch":
            return self.norm(z.flatten(0, 1)).view_as(z)  # tokens as the batch: (M·N, d)
        return self.norm(z)


class PatchTSTEncoderLayer(nn.Module):
    """Post-norm Transformer encoder layer over patch tokens: z ← Norm(z + MHA(z)), z ← Norm(z + FFN(z))."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float, norm: str):
        super().__init__()
        self.n_heads, self.d_head = n_heads, d_model // n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.norm_attn = TokenNorm(d_model, norm)
        self.fc1 = nn.Linear(d_model, d_ff)
        self.fc2 = nn.Linear(d_ff, d_model)
        self.norm_ff = TokenNorm(d_model, norm)
        self.dropout = nn.Dropout(dropout)

    def _heads(self, t: Tensor) -> Tensor:
        return t.unflatten(-1, (self.n_heads, self.d_head)).transpose(1, 2)  # (M, N, d) → (M, h, N, dh)

    def forward(self, z: Tensor) -> Tensor:
        """z (M, N, d) → (M, N, d). Full (unmasked) attention among the N patches of each window."""
        q, k, v = self.qkv(z).chunk(3, dim=-1)  # (M, N, d) each
        a = F.scaled_dot_product_attention(self._heads(q), self._heads(k), self._heads(v))  # (M, h, N, dh)
        z = self.norm_attn(z + self.dropout(self.out(a.transpose(1, 2).flatten(2))))
        ff = self.fc2(self.dropout(F.gelu(self.fc1(z))))  # (M, N, d)
        return self.norm_ff(z + self.dropout(ff))


@dataclass
class PatchTSTConfig(ModelConfig):
    window: int = 96  # lookback W: each forecast reads the last W values of its channel
    patch_len: int = 16  # P, values per patch
    stride: int = 8  # S, step between patch starts (≤ P: every value is in a patch)
    d_model: int = 128
    n_heads: int = 16  # must divide d_model
    n_layers: int = 3
    d_ff: int = 256
    revin: bool = True  # per-window instance normalization, forecast de-normalized
    norm: str = "batch"  # encoder normalization: "batch" (the paper's BatchNorm) or "layer" (LayerNorm)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.require_targets("PatchTST forecasts each target channel from its own past")
        if self.window < 2:
            raise ValueError(f"window must be ≥ 2, got {self.window}")
        if not 1 <= self.patch_len <= self.window:
            raise ValueError(f"patch_len must be in [1, window={self.window}], got {self.patch_len}")
        if not 1 <= self.stride <= self.patch_len:
            raise ValueError(f"stride must be in [1, patch_len={self.patch_len}] (a larger stride skips inputs), "
                             f"got {self.stride}")
        for name in ("d_model", "n_heads", "n_layers", "d_ff"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ValueError(f"n_heads must divide d_model, got d_model={self.d_model}, n_heads={self.n_heads}")
        if not isinstance(self.revin, bool):
            raise ValueError(f"revin must be a bool, got {self.revin!r}")
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")


@register("patchtst")
class PatchTST(WindowModel):
    """PatchTST forecaster. x (B, L, D_in) → y (B, L, H, K); y[:, t, h−1, k] forecasts target k at t + h from
    x[:, t−W+1 : t+1, target_index[k]] (zero-padded, or the state, before x[:, 0])."""

    Config = PatchTSTConfig
    time_major = False  # windows (N, K, W): the target channels

    def __init__(self, config: PatchTSTConfig):
        super().__init__()
        self.config = c = config
        self.target_index = list(c.target_index)
        self.n_patches = n_patches(c.window, c.patch_len, c.stride)
        self.patch_embed = nn.Linear(c.patch_len, c.d_model)
        self.pos_embed = nn.Parameter(torch.empty(self.n_patches, c.d_model).uniform_(-0.02, 0.02))  # (N, d)
        self.dropout = nn.Dropout(c.dropout)
        self.encoder = nn.ModuleList(
            PatchTSTEncoderLayer(c.d_model, c.n_heads, c.d_ff, c.dropout, c.norm) for _ in range(c.n_layers)
        )
        self.head = nn.Linear(self.n_patches * c.d_model, c.horizon)
        self.register_buffer("patch_index", patch_index(c.window, c.patch_len, c.stride), persistent=False)

    def register_columns(self, x: Tensor) -> Tensor:
        """Channel-independent: the register keeps the target channels only, (..., K)."""
        return x[..., self.target_index]

    @property
    def register_width(self) -> int:
        return self.config.n_targets

    def param_groups(self, lr: float, weight_decay: float, ssm_lr: float = 1e-3) -> list[dict[str, Any]]:
        """The base groups, with the positional embedding moved to the no-decay group (an embedding)."""
        groups = super().param_groups(lr, weight_decay, ssm_lr)
        for g in groups:
            if g["group"] == "decay":
                g["params"] = [p for p in g["params"] if p is not self.pos_embed]
        no_decay = next((g for g in groups if g["group"] == "no_decay"), None)
        if no_decay is None:
            no_decay = {"params": [], "weight_decay": 0.0, "lr": lr, "group": "no_decay"}
            groups.append(no_decay)
        if self.pos_embed.requires_grad:
            no_decay["params"].append(self.pos_embed)
        return [g for g in groups if g["params"]]

    def forecast_windows(self, w: Tensor) -> Tensor:
        """The PatchTST formula on a batch of single-channel windows: w (M, W) → forecasts (M, H)."""
        c = self.config
        if c.revin:
            mu, sigma = revin_stats(w)  # (M, 1) each
            w = (w - mu) / sigma
        patches = patchify(w, self.patch_index)  # (M, N, P)
        z = self.dropout(self.patch_embed(patches) + self.pos_embed)  # (M, N, d)
        for layer in self.encoder:
            z = layer(z)
        y = self.head(z.flatten(1))  # (M, N·d) → (M, H)
        return y * sigma + mu if c.revin else y

    def forecast(self, w: Tensor) -> Tensor:
        """Explicit windows of every target channel: w (..., K, W) → (..., H, K)."""
        K, W = w.shape[-2], w.shape[-1]
        y = self.forecast_windows(w.reshape(-1, W))  # (M, H), M = prod(...)·K
        return y.reshape(*w.shape[:-2], K, y.shape[-1]).transpose(-1, -2)

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        """x_t (B, D_in), state (ring,) → y_t (B, H, K), new state. Pure (in eval mode, see the docstring)."""
        K, W = self.config.n_targets, self.config.window
        window = torch.cat([state[0], x_t[:, self.target_index].unsqueeze(-1)], dim=-1)  # (B, K, W)
        y = self.forecast_windows(window.reshape(-1, W))  # (B·K, H)
        return y.view(-1, K, self.config.horizon).transpose(1, 2), (window[..., 1:],)  # (B, H, K)
