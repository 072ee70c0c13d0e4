"""Temporal Fusion Transformer (Lim, Arık, Loeff & Pfister, "Temporal Fusion Transformers for Interpretable
Multi-horizon Time Series Forecasting", International Journal of Forecasting 37(4), 2021), made streaming.

A window model: the forecast made at t reads the window of the last W inputs x_{t−W+1 … t} (every input column,
the K targets among them) and runs the paper's network on it, d = d_model, D = d_input:

    window norm (use_norm):  x̃_{τ,j} = (x_{τ,j} − μ_j) / σ_j,  μ_j, σ_j = √(var_j + ε) over the window (ε = 1e-5)
    GLU(γ) = σ(W₄γ + b₄) ⊙ (W₅γ + b₅)
    GRN(a) = LayerNorm(S a + GLU(Dropout(η₁))),  η₁ = W₁η₂ + b₁,  η₂ = ELU(W₂a + b₂)
             (S = I, or a learned linear map where the output size differs from the input's: the selection GRN)
    gated skip (add & norm):  GAN(u, s) = LayerNorm(s + GLU(Dropout(u)))
    variable selection, at each window position τ:
        ξ_τ⁽ʲ⁾ = w_j x̃_{τ,j} + b_j ∈ ℝᵈ                          (its own linear map per input variable j)
        v_τ = softmax(GRN_v([ξ_τ⁽¹⁾; …; ξ_τ⁽ᴰ⁾]))  ∈ ℝᴰ            (GRN over the flattened embeddings, D·d → D)
        ξ̃_τ = Σ_j v_τ⁽ʲ⁾ · GRN_j(ξ_τ⁽ʲ⁾)                         (a GRN per variable, d → d)
    decoder inputs:   ξ̃_{t+n} = e_n, a learned embedding per future position n = 1 … H
    seq2seq LSTM:     φ_{t−W+1 … t}, (h, c) = LSTM_enc(ξ̃_{t−W+1 … t}; 0),   φ_{t+1 … t+H} = LSTM_dec(e_{1 … H}; (h, c))
    LSTM gated skip:  φ̃ = GAN(φ, ξ̃)                               (all W + H positions)
    static enrichment: θ = GRN_θ(φ̃)
    interpretable multi-head attention, queries the H future positions, keys all W + H, causal mask M:
        A_h = softmax(θ_F W_Q⁽ʰ⁾ (θ W_K⁽ʰ⁾)ᵀ / √d_a + M),   Ã = (1/m_H) Σ_h A_h,   β = Ã (θ W_V) W_H
        (m_H = n_heads, d_a = d / m_H, one value map W_V shared by the heads, no biases: the authors' code)
    δ = GAN(β, θ_F),   ψ = GRN_ψ(δ),   ψ̃ = GAN(ψ, φ̃_F)              (F: the H future positions)
    ŷ_{t+n} = W_y ψ̃_{t+n} + b_y,   with use_norm · σ_K + μ_K             (μ_K, σ_K: the targets' window statistics)

Choices where the paper's setting is not ours, and why:
- No static covariates: the static covariate encoders and their four contexts are dropped. In the GRNs a context
  c only adds W₃c to the bias b₂, and a learned constant context would be exactly that — redundant; the encoder
  LSTM starts from zero at the window's first input (the one non-redundant effect of a constant context, a learned
  initial state, is left out).
- No known future inputs: the decoder reads a learned embedding e_n per future position (H × d, no weight decay),
  which also stands in for ξ̃ in the LSTM gated skip at those positions; there is no future variable selection.
- Point forecasts: one linear output W_y (d → K, shared by the horizon steps, as the paper's per-quantile W_q) at
  each of the H decoder positions, trained by the project's loss; the paper's quantile heads and loss are not
  built. The K targets are input columns (target_index, required unless every input is a target).
- The window normalization (use_norm, on by default) is Time-Series-Library's TFT, not the paper's (which
  standardizes its inputs once, globally): every input column normalized by its window's statistics
  (Non-stationary Transformer / RevIN style), forecasts put back in the targets' units. On ETTh1 (96 → 96, 200
  Adam steps of 32 windows at lr 1e-3) it gave a validation MSE of 0.84 against 1.41 without it (the last value:
  1.34), the validation months being shifted in level. use_norm=False is the paper's network on the raw window.
  There is no last-value residual (models.base.ForecastHead is not used): the paper's output layer.
- Attention is evaluated for the H future queries only: the paper computes it at every position, but only the
  future ones reach an output (everything after it is position-wise), so the forecasts are the same.
- Dropout (the config's, default 0.1 as the paper's electricity setting) before every GLU — inside each GRN and
  in the three gated skips — on the averaged attention weights Ã and between stacked LSTM layers; training only.
- The LSTMs' forget-gate bias starts at 1 (Keras's unit_forget_bias, which the authors' code inherits); the rest
  keeps PyTorch's default init. n_layers stacks LSTM layers (the paper: 1); there is one attention layer (the
  paper's stack_size = 1).

Sizes: the authors' random search (google-research tft/libs/tft_model.py) draws d from {10, 20, 40, 80, 160, 240,
320}, heads from {1, 4}, dropout from 0.1 … 0.9; their electricity setting is d = 160, 4 heads, dropout 0.1. There
is no standard ETTh1 L = 96 setting for TFT (Time-Series-Library has its model but no TFT script). The
default here is d_model 64, 4 heads, 1 LSTM layer, dropout 0.1, W = 96: 297,514 parameters at d_input = n_targets
= 7, H = 96 (tests/models/test_tft.py). State per cell: a shift register of the last W − 1 inputs, (W − 1, D_in),
665 values (2,660 bytes in float32) at W = 96, D_in = 7.

Streaming (as models.baselines.itransformer): forward_with_state(x, state) forecasts at every position t from the
window x[t−W+1 … t], the positions before x[:, 0] taken from the state, oldest first. The zero state is zero
padding (in normalized units), so at t < W−1 the model sees a zero-padded window; at t ≥ W−1 it is exactly the
network above applied to x[t−W+1 … t]. forward runs all L windows as one batch: the variable selection is
position-wise, so without use_norm it runs once per input (B, W−1+L) and the windows of its outputs are unfolded,
(B·L, W, d) (in training a position's dropout masks are then shared by the windows that contain it); with use_norm
each window is normalized by its own statistics and selected on its own, (B·L, W, D). Everything from the LSTMs on
runs per window: memory O(B·L·(W + H)·d), so long sequences are better served by forward_last /
training_forward(last_only=True) (the window protocol), which run the last window only. step shifts the register by
one (torch.cat, pure) and runs the same network on its one window: the LSTMs restart at the window's first input,
so a step costs O(W·D·d² + (W + H)·n_layers·d² + H·(W + H)·d) and grows with W. The LSTMs run as nn.LSTM in both
paths (one kernel, so step ≡ forward), exported as the ONNX LSTM operator; no complex tensors, no FFT.
Interpretability: variable_importance(x) (the selection weights v of the last window) and attention_weights(x)
(its head-averaged attention Ã of the future positions).
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

NORM_EPS = 1e-5  # ε of the window normalization: σ = √(var + ε) (Time-Series-Library's value)


@dataclass
class TFTConfig(ModelConfig):
    window: int = 96  # lookback W: the encoder LSTM runs over the last W inputs
    d_model: int = 64  # the paper's hidden state size d (its electricity setting: 160; 64 keeps a CPU step cheap)
    n_heads: int = 4  # interpretable attention heads m_H (must divide d_model: d_attn = d_model / n_heads)
    n_layers: int = 1  # stacked LSTM layers of the encoder and of the decoder (the paper: 1)
    dropout: float = 0.1  # before every GLU, on the attention weights, between LSTM layers
    use_norm: bool = True  # per-window normalization of every input column (Time-Series-Library's TFT; not the paper)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.require_targets("TFT forecasts its target columns from a window of every input column")
        if self.window < 2:
            raise ValueError(f"window must be ≥ 2 (the state holds the last window − 1 inputs), got {self.window}")
        for name in ("d_model", "n_heads", "n_layers"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ValueError(f"n_heads must divide d_model, got d_model={self.d_model}, n_heads={self.n_heads}")
        if not isinstance(self.use_norm, bool):
            raise ValueError(f"use_norm must be true or false, got {self.use_norm!r}")


def normalize_window(w: Tensor, eps: float = NORM_EPS) -> tuple[Tensor, Tensor, Tensor]:
    """w (N, W, D) → (z, μ, σ): z = (w − μ) / σ (N, W, D) with each column's window mean μ and σ = √(var + ε),
    (N, 1, D) each (population variance)."""
    mu = w.mean(1, keepdim=True)  # (N, 1, D)
    centred = w - mu
    sigma = torch.sqrt((centred * centred).mean(1, keepdim=True) + eps)  # (N, 1, D)
    return centred / sigma, mu, sigma


class GLU(nn.Module):
    """GLU(γ) = σ(W₄γ + b₄) ⊙ (W₅γ + b₅): one Linear(d_in, 2·d_out), value half first, gate half second."""

    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.proj = nn.Linear(d_in, 2 * d_out)

    def forward(self, g: Tensor) -> Tensor:
        value, gate = self.proj(g).chunk(2, dim=-1)  # (..., d_out) each
        return torch.sigmoid(gate) * value


class GatedSkip(nn.Module):
    """The paper's gated skip connection (add & norm): GAN(u, s) = LayerNorm(s + GLU(Dropout(u)))."""

    def __init__(self, d: int, dropout: float):
        super().__init__()
        self.glu = GLU(d, d)
        self.norm = nn.LayerNorm(d)
        self.dropout = nn.Dropout(dropout)

    def forward(self, u: Tensor, skip: Tensor) -> Tensor:
        return self.norm(skip + self.glu(self.dropout(u)))


class GRN(nn.Module):
    """Gated residual network without context: LayerNorm(S a + GLU(Dropout(W₁ ELU(W₂a + b₂) + b₁))), hidden size
    d_hidden; S = I when d_out = d_in, else a learned Linear(d_in, d_out) (the authors' skip projection)."""

    def __init__(self, d_in: int, d_hidden: int, d_out: int, dropout: float):
        super().__init__()
        self.fc_in = nn.Linear(d_in, d_hidden)  # W₂, b₂
        self.fc_hidden = nn.Linear(d_hidden, d_hidden)  # W₁, b₁
        self.glu = GLU(d_hidden, d_out)  # W₄, b₄, W₅, b₅
        self.skip = nn.Linear(d_in, d_out) if d_in != d_out else None
        self.norm = nn.LayerNorm(d_out)
        self.dropout = nn.Dropout(dropout)

    def forward(self, a: Tensor) -> Tensor:
        """a (..., d_in) → (..., d_out)."""
        eta = self.fc_hidden(F.elu(self.fc_in(a)))  # η₁ (..., d_hidden)
        skip = a if self.skip is None else self.skip(a)  # (..., d_out)
        return self.norm(skip + self.glu(self.dropout(eta)))


class VariableSelection(nn.Module):
    """Embeds each of D scalar inputs with its own linear map to d, weighs them by softmax(GRN_v(flattened
    embeddings)) and sums their own GRNs' outputs: x (..., D) → (ξ̃ (..., d), selection weights v (..., D))."""

    def __init__(self, n_vars: int, d: int, dropout: float):
        super().__init__()
        self.n_vars, self.d = n_vars, d
        # ξ⁽ʲ⁾ = w_j x_j + b_j: D Linear(1, d) maps, stored as rows; nn.Linear(1, d)'s init U(−1, 1)
        self.embed_weight = nn.Parameter(torch.empty(n_vars, d).uniform_(-1.0, 1.0))  # (D, d)
        self.embed_bias = nn.Parameter(torch.empty(n_vars, d).uniform_(-1.0, 1.0))  # (D, d)
        self.select = GRN(n_vars * d, d, n_vars, dropout)  # D·d → D selection logits
        self.grns = nn.ModuleList(GRN(d, d, d, dropout) for _ in range(n_vars))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        xi = x.unsqueeze(-1) * self.embed_weight + self.embed_bias  # (..., D, d)
        v = torch.softmax(self.select(xi.flatten(-2)), dim=-1)  # (..., D)
        processed = torch.stack([grn(xi[..., j, :]) for j, grn in enumerate(self.grns)], dim=-1)  # (..., d, D)
        return (processed * v.unsqueeze(-2)).sum(-1), v  # (..., d), (..., D)


class InterpretableAttention(nn.Module):
    """The paper's interpretable multi-head attention: per-head queries and keys, one value map shared by the heads,
    the head-averaged weights Ã applied to the shared values, then W_H (d_attn → d). No biases (the authors' code)."""

    def __init__(self, d: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads, self.d_head = n_heads, d // n_heads
        self.query = nn.Linear(d, d, bias=False)  # W_Q⁽¹⁾ … W_Q⁽ᵐ⁾ side by side
        self.key = nn.Linear(d, d, bias=False)  # W_K⁽¹⁾ … W_K⁽ᵐ⁾
        self.value = nn.Linear(d, self.d_head, bias=False)  # W_V, shared
        self.out = nn.Linear(self.d_head, d, bias=False)  # W_H
        self.dropout = nn.Dropout(dropout)

    def _heads(self, t: Tensor) -> Tensor:
        return t.unflatten(-1, (self.n_heads, self.d_head)).transpose(1, 2)  # (N, T, d) → (N, h, T, dh)

    def forward(self, q_in: Tensor, kv_in: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """q_in (N, Q, d) queries, kv_in (N, T, d) keys and values, mask (Q, T) additive (0 / −inf) →
        output (N, Q, d) and the head-averaged attention weights Ã (N, Q, T) (rows sum to 1)."""
        scores = self._heads(self.query(q_in)) @ self._heads(self.key(kv_in)).transpose(-1, -2)  # (N, h, Q, T)
        weights = torch.softmax(scores * self.d_head**-0.5 + mask, dim=-1).mean(1)  # Ã (N, Q, T)
        return self.out(self.dropout(weights) @ self.value(kv_in)), weights  # (N, Q, d)


@register("tft")
class TFT(WindowModel):
    """Temporal Fusion Transformer forecaster. x (B, L, D_in) → y (B, L, H, K); y[:, t, n−1, k] forecasts target k at
    t + n from the window x[:, t−W+1 : t+1] of every input column (zero-padded, or the state, before x[:, 0])."""

    Config = TFTConfig
    time_major = True  # windows (N, W, D)

    def __init__(self, config: TFTConfig):
        super().__init__()
        self.config = c = config
        d, H, W = c.d_model, c.horizon, c.window
        self.target_index = list(c.target_index)
        self.eps = NORM_EPS  # of the window normalization (a plain attribute: tests may set it to 0)
        self.selection = VariableSelection(c.d_input, d, c.dropout)
        self.future_embed = nn.Parameter(torch.randn(H, d))  # e_n: the decoder's inputs, (H, d)
        lstm_dropout = c.dropout if c.n_layers > 1 else 0.0  # nn.LSTM warns about (and ignores) it for one layer
        self.encoder = nn.LSTM(d, d, num_layers=c.n_layers, batch_first=True, dropout=lstm_dropout)
        self.decoder = nn.LSTM(d, d, num_layers=c.n_layers, batch_first=True, dropout=lstm_dropout)
        self.lstm_skip = GatedSkip(d, c.dropout)
        self.enrichment = GRN(d, d, d, c.dropout)
        self.attention = InterpretableAttention(d, c.n_heads, c.dropout)
        self.attention_skip = GatedSkip(d, c.dropout)
        self.positionwise = GRN(d, d, d, c.dropout)
        self.final_skip = GatedSkip(d, c.dropout)
        self.head = nn.Linear(d, c.n_targets)  # W_y, b_y: shared by the H decoder positions
        with torch.no_grad():
            for lstm in (self.encoder, self.decoder):
                for k in range(c.n_layers):
                    getattr(lstm, f"bias_ih_l{k}")[d : 2 * d].fill_(1.0)  # forget gate: b_ih + b_hh = 1
                    getattr(lstm, f"bias_hh_l{k}")[d : 2 * d].zero_()
        # future query W−1+n (n = 1 … H) sees keys 0 … W−1+n of the W + H positions: additive mask (H, W+H)
        key = torch.arange(W + H)
        query = torch.arange(W, W + H).unsqueeze(-1)
        mask = torch.zeros(H, W + H).masked_fill(key > query, float("-inf"))
        self.register_buffer("causal_mask", mask, persistent=False)

    def param_groups(self, lr: float, weight_decay: float, ssm_lr: float = 1e-3) -> list[dict[str, Any]]:
        """The base groups, with the decoder's input embedding moved to the no-decay group (an embedding)."""
        groups = super().param_groups(lr, weight_decay, ssm_lr)
        for g in groups:
            if g["group"] == "decay":
                g["params"] = [p for p in g["params"] if p is not self.future_embed]
        no_decay = next((g for g in groups if g["group"] == "no_decay"), None)
        if no_decay is None:
            no_decay = {"params": [], "weight_decay": 0.0, "lr": lr, "group": "no_decay"}
            groups.append(no_decay)
        if self.future_embed.requires_grad:
            no_decay["params"].append(self.future_embed)
        return [g for g in groups if g["params"]]

    # -- the network on explicit windows ------------------------------------------------------------
    def decode(self, past: Tensor) -> tuple[Tensor, Tensor]:
        """Everything after the variable selection: the selected inputs ξ̃ (N, W, d) of each window → its
        forecasts in normalized units (N, H, K) and the head-averaged attention weights Ã (N, H, W + H)."""
        c = self.config
        # e (N, H, d): a copy per window, not a view of the parameter (under no_grad such a view has requires_grad
        # but no grad_fn, which module hooks — FlopCounterMode's tracker — refuse)
        future = self.future_embed.unsqueeze(0).repeat(past.shape[0], 1, 1)
        phi_past, hc = self.encoder(past)  # (N, W, d); h, c (n_layers, N, d): from zero at the window's start
        phi_future, _ = self.decoder(future, hc)  # (N, H, d), from the encoder's final state
        phi = self.lstm_skip(torch.cat([phi_past, phi_future], 1), torch.cat([past, future], 1))  # φ̃ (N, W+H, d)
        theta = self.enrichment(phi)  # θ (N, W+H, d)
        theta_future = theta[:, c.window :]  # (N, H, d)
        beta, attn = self.attention(theta_future, theta, self.causal_mask)  # (N, H, d), Ã (N, H, W+H)
        delta = self.attention_skip(beta, theta_future)  # δ (N, H, d)
        psi = self.final_skip(self.positionwise(delta), phi[:, c.window :])  # ψ̃ (N, H, d)
        return self.head(psi), attn  # (N, H, K), (N, H, W+H)

    def forecast_parts(self, w: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The TFT on explicit windows w (N, W, D_in), oldest first → forecasts (N, H, K), the variable selection
        weights v (N, W, D_in) and the head-averaged attention weights Ã of the future positions (N, H, W + H)."""
        if self.config.use_norm:
            w, mu, sigma = normalize_window(w, self.eps)  # (N, W, D), (N, 1, D), (N, 1, D)
        past, v = self.selection(w)  # ξ̃ (N, W, d), v (N, W, D)
        y, attn = self.decode(past)  # (N, H, K), (N, H, W+H)
        if self.config.use_norm:
            y = y * sigma[..., self.target_index] + mu[..., self.target_index]  # back to the targets' units
        return y, v, attn

    def forecast(self, w: Tensor) -> Tensor:
        """w (N, W, D_in) explicit windows → the targets' forecasts (N, H, K)."""
        return self.forecast_parts(w)[0]

    # -- streaming ------------------------------------------------------------------------------------

    def _last_window(self, x: Tensor, state: State | None) -> Tensor:
        seq = self._history(x, state)  # (B, W−1+L, D)
        return seq[:, seq.shape[1] - self.config.window :]  # (B, W, D)

    def forward_with_state(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """x (B, L, D_in), state (ring,) with ring (B, W−1, D_in) or None (zeros) → y (B, L, H, K), new state."""
        B, L, W = x.shape[0], x.shape[1], self.config.window
        seq = self._history(x, state)  # (B, W−1+L, D)
        if self.config.use_norm:  # each window normalized by its own statistics: select per window
            windows = seq.unfold(1, W, 1).transpose(-1, -2)  # (B, L, W, D): windows[:, t] ends at x[:, t]
            y = self.forecast(windows.flatten(0, 1))  # (B·L, H, K)
        else:  # the selection is position-wise: once per input, then the windows of its outputs
            selected = self.selection(seq)[0]  # ξ̃ (B, W−1+L, d)
            y = self.decode(selected.unfold(1, W, 1).transpose(-1, -2).flatten(0, 1))[0]  # (B·L, W, d) → (B·L, H, K)
        return y.unflatten(0, (B, L)), (seq[:, seq.shape[1] - (W - 1) :],)  # (B, L, H, K)

    # -- interpretability -------------------------------------------------------------------------------
    def variable_importance(self, x: Tensor, state: State | None = None) -> Tensor:
        """The variable selection weights of the window ending at x[:, -1] (preceded by the state, or zeros):
        (B, W, D_in), v[:, τ] the softmax weights of the D_in inputs at window position τ (oldest first)."""
        return self.forecast_parts(self._last_window(x, state))[1]

    def attention_weights(self, x: Tensor, state: State | None = None) -> Tensor:
        """The head-averaged attention weights Ã of the window ending at x[:, -1]: (B, H, W + H); row n−1 is the
        forecast position t + n over the window's W positions then the H decoder positions (zero after t + n)."""
        return self.forecast_parts(self._last_window(x, state))[2]
