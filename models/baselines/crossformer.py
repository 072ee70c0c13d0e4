"""Crossformer (Zhang & Yan, "Crossformer: Transformer Utilizing Cross-Dimension Dependency for Multivariate Time
Series Forecasting", ICLR 2023), made streaming.

Every input variate d (covariates included) is forecast, from the last W values of every variate. With seg_len S,
N₀ = ⌈W/S⌉ input segments, N_out = ⌈H/S⌉ output segments, c = factor routers and win_size w (= 2, the paper's):

    padding (the authors' code):  w_d ← (w_{d,0}, …, w_{d,0}, w_d)    the first value repeated N₀S − W times in front
    DSW embedding:  h⁰_{d,i} = E · w_d[iS : (i+1)S] + e + P_enc[d, i],   h⁰ ← LN(h⁰)           (E: d_model × S)
    TSA(h), h (D, N, d_model) — cross-time stage, per variate d, attention over its N segments:
        a = LN(h + MSA(h_d, h_d, h_d)),   a = LN(a + MLP(a))
    cross-dimension stage, per segment i, with learned routers R_i (c, d_model):
        B_i = MSA_send(R_i, a_{:,i}, a_{:,i})   (c, d_model)       the routers gather from the D variates
        o_i = LN(a_{:,i} + MSA_recv(a_{:,i}, B_i, B_i)),   o_i = LN(o_i + MLP(o_i))  the variates receive
    encoder: z⁰ = h⁰, z¹ = TSA(z⁰), zˡ = TSA(Merge(zˡ⁻¹)) for l = 2 … n_layers, where Merge concatenates each w
        adjacent segments (the last one(s) repeated when N is not a multiple of w, as the reference), then
        LN(w·d_model) and a linear map to d_model: N_l = ⌈N_{l−1}/w⌉ segments
    decoder: x⁰ = P_dec (D, N_out, d_model) learned; for l = 0 … n_layers (one layer per encoder output zˡ):
        x = TSA(x),   x = LN(x + MHA(x_d, zˡ_d, zˡ_d)) per variate d,   x ← LN(x + MLP'(x)),   ŷˡ = P_l x + p_l
        (P_l: S × d_model: each output segment's S values; MLP' = Linear(d, d) → GELU → Linear(d, d))
    ŷ = Σ_l ŷˡ  (D, N_out·S), the forecast ŷ_{t+1 … t+H, d} = its first H values; the targets' rows are returned.

MSA is multi-head attention softmax(q kᵀ/√d_head) v with separate q, k, v, out projections; MLP =
Linear(d, d_ff) → GELU → Linear(d_ff, d). Attention is not causal: the whole window is in the past. The learned
position embeddings P_enc, P_dec and the routers start as standard normal draws, every linear as PyTorch's
default (the reference's init); there is no randomness after construction. The config's dropout acts where the
reference has it: on every attention's weights, on the TSA layers' four residual branches and on the decoder's
cross-attention branch (none on the embedding or the decoder's MLP'). Where it differs from the reference code
and why: (1) This follows the authors' code (Thinklab-SJTU/Crossformer), not Time-Series-Library's port, where
they differ: TSLib pads the window at the end, adds a fixed sinusoidal position embedding and dropout to a
bias-free segment embedding and keeps the last H of the N_out·S values; all coincide at the default W = H = 96,
S = 12 except the embedding details. (2) No last-value residual (models.base.ForecastHead is not used) and no
RevIN: this is Crossformer's own formulation (TSLib runs it without normalization, the published ETTh1 96→96 MSE
0.423). (3) The decoder's prediction heads run on the target variates only (the other variates' decoder
states still feed the next layers' cross-dimension stages): the same forecasts, less work. (4) In eval mode the
decoder input P_dec is run once, as a batch of one that broadcasts against the encoder outputs at the first
cross-attention (the decoder's first TSA layer does not depend on the input); in train mode it is expanded to
the batch so every window draws its own dropout masks, as the reference. (5) The position embeddings and
routers are not weight-decayed (param_groups; TSLib trains with Adam, no decay). The per-variate position
embedding makes the model depend on the order of the input columns (unlike iTransformer), and the routers make
the cross-dimension stage O(D·c) per segment rather than O(D²). There is no DFT anywhere.

Sizes (Time-Series-Library's ETTh1 96→96 script, scripts/long_term_forecast/ETT_script/Crossformer_ETTh1.sh with
run.py's defaults and the model's fixed seg_len 12, win_size 2): d_model 512, 8 heads, n_layers (e_layers) 2,
d_ff 2048, factor 3, dropout 0.1 — 42,176,548 parameters at d_input 7, horizon 96 (the count depends on D
through the position embeddings only). The paper's own ETTh1 setting is smaller (d_model 256, 4 heads, 3 layers,
d_ff 512, factor 10, dropout 0.2, seg_len 6–24 with longer lookbacks).

Streaming: forward_with_state(x, state) forecasts at every position t from the window x[t−W+1 … t] of every input
column, the positions before x[:, 0] taken from the state, a shift register of the last W−1 inputs of each
column, (D_in, W−1) per cell, oldest first (665 values, 2.6 KiB in float32, at the default D_in 7, W 96; the
front padding repeats the window's own first value, so no less will do). The zero state is zero padding (in
normalized units): forward(x) at t < W−1 sees a zero-padded window; at t ≥ W−1 it is exactly the model applied to
x[t−W+1 … t]. forward unfolds all windows at once, (B, L, D, W), and runs them as one batch of B·L windows
(memory O(B·L·D·N₀·d_model): long sequences are better served by forward_last / training_forward(last_only=True),
the window protocol, which run the last window only); step shifts the register by one (torch.cat, pure) and runs
the same computation on its one window, every reshape sized from the config:
O((n_layers·N₀ + (n_layers+1)·N_out)·D·(d_model² + d_model·d_ff + (N + c)·d_model)) per step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.base import ModelConfig
from models.baselines.window import WindowModel
from models.registry import register


def segment_counts(window: int, seg_len: int, n_layers: int, win_size: int) -> list[int]:
    """Segments per variate of the encoder's n_layers + 1 outputs (the embedding, then each scale): N₀ = ⌈W/S⌉ for
    the embedding and the first scale, then ⌈N/w⌉ after each merge."""
    counts = [math.ceil(window / seg_len)] * 2
    for _ in range(2, n_layers + 1):
        counts.append(math.ceil(counts[-1] / win_size))
    return counts[: n_layers + 1]


@dataclass
class CrossformerConfig(ModelConfig):
    window: int = 96  # lookback W: each forecast reads the last W values of every input column
    seg_len: int = 12  # S, values per segment (TSLib fixes 12; the paper tunes 6–24)
    win_size: int = 2  # w, adjacent segments merged from one scale to the next (the paper's 2)
    factor: int = 3  # c, routers per segment in the cross-dimension stage (TSLib's ETTh1 script: 3)
    d_model: int = 512
    n_heads: int = 8  # must divide d_model
    n_layers: int = 2  # encoder scales (e_layers); the decoder has n_layers + 1 layers
    d_ff: int = 2048  # width of the TSA layers' MLPs
    dropout: float = 0.1  # TSLib's default (the shared field's default is 0)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.require_targets("Crossformer forecasts every input variate and returns the targets'")
        if self.window < 2:
            raise ValueError(f"window must be ≥ 2 (the state holds the last window − 1 inputs), got {self.window}")
        if not 1 <= self.seg_len <= self.window:
            raise ValueError(f"seg_len must be in [1, window={self.window}], got {self.seg_len}")
        if self.win_size < 2:
            raise ValueError(f"win_size must be ≥ 2 (segments merged per scale), got {self.win_size}")
        for name in ("factor", "d_model", "n_heads", "n_layers", "d_ff"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model must be a multiple of n_heads, got d_model={self.d_model}, "
                             f"n_heads={self.n_heads}")
        counts = segment_counts(self.window, self.seg_len, self.n_layers, self.win_size)
        for layer in range(2, self.n_layers + 1):  # scale l merges the N_{l−1} segments of the scale before it
            if counts[layer - 1] < self.win_size:
                feasible = next(k for k in range(2, self.n_layers + 1) if counts[k - 1] < self.win_size) - 1
                raise ValueError(
                    f"n_layers={self.n_layers} scales do not fit the window: window {self.window} / seg_len "
                    f"{self.seg_len} gives {counts[0]} segments, and scale {layer} would merge "
                    f"{counts[layer - 1]} < win_size={self.win_size} segments; use n_layers ≤ {feasible}, a longer "
                    "window or a shorter seg_len")


class Attention(nn.Module):
    """Multi-head attention softmax(q kᵀ/√d_head) v over groups: queries (Mq, G, Lq, d) attend to keys / values
    (M, G, S, d) of the same group g (Mq = M, or 1 for learned queries shared by every window). The sizes come
    from the caller (the config), not from the tensors."""

    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads, self.d_head, self.p_drop = n_heads, d_model // n_heads, dropout
        self.query = nn.Linear(d_model, d_model)
        self.key = nn.Linear(d_model, d_model)
        self.value = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)

    def _heads(self, t: Tensor, G: int, L: int) -> Tensor:
        return t.view(-1, G, L, self.n_heads, self.d_head).transpose(2, 3)  # (M, G, L, d) → (M, G, h, L, dh)

    def forward(self, q: Tensor, kv: Tensor, G: int, Lq: int, S: int) -> Tensor:
        """q (Mq, G, Lq, d), kv (M, G, S, d) → (M, G, Lq, d)."""
        qh = self._heads(self.query(q), G, Lq)  # (Mq, G, h, Lq, dh)
        kh = self._heads(self.key(kv), G, S)  # (M, G, h, S, dh)
        vh = self._heads(self.value(kv), G, S)  # (M, G, h, S, dh)
        scores = torch.matmul(qh, kh.transpose(-1, -2)) * (1.0 / math.sqrt(self.d_head))  # (M, G, h, Lq, S)
        weights = F.dropout(torch.softmax(scores, dim=-1), self.p_drop, self.training)
        a = torch.matmul(weights, vh)  # (M, G, h, Lq, dh)
        return self.out(a.transpose(2, 3).reshape(-1, G, Lq, self.n_heads * self.d_head))


class MLP(nn.Sequential):
    """Linear(d, d_ff) → GELU → Linear(d_ff, d)."""

    def __init__(self, d_model: int, d_ff: int):
        super().__init__(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model))


class TwoStageAttention(nn.Module):
    """The TSA layer on (M, D, N, d): the cross-time stage (attention over the N segments of each variate, then an
    MLP, post-norm residuals), then the cross-dimension stage (the c routers of each segment position gather from
    the D variates, the variates receive from the routers, then an MLP, post-norm residuals)."""

    def __init__(self, n_vars: int, n_segments: int, factor: int, d_model: int, n_heads: int, d_ff: int,
                 dropout: float):
        super().__init__()
        self.n_vars, self.n_segments, self.factor = n_vars, n_segments, factor
        self.time_attention = Attention(d_model, n_heads, dropout)
        self.dim_sender = Attention(d_model, n_heads, dropout)
        self.dim_receiver = Attention(d_model, n_heads, dropout)
        self.router = nn.Parameter(torch.randn(n_segments, factor, d_model))  # (N, c, d)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.norm4 = nn.LayerNorm(d_model)
        self.mlp1 = MLP(d_model, d_ff)
        self.mlp2 = MLP(d_model, d_ff)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """x (M, D, N, d) → (M, D, N, d)."""
        D, N, c = self.n_vars, self.n_segments, self.factor
        a = self.norm1(x + self.dropout(self.time_attention(x, x, D, N, N)))  # (M, D, N, d): over time, per variate
        a = self.norm2(a + self.dropout(self.mlp1(a)))
        s = a.transpose(1, 2)  # (M, N, D, d): the variates of each segment position
        buffer = self.dim_sender(self.router, s, N, c, D)  # (M, N, c, d): the routers gather
        o = self.norm3(s + self.dropout(self.dim_receiver(s, buffer, N, D, c)))  # (M, N, D, d): the variates receive
        o = self.norm4(o + self.dropout(self.mlp2(o)))
        return o.transpose(1, 2)  # (M, D, N, d)


class SegmentMerge(nn.Module):
    """(M, D, N, d) → (M, D, ⌈N/w⌉, d): each w adjacent segments concatenated (the last ones repeated at the end
    when w does not divide N, as the reference), LayerNorm(w·d), Linear(w·d → d)."""

    def __init__(self, n_vars: int, n_segments: int, d_model: int, win_size: int):
        super().__init__()
        self.n_vars, self.n_out, self.width = n_vars, math.ceil(n_segments / win_size), win_size * d_model
        pad = (-n_segments) % win_size
        index = torch.cat([torch.arange(n_segments), torch.arange(n_segments - pad, n_segments)])
        self.register_buffer("index", index if pad else None, persistent=False)  # (⌈N/w⌉·w,) or None
        self.norm = nn.LayerNorm(win_size * d_model)
        self.linear = nn.Linear(win_size * d_model, d_model)

    def forward(self, x: Tensor) -> Tensor:
        if self.index is not None:
            x = x[:, :, self.index]  # (M, D, ⌈N/w⌉·w, d)
        x = x.reshape(-1, self.n_vars, self.n_out, self.width)  # segments w·j … w·j + w − 1 side by side
        return self.linear(self.norm(x))


class EncoderScale(nn.Module):
    """One scale of the encoder: a segment merge (from the second scale on), then a TSA layer."""

    def __init__(self, c: CrossformerConfig, n_vars: int, n_in: int, merge: bool):
        super().__init__()
        self.merge = SegmentMerge(n_vars, n_in, c.d_model, c.win_size) if merge else None
        n = self.merge.n_out if merge else n_in
        self.tsa = TwoStageAttention(n_vars, n, c.factor, c.d_model, c.n_heads, c.d_ff, c.dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.tsa(self.merge(x) if self.merge is not None else x)


class DecoderLayer(nn.Module):
    """TSA on the decoder segments, cross-attention from each variate's decoder segments to its encoder segments of
    one scale, an MLP, and the linear prediction of each output segment's seg_len values (target variates)."""

    def __init__(self, c: CrossformerConfig, n_vars: int, n_out: int, n_cross: int):
        super().__init__()
        self.n_vars, self.n_out, self.n_cross = n_vars, n_out, n_cross
        self.tsa = TwoStageAttention(n_vars, n_out, c.factor, c.d_model, c.n_heads, c.d_ff, c.dropout)
        self.cross_attention = Attention(c.d_model, c.n_heads, c.dropout)
        self.norm1 = nn.LayerNorm(c.d_model)
        self.norm2 = nn.LayerNorm(c.d_model)
        self.mlp = MLP(c.d_model, c.d_model)
        self.dropout = nn.Dropout(c.dropout)
        self.predict = nn.Linear(c.d_model, c.seg_len)

    def forward(self, x: Tensor, cross: Tensor, targets: list[int]) -> tuple[Tensor, Tensor]:
        """x (M or 1, D, N_out, d), cross (M, D, N_l, d) → x (M, D, N_out, d), prediction (M, K, N_out, seg_len)."""
        x = self.tsa(x)
        x = self.norm1(x + self.dropout(self.cross_attention(x, cross, self.n_vars, self.n_out, self.n_cross)))
        x = self.norm2(x + self.mlp(x))
        return x, self.predict(x[:, targets])


@register("crossformer")
class Crossformer(WindowModel):
    """Crossformer forecaster. x (B, L, D_in) → y (B, L, H, K); y[:, t, h−1, k] forecasts target k at t + h from
    the windows x[:, t−W+1 : t+1, d] of every input column d (zero-padded, or the state, before x[:, 0])."""

    Config = CrossformerConfig
    time_major = False  # windows (N, D, W)

    def __init__(self, config: CrossformerConfig):
        super().__init__()
        self.config = c = config
        D = c.d_input
        self.target_index = list(c.target_index)
        self.counts = segment_counts(c.window, c.seg_len, c.n_layers, c.win_size)  # N₀, N₁, …, N_n
        self.n_out = math.ceil(c.horizon / c.seg_len)  # N_out output segments
        front = self.counts[0] * c.seg_len - c.window  # values repeated in front
        pad = (torch.arange(self.counts[0] * c.seg_len) - front).clamp_min(0)
        self.register_buffer("pad_index", pad if front else None, persistent=False)  # (N₀·S,) or None
        self.embed = nn.Linear(c.seg_len, c.d_model)  # a segment → its token
        self.enc_pos = nn.Parameter(torch.randn(D, self.counts[0], c.d_model))  # (D, N₀, d)
        self.pre_norm = nn.LayerNorm(c.d_model)
        self.encoder = nn.ModuleList(
            EncoderScale(c, D, self.counts[layer], merge=layer > 0) for layer in range(c.n_layers)
        )
        self.dec_pos = nn.Parameter(torch.randn(D, self.n_out, c.d_model))  # (D, N_out, d)
        self.decoder = nn.ModuleList(DecoderLayer(c, D, self.n_out, n) for n in self.counts)

    def param_groups(self, lr: float, weight_decay: float, ssm_lr: float = 1e-3) -> list[dict[str, Any]]:
        """The base groups, with the position embeddings and the routers (learned embeddings) not decayed."""
        groups = super().param_groups(lr, weight_decay, ssm_lr)
        routers = [m.router for m in self.modules() if isinstance(m, TwoStageAttention)]
        embeddings = [self.enc_pos, self.dec_pos, *routers]
        ids = {id(p) for p in embeddings}
        for g in groups:
            if g["group"] == "decay":
                g["params"] = [p for p in g["params"] if id(p) not in ids]
        no_decay = next((g for g in groups if g["group"] == "no_decay"), None)
        if no_decay is None:
            no_decay = {"params": [], "weight_decay": 0.0, "lr": lr, "group": "no_decay"}
            groups.append(no_decay)
        no_decay["params"].extend(p for p in embeddings if p.requires_grad)
        return [g for g in groups if g["params"]]

    def encode(self, w: Tensor) -> list[Tensor]:
        """Windows w (M, D, W) → the encoder's n_layers + 1 outputs, (M, D, N_l, d) each."""
        c = self.config
        if self.pad_index is not None:
            w = w[..., self.pad_index]  # (M, D, N₀·S): the first value repeated in front
        segments = w.reshape(-1, c.d_input, self.counts[0], c.seg_len)  # (M, D, N₀, S)
        z = self.pre_norm(self.embed(segments) + self.enc_pos)  # (M, D, N₀, d)
        out = [z]
        for scale in self.encoder:
            z = scale(z)
            out.append(z)
        return out

    def forecast(self, w: Tensor) -> Tensor:
        """The Crossformer formula on explicit windows: w (M, D, W), every input column's last W values → the
        targets' forecasts (M, H, K)."""
        c = self.config
        enc = self.encode(w)
        x = self.dec_pos.unsqueeze(0)  # (1, D, N_out, d): broadcast against the windows (eval) …
        if self.training:  # … or one copy per window, so each draws its own dropout masks
            x = x.expand(w.shape[0], -1, -1, -1)
        y = None
        for layer, cross in zip(self.decoder, enc):
            x, pred = layer(x, cross, self.target_index)  # pred (M, K, N_out, S)
            y = pred if y is None else y + pred
        y = y.reshape(-1, c.n_targets, self.n_out * c.seg_len)[..., : c.horizon]  # (M, K, H)
        return y.transpose(1, 2)  # (M, H, K)
