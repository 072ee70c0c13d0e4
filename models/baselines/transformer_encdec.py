"""The standard encoder–decoder Transformer (Vaswani et al., "Attention Is All You Need", 2017) as the State Space
Model Universal seed has it (TransformerEncoderLayer, TransformerDecoderLayer, TransformerModel), and the LTSF
"vanilla Transformer" forecaster built on it, registered as `transformer_encdec` and made streaming as a window model.

The seed's components (d = d_model, h heads of d/h, pre-norm blocks as the seed's, d_ff = 4·d by default):

    attention:   softmax(q kᵀ/√(d/h) + mask) v per head, dropout (attention_dropout) on the weights; masks as
                 torch's scaled_dot_product_attention takes them: bool True = may attend, a float mask is added to
                 the scores (so the seed README's float masks, ones and triu(ones, 1), change nothing: a constant
                 shift, and an addition to future scores the causal self-attention removes anyway)
    encoder:     h ← h + Drop(SelfAttn(LN(h), mask)),  h ← h + Drop(FFN(LN(h)))          FFN = Linear → GELU → Drop →
    decoder:     g ← g + Drop(CausalSelfAttn(LN(g), tgt_mask)),                          Linear
                 g ← g + Drop(CrossAttn(LN(g), memory, memory_mask)),  g ← g + Drop(FFN(LN(g)))
    model:       memory = LN(Encoder(Drop(src + pos))),  out = LN(Decoder(Drop(tgt + pos), memory)),
                 pos sinusoidal (fixed) or learned (the seed's: a table of max_seq_len rows, N(0, 1/d) init),
                 shared by encoder and decoder, positions counted from 0 in each sequence.

The forecaster (as TSLib's Transformer, which is Informer with full attention and no distilling): at every position t
the window w = (x_{t−W+1}, …, x_t) of every input column, W × D_in, is the encoder's source; the decoder's target is
the window's last ℓ = label_len inputs followed by H zero placeholders. Each sequence is embedded by a bias-free
kernel-3 convolution with circular padding (TSLib's token embedding, models.baselines.informer.circular_conv3), runs
through TransformerModel, and the H placeholder positions are projected to the K targets:

    ŷ_{t+1 … t+H} = P·TransformerModel(E_enc(w), E_dec([x_{t−ℓ+1 … t}; 0_H]))_{ℓ+1 … ℓ+H} + p

No ProbSparse attention, no distilling, no time-stamp embedding (our inputs have no timestamps). What differs from
TSLib's: pre-norm blocks (the seed's layers) where TSLib normalizes after the residual; with `num_layers` the seed
sets encoder and decoder depth alike, so d_layers defaults to n_layers (TSLib's ETTh1 script uses d_layers 1).

Streaming (models.baselines.window.WindowModel): the state is the last W − 1 inputs, (W − 1, D_in) per cell; the
zero state is zero padding; forward unfolds every window, step runs one. A step is a pure function of its window,
so step ≡ forward exactly, and it exports to ONNX (matmuls, softmax, a constant causal mask).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.base import ModelConfig
from models.baselines.informer import circular_conv3, sinusoid
from models.baselines.window import WindowModel
from models.registry import register

POSITIONS = ("sinusoidal", "learned")


def apply_mask(scores: Tensor, mask: Tensor | None) -> Tensor:
    """scores (B, h, L, S) with a mask (L, S), (B, L, S) or (B, h, L, S): bool True = may attend (False → −inf),
    float added to the scores (scaled_dot_product_attention's convention)."""
    if mask is None:
        return scores
    if mask.dim() == 3:
        mask = mask.unsqueeze(1)  # the same mask for every head
    if mask.dtype == torch.bool:
        return scores.masked_fill(~mask, float("-inf"))
    return scores + mask.to(scores.dtype)


class MultiHeadAttention(nn.Module):
    """Multi-head attention of queries (B, L, d) over keys and values (B, S, d) → (B, L, d); `causal`: query i sees
    keys j ≤ i only (decoder self-attention)."""

    def __init__(self, d_model: int, num_heads: int, attention_dropout: float = 0.0, causal: bool = False):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model must be a multiple of num_heads, got d_model={d_model}, num_heads={num_heads}")
        self.n_heads, self.d_head, self.causal = num_heads, d_model // num_heads, causal
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(attention_dropout)

    def _heads(self, t: Tensor) -> Tensor:
        return t.unflatten(-1, (self.n_heads, self.d_head)).transpose(1, 2)  # (B, n, d) → (B, h, n, dh)

    def forward(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> Tensor:
        q, k, v = self._heads(self.q_proj(q)), self._heads(self.k_proj(k)), self._heads(self.v_proj(v))
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.d_head)  # (B, h, L, S)
        if self.causal:
            L, S = scores.shape[-2:]
            future = torch.ones(L, S, dtype=torch.bool, device=scores.device).triu(1)
            scores = scores.masked_fill(future, float("-inf"))
        attn = self.dropout(torch.softmax(apply_mask(scores, mask), -1))
        return self.out_proj((attn @ v).transpose(1, 2).flatten(2))  # (B, L, d)


class FeedForward(nn.Module):
    """Position-wise Linear(d, d_ff) → GELU → dropout → Linear(d_ff, d) (the seed's PositionwiseFFN)."""

    def __init__(self, d_model: int, d_ff: int, dropout: float):
        super().__init__()
        self.fc1, self.fc2, self.dropout = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model), nn.Dropout(dropout)

    def forward(self, h: Tensor) -> Tensor:
        return self.fc2(self.dropout(F.gelu(self.fc1(h))))


class TransformerEncoderLayer(nn.Module):
    """Pre-norm encoder layer: x (B, L, d), mask (module docstring) → (B, L, d). The seed's signature."""

    def __init__(self, d_model: int, num_heads: int = 8, d_ff: int | None = None, dropout: float = 0.1,
                 attention_dropout: float = 0.1):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, num_heads, attention_dropout)
        self.ffn = FeedForward(d_model, d_ff or 4 * d_model, dropout)
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        h = self.norm1(x)
        x = x + self.dropout(self.self_attn(h, h, h, mask))
        return x + self.dropout(self.ffn(self.norm2(x)))


class TransformerDecoderLayer(nn.Module):
    """Pre-norm decoder layer: causal self-attention, cross-attention to the encoder's memory, FFN.
    x (B, L, d), memory (B, S, d), tgt_mask (L, L)-like, memory_mask (L, S)-like → (B, L, d). The seed's signature."""

    def __init__(self, d_model: int, num_heads: int = 8, d_ff: int | None = None, dropout: float = 0.1,
                 attention_dropout: float = 0.1):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, num_heads, attention_dropout, causal=True)
        self.cross_attn = MultiHeadAttention(d_model, num_heads, attention_dropout)
        self.ffn = FeedForward(d_model, d_ff or 4 * d_model, dropout)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d_model), nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, memory: Tensor, tgt_mask: Tensor | None = None,
                memory_mask: Tensor | None = None) -> Tensor:
        h = self.norm1(x)
        x = x + self.dropout(self.self_attn(h, h, h, tgt_mask))
        x = x + self.dropout(self.cross_attn(self.norm2(x), memory, memory, memory_mask))
        return x + self.dropout(self.ffn(self.norm3(x)))


class TransformerModel(nn.Module):
    """The seed's encoder–decoder: `TransformerModel(d_model=512, num_encoder_layers=6, num_decoder_layers=6,
    num_heads=8, d_ff=2048, dropout=0.1, attention_dropout=0.1, max_seq_len=2048)`;
    forward(src (B, S, d), tgt (B, T, d), src_mask, tgt_mask, memory_mask) → (B, T, d). positions: "learned" (the
    seed's table) or "sinusoidal"; sequences longer than max_seq_len raise ValueError."""

    def __init__(self, d_model: int, num_encoder_layers: int = 6, num_decoder_layers: int = 6, num_heads: int = 8,
                 d_ff: int | None = None, dropout: float = 0.1, attention_dropout: float = 0.1,
                 max_seq_len: int = 2048, positions: str = "learned"):
        super().__init__()
        if positions not in POSITIONS:
            raise ValueError(f"positions must be one of {POSITIONS}, got {positions!r}")
        self.max_seq_len = max_seq_len
        if positions == "learned":
            self.pos = nn.Parameter(torch.randn(max_seq_len, d_model) / math.sqrt(d_model))  # (max_seq_len, d)
        else:
            self.register_buffer("pos", sinusoid(max_seq_len, d_model).to(torch.get_default_dtype()), persistent=False)
        self.dropout = nn.Dropout(dropout)
        self.encoder_layers = nn.ModuleList(
            TransformerEncoderLayer(d_model, num_heads, d_ff, dropout, attention_dropout)
            for _ in range(num_encoder_layers))
        self.decoder_layers = nn.ModuleList(
            TransformerDecoderLayer(d_model, num_heads, d_ff, dropout, attention_dropout)
            for _ in range(num_decoder_layers))
        self.enc_norm, self.dec_norm = nn.LayerNorm(d_model), nn.LayerNorm(d_model)

    def _positioned(self, x: Tensor) -> Tensor:
        """x (B, L, d) + the positions 0 … L−1, dropout."""
        L = x.shape[1]
        if self.max_seq_len < L:
            raise ValueError(f"sequence of {L} positions is longer than max_seq_len={self.max_seq_len}")
        return self.dropout(x + self.pos[:L])

    def encode(self, src: Tensor, src_mask: Tensor | None = None) -> Tensor:
        """src (B, S, d) → memory (B, S, d)."""
        h = self._positioned(src)
        for layer in self.encoder_layers:
            h = layer(h, src_mask)
        return self.enc_norm(h)

    def decode(self, tgt: Tensor, memory: Tensor, tgt_mask: Tensor | None = None,
               memory_mask: Tensor | None = None) -> Tensor:
        """tgt (B, T, d), memory (B, S, d) → (B, T, d); the self-attention is causal whatever tgt_mask."""
        g = self._positioned(tgt)
        for layer in self.decoder_layers:
            g = layer(g, memory, tgt_mask, memory_mask)
        return self.dec_norm(g)

    def forward(self, src: Tensor, tgt: Tensor, src_mask: Tensor | None = None, tgt_mask: Tensor | None = None,
                memory_mask: Tensor | None = None) -> Tensor:
        return self.decode(tgt, self.encode(src, src_mask), tgt_mask, memory_mask)


@dataclass
class TransformerEncDecConfig(ModelConfig):
    window: int = 96  # lookback W (TSLib's seq_len): the encoder reads the last W inputs
    label_len: int | None = None  # ℓ, the decoder's start tokens (the window's last ℓ inputs); None: window // 2
    d_model: int = 512
    n_heads: int = 8  # must divide d_model (the seed's num_heads)
    n_layers: int = 2  # encoder layers (TSLib's e_layers, the seed's num_encoder_layers / num_layers)
    d_layers: int | None = None  # decoder layers (the seed's num_decoder_layers); None: n_layers, as the seed
    d_ff: int | None = 2048  # None: 4·d_model (the seed's default)
    attention_dropout: float | None = None  # on the attention weights; None: dropout
    positions: str = "sinusoidal"  # "sinusoidal" (TSLib) | "learned" (the seed's table)
    max_seq_len: int | None = None  # rows of the positions table; None: max(window, label_len + horizon)
    dropout: float = 0.1  # TSLib's ETTh1 script

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.window < 2:
            raise ValueError(f"window must be ≥ 2 (the state holds the last window − 1 inputs), got {self.window}")
        if self.label_len is None:
            self.label_len = self.window // 2
        if not 0 <= self.label_len <= self.window:
            raise ValueError(f"label_len must be in [0, window={self.window}], got {self.label_len}")
        if self.d_layers is None:
            self.d_layers = self.n_layers
        if self.d_ff is None:
            self.d_ff = 4 * self.d_model
        for name in ("d_model", "n_heads", "n_layers", "d_layers", "d_ff"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model must be a multiple of n_heads, got d_model={self.d_model}, "
                             f"n_heads={self.n_heads}")
        if self.attention_dropout is not None and not 0.0 <= self.attention_dropout < 1.0:
            raise ValueError(f"attention_dropout must be in [0, 1), got {self.attention_dropout}")
        if self.positions not in POSITIONS:
            raise ValueError(f"positions must be one of {POSITIONS}, got {self.positions!r}")
        need = max(self.window, self.label_len + self.horizon)
        if self.max_seq_len is None:
            self.max_seq_len = need
        if self.max_seq_len < need:
            raise ValueError(f"max_seq_len must be ≥ max(window, label_len + horizon) = {need}, got {self.max_seq_len}")


@register("transformer_encdec")
class TransformerEncDec(WindowModel):
    """The LTSF vanilla Transformer on TransformerModel. x (B, L, D_in) → y (B, L, H, K); y[:, t, h−1, k] forecasts
    target k at t + h from the window x[:, t−W+1 : t+1] of every input column (zero-padded, or the state, before
    x[:, 0])."""

    Config = TransformerEncDecConfig
    time_major = True  # windows (N, W, D)

    def __init__(self, config: TransformerEncDecConfig):
        super().__init__()
        self.config = c = config
        D, d = c.d_input, c.d_model
        self.enc_embed = nn.Conv1d(D, d, kernel_size=3, bias=False)  # token embeddings, circular padding
        self.dec_embed = nn.Conv1d(D, d, kernel_size=3, bias=False)
        for conv in (self.enc_embed, self.dec_embed):
            nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="leaky_relu")
        attention_dropout = c.dropout if c.attention_dropout is None else c.attention_dropout
        self.transformer = TransformerModel(d, c.n_layers, c.d_layers, c.n_heads, c.d_ff, c.dropout,
                                            attention_dropout, c.max_seq_len, c.positions)
        self.proj = nn.Linear(d, c.n_targets)  # c_out = K

    def forecast(self, w: Tensor) -> Tensor:
        """Explicit windows w (N, W, D_in), every input column's last W values → the targets' forecasts (N, H, K)."""
        c = self.config
        start = w[:, c.window - c.label_len :]  # (N, ℓ, D): the decoder's start tokens
        target = F.pad(start, (0, 0, 0, c.horizon))  # (N, ℓ+H, D): then H zero placeholders
        g = self.transformer(circular_conv3(w, self.enc_embed), circular_conv3(target, self.dec_embed))  # (N, ℓ+H, d)
        return self.proj(g[:, c.label_len :])  # (N, H, K): the placeholders' positions
