"""Causal Transformer baseline: decoder-only, sliding-window attention with ALiBi, KV-cache step.

Input projection → n_layers pre-norm blocks (multi-head self-attention + GELU MLP of width d_ff)
→ LayerNorm → ForecastHead. Position t attends to the last `window` = W positions t−W+1 … t:

    score_h(t, j) = q_t·k_j / √d_head − m_h·(t − j)      for 0 ≤ t − j < W (−inf otherwise)

Position enters only through the ALiBi biases −m_h·(t − j) (Press et al., "Train Short, Test Long",
ICLR 2022; fixed geometric head slopes m_h, no learned or absolute position embedding). They depend
on the distance alone, so the KV cache needs no position counter and is a plain shift register:

    k_cache ← cat(k_cache[1:], k_t),   v_cache ← cat(v_cache[1:], v_t),   valid ← cat(valid[1:], 1)

State: per layer the K and V caches (window, d_model), the projections of the last W positions,
oldest first, then one validity mask (window,) shared by the layers (1 = filled, 0 = empty; the
zero state is an empty cache). Empty slots get an additive −inf, hence exactly zero weight.

Three equivalent modes, all through torch's scaled_dot_product_attention with an additive mask:
- forward(x), stateless: L ≤ block: one call with a (1, h, L, L) banded causal ALiBi mask; L > block:
  queries in blocks of C = block, each against its C + W − 1 keys (O(L·W) time and memory, not L²).
- forward_with_state(x, state): keys [cache ; new] (W + L), the same band offset by W, and the
  validity of the cached keys. Equals running `step` L times.
- step: shift the caches, then one query against the W cached keys. O(W·d_model) per layer.

Receptive field: W positions per layer, so n_layers·(W − 1) + 1 inputs for the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.base import ForecastHead, ModelConfig, State, StateField, StreamingModel
from models.registry import register

MIN_BLOCK = 64  # query block of the stateless sliding path: max(window, MIN_BLOCK)


def alibi_slopes(n_heads: int) -> Tensor:
    """ALiBi head slopes (n_heads,) float64: m_h = 2^(−8h/n) for h = 1 … n when n is a power of 2;
    otherwise those of the next lower power of 2 followed by every other slope of the next higher one."""

    def geometric(n: int) -> list[float]:
        return [2.0 ** (-8.0 * (h + 1) / n) for h in range(n)]

    p = 1 << (n_heads.bit_length() - 1)  # largest power of 2 ≤ n_heads
    slopes = geometric(p)
    if p < n_heads:
        slopes += geometric(2 * p)[0::2][: n_heads - p]
    return torch.tensor(slopes, dtype=torch.float64)


def band_bias(slopes: Tensor, n_q: int, n_k: int, offset: int, window: int) -> Tensor:
    """(h, n_q, n_k) additive mask: query i and key j at distance d = offset + i − j get −m_h·d when
    0 ≤ d < window, −inf otherwise (in the future or out of the window)."""
    i = torch.arange(n_q, device=slopes.device).unsqueeze(-1)
    j = torch.arange(n_k, device=slopes.device)
    d = offset + i - j  # (n_q, n_k)
    inside = (d >= 0) & (d < window)
    return (-slopes.view(-1, 1, 1) * d.to(slopes.dtype)).masked_fill(~inside, float("-inf"))


def empty_bias(valid: Tensor) -> Tensor:
    """valid (..., W) 0/1 → additive bias (..., W): 0 for filled cache slots, −inf for empty ones."""
    return torch.zeros_like(valid).masked_fill(valid < 0.5, float("-inf"))


class AttentionPlan(NamedTuple):
    """The additive mask of one parallel pass, shared by every layer, and its query blocking.

    blocked = False: mask (1 or B, h, L, P+L) for all queries against all keys.
    blocked = True: mask (1 or B, h·nB, C, S), S = C + W − 1; keys are cut at `key_start`, padded
    with `pad_left` leading and `pad_right` trailing slots, and unfolded into nB spans of S keys."""

    mask: Tensor
    blocked: bool
    block: int = 0
    span: int = 0
    key_start: int = 0
    pad_left: int = 0
    pad_right: int = 0


def attend(q: Tensor, k: Tensor, v: Tensor, plan: AttentionPlan) -> Tensor:
    """q (B, h, L, dh); k, v (B, h, P+L, dh) → (B, h, L, dh) under `plan`."""
    if not plan.blocked:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=plan.mask)
    B, H, L, dh = q.shape
    C, S = plan.block, plan.span
    n_blocks = (L + plan.pad_right) // C
    q = F.pad(q, (0, 0, 0, plan.pad_right)).reshape(B, H * n_blocks, C, dh)  # (B, h·nB, C, dh)

    def spans(t: Tensor) -> Tensor:  # (B, h, P+L, dh) → (B, h·nB, S, dh): block b's keys
        t = F.pad(t[:, :, plan.key_start :], (0, 0, plan.pad_left, plan.pad_right))
        return t.unfold(2, S, C).transpose(-1, -2).reshape(B, H * n_blocks, S, dh)

    y = F.scaled_dot_product_attention(q, spans(k), spans(v), attn_mask=plan.mask)
    return y.reshape(B, H, n_blocks * C, dh)[:, :, :L]


class TransformerBlock(nn.Module):
    """Pre-norm block: h + Attn(LN(h)), then h + MLP(LN(h)) with a GELU MLP of width d_ff."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.0):
        super().__init__()
        self.n_heads, self.d_head = n_heads, d_model // n_heads
        self.norm1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.fc1 = nn.Linear(d_model, d_ff)
        self.fc2 = nn.Linear(d_ff, d_model)
        self.dropout = nn.Dropout(dropout)

    def _heads(self, t: Tensor) -> Tensor:
        return t.unflatten(-1, (self.n_heads, self.d_head)).transpose(1, 2)  # (B, L, d) → (B, h, L, dh)

    def _mlp(self, h: Tensor) -> Tensor:
        return h + self.dropout(self.fc2(F.gelu(self.fc1(self.norm2(h)))))

    def forward(
        self, h: Tensor, plan: AttentionPlan, cache: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """h (B, L, d), cache (k, v) each (B, P, d) or None → h (B, L, d) and the keys and values
        attended, (B, P+L, d) each ([cache ; new])."""
        q, k, v = self.qkv(self.norm1(h)).chunk(3, dim=-1)  # (B, L, d) each
        if cache is not None:
            k, v = torch.cat([cache[0], k], 1), torch.cat([cache[1], v], 1)  # (B, P+L, d)
        a = attend(self._heads(q), self._heads(k), self._heads(v), plan)  # (B, h, L, dh)
        h = h + self.dropout(self.out(a.transpose(1, 2).flatten(2)))
        return self._mlp(h), k, v

    def step(self, h_t: Tensor, k_cache: Tensor, v_cache: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """h_t (B, d), caches (B, W, d), mask (B, h, 1, W) → h_t (B, d) and the shifted caches."""
        q, k, v = self.qkv(self.norm1(h_t)).chunk(3, dim=-1)  # (B, d) each
        k_cache = torch.cat([k_cache[:, 1:], k.unsqueeze(1)], 1)  # (B, W, d)
        v_cache = torch.cat([v_cache[:, 1:], v.unsqueeze(1)], 1)
        q = q.unflatten(-1, (self.n_heads, self.d_head)).unsqueeze(-2)  # (B, h, 1, dh)
        a = F.scaled_dot_product_attention(q, self._heads(k_cache), self._heads(v_cache), attn_mask=mask)
        h_t = h_t + self.dropout(self.out(a.flatten(1)))  # (B, h, 1, dh) → (B, d)
        return self._mlp(h_t), k_cache, v_cache


@dataclass
class TransformerConfig(ModelConfig):
    d_model: int = 32
    n_layers: int = 2
    n_heads: int = 4
    d_ff: int = 64
    window: int = 256

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("d_model", "n_layers", "n_heads", "d_ff", "window"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model must be a multiple of n_heads, got d_model={self.d_model}, "
                             f"n_heads={self.n_heads}")


@register("transformer")
class Transformer(StreamingModel):
    """Decoder-only causal Transformer with sliding-window ALiBi attention and a multi-horizon head."""

    Config = TransformerConfig

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = config
        c, d = config, config.d_model
        self.encoder = nn.Linear(c.d_input, d)
        self.blocks = nn.ModuleList(TransformerBlock(d, c.n_heads, c.d_ff, c.dropout) for _ in range(c.n_layers))
        self.final_norm = nn.LayerNorm(d)
        self.head = ForecastHead(d, c.horizon, c.n_targets, c.target_index)
        self.block = max(c.window, MIN_BLOCK)  # query block of long passes; any value ≥ 1 gives the same y
        slopes = alibi_slopes(c.n_heads).to(torch.get_default_dtype())
        self.register_buffer("slopes", slopes, persistent=False)  # (h,), fixed (not learned)
        self._init_weights()

    def _init_weights(self) -> None:
        """GPT-2 init: Linear weights N(0, 0.02), biases 0; residual projections scaled by 1/√(2·n_layers)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        for blk in self.blocks:
            for m in (blk.out, blk.fc2):
                nn.init.normal_(m.weight, std=0.02 / math.sqrt(2 * self.config.n_layers))

    def state_spec(self) -> list[StateField]:
        W, d = self.config.window, self.config.d_model
        caches = [StateField(f"layer{i}.{kv}", (W, d)) for i in range(self.config.n_layers) for kv in ("k", "v")]
        return [*caches, StateField("valid", (W,))]

    def _plan(self, L: int, valid: Tensor | None) -> AttentionPlan:
        """The attention mask for L new positions after a cache with validity `valid` (B, P) (None: no cache)."""
        W, C = self.config.window, self.block
        P = 0 if valid is None else valid.shape[1]
        if L <= C:
            # 4-D masks only: with a 3-D one SDPA falls back to its slow math path on CPU.
            mask = band_bias(self.slopes, L, P + L, P, W)[None]  # (1, h, L, P+L)
            if valid is not None:
                key_bias = F.pad(empty_bias(valid), (0, L))  # (B, P+L): new keys are always valid
                mask = mask + key_bias[:, None, None, :]  # (B, h, L, P+L)
            return AttentionPlan(mask, blocked=False)
        # Block b holds queries i = bC + r (r < C); its keys start at i = bC − W + 1, so key slot s is at
        # distance r + W − 1 − s from query r whatever b: one band for all blocks, offset W − 1.
        S, n_blocks = C + W - 1, -(-L // C)
        pad_right, key_start = n_blocks * C - L, max(0, P - W + 1)
        pad_left = max(0, W - 1 - P)
        if valid is None:
            key_bias = self.slopes.new_zeros(1, L)
        else:
            key_bias = F.pad(empty_bias(valid), (0, L))  # (B, P+L)
        # Leading pad slots are empty; trailing ones are seen only by the padding queries (discarded).
        key_bias = F.pad(key_bias[:, key_start:], (pad_left, 0), value=float("-inf"))
        key_bias = F.pad(key_bias, (0, pad_right)).unfold(1, S, C)  # (1 or B, nB, S)
        band = band_bias(self.slopes, C, S, W - 1, W)  # (h, C, S)
        mask = band[None, :, None] + key_bias[:, None, :, None, :]  # (1 or B, h, nB, C, S)
        mask = mask.flatten(1, 2)  # (1 or B, h·nB, C, S)
        return AttentionPlan(mask, True, C, S, key_start, pad_left, pad_right)

    def forward(self, x: Tensor, state: State | None = None) -> Tensor:
        """x (B, L, D_in) → y (B, L, H, K). Without a state, the standard stateless pass (no cache)."""
        if state is not None:
            return self.forward_with_state(x, state)[0]
        h = self.encoder(x)  # (B, L, d)
        plan = self._plan(x.shape[1], None)
        for blk in self.blocks:
            h, _, _ = blk(h, plan)
        return self.head(self.final_norm(h), x)

    def forward_with_state(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """x (B, L, D_in), state (empty cache when None) → y (B, L, H, K), the state after x[:, -1]."""
        B, L, _ = x.shape
        if state is None:
            state = self.init_state(B, x.device, x.dtype)
        W, valid = self.config.window, state[-1]
        plan = self._plan(L, valid)
        h = self.encoder(x)  # (B, L, d)
        new_state: list[Tensor] = []
        for i, blk in enumerate(self.blocks):
            h, k, v = blk(h, plan, (state[2 * i], state[2 * i + 1]))  # k, v (B, W+L, d)
            new_state += [k[:, -W:], v[:, -W:]]
        new_valid = torch.cat([valid, valid.new_ones(B, L)], 1)[:, -W:]  # (B, W)
        return self.head(self.final_norm(h), x), (*new_state, new_valid)

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        """x_t (B, D_in), state → y_t (B, H, K), new state. Pure; O(W·d_model) per layer."""
        valid = torch.cat([state[-1][:, 1:], torch.ones_like(state[-1][:, :1])], 1)  # (B, W), current slot filled
        # The query sits at cache slot W−1, so key slot j is at distance W−1−j (a constant when exported).
        W = self.config.window
        mask = band_bias(self.slopes, 1, W, W - 1, W) + empty_bias(valid)[:, None, None, :]  # (B, h, 1, W)
        h = self.encoder(x_t)  # (B, d)
        new_state: list[Tensor] = []
        for i, blk in enumerate(self.blocks):
            h, k, v = blk.step(h, state[2 * i], state[2 * i + 1], mask)
            new_state += [k, v]
        return self.head(self.final_norm(h), x_t), (*new_state, valid)
