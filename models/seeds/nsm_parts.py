"""The parts of an NSM layer (models/seeds/nsm.py): node bookkeeping (StateManager), token-to-node routing,
state-to-state attention, the gated node update (StatePropagator) and the hybrid readout."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class StateManager(nn.Module):
    """A layer's node bookkeeping: a learnable importance logit per node and the `active` mask (a buffer, so a
    checkpoint restores it). Importance g = σ(logit) ∈ (0, 1)."""

    def __init__(self, bank: int, n_active: int, importance_init: float):
        super().__init__()
        self.init_logit = math.log(importance_init / (1 - importance_init))
        self.importance_logit = nn.Parameter(torch.full((bank,), self.init_logit))  # (s,)
        active = torch.zeros(bank, dtype=torch.bool)
        active[:n_active] = True
        self.register_buffer("active", active)  # (s,) bool

    def importance(self) -> Tensor:
        """g (s,): σ(logit) on active nodes, 0 on inactive ones."""
        g = torch.sigmoid(self.importance_logit)
        return torch.where(self.active, g, torch.zeros_like(g))

    def node_bias(self) -> Tensor:
        """b (s,): log g on active nodes, −∞ on inactive ones (added to every softmax over nodes)."""
        log_g = F.logsigmoid(self.importance_logit)
        return torch.where(self.active, log_g, torch.full_like(log_g, -math.inf))

    def n_active(self) -> int:
        return int(self.active.sum())

    @torch.no_grad()
    def prune(self, threshold: float) -> list[int]:
        """Deactivate the active nodes of importance below `threshold`, keeping the most important one when all
        are; returns the pruned indices."""
        g = torch.sigmoid(self.importance_logit)
        low = self.active & (g < threshold)
        if bool((low == self.active).all()):  # every active node below: keep the most important
            best = torch.where(self.active, g, torch.full_like(g, -1.0)).argmax()
            low[best] = False
        self.active &= ~low
        return low.nonzero().flatten().tolist()

    @torch.no_grad()
    def allocate(self) -> int | None:
        """Activate the first inactive node with the initial importance; its index, or None when the bank is full."""
        free = (~self.active).nonzero().flatten()
        if free.numel() == 0:
            return None
        i = int(free[0])
        self.active[i] = True
        self.importance_logit[i] = self.init_logit
        return i


class TokenToStateRouter(nn.Module):
    """Learned attention of a token over the nodes: logits (W_q u)·(S_i + e_i)/√d + b_i, softmax over the nodes
    (inactive ones get exactly 0). e_i, a learned key per node, tells nodes apart when their states agree."""

    def __init__(self, d_model: int, bank: int):
        super().__init__()
        self.query = nn.Linear(d_model, d_model)
        self.node_key = nn.Parameter(torch.randn(bank, d_model))  # (s, d)
        self.scale = d_model**-0.5

    def prepare(self, u: Tensor, bias: Tensor) -> tuple[Tensor, Tensor]:
        """The token side, on any leading axes (batched over a sequence ahead of the recurrence): u (..., d) →
        scaled query q (..., d) and the node-key logits q·e_i + b_i (..., s)."""
        q = self.query(u) * self.scale
        return q, q @ self.node_key.t() + bias

    def forward(self, q: Tensor, key_logits: Tensor, S: Tensor) -> Tensor:
        """q (B, d), key_logits (B, s) from prepare, nodes S (B, s, d) → routing weights w (B, s), summing to 1."""
        return torch.softmax((S @ q.unsqueeze(-1)).squeeze(-1) + key_logits, dim=-1)


class StateAttention(nn.Module):
    """Multi-head self-attention among the nodes (the seed's state-to-state communication): S (B, s, d) → messages
    (B, s, d), the heads concatenated (the output projection is the propagator's W_m). Keys biased by b. The layer
    computes qkv(S) in one product with the propagator's hid(S) (`NSMLayer._state_weights`)."""

    def __init__(self, d_model: int, n_heads: int, bank: int):
        super().__init__()
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.bank, self.n_heads, self.d_head = bank, n_heads, d_model // n_heads

    def forward(self, qkv: Tensor, mask: Tensor) -> Tensor:
        """qkv (B, s, 3d) = self.qkv(S), mask (1, 1, 1, s): the node bias b → messages (B, s, d)."""
        s, h, dh = self.bank, self.n_heads, self.d_head
        q, k, v = qkv.view(-1, s, 3, h, dh).permute(2, 0, 3, 1, 4).unbind(0)  # (B, h, s, dh) each
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, h, s, dh); inactive keys weigh 0
        return out.transpose(1, 2).reshape(-1, s, h * dh)  # (B, s, d)


class StatePropagator(nn.Module):
    """Gated node update (GRU or LSTM cell per node, weights shared, a learned gate bias β_i per node), written
    with the routing weight: S' = S + w (S̃ − S). w = 1: the plain cell; w = 0: the node is kept exactly. The
    layer computes hid(S) (with the attention's qkv(S) in one product)."""

    def __init__(self, d_model: int, bank: int, kind: str, messages: bool):
        super().__init__()
        d, self.d, self.lstm = d_model, d_model, kind == "lstm"
        G = (4 if self.lstm else 3) * d  # gates: LSTM i, f, g, o; GRU z (update / retain), r (reset), n
        self.inp = nn.Linear(d, G)  # token → gates, applied to the tokens ahead of the recurrence
        self.hid = nn.Linear(d, G)  # node state → gates
        self.msg = nn.Linear(d, G, bias=False) if messages else None  # communication message → gates
        self.node_bias = nn.Parameter(0.1 * torch.randn(bank, G))  # (s, G)
        if self.lstm:
            with torch.no_grad():  # forget gate bias 1 (Jozefowicz et al. 2015): remember by default
                self.inp.bias[d : 2 * d].fill_(1.0)
                self.hid.bias[d : 2 * d].zero_()

    def forward(self, x: Tensor, gh: Tensor, S: Tensor, C: Tensor | None, w: Tensor,
                M: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """x (B, G) = inp(u_t), gh (B, s, G) = hid(S), S (B, s, d) nodes, C (B, s, d) cells (LSTM) or None,
        w (B, s) routing weights, M (B, s, d) messages or None → S', C' (None for the GRU)."""
        d = self.d
        gi = x.unsqueeze(1) + self.node_bias  # (B, s, G)
        if M is not None:
            gi = gi + self.msg(M)
        w = w.unsqueeze(-1)  # (B, s, 1)
        if self.lstm:
            i, f, c_in, o = (gi + gh).split(d, dim=-1)  # (B, s, d) each
            c_full = torch.sigmoid(f) * C + torch.sigmoid(i) * torch.tanh(c_in)
            h_full = torch.sigmoid(o) * torch.tanh(c_full)
            return S + w * (h_full - S), C + w * (c_full - C)
        zr_i, n_i = gi.split([2 * d, d], dim=-1)
        zr_h, n_h = gh.split([2 * d, d], dim=-1)
        z, r = torch.sigmoid(zr_i + zr_h).split(d, dim=-1)  # update (write) gate z, 1 − z retains; reset gate r
        n = torch.tanh(n_i + r * n_h)  # candidate
        return S + (w * z) * (n - S), None  # the GRU cell S + z (n − S), its write scaled by w


class HybridAttention(nn.Module):
    """Readout from the updated nodes: weights a = λ w + (1 − λ) c, the token-to-state routing w combined with
    content attention c = softmax((W_r u)·S'_i/√d + b_i) (λ = σ(learned), init ½); without `hybrid`, a = w.
    y = W_o Σ_i a_i g_i S'_i. Works on any leading axes: (B, ·) per step, (B, L, ·) over a sequence."""

    def __init__(self, d_model: int, hybrid: bool):
        super().__init__()
        self.query = nn.Linear(d_model, d_model) if hybrid else None  # applied to the tokens
        self.mix_logit = nn.Parameter(torch.zeros(1)) if hybrid else None  # λ = σ(mix_logit)
        self.out = nn.Linear(d_model, d_model)
        self.scale = d_model**-0.5

    def forward(self, qr: Tensor | None, w: Tensor, S: Tensor, g: Tensor, bias: Tensor) -> tuple[Tensor, Tensor]:
        """qr (..., d) = query(u) or None, w (..., s) routing, S (..., s, d) updated nodes, g (s,) importance,
        bias (s,) → y (..., d), readout weights a (..., s) (sum 1 over active nodes, 0 on inactive)."""
        a = w
        if self.query is not None:
            c = torch.softmax((S @ qr.unsqueeze(-1)).squeeze(-1) * self.scale + bias, dim=-1)  # (..., s)
            lam = torch.sigmoid(self.mix_logit)
            a = lam * w + (1 - lam) * c
        read = ((a * g).unsqueeze(-2) @ S).squeeze(-2)  # (..., d)
        return self.out(read), a
