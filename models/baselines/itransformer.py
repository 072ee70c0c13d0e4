"""iTransformer (Liu, Hu, Zhang, Wu, Wang, Ma & Long, "iTransformer: Inverted Transformers Are Effective for Time
Series Forecasting", ICLR 2024), made streaming.

Inverted tokens: each input variate d (every input column, covariates included) is one token, its whole lookback
window w_d = (x_{t−W+1, d}, …, x_{t, d}) embedded at once; the Transformer's attention then mixes variates, not
time steps, and its FFN and LayerNorm act on each variate's series representation:

    z_d = (w_d − μ_d) / σ_d,   μ_d = mean(w_d),   σ_d = √(var(w_d) + ε)      (use_norm; else z_d = w_d)
    h⁰_d = E z_d + e                                                             (E: d_model × W, shared by d)
    hˡ = LN(hˡ⁻¹ + Attn(hˡ⁻¹)),   hˡ = LN(hˡ + FFN(hˡ))       l = 1 … n_layers   (attention across the D tokens)
    ŷ_{t+1 … t+H, d} = (P · LN(h_d) + p) · σ_d + μ_d                            (P: H × d_model, shared by d)

and the forecasts of the target columns (target_index) are returned. This is the reference's encoder: post-norm
layers (LayerNorm after each residual), GELU FFN of width d_ff, a final LayerNorm, PyTorch's default init, the
config's dropout after the embedding, on the attention weights, the residual branches and the FFN's hidden
layer. There is no positional embedding over variates (the paper has none): the model is equivariant to any
permutation of the input columns (tests/models/test_itransformer.py). The per-variate normalization is the
paper's (from the Non-stationary Transformer), computed on each window itself — population variance, ε = 1e-5
inside the root, so an all-zero window (the zero state) stays finite; unlike the reference μ is not detached,
which changes only gradients with respect to the inputs, never those of the parameters. There is no last-value
residual (models.base.ForecastHead is not used): this is iTransformer's own formulation. Sizes: the paper uses
d_model from 128 to 512 (ETT: 128–256, larger sets 512) and 2–4 layers; the project default is d_model 128,
8 heads, 2 layers, d_ff 2·d_model — about 0.29 M parameters at W = H = 96, whatever the number of variates.

Streaming: forward_with_state(x, state) forecasts at every position t from the window x[t−W+1 … t] of every input
column, the positions before x[:, 0] taken from the state, a shift register of the last W−1 inputs of each
column, (D_in, W−1) per cell, oldest first. The zero state is zero padding (in normalized units), so forward(x)
at t < W−1 sees a zero-padded window; at t ≥ W−1 it is exactly the reference model applied to x[t−W+1 … t].
forward unfolds all windows at once, (B, L, D, W), and runs them as one batch of B·L token sets (B·L, D,
d_model); step shifts the register by one (torch.cat, pure) and runs the same computation on its one window:
O(n_layers·(D²·d_model + D·d_model·d_ff) + D·d_model·(W + H)) per step. forward_last and
training_forward(last_only=True) (the window protocol) compute the last window only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.base import ModelConfig
from models.baselines.window import WindowModel
from models.registry import register

NORM_EPS = 1e-5  # ε of the per-window normalization: σ = √(var + ε) (the reference's value)


@dataclass
class ITransformerConfig(ModelConfig):
    window: int = 96  # lookback W: each variate token is the last W values of its input column
    d_model: int = 128  # width of a variate token (the paper: 128–512; smaller here for KPI cells)
    n_heads: int = 8  # attention heads across variates (must divide d_model)
    n_layers: int = 2  # encoder layers
    d_ff: int | None = None  # FFN width; None: 2·d_model (256 at the default d_model)
    use_norm: bool = True  # the paper's per-variate normalization over each window (de-normalized forecasts)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.require_targets("iTransformer forecasts every input variate and returns the targets'")
        if self.d_ff is None:
            self.d_ff = 2 * int(self.d_model)
        if self.window < 2:
            raise ValueError(f"window must be ≥ 2 (the state holds the last window − 1 inputs), got {self.window}")
        for name in ("d_model", "n_heads", "n_layers", "d_ff"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model must be a multiple of n_heads, got d_model={self.d_model}, "
                             f"n_heads={self.n_heads}")
        if not isinstance(self.use_norm, bool):
            raise ValueError(f"use_norm must be true or false, got {self.use_norm!r}")


def normalize_windows(w: Tensor, eps: float = NORM_EPS) -> tuple[Tensor, Tensor, Tensor]:
    """w (..., W) → (z, μ, σ): z = (w − μ) / σ (..., W), with each window's mean μ and σ = √(var + ε), (..., 1)
    each (population variance: the reference's unbiased=False)."""
    mu = w.mean(-1, keepdim=True)  # (..., 1)
    centred = w - mu  # (..., W)
    sigma = torch.sqrt((centred * centred).mean(-1, keepdim=True) + eps)  # (..., 1)
    return centred / sigma, mu, sigma


class InvertedEncoderLayer(nn.Module):
    """Post-norm Transformer encoder layer over variate tokens: h ← LN(h + Attn(h)), then h ← LN(h + FFN(h)) with a
    GELU FFN of width d_ff. Full (non-causal) attention: every variate attends to every variate."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.0):
        super().__init__()
        self.n_heads, self.d_head, self.p_drop = n_heads, d_model // n_heads, dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.fc1 = nn.Linear(d_model, d_ff)
        self.fc2 = nn.Linear(d_ff, d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def _heads(self, t: Tensor) -> Tensor:
        return t.unflatten(-1, (self.n_heads, self.d_head)).transpose(1, 2)  # (N, D, d) → (N, h, D, dh)

    def forward(self, h: Tensor) -> Tensor:
        """h (N, D, d_model) → (N, D, d_model): N independent sets of D variate tokens."""
        q, k, v = self.qkv(h).chunk(3, dim=-1)  # (N, D, d) each
        p = self.p_drop if self.training else 0.0
        a = F.scaled_dot_product_attention(self._heads(q), self._heads(k), self._heads(v), dropout_p=p)  # (N, h, D, dh)
        h = self.norm1(h + self.dropout(self.out(a.transpose(1, 2).flatten(2))))  # (N, D, d)
        f = self.fc2(self.dropout(F.gelu(self.fc1(h))))  # (N, D, d)
        return self.norm2(h + self.dropout(f))


@register("itransformer")
class ITransformer(WindowModel):
    """iTransformer forecaster. x (B, L, D_in) → y (B, L, H, K); y[:, t, h−1, k] forecasts target k at t + h from
    the windows x[:, t−W+1 : t+1, d] of every input column d (zero-padded, or the state, before x[:, 0])."""

    Config = ITransformerConfig
    time_major = False  # windows (N, D, W)

    def __init__(self, config: ITransformerConfig):
        super().__init__()
        self.config = c = config
        self.target_index = list(c.target_index)
        self.eps = NORM_EPS  # of the per-window normalization (a plain attribute: tests set it to 0)
        self.embed = nn.Linear(c.window, c.d_model)  # a whole window → one variate token
        self.dropout = nn.Dropout(c.dropout)
        self.layers = nn.ModuleList(
            InvertedEncoderLayer(c.d_model, c.n_heads, c.d_ff, c.dropout) for _ in range(c.n_layers)
        )
        self.final_norm = nn.LayerNorm(c.d_model)
        self.proj = nn.Linear(c.d_model, c.horizon)  # a variate token → that variate's H forecasts

    def forecast(self, w: Tensor) -> Tensor:
        """The iTransformer formula on explicit windows: w (N, D, W), every input column's last W values → the
        targets' forecasts (N, H, K)."""
        if self.config.use_norm:
            w, mu, sigma = normalize_windows(w, self.eps)  # (N, D, W), (N, D, 1), (N, D, 1)
        h = self.dropout(self.embed(w))  # (N, D, d): one token per variate
        for layer in self.layers:
            h = layer(h)  # (N, D, d): attention across variates
        y = self.proj(self.final_norm(h[:, self.target_index]))  # (N, K, H): the target variates only
        if self.config.use_norm:
            y = y * sigma[:, self.target_index] + mu[:, self.target_index]  # back to each target's own units
        return y.transpose(1, 2)  # (N, H, K)
