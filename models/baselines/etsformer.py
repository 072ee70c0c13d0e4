"""ETSformer (Woo, Liu, Sahoo, Kumar & Hoi, "ETSformer: Exponential Smoothing Transformers for Time-series
Forecasting", arXiv 2202.01381, 2022), made streaming.

One window X ∈ ℝ^{W×D} (the last W inputs, every input column) → forecasts of the K targets at t+1 … t+H. With
α = sigmoid(·) a learned smoothing rate per head (or per target), the exponential-smoothing weights over the window
are the W×W lower-triangular matrix A(α)_{ij} = (1 − α) α^{i−j} (j ≤ i) and the initial-state weights a(α)_i =
α^{i+1}: ES(v)_i = a_i v₀ + Σ_j A_ij v_j is the recursion s_i = α s_{i−1} + (1 − α) v_i from s_{−1} = v₀, computed
exactly as that matmul (no FFT convolution). With F = ⌊(W − 1)/2⌋ candidate frequencies k = 1 … F (DC and, for even
W, Nyquist dropped, as the reference's low_freq = 1):

    embedding    Z⁰ = Conv1d_k3(X), circular over the window, no bias, no positional embedding; E⁰ = X[:, targets]
    layer n = 1 … N, on the residual Z = Zⁿ⁻¹ (W×d) and the level E = Eⁿ⁻¹ (W×K):
      season     C_k = Σ_τ Z_τ cos(2πkτ/W),  S_k = Σ_τ Z_τ sin(2πkτ/W)          (per channel, k = 1 … F)
                 p_k = C_k² + S_k² = |rfft_k|²;  w_k = 1 on the top_k p_k per channel (torch.topk), 0 elsewhere,
                 but where the top_k-th and the next power, p₍ₖ₎ ≥ p₍ₖ₊₁₎, are within the tie band β·p₍ₖ₎:
                 w_k = clamp(½ + (p_k − (p₍ₖ₎ + p₍ₖ₊₁₎)/2) / (β·p₍ₖ₎), 0, 1)    (β = topk_band; β = 0: hard top-k)
                 Sⁿ_τ = (2/W) Σ_k w_k (C_k cos(2πkτ/W) + S_k sin(2πkτ/W)),   τ = 0 … W+H−1
                 (the reference's Σ_k |X_k|/W · (cos(2πkτ/W + ∠X_k) + cos(−2πkτ/W − ∠X_k)), extrapolated H steps)
      growth     V = Z − Sⁿ_{0:W};  U = V W_in + b_in split in h heads;  Δ_τ = U_τ − U_{τ−1} with U_{−1} = z₀
                 Bⁿ = W_out [v₀ ; ES_α(Δ)] + b_out   ((W+1)×d: Bⁿ_0 = W_out v₀ + b_out is the initial growth)
      residual   Zⁿ = LN₂(Y + FF(Y)),  Y = LN₁(V − Bⁿ_{1:W+1}),  FF = W₂ act(W₁ ·)   (no biases)
      level      Eⁿ_i = Σ_j A(α)_ij (E_j − L_s Sⁿ_j) + Σ_j α^{i−j+1}[j ≤ i] L_g Bⁿ_j + α^{i+1} e₀   (per target)
                 the paper's  Eⁿ_i = (1−α)(E_i − L_s Sⁿ_i) + α(Eⁿ_{i−1} + L_g Bⁿ_{i−1}),  L_s, L_g: d → K linear
    decoder      Gⁿ_h = (Σ_{j=1}^{h} φ_n^j) ⊙ Bⁿ_W  (damped growth, φ = sigmoid(·) per head),  h = 1 … H
    forecast     ŷ_h = Eᴺ_{W−1} + P(Σ_n Gⁿ_h) + P(Σ_n Sⁿ_{W−1+h})             (P: d → K linear, shared)

Dropout (the config's rate) sits where the reference has it: after the embedding, on the differences Δ, on the
growth and the season outputs of each layer, inside FF (hidden and output), on both inputs of the level smoothing,
on the damped growth before and after the damping. The DFT is real matmuls with constant cos/sin matrices (buffers,
only the F frequencies used, analysis (F, W) and extrapolating synthesis (W+H, F)); no torch.fft, no complex
tensors: the exported step is a plain real graph (MatMul, TopK, Clip; ScatterElements with β = 0). The ES and
damping weights depend on parameters only: onnxruntime's graph optimizer folds them into constants at session start.

What differs from the reference (salesforce/ETSformer, thuml/Time-Series-Library) and why:
- The level's growth term is the paper's convolution over time, Σ_j α^{i−j+1} L_g Bⁿ_j. Both reference codes call
  their FFT convolution for it without dim=1, so it runs over a size-1 axis and degenerates to α^{W−i} L_g Bⁿ_i
  (no smoothing over time): a bug, not the model of the paper.
- The top-k frequencies are ranked by p_k = C_k² + S_k² (the same ranking as |X_k|, without a square root) and
  reconstructed from C_k, S_k instead of amplitude and phase: the same function, and the same gradient wherever
  the phase is differentiable. With β = 0 ties and the gradient through the selection behave as torch.topk (a
  selected frequency passes its coefficients' gradient, an unselected one none).
- The tie band, β = 0.1 by default: hard top-k is discontinuous where two powers cross, and float32 rounding
  (onnxruntime against torch, ~1e-6 relative in p) then picks a different frequency now and then. Measured at
  the TINY sizes, 250 steps × 1024 cells: β = 0 gave 3 steps with a forecast 4% off the torch step (the export
  contract asks ≤ 1e-4), β = 0.01 113 steps above 1e-4, β = 0.1 at most 1.7e-5, β = 0.3 2.4e-6. Within the band
  the k-th and the next frequency share the last place continuously (½ each at an exact tie); outside it, w is
  exactly 0 / 1, the reference's selection. With noise-like spectra the band is often active (top-k of similar
  powers); with distinct periodicities it is not. Set topk_band = 0 for the reference's hard selection.
- The last encoder layer's residual update (LN₁, FF, LN₂) is not built: nothing reads Zᴺ, so the reference's
  parameters there never receive a gradient (2·d·d_ff + 4·d of them) and the forecasts are the same.
- Embedding: TSLib's TokenEmbedding (Conv1d k=3 circular, no bias, Kaiming init) without TSLib's positional and
  timestamp embeddings: the paper uses none (the authors' code pads the convolution causally with zeros instead;
  the window is in the past either way). The input-noise augmentation of the reference (jitter, scale and shift
  with σ = 0.2 in training) is a data augmentation and belongs to the trainer, so it is not in the model.
- The forecast is of the K target columns (target_index): the level smoothing runs on the targets' own inputs and
  the heads L_s, L_g, P map to K outputs (the reference's c_out, which there must equal the input width). The
  embedding sees every input column. With every input a target (ETTh1 "M") this is exactly the reference layout.

Sizes: defaults are TSLib's ETTh1 96→96 script and run.py defaults: W = 96, d_model 512, 8 heads, 2 layers (e_layers
= d_layers = 2), d_ff 2048, top_k 5, dropout 0.1, GELU (the authors' code: K = 1, dropout 0.2, sigmoid). Per
layer: growth 2d² + 4d + h, level 2dK + 4K, damping h, FF and norms 2·d·d_ff + 4d (all layers but the last), plus
the embedding 3·D·d and P, dK + K: 3,180,639 at d_input = n_targets = 7, H = 96 (the reference: 5,279,839 with the
dead last FF, without its positional and time embeddings). About 0.34 G multiply-adds per window at that size.

Streaming (as models.baselines.itransformer): forward_with_state(x, state) forecasts at every position t from the
window x[t−W+1 … t] of every input column, the positions before x[:, 0] taken from the state, a shift register of
the last W−1 inputs, (W−1, D_in) per cell, oldest first: 95·7 = 665 values (2,660 bytes in float32) at the ETTh1
default. The zero state is zero padding (in normalized units); at t ≥ W−1 the forecast is exactly the model on
x[t−W+1 … t]. forward unfolds all windows, (B·L, W, D_in), and runs them as one batch; step shifts the register by
one (torch.cat, pure) and runs the same computation on its one window: O(N·(W·d² + W·d·d_ff + W²·d + (W+H)·F·d))
per step. forward_last and training_forward(last_only=True) (the window protocol) compute the last window only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.base import ModelConfig
from models.baselines.window import WindowModel
from models.registry import register

ACTIVATIONS = ("gelu", "sigmoid", "relu")  # ETSformerConfig.activation of the FF
BAND_FLOOR = 1e-12  # added to the width of the top-k tie band: an all-zero window has all powers 0


def n_frequencies(window: int) -> int:
    """F, the DFT frequencies Frequency Attention chooses from: k = 1 … ⌊(W − 1)/2⌋ (no DC, no Nyquist)."""
    return (window - 1) // 2


def dft_matrices(window: int, horizon: int, dtype: torch.dtype = torch.float64) -> tuple[Tensor, ...]:
    """Constant real DFT matrices for frequencies k = 1 … F of a window of W:
    analysis cos, sin (F, W): C_k = Σ_τ cos(2πkτ/W) z_τ, S_k = Σ_τ sin(2πkτ/W) z_τ (so rfft_k = C_k − i S_k);
    synthesis cos, sin (W+H, F): (2/W) cos(2πkτ/W), (2/W) sin(2πkτ/W) for τ = 0 … W+H−1 (the extrapolation)."""
    k = torch.arange(1, n_frequencies(window) + 1, dtype=torch.float64)  # (F,)
    tau = torch.arange(window + horizon, dtype=torch.float64)  # (W+H,)
    angle = 2.0 * math.pi * torch.outer(tau, k) / window  # (W+H, F)
    cos, sin = torch.cos(angle), torch.sin(angle)
    return (cos[:window].T.contiguous().to(dtype), sin[:window].T.contiguous().to(dtype),
            (2.0 / window * cos).to(dtype), (2.0 / window * sin).to(dtype))


def smoothing_matrices(logit: Tensor, lag: Tensor, causal: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """logit (M,) of M smoothing rates α = sigmoid(logit), lag (W, W) = max(i − j, 0), causal (W, W) = [j ≤ i] →
    the smoothing weights A (M, W, W) = (1 − α) α^{i−j} [j ≤ i], the growth weights G (M, W, W) = α^{i−j+1} [j ≤ i]
    and the initial-state weights a (M, W) = α^{i+1}: s = A v + a s₀ is s_i = α s_{i−1} + (1 − α) v_i from
    s_{−1} = s₀. Powers as exp(·) of log α = logsigmoid(logit), log(1 − α) = logsigmoid(−logit); the masked
    entries are exp(finite) · 0, so everything stays finite, also as α → 0 or 1."""
    log_a = F.logsigmoid(logit)[:, None, None]  # (M, 1, 1)
    log_1ma = F.logsigmoid(-logit)[:, None, None]
    A = torch.exp(log_1ma + lag * log_a) * causal  # (M, W, W)
    G = torch.exp((lag + 1.0) * log_a) * causal
    a = torch.exp((lag[:, 0] + 1.0) * log_a[:, :, 0])  # (M, W): α^{i+1}, lag[:, 0] = i
    return A, G, a


@dataclass
class ETSformerConfig(ModelConfig):
    window: int = 96  # lookback W (TSLib's seq_len for ETTh1)
    d_model: int = 512  # width of the latent representation
    n_heads: int = 8  # heads of the growth smoothing and the damping (must divide d_model)
    n_layers: int = 2  # encoder layers = decoder (damping) layers (TSLib: e_layers = d_layers = 2)
    d_ff: int = 2048  # FF width
    top_k: int = 5  # K of Frequency Attention: frequencies kept per channel (TSLib run.py's top_k; authors: 1–3)
    topk_band: float = 0.1  # relative width of the top-k tie band (0: hard torch.topk, the reference's selection)
    activation: str = "gelu"  # FF activation: "gelu" (TSLib's default), "sigmoid" (the authors'), "relu"
    dropout: float = 0.1  # TSLib's default (the authors': 0.2)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.require_targets("ETSformer's level smoothing runs on the targets' own inputs")
        for name in ("d_model", "n_heads", "n_layers", "d_ff", "top_k"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        if self.window < 3:
            raise ValueError(f"window must be ≥ 3 (Frequency Attention needs a frequency besides DC and Nyquist), "
                             f"got {self.window}")
        if self.top_k > n_frequencies(self.window):
            raise ValueError(f"top_k must be ≤ ⌊(window − 1)/2⌋ = {n_frequencies(self.window)}, the frequencies of "
                             f"a window of {self.window} without DC and Nyquist, got {self.top_k}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model must be a multiple of n_heads, got d_model={self.d_model}, "
                             f"n_heads={self.n_heads}")
        if not 0.0 <= self.topk_band < 1.0:
            raise ValueError(f"topk_band must be in [0, 1), got {self.topk_band}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")


class FrequencyAttention(nn.Module):
    """The season of a representation z (N, W, d) → (N, W+H, d): per channel, the top_k DFT frequencies by
    amplitude, reconstructed over the window and extrapolated H steps. No parameters."""

    MATRICES = ("cos_a", "sin_a", "cos_s", "sin_s")  # analysis (F, W), synthesis (W+H, F) with the factor 2/W

    def __init__(self, window: int, horizon: int, top_k: int, band: float = 0.0):
        super().__init__()
        self.window, self.horizon, self.top_k, self.band = window, horizon, top_k, float(band)
        for name, m in zip(self.MATRICES, dft_matrices(window, horizon, torch.get_default_dtype())):
            self.register_buffer(name, m, persistent=False)

    def _apply(self, fn, *args, **kwargs):
        """Module.to / .double() / …, then the DFT matrices recomputed in float64 and rounded once to the new dtype:
        a float32 model cast to float64 gets float64-exact matrices, not float32 ones widened."""
        out = super()._apply(fn, *args, **kwargs)
        ref = self.cos_a
        for name, m in zip(self.MATRICES, dft_matrices(self.window, self.horizon)):
            setattr(self, name, m.to(device=ref.device, dtype=ref.dtype))
        return out

    def selection(self, power: Tensor) -> Tensor:
        """power (N, F, d) → the weight of each frequency (N, F, d): 1 on the top_k of each channel, 0 elsewhere
        (torch.topk); with band > 0, where the top_k-th and the next power p_k ≥ p_{k+1} are closer than
        band · p_k, the two share the last place, w = clamp(½ + (p − (p_k + p_{k+1})/2) / (band · p_k), 0, 1)."""
        F_ = power.shape[1]
        if self.top_k == F_:  # every frequency
            return torch.ones_like(power)
        top = torch.topk(power, self.top_k + 1, dim=1)  # (N, k+1, d), sorted
        if self.band == 0.0:
            return torch.zeros_like(power).scatter(1, top.indices[:, : self.top_k], 1.0)
        kth, nxt = top.values[:, self.top_k - 1 : self.top_k], top.values[:, self.top_k :]  # (N, 1, d) each
        width = self.band * kth + BAND_FLOOR  # the floor keeps an all-zero window (the zero state) finite
        return torch.clamp(0.5 + (power - 0.5 * (kth + nxt)) / width, 0.0, 1.0)

    def forward(self, z: Tensor) -> Tensor:
        c = torch.matmul(self.cos_a, z)  # (N, F, d)
        s = torch.matmul(self.sin_a, z)  # (N, F, d)
        keep = self.selection(c * c + s * s)  # (N, F, d), from |rfft|²
        return torch.matmul(self.cos_s, keep * c) + torch.matmul(self.sin_s, keep * s)  # (N, W+H, d)


class GrowthSmoothing(nn.Module):
    """Exponential Smoothing Attention on the successive differences of a representation, h heads: v (N, W, d) →
    the growth (N, W+1, d), its first row the initial state's."""

    def __init__(self, window: int, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        self.window, self.n_heads, self.d_head = window, n_heads, d_model // n_heads
        self.in_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.z0 = nn.Parameter(torch.randn(n_heads, self.d_head))  # U_{−1}, the value before the window
        self.v0 = nn.Parameter(torch.randn(n_heads, self.d_head))  # s_{−1}, the smoothing's initial state
        self.alpha_logit = nn.Parameter(torch.randn(n_heads))  # α = sigmoid(alpha_logit), one per head
        self.dropout = nn.Dropout(dropout)
        first = torch.zeros(window + 1, 1, dtype=torch.get_default_dtype())
        first[0] = 1.0
        self.register_buffer("first", first, persistent=False)  # (W+1, 1): e₀, places z₀ / v₀ (batch-free)

    def forward(self, v: Tensor, lag: Tensor, causal: Tensor) -> Tensor:
        W, h, dh = self.window, self.n_heads, self.d_head
        u = self.in_proj(v).view(-1, W, h, dh).transpose(1, 2)  # (N, h, W, dh)
        prev = F.pad(u[:, :, : W - 1], (0, 0, 1, 0)) + self.first[:W] * self.z0.unsqueeze(1)  # (N, h, W, dh)
        diff = self.dropout(u - prev)  # (N, h, W, dh): Δ_τ = U_τ − U_{τ−1}, U_{−1} = z₀
        A, _, a = smoothing_matrices(self.alpha_logit, lag, causal)  # (h, W, W), (h, W)
        states = torch.matmul(A, diff) + a.unsqueeze(-1) * self.v0.unsqueeze(1)  # (N, h, W, dh)
        states = F.pad(states, (0, 0, 1, 0)) + self.first * self.v0.unsqueeze(1)  # (N, h, W+1, dh): [v₀ ; s]
        return self.out_proj(states.transpose(1, 2).reshape(-1, W + 1, h * dh))  # (N, W+1, d)


class LevelSmoothing(nn.Module):
    """The level of each target: exponential smoothing of the de-seasonalized level plus the previous growth, a
    learned α and initial level per target. level (N, W, K), growth (N, W, d) = Bⁿ_{0:W}, season (N, W, d) →
    the new level (N, W, K), or its last position (N, 1, K) with last_only."""

    def __init__(self, d_model: int, n_targets: int, dropout: float):
        super().__init__()
        self.growth_pred = nn.Linear(d_model, n_targets)
        self.season_pred = nn.Linear(d_model, n_targets)
        self.alpha_logit = nn.Parameter(torch.randn(n_targets))
        self.e0 = nn.Parameter(torch.randn(n_targets))  # the initial level
        self.dropout = nn.Dropout(dropout)
        self.aux_dropout = nn.Dropout(dropout)

    def forward(self, level: Tensor, growth: Tensor, season: Tensor, lag: Tensor, causal: Tensor,
                last_only: bool = False) -> Tensor:
        obs = self.dropout(level - self.season_pred(season)).transpose(1, 2)  # (N, K, W)
        aux = self.aux_dropout(self.growth_pred(growth)).transpose(1, 2)  # (N, K, W)
        A, G, a = smoothing_matrices(self.alpha_logit, lag, causal)  # (K, W, W) ×2, (K, W)
        if last_only:  # the last row of the smoothing only: (N, K)
            out = (A[:, -1] * obs).sum(-1) + (G[:, -1] * aux).sum(-1) + a[:, -1] * self.e0
            return out.unsqueeze(1)  # (N, 1, K)
        out = (torch.matmul(A, obs.unsqueeze(-1)) + torch.matmul(G, aux.unsqueeze(-1))).squeeze(-1)  # (N, K, W)
        return (out + a * self.e0.unsqueeze(-1)).transpose(1, 2)  # (N, W, K)


class ETSEncoderLayer(nn.Module):
    """One ETSformer encoder layer: season, growth, (residual update unless last) and level."""

    def __init__(self, c: ETSformerConfig, last: bool):
        super().__init__()
        self.window, self.last = c.window, last
        self.season = FrequencyAttention(c.window, c.horizon, c.top_k, c.topk_band)
        self.growth = GrowthSmoothing(c.window, c.d_model, c.n_heads, c.dropout)
        self.level = LevelSmoothing(c.d_model, c.n_targets, c.dropout)
        self.season_dropout = nn.Dropout(c.dropout)
        self.growth_dropout = nn.Dropout(c.dropout)
        if not last:  # nothing reads the last layer's residual
            self.norm1 = nn.LayerNorm(c.d_model)
            self.fc1 = nn.Linear(c.d_model, c.d_ff, bias=False)
            self.fc2 = nn.Linear(c.d_ff, c.d_model, bias=False)
            self.ff_dropout1 = nn.Dropout(c.dropout)
            self.ff_dropout2 = nn.Dropout(c.dropout)
            self.norm2 = nn.LayerNorm(c.d_model)
            self.act = {"gelu": F.gelu, "sigmoid": torch.sigmoid, "relu": F.relu}[c.activation]

    def forward(self, z: Tensor, level: Tensor, lag: Tensor, causal: Tensor
                ) -> tuple[Tensor | None, Tensor, Tensor, Tensor]:
        """z (N, W, d), level (N, W, K) → (residual (N, W, d) or None in the last layer, level (N, W, K) or its last
        position (N, 1, K) in the last layer, growth (N, W+1, d), season (N, W+H, d))."""
        W = self.window
        season = self.season_dropout(self.season(z))  # (N, W+H, d)
        v = z - season[:, :W]
        growth = self.growth_dropout(self.growth(v, lag, causal))  # (N, W+1, d)
        level = self.level(level, growth[:, :W], season[:, :W], lag, causal, last_only=self.last)
        if self.last:
            return None, level, growth, season
        y = self.norm1(v - growth[:, 1:])
        ff = self.ff_dropout2(self.fc2(self.ff_dropout1(self.act(self.fc1(y)))))
        return self.norm2(y + ff), level, growth, season


class GrowthDamping(nn.Module):
    """A layer's last growth (N, d) → the damped growth over the horizon (N, H, d): (Σ_{j=1}^{h} φ^j) per head."""

    def __init__(self, horizon: int, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        self.horizon, self.n_heads, self.d_head = horizon, n_heads, d_model // n_heads
        self.phi_logit = nn.Parameter(torch.randn(n_heads))  # φ = sigmoid(phi_logit), one per head
        self.register_buffer("powers", torch.arange(1, horizon + 1, dtype=torch.get_default_dtype()).unsqueeze(-1),
                             persistent=False)  # (H, 1): j = 1 … H
        self.dropout = nn.Dropout(dropout)
        self.out_dropout = nn.Dropout(dropout)

    def factors(self) -> Tensor:
        """(H, h): Σ_{j=1}^{h} φ^j for h = 1 … H, per head."""
        return torch.cumsum(torch.exp(self.powers * F.logsigmoid(self.phi_logit)), dim=0)

    def forward(self, g: Tensor) -> Tensor:
        h, dh = self.n_heads, self.d_head
        # dropout on the product: the reference's dropout of g repeated H times, then scaled (one mask per step)
        damped = self.dropout(g.view(-1, 1, h, dh) * self.factors().unsqueeze(-1))  # (N, H, h, dh)
        return self.out_dropout(damped.reshape(-1, self.horizon, h * dh))  # (N, H, d)


@register("etsformer")
class ETSformer(WindowModel):
    """ETSformer forecaster. x (B, L, D_in) → y (B, L, H, K); y[:, t, h−1, k] forecasts target k at t + h from the
    window x[:, t−W+1 : t+1] of every input column (zero-padded, or the state, before x[:, 0])."""

    Config = ETSformerConfig
    time_major = True  # windows (N, W, D)

    def __init__(self, config: ETSformerConfig):
        super().__init__()
        self.config = c = config
        self.target_index = list(c.target_index)
        w = torch.empty(c.d_model, c.d_input, 3)  # Conv1d weight (out, in, kernel)
        nn.init.kaiming_normal_(w, mode="fan_in", nonlinearity="leaky_relu")  # TSLib's TokenEmbedding init
        self.embed_weight = nn.Parameter(w)
        self.embed_dropout = nn.Dropout(c.dropout)
        self.layers = nn.ModuleList(ETSEncoderLayer(c, last=i == c.n_layers - 1) for i in range(c.n_layers))
        self.damping = nn.ModuleList(GrowthDamping(c.horizon, c.d_model, c.n_heads, c.dropout)
                                     for _ in range(c.n_layers))
        self.pred = nn.Linear(c.d_model, c.n_targets)
        i = torch.arange(c.window)
        dtype = torch.get_default_dtype()
        self.register_buffer("lag", (i[:, None] - i[None, :]).clamp_min(0).to(dtype), persistent=False)  # (W, W)
        self.register_buffer("causal", (i[:, None] >= i[None, :]).to(dtype), persistent=False)  # (W, W)

    def embed(self, w: Tensor) -> Tensor:
        """w (N, W, D) → Z⁰ (N, W, d): the kernel-3 convolution over the window, padded circularly."""
        padded = torch.cat([w[:, -1:], w, w[:, :1]], dim=1)  # (N, W+2, D)
        W = self.config.window
        taps = torch.cat([padded[:, 0:W], padded[:, 1 : W + 1], padded[:, 2 : W + 2]], dim=-1)  # (N, W, 3D)
        kernel = self.embed_weight.permute(2, 1, 0).reshape(-1, self.config.d_model)  # (3D, d), tap-major
        return torch.matmul(taps, kernel)

    def forecast(self, w: Tensor) -> Tensor:
        """The ETSformer formula on explicit windows: w (N, W, D_in), every input column's last W values → the
        targets' forecasts (N, H, K)."""
        z = self.embed_dropout(self.embed(w))  # (N, W, d)
        level = w[..., self.target_index]  # (N, W, K)
        growth_sum = season_sum = None
        for layer, damping in zip(self.layers, self.damping):
            z, level, growth, season = layer(z, level, self.lag, self.causal)
            g = damping(growth[:, -1])  # (N, H, d)
            s = season[:, self.config.window :]  # (N, H, d)
            growth_sum = g if growth_sum is None else growth_sum + g
            season_sum = s if season_sum is None else season_sum + s
        return level + self.pred(growth_sum) + self.pred(season_sum)  # (N, 1, K) + (N, H, K) → (N, H, K)
