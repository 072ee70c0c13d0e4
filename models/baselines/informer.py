"""Informer (Zhou, Zhang, Peng, Zhang, Li, Xiong & Zhang, "Informer: Beyond Efficient Transformer for Long Sequence
Time-Series Forecasting", AAAI 2021), made streaming.

At every position t the model reads the window w = (x_{t−W+1}, …, x_t) of every input column, (W, D_in), and runs
the paper's encoder–decoder on it (d = d_model, ℓ = label_len, c = factor):

    embedding:     E(u)_i = Σ_{j∈{−1,0,1}} C_j u_{(i+j) mod n} + PE_i      over a sequence u of n tokens (D_in values
                   each): a kernel-3 convolution with circular padding (C_j: d × D_in, no bias), plus the fixed
                   sinusoid PE_{i,2m} = sin(i·10000^{−2m/d}), PE_{i,2m+1} = cos(i·10000^{−2m/d})
    encoder:       h = E_enc(w), W tokens; n_layers layers  h ← LN(h + ProbAttn(h)),  h ← LN(h + FFN(h)),
                   FFN = Linear(d, d_ff) → GELU → Linear(d_ff, d); between two layers the distilling step
                   h ← MaxPool_{k=3,s=2,p=1}(ELU(BN(Conv3_circ(h))))  halves the tokens, L → ⌈L/2⌉; then LN
    decoder:       u = (x_{t−ℓ+1}, …, x_t, 0, …, 0)  (the last ℓ inputs of the window, then H zero placeholders),
                   g = E_dec(u), ℓ + H tokens; d_layers layers  g ← LN(g + MaskedProbAttn(g)),
                   g ← LN(g + Attn(g, h)) (full cross-attention to the encoder output),  g ← LN(g + FFN(g)); then LN
    forecast:      ŷ_{t+1 … t+H} = P g_{ℓ+1 … ℓ+H} + p        (P: K × d — Informer's c_out is the K targets)

ProbSparse attention, per head, with scores s_ij = q_i·k_j / √d_head over L_Q queries and L_K keys: query i has a
sample S_i of U = min(L_K, c·⌈ln L_K⌉) key indices; its sparsity measure is M_i = max_{j∈S_i} s_ij −
mean_{j∈S_i} s_ij; the u = min(L_Q, c·⌈ln L_Q⌉) queries of largest M_i get full attention, Σ_j softmax_j(s_ij) v_j
(in the masked variant over j ≤ i only); every other ("lazy") query gets mean_j v_j (encoder) or the cumulative
sum Σ_{j≤i} v_j (masked decoder self-attention), as the reference. The samples are the paper's randomness, fixed
here: drawn once at construction (uniform with replacement, shared by the batch and the heads as the reference's
per-call draw is) by a generator seeded from (seed, L_Q, L_K), kept as buffers, so forward, step and the exports
compute one function. Evaluation as the reference: all scores q kᵀ in one batched matmul (no gradient: the selection
is discrete), M from the sampled entries gathered out of them, TopK; then only the u active queries' rows are
gathered, attend (softmax over their scores) and are scattered into the lazy context — static shapes throughout.

Float rounding and the top-u choice: the selection is a discontinuous function of M, so two implementations that
round differently (torch and ONNX Runtime, eager and TorchScript, a batch of 1 or of 1024) can pick different queries
where the u-th and (u+1)-th M nearly tie, and then forecast differently by far more than the rounding. With random
float32 windows about one window in 10⁵–10⁶ has such a near tie in the first encoder layer (measured at the zoo's
TINY sizes), and a flip there moves the forecast by up to ~10⁻³ relative. So in eval mode (select_f64, the default)
the attentions whose input is an embedding — the first encoder layer and the first decoder layer's self-attention —
pick their queries from M computed in float64 from the raw window (embedding, q and k projections, scores, all in
float64 with the weights cast): every runtime then picks the same queries unless M ties to ~1e-15. The attention
values themselves stay in the model's dtype, so this changes no forecast beyond rounding; it costs about 40 % of a
TINY step. Later layers read float32 activations and keep float32 selections (their flips, as rare, moved the
TINY forecast by < 3e-5). In train mode every selection ranks the scores of the (dropped-out) inputs in the model's
dtype, as the reference.

What differs from the paper and the references (thuml/Time-Series-Library, "TSLib"; zhouhaoyi/Informer2020):
- No temporal (time-stamp) embedding: our inputs carry no timestamps; time features, where wanted, come in as
  input columns and enter through the token convolution. Everything else of the embedding is the reference's
  (TSLib's bias-free token convolution, Kaiming-normal init; the authors' repository has a bias).
- M uses the mean of the U sampled scores; both references divide their sum by L_K (the maintainers: either is
  fine, only the top-u ranking matters, zhouhaoyi/Informer2020#103, #211). M is ranked on scaled scores (the
  references rank unscaled ones: the same order).
- Distilling pads the convolution circularly by 1, so the length halves (96 → 48), as the paper and the authors'
  repository; TSLib pads by 2 and keeps 49 tokens.
- The cross-attention is full, as the paper and the authors' repository; TSLib uses ProbSparse attention there
  too (cross_attention="prob": unmasked ProbSparse over the encoder output, lazy queries get its mean value).
- Heads are concatenated per position. TSLib's attention layer views ProbSparse's (B, heads, L, d_head) output
  as (B, L, heads·d_head) and the authors' decoder does the same ("mix"): a reshuffle of positions and heads we
  do not reproduce.
- Outputs: the projection maps to the K targets (c_out = K); with every column a target (ETTh1 "M": D_in = K = 7)
  that is the reference's head; target_index is not needed (no last-value residual, no RevIN, as the reference).
- Dropout (the config's, TSLib's 0.1 by default) acts after the embeddings, on the residual branches, inside the
  FFN and on the full attention's weights; the references never apply dropout inside ProbSparse attention.
- BatchNorm (distilling), as models.baselines.patchtst: in eval mode a fixed per-channel affine map (running
  statistics), so step ≡ forward exactly, exports too. In train mode it normalizes with the statistics of the whole
  batch of windows (every token of every window forward unfolds); a step in train mode is then neither pure (it
  updates the running statistics) nor equal to forward: train with forward / training_forward, serve in eval mode.
No DFT anywhere (no torch.fft): the step graph is real matmuls, gathers, TopK, CumSum, convolutions and pooling.

Streaming (as models.baselines.itransformer): forward_with_state(x, state) forecasts at every position t from the
window x[t−W+1 … t], the positions before x[:, 0] taken from the state, a shift register of the last W−1 inputs,
(W−1, D_in) per cell, oldest first. The zero state is zero padding (in normalized units), so forward(x) at t < W−1
sees a zero-padded window; at t ≥ W−1 it is exactly the model above on x[t−W+1 … t]. forward unfolds all windows,
(B·L, W, D_in), and runs them as one batch (memory O(B·L·(W + ℓ + H)·d)); forward_last and
training_forward(last_only=True) (the window protocol) run the last window only; step shifts the register by one
(torch.cat, pure) and runs the same computation on its window.

Sizes: the default is TSLib's ETTh1 script (scripts/long_term_forecast/ETT_script/Informer_ETTh1.sh and its
resolved arguments): window 96, label_len 48, d_model 512, 8 heads, e_layers 2 (n_layers), d_layers 1,
d_ff 2048, factor 3, dropout 0.1, distil on — 11,323,911 parameters at D_in = K = 7, H = 96; the
state is 95·7 = 665 values per cell (2,660 bytes in float32). A step costs 2.5 GFLOP (FlopCounterMode), ≈ 75 ms
on one CPU core; training is heavy on 2 cores: a batch of 32 windows (forward + backward, training_forward with
last_only) ≈ 4 s on one core, so an ETTh1 epoch (8,449 training windows) ≈ 17 core-minutes. The zoo's tests use
TINY sizes.
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

PE_BASE = 10000.0  # the sinusoid's wavelength base
CROSS_ATTENTIONS = ("full", "prob")  # InformerConfig.cross_attention


def sparse_count(factor: int, length: int) -> int:
    """c·⌈ln L⌉ capped at L (and at least 1): the sampled keys U per query (L = L_K) or the active queries u (L = L_Q),
    the references' U_part and u."""
    return max(1, min(length, factor * math.ceil(math.log(length))))


def distilled_length(length: int) -> int:
    """Tokens after a distilling step, MaxPool1d(kernel 3, stride 2, padding 1) of a length-preserving convolution:
    ⌊(L + 2 − 3)/2⌋ + 1 = ⌈L/2⌉."""
    return (length - 1) // 2 + 1


def encoder_lengths(window: int, n_layers: int, distil: bool) -> list[int]:
    """Tokens each encoder layer attends over: W, ⌈W/2⌉, ⌈W/4⌉, … with distilling, W throughout without."""
    lengths = [window]
    for _ in range(n_layers - 1):
        lengths.append(distilled_length(lengths[-1]) if distil else lengths[-1])
    return lengths


def sinusoid(length: int, d_model: int) -> Tensor:
    """(length, d_model) float64: PE_{i,2m} = sin(i·10000^{−2m/d}), PE_{i,2m+1} = cos(i·10000^{−2m/d})."""
    pos = torch.arange(length, dtype=torch.float64).unsqueeze(-1)  # (L, 1)
    freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float64) * (-math.log(PE_BASE) / d_model))  # (⌈d/2⌉,)
    pe = torch.zeros(length, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq[: d_model // 2])
    return pe


def key_sample(n_q: int, n_k: int, n_sample: int, seed: int) -> Tensor:
    """(n_q, n_sample) int64: for each query, n_sample key indices uniform on [0, n_k) with replacement (the
    reference's torch.randint), from a generator seeded by (seed, n_q, n_k): one fixed draw per attention length."""
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + n_q * 10_007 + n_k)
    return torch.randint(n_k, (n_q, n_sample), generator=g)


def circular_conv3(u: Tensor, conv: nn.Conv1d) -> Tensor:
    """u (N, n, C) → (N, n, C_out): a kernel-3 convolution with circular padding by 1 over the n tokens (the
    wrap-around written as a concatenation, so the exported graph is two slices and a Concat)."""
    z = u.transpose(1, 2)  # (N, C, n)
    z = torch.cat([z[..., -1:], z, z[..., :1]], dim=-1)  # (N, C, n + 2): token n−1 before 0, token 0 after n−1
    return conv(z).transpose(1, 2)  # (N, n, C_out)


class MultiHead(nn.Module):
    """The query, key, value and output projections of multi-head attention (the reference's AttentionLayer)."""

    def __init__(self, d_model: int, n_heads: int, n_q: int, n_k: int):
        super().__init__()
        self.n_heads, self.d_head, self.n_q, self.n_k = n_heads, d_model // n_heads, n_q, n_k
        self.scale = 1.0 / math.sqrt(self.d_head)
        self.query = nn.Linear(d_model, d_model)
        self.key = nn.Linear(d_model, d_model)
        self.value = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)

    def project(self, x_q: Tensor, x_kv: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x_q (N, n_q, d), x_kv (N, n_k, d) → q (N, h, n_q, dh), k and v (N, h, n_k, dh); shapes from the config."""
        h, dh = self.n_heads, self.d_head
        q = self.query(x_q).view(-1, self.n_q, h, dh).transpose(1, 2)
        k = self.key(x_kv).view(-1, self.n_k, h, dh).transpose(1, 2)
        v = self.value(x_kv).view(-1, self.n_k, h, dh).transpose(1, 2)
        return q, k, v

    def project_f64(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Self-attention input x (N, n, d) float64 → q, k (N, h, n, dh) in float64 (the weights cast to it)."""
        h, dh = self.n_heads, self.d_head
        q = F.linear(x, self.query.weight.double(), self.query.bias.double()).view(-1, self.n_q, h, dh)
        k = F.linear(x, self.key.weight.double(), self.key.bias.double()).view(-1, self.n_k, h, dh)
        return q.transpose(1, 2), k.transpose(1, 2)

    def merge(self, ctx: Tensor) -> Tensor:
        """ctx (N, h, n_q, dh) → (N, n_q, d): heads concatenated per position, then the output projection."""
        return self.out(ctx.transpose(1, 2).reshape(-1, self.n_q, self.n_heads * self.d_head))


class ProbSparseAttention(MultiHead):
    """ProbSparse attention of n_q queries over n_k keys (module docstring); causal: the decoder's masked
    self-attention (n_q = n_k, key j ≤ query i, lazy queries get the cumulative sum of the values)."""

    def __init__(self, d_model: int, n_heads: int, n_q: int, n_k: int, factor: int, causal: bool, seed: int):
        super().__init__(d_model, n_heads, n_q, n_k)
        if causal and n_q != n_k:
            raise ValueError(f"masked ProbSparse attention is self-attention: n_q ({n_q}) must equal n_k ({n_k})")
        self.causal = causal
        self.n_top = sparse_count(factor, n_q)  # u, the active queries
        self.n_sample = sparse_count(factor, n_k)  # U, the sampled keys per query
        sample = key_sample(n_q, n_k, self.n_sample, seed)  # (n_q, U)
        self.register_buffer("sample_index", sample.view(1, 1, n_q, self.n_sample), persistent=False)
        self.register_buffer("key_pos", torch.arange(n_k), persistent=False)  # (n_k,): the causal mask's keys

    def sparsity(self, s: Tensor) -> Tensor:
        """Scores s (N, h, n_q, n_k) → M (N, h, n_q): each query's max − mean over its sampled keys."""
        sampled = s.gather(-1, self.sample_index.expand(s.shape[0], self.n_heads, -1, -1))  # (N, h, n_q, U)
        return sampled.amax(-1) - sampled.mean(-1)

    def forward(self, x_q: Tensor, x_kv: Tensor | None = None, select_from: Tensor | None = None) -> Tensor:
        """x_q (N, n_q, d), x_kv (N, n_k, d) (None: self-attention) → (N, n_q, d). select_from (N, n_q, d) float64,
        self-attention only: the same input computed in float64 (Informer.embed), whose M picks the queries."""
        q, k, v = self.project(x_q, x_q if x_kv is None else x_kv)  # (N, h, n, dh)
        q = q * self.scale  # scores s_ij = q_i·k_j / √dh
        kt = k.transpose(-1, -2)  # (N, h, dh, n_k)
        with torch.no_grad():  # the selection is discrete: no gradient flows through M
            if select_from is None:
                m = self.sparsity(q @ kt)  # (N, h, n_q)
            else:
                q64, k64 = self.project_f64(select_from)  # (N, h, n, dh) float64
                m = self.sparsity((q64 * self.scale) @ k64.transpose(-1, -2))
            top = m.topk(self.n_top, dim=-1).indices.unsqueeze(-1)  # (N, h, u, 1): the active queries
        rows = top.expand(-1, -1, -1, self.d_head)  # (N, h, u, dh)
        s = q.gather(2, rows) @ kt  # (N, h, u, n_k): the active queries' scores
        if self.causal:
            s = s.masked_fill(self.key_pos > top, float("-inf"))  # key j after query i
            lazy = v.cumsum(-2)  # (N, h, n_q, dh): Σ_{j≤i} v_j
        else:
            lazy = v.mean(-2, keepdim=True).expand(-1, -1, self.n_q, -1)  # (N, h, n_q, dh): mean_j v_j
        full = torch.softmax(s, -1) @ v  # (N, h, u, dh)
        return self.merge(lazy.scatter(2, rows, full))  # the active rows replaced by their full attention


class FullAttention(MultiHead):
    """Canonical multi-head attention of n_q queries over n_k keys, dropout on the attention weights (the
    reference's FullAttention, unmasked)."""

    def __init__(self, d_model: int, n_heads: int, n_q: int, n_k: int, dropout: float):
        super().__init__(d_model, n_heads, n_q, n_k)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x_q: Tensor, x_kv: Tensor | None = None) -> Tensor:
        q, k, v = self.project(x_q, x_q if x_kv is None else x_kv)  # (N, h, n, dh)
        a = torch.softmax((q * self.scale) @ k.transpose(-1, -2), -1)  # (N, h, n_q, n_k)
        return self.merge(self.dropout(a) @ v)


class FeedForward(nn.Module):
    """Position-wise FFN Linear(d, d_ff) → GELU → Linear(d_ff, d) (the reference's two kernel-1 convolutions),
    dropout on the hidden layer and the output."""

    def __init__(self, d_model: int, d_ff: int, dropout: float):
        super().__init__()
        self.fc1 = nn.Linear(d_model, d_ff)
        self.fc2 = nn.Linear(d_ff, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: Tensor) -> Tensor:
        return self.dropout(self.fc2(self.dropout(F.gelu(self.fc1(h)))))


@dataclass
class InformerConfig(ModelConfig):
    window: int = 96  # lookback W (TSLib's seq_len): the encoder reads the last W inputs
    label_len: int | None = None  # ℓ, the decoder's start tokens (the window's last ℓ inputs); None: window // 2
    d_model: int = 512
    n_heads: int = 8  # must divide d_model
    n_layers: int = 2  # encoder layers (TSLib's e_layers)
    d_layers: int = 1  # decoder layers (TSLib's name)
    d_ff: int = 2048
    factor: int = 3  # ProbSparse sampling factor c: U = c·⌈ln L_K⌉ sampled keys, u = c·⌈ln L_Q⌉ active queries
    distil: bool = True  # self-attention distilling between encoder layers (halves the tokens)
    cross_attention: str = "full"  # "full" (the paper) or "prob" (TSLib's ProbSparse cross-attention)
    seed: int = 0  # of the fixed ProbSparse key samples
    select_f64: bool = True  # eval mode: the selections of the attentions over embeddings computed in float64
    dropout: float = 0.1  # TSLib's ETTh1 script

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.window < 2:
            raise ValueError(f"window must be ≥ 2 (the state holds the last window − 1 inputs), got {self.window}")
        if self.label_len is None:
            self.label_len = self.window // 2
        if not 0 <= self.label_len <= self.window:
            raise ValueError(f"label_len must be in [0, window={self.window}] (the decoder's start tokens are the "
                             f"window's last label_len inputs), got {self.label_len}")
        for name in ("d_model", "n_heads", "n_layers", "d_layers", "d_ff", "factor"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model must be a multiple of n_heads, got d_model={self.d_model}, "
                             f"n_heads={self.n_heads}")
        if not isinstance(self.distil, bool):
            raise ValueError(f"distil must be true or false, got {self.distil!r}")
        if self.cross_attention not in CROSS_ATTENTIONS:
            raise ValueError(f"cross_attention must be one of {CROSS_ATTENTIONS}, got {self.cross_attention!r}")
        if not isinstance(self.select_f64, bool):
            raise ValueError(f"select_f64 must be true or false, got {self.select_f64!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an integer ≥ 0, got {self.seed!r}")


class EncoderLayer(nn.Module):
    """h ← LN(h + ProbAttn(h)), h ← LN(h + FFN(h)) over `length` tokens."""

    def __init__(self, c: InformerConfig, length: int):
        super().__init__()
        d_model, dropout = c.d_model, c.dropout
        self.attention = ProbSparseAttention(d_model, c.n_heads, length, length, c.factor, False, c.seed)
        self.norm1 = nn.LayerNorm(d_model)
        self.ff = FeedForward(d_model, c.d_ff, dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: Tensor, select_from: Tensor | None = None) -> Tensor:
        """h (N, L, d) → (N, L, d); select_from: h in float64 for the selection (ProbSparseAttention.forward)."""
        h = self.norm1(h + self.dropout(self.attention(h, select_from=select_from)))
        return self.norm2(h + self.ff(h))


class DistilLayer(nn.Module):
    """Self-attention distilling: Conv1d(k=3, circular) → BatchNorm → ELU → MaxPool(k=3, s=2, p=1), L → ⌈L/2⌉."""

    def __init__(self, d_model: int):
        super().__init__()
        self.conv = nn.Conv1d(d_model, d_model, kernel_size=3)  # padded circularly by circular_conv3
        self.norm = nn.BatchNorm1d(d_model)
        self.pool = nn.MaxPool1d(kernel_size=3, stride=2, padding=1)

    def forward(self, h: Tensor) -> Tensor:
        """h (N, L, d) → (N, ⌈L/2⌉, d)."""
        z = circular_conv3(h, self.conv).transpose(1, 2)  # (N, d, L)
        return self.pool(F.elu(self.norm(z))).transpose(1, 2)


class DecoderLayer(nn.Module):
    """g ← LN(g + MaskedProbAttn(g)), g ← LN(g + CrossAttn(g, h)), g ← LN(g + FFN(g))."""

    def __init__(self, c: InformerConfig, n_dec: int, n_enc: int):
        super().__init__()
        d_model, h, dropout = c.d_model, c.n_heads, c.dropout
        self.self_attention = ProbSparseAttention(d_model, h, n_dec, n_dec, c.factor, True, c.seed)
        if c.cross_attention == "full":
            self.cross_attention: nn.Module = FullAttention(d_model, h, n_dec, n_enc, dropout)
        else:
            self.cross_attention = ProbSparseAttention(d_model, h, n_dec, n_enc, c.factor, False, c.seed)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.ff = FeedForward(d_model, c.d_ff, dropout)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, g: Tensor, h: Tensor, select_from: Tensor | None = None) -> Tensor:
        """g (N, ℓ+H, d) decoder tokens, h (N, L_enc, d) the encoder output → (N, ℓ+H, d); select_from: g in
        float64 for the self-attention's selection."""
        g = self.norm1(g + self.dropout(self.self_attention(g, select_from=select_from)))
        g = self.norm2(g + self.dropout(self.cross_attention(g, h)))
        return self.norm3(g + self.ff(g))


@register("informer")
class Informer(WindowModel):
    """Informer forecaster. x (B, L, D_in) → y (B, L, H, K); y[:, t, h−1, k] forecasts target k at t + h from the
    window x[:, t−W+1 : t+1] of every input column (zero-padded, or the state, before x[:, 0])."""

    Config = InformerConfig
    time_major = True  # windows (N, W, D)

    def __init__(self, config: InformerConfig):
        super().__init__()
        self.config = c = config
        D, d = c.d_input, c.d_model
        self.n_dec = c.label_len + c.horizon  # decoder tokens
        self.enc_lengths = encoder_lengths(c.window, c.n_layers, c.distil)
        self.n_enc = self.enc_lengths[-1]  # encoder output tokens (no distilling after the last layer)
        self.enc_embed = nn.Conv1d(D, d, kernel_size=3, bias=False)  # token embeddings, circular padding
        self.dec_embed = nn.Conv1d(D, d, kernel_size=3, bias=False)
        for conv in (self.enc_embed, self.dec_embed):
            nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="leaky_relu")
        pe = sinusoid(max(c.window, self.n_dec), d).to(torch.get_default_dtype())
        self.register_buffer("pe", pe, persistent=False)  # (max(W, ℓ+H), d)
        self.dropout = nn.Dropout(c.dropout)
        self.encoder = nn.ModuleList(EncoderLayer(c, n) for n in self.enc_lengths)  # over W, ⌈W/2⌉, … tokens
        self.distil = nn.ModuleList(DistilLayer(d) for _ in range(c.n_layers - 1) if c.distil)
        self.enc_norm = nn.LayerNorm(d)
        self.decoder = nn.ModuleList(DecoderLayer(c, self.n_dec, self.n_enc) for _ in range(c.d_layers))
        self.dec_norm = nn.LayerNorm(d)
        self.proj = nn.Linear(d, c.n_targets)  # c_out = K

    def embed(self, u: Tensor, conv: nn.Conv1d, n: int) -> tuple[Tensor, Tensor | None]:
        """Tokens u (N, n, D_in) → their embedding (N, n, d) and, in eval mode with select_f64, the same embedding
        computed in float64 (N, n, d) for the first attention's selection (else None). n from the config."""
        e = self.dropout(circular_conv3(u, conv) + self.pe[:n])  # (N, n, d)
        if self.training or not self.config.select_f64:
            return e, None
        u64 = u.double()
        taps = torch.cat([torch.roll(u64, 1, 1), u64, torch.roll(u64, -1, 1)], -1)  # (N, n, 3·D): u_{i−1}, u_i, u_{i+1}
        weight = conv.weight.double().permute(2, 1, 0).reshape(3 * conv.in_channels, conv.out_channels)  # tap-major
        return e, taps @ weight + self.pe[:n].double()

    def encode(self, w: Tensor) -> Tensor:
        """Windows w (N, W, D_in) → the encoder output (N, L_enc, d)."""
        h, h64 = self.embed(w, self.enc_embed, self.config.window)  # (N, W, d)
        for i, layer in enumerate(self.encoder):
            h = layer(h, h64 if i == 0 else None)  # (N, L_i, d)
            if i < len(self.distil):
                h = self.distil[i](h)  # (N, L_{i+1}, d)
        return self.enc_norm(h)

    def forecast(self, w: Tensor) -> Tensor:
        """The Informer formula on explicit windows: w (N, W, D_in), every input column's last W values → the
        targets' forecasts (N, H, K)."""
        c = self.config
        h = self.encode(w)  # (N, L_enc, d)
        start = w[:, c.window - c.label_len :]  # (N, ℓ, D): the decoder's start tokens
        u = F.pad(start, (0, 0, 0, c.horizon))  # (N, ℓ+H, D): then H zero placeholders
        g, g64 = self.embed(u, self.dec_embed, self.n_dec)  # (N, ℓ+H, d)
        for i, layer in enumerate(self.decoder):
            g = layer(g, h, g64 if i == 0 else None)
        return self.proj(self.dec_norm(g[:, c.label_len :]))  # (N, H, K): the placeholders' positions
