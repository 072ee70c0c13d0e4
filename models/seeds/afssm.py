"""AFSSM: a selective SSM whose state lives, compressed, in the frequency domain (the Adaptive-Frequency-SSM
seed), under the streaming contract.

The seed: an S6 (Mamba-style) block whose state is moved to the frequency domain by an FFT over the state axis;
a learned mask keeps the most important fraction `compression_ratio` of the frequency components; the
recurrence runs in that compressed spectral space (its "CirculantMatrix": a transition diagonal in the Fourier
basis); spectral normalization for stability; multi-scale processing (`num_scales`); optional hybrid attention
layers. Here, per layer, with E = expand·d_model channels and a state axis of length N = d_state:

    x, z      = in_proj(u);  x = SiLU(causal depthwise conv1d of width d_conv over x)        (B, L, E) each
    Δ, B, C   = softplus(dt_proj(·)), B, C  from x_proj(x)      (B, L, E), (B, L, N), (B, L, N)   as in Mamba
    h_t       = Ā_t h_{t−1} + Δ_t x_t B_t,   Ā_t = exp(Δ_t A),   y_t = Re(C_t · h_t) + D x_t     per channel
    out       = out_proj(y ⊙ SiLU(z))

with A (per channel) the N × N circulant matrix whose eigenvalues are λ_0 … λ_{N−1}: A = Fᴴ diag(λ) F, F the
unitary DFT over the state axis. Every Ā_t = Fᴴ diag(exp(Δ_t λ)) F is circulant too, so in the Fourier basis
ĥ = F h the recurrence runs per spectral component j:

    ĥ_t[j] = exp(Δ_t λ_j) ĥ_t−1[j] + Δ_t x_t B̂_t[j],    y_t = Re Σ_j conj(Ĉ_t[j]) ĥ_t[j] + D x_t,
    B̂_t = F B_t, Ĉ_t = F C_t (the input and readout vectors moved to the frequency domain).

Compression: only the k = ⌈compression_ratio·N⌉ components j ∈ S (`kept`, a buffer, the same for every channel)
exist; the state is ĥ[S], k complex numbers per channel stored as a real and an imaginary plane, so the state
per cell shrinks with the ratio. In the time domain this is the same circulant SSM with its state confined to
the span of the kept Fourier modes (the projection P_S commutes with every Ā_t). The eigenvalues are complex and
free (not conjugate-symmetric), so h is complex in the time domain and no component is redundant: the state
holds 2k real numbers per channel and scale (Mamba holds N).

- Adaptive mask (use_adaptive_mask): a learned importance score per component (`mask_logits` (N,)). The
  function always uses the hard set S: a straight-through gate m_j = 1[j ∈ S] + σ(s_j) − sg(σ(s_j)) equals the
  hard mask exactly, so its value never depends on the scores, while in training (train mode with gradients) the
  forward also runs the N − k candidate components from zero so that every score gets the first-order gain of
  its component. `training_event` re-selects S = top-k of the scores every `mask_update_every` optimizer steps
  (S is a buffer: checkpoints restore it, and the exported step bakes it in as a constant). Between
  re-selections `step` ≡ `forward` exactly in train and in eval mode: one function, where the seed trains with an
  FFT and soft mask but evaluates by truncating real state channels (another function). Without the adaptive
  mask S is the lowest k components, fixed (the seed's truncation, applied consistently).
- Spectral normalization (use_spectral_norm): Re λ = −exp(A_log) < 0, so every pole |exp(Δ λ_j)| < 1 for any
  input (Δ > 0): stable by construction (the seed instead rescales the discretized spectrum by its largest
  magnitude). Without it, Re λ is a free parameter and poles may leave the unit disk (the ablation).
- Multi-scale (use_multi_scale): num_scales branches share the projections and eigenvalues and run the
  spectral recurrence at Δ·scale_factor^s, s = 0 … num_scales − 1 (time scales 1, 1/4, 1/16 … of the first),
  each with its own compressed state; their outputs are mixed by softmax(scale_logits). Causal and exact in
  streaming. (The seed's multi-scale block holds unused scale weights and adds an FFN.)
- Hybrid attention (use_hybrid_attention, attention_layers): the listed layers are causal multi-head attention
  over a sliding window of `attention_window` positions (the seed's is global, non-causal), with a learned bias
  per head and offset; its state is the keys and values of the last window − 1 positions (zero at a fresh
  stream, as the conv's padding).

Left out of the seed: its frequency dropout (a random function in training) and its LM / classification heads
(the zoo's ForecastHead instead). Discretization as in Mamba: Ā by ZOH, B̄ by Euler (Δ B). The stack
(models.stack) supplies the input projection, pre-norm residual blocks, final norm and head.

Parallel mode runs the per-component recurrence on complex tensors with an even/odd parallel scan (`pair_scan`:
the recurrence of models.scan.linear_scan in O(L) work), chunk by chunk (`chunk_size`); `step` is real arithmetic
on (re, im) planes, no complex dtype, and exports to ONNX. State per AFSSM layer: conv (d_conv − 1, E) and
ssm_re and ssm_im (k, S_scales, E); per attention layer: keys, values (W − 1, d_model).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.base import State, StateField, StreamingModel
from models.framing import build_model
from models.layers.ssm_options import SSMOptions
from models.registry import register
from models.seeds.afssm_spectral import dft_rows, spectral_scan
from models.stack import SequenceLayer, SSMForecaster, StackConfig


def kept_components(compression_ratio: float, d_state: int) -> int:
    """k = ⌈compression_ratio · d_state⌉ (rounded first, so 0.1 · 30 keeps 3, not 4)."""
    return max(1, math.ceil(round(compression_ratio * d_state, 9)))


@dataclass
class AFSSMConfig(StackConfig):
    d_state: int = 16  # N: length of the circulant state axis (spectral components before compression)
    d_conv: int = 4
    expand: float = 2  # E = int(expand · d_model) channels
    compression_ratio: float = 0.5  # keep k = ⌈ratio · N⌉ spectral components per channel
    use_adaptive_mask: bool = True  # learned selection of the kept components (else the lowest k, fixed)
    use_spectral_norm: bool = True  # Re λ = −exp(A_log) < 0: |Ā| < 1 by construction (else Re λ free)
    use_multi_scale: bool = True  # num_scales branches at Δ · scale_factor^s (else one)
    num_scales: int = 3
    scale_factor: float = 4.0  # Δ multiplier between consecutive scales
    mask_update_every: int = 200  # optimizer steps between re-selections of the kept set (0: never)
    use_hybrid_attention: bool = False  # the layers in attention_layers are windowed causal attention
    attention_layers: tuple[int, ...] = ()
    n_heads: int = 4  # attention heads
    attention_window: int = 32  # positions each attention query sees (itself included)
    dt_rank: int | str = "auto"  # "auto": ceil(d_model / 16)
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    dt_init_floor: float = 1e-4
    conv_bias: bool = True
    bias: bool = False  # bias of in_proj and out_proj
    ssm_lr: float = 1e-3  # lr cap of the eigenvalues and the Δ bias
    chunk_size: int | None = 64  # scan chunk along L (None: whole sequence)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.attention_layers = tuple(int(i) for i in self.attention_layers)
        if self.d_state < 1:
            raise ValueError(f"d_state must be ≥ 1, got {self.d_state}")
        if self.d_conv < 2:
            raise ValueError(f"d_conv must be ≥ 2 (the conv state keeps d_conv − 1 inputs), got {self.d_conv}")
        if self.expand <= 0 or int(self.expand * self.d_model) < 1:
            raise ValueError(f"expand must give d_inner = int(expand·d_model) ≥ 1, got expand={self.expand}")
        if not 0.0 < self.compression_ratio <= 1.0:
            raise ValueError(f"compression_ratio must be in (0, 1], got {self.compression_ratio}")
        if self.num_scales < 1:
            raise ValueError(f"num_scales must be ≥ 1, got {self.num_scales}")
        if self.scale_factor <= 0:
            raise ValueError(f"scale_factor must be > 0, got {self.scale_factor}")
        if self.mask_update_every < 0:
            raise ValueError(f"mask_update_every must be ≥ 0, got {self.mask_update_every}")
        if self.dt_rank != "auto" and (isinstance(self.dt_rank, str | bool) or int(self.dt_rank) < 1):
            raise ValueError(f"dt_rank must be 'auto' or an int ≥ 1, got {self.dt_rank!r}")
        SSMOptions.of(self)  # ValueError naming a bad dt_min / dt_max / ssm_lr
        if self.dt_init_floor < 0:
            raise ValueError(f"dt_init_floor must be ≥ 0, got {self.dt_init_floor}")
        if self.chunk_size is not None and self.chunk_size < 1:
            raise ValueError(f"chunk_size must be None or ≥ 1, got {self.chunk_size}")
        if self.use_hybrid_attention:
            if not self.attention_layers:
                raise ValueError("use_hybrid_attention needs attention_layers (indices of the attention layers)")
            if any(not 0 <= i < self.n_layers for i in self.attention_layers):
                raise ValueError(f"attention_layers {self.attention_layers} out of range for n_layers={self.n_layers}")
            if self.n_heads < 1 or self.d_model % self.n_heads:
                raise ValueError(f"n_heads ({self.n_heads}) must divide d_model ({self.d_model})")
            if self.attention_window < 2:
                raise ValueError(f"attention_window must be ≥ 2, got {self.attention_window}")
        elif self.attention_layers:
            raise ValueError(f"attention_layers {self.attention_layers} given but use_hybrid_attention is False")

    @property
    def n_kept(self) -> int:
        return kept_components(self.compression_ratio, self.d_state)

    @property
    def scales(self) -> list[int | float]:
        """Δ multipliers of the branches: scale_factor^s, s = 0 … num_scales − 1 (one branch without multi-scale)."""
        return [self.scale_factor**s for s in range(self.num_scales if self.use_multi_scale else 1)]


class AFSSMLayer(SequenceLayer):
    """The AFSSM mixer (module docstring; the stack supplies the pre-norm residual around it).

    u (B, L, D) → (B, L, D); state (conv (B, d_conv−1, E), ssm_re, ssm_im (B, k, S, E)): the last d_conv − 1 conv
    inputs, oldest first, and the kept spectral components ĥ[S] per scale as real and imaginary planes."""

    Config = AFSSMConfig

    def __init__(self, config: AFSSMConfig):
        super().__init__()
        c, opt = config, SSMOptions.of(config)
        self.d_model, self.d_state, self.d_conv = c.d_model, c.d_state, c.d_conv
        self.d_inner = E = int(c.expand * c.d_model)
        self.dt_rank = R = math.ceil(c.d_model / 16) if c.dt_rank == "auto" else int(c.dt_rank)
        self.n_kept, self.scale_values = c.n_kept, c.scales
        self.n_scales = len(self.scale_values)
        self.chunk_size, self.use_spectral_norm = c.chunk_size, c.use_spectral_norm
        self.adaptive = c.use_adaptive_mask and self.n_kept < self.d_state  # at k = N there is nothing to select
        N = self.d_state

        self.in_proj = nn.Linear(c.d_model, 2 * E, bias=c.bias)
        self.conv1d = nn.Conv1d(E, E, c.d_conv, groups=E, bias=c.conv_bias)  # causal context: the conv state
        self.x_proj = nn.Linear(E, R + 2 * N, bias=False)
        self.dt_proj = nn.Linear(R, E, bias=True)
        self.out_proj = nn.Linear(E, c.d_model, bias=c.bias)
        nn.init.uniform_(self.dt_proj.weight, -(R**-0.5), R**-0.5)
        dt = torch.exp(opt.log_dt(E)).clamp(min=c.dt_init_floor)  # Δ₀ log-uniform in [dt_min, dt_max]
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        opt.mark(self.dt_proj.bias)

        # eigenvalues λ_j = −½ + iπj (S4D-Lin over the DFT index j), one set per channel: (N, E)
        if c.use_spectral_norm:
            self.A_log = opt.mark(nn.Parameter(torch.full((N, E), math.log(0.5))))
        else:
            self.A_real = opt.mark(nn.Parameter(torch.full((N, E), -0.5)))
        self.A_imag = opt.mark(nn.Parameter((math.pi * torch.arange(N, dtype=torch.float32)).unsqueeze(1).repeat(1, E)))
        self.D = nn.Parameter(torch.ones(E))
        self.register_buffer("kept", torch.arange(self.n_kept))  # (k,) the kept components, ascending
        if self.adaptive:  # importance scores, decreasing with j at init: the first k rank highest
            self.mask_logits = nn.Parameter(torch.linspace(1.0, -1.0, N))
        if self.n_scales > 1:
            self.scale_logits = nn.Parameter(torch.zeros(self.n_scales))  # mixing weights softmax(·)

    # -- parameters as the recurrence uses them ---------------------------------------------------------------
    def eigenvalues(self) -> tuple[Tensor, Tensor]:
        """Continuous eigenvalues λ of every component (Re, Im), each (N, E)."""
        re = -torch.exp(self.A_log) if self.use_spectral_norm else self.A_real
        return re, self.A_imag

    def scale_weights(self) -> Tensor:
        """(S,) weights of the branch outputs, summing to 1."""
        if self.n_scales == 1:
            return torch.ones(1, dtype=self.D.dtype, device=self.D.device)
        return torch.softmax(self.scale_logits, 0)

    def selection_gate(self) -> Tensor:
        """(N,) straight-through mask: its values are exactly 1 on the kept components and 0 elsewhere; its
        gradient with respect to the scores is σ'(s)."""
        soft = torch.sigmoid(self.mask_logits)
        hard = torch.zeros_like(soft).index_fill(0, self.kept, 1.0)
        return hard + (soft - soft.detach())

    @torch.no_grad()
    def reselect(self) -> bool:
        """Kept set ← the k highest scores (ties: the lower index), ascending. Returns whether it changed."""
        if not self.adaptive:
            return False
        top = torch.sort(self.mask_logits, descending=True, stable=True).indices[: self.n_kept]
        new = top.sort().values
        changed = not torch.equal(new, self.kept)
        self.kept.copy_(new)
        return changed

    def continuous_poles(self) -> Tensor:
        """λ of the kept components (k, E), complex; Re < 0 by construction with spectral normalization."""
        re, im = (p.index_select(0, self.kept) for p in self.eigenvalues())
        return torch.complex(re, im)

    def discrete_poles(self) -> Tensor:
        """exp(λ·softplus(dt_bias)·scale) (k, S, E) complex: Ā of the kept components at the bias Δ, per scale
        (Ā itself depends on the input; |Ā| < 1 for every Δ > 0 with spectral normalization)."""
        dt = F.softplus(self.dt_proj.bias)  # (E,)
        scales = torch.tensor(self.scale_values, dtype=dt.dtype, device=dt.device)
        lam = self.continuous_poles()  # (k, E)
        return torch.exp(lam.unsqueeze(1) * (scales.view(-1, 1) * dt))  # (k, S, E)

    # -- streaming ---------------------------------------------------------------------------------------------
    def state_spec(self) -> list[StateField]:
        return [StateField("conv", (self.d_conv - 1, self.d_inner)),
                StateField("ssm_re", (self.n_kept, self.n_scales, self.d_inner)),
                StateField("ssm_im", (self.n_kept, self.n_scales, self.d_inner))]

    def _ssm_inputs(self, x: Tensor, step: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """Conv output x (..., E) → Δ (..., E), B (..., N), C (..., N). step: softplus as relu(v) + log(1 + e^−|v|),
        the same function, which onnxruntime runs faster (as in Mamba)."""
        dt, B, C = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        v = self.dt_proj(dt)
        return (torch.relu(v) + torch.log(1 + torch.exp(-v.abs())) if step else F.softplus(v)), B, C

    def mixer_inputs(self, u: Tensor, conv_state: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """u (B, L, D), conv state (B, d_conv−1, E) → x, z, Δ (B, L, E), B, C (B, L, N) and the padded conv input
        (B, d_conv−1+L, E) whose last d_conv − 1 rows are the next conv state."""
        x, z = self.in_proj(u).chunk(2, dim=-1)  # (B, L, E) each
        xc = torch.cat([conv_state, x], dim=1)  # (B, d_conv−1+L, E)
        x = F.silu(self.conv1d(xc.transpose(1, 2))).transpose(1, 2)  # (B, L, E)
        delta, B, C = self._ssm_inputs(x)
        return x, z, delta, B, C, xc

    def ssm(self, x: Tensor, delta: Tensor, B: Tensor, C: Tensor, h0: State | None) -> tuple[Tensor, State]:
        """The compressed spectral SSM in parallel: x, Δ (B, L, E), B, C (B, L, N), h0 planes (re, im) each
        (B, k, S, E) or None (zero) → y (B, L, E) (D skip included, no gate), final planes (re, im).

        In train mode with gradients and an adaptive mask, the N − k candidate components run as well (from
        zero); the straight-through gate removes them from the value exactly and leaves their scores' gradient."""
        Bsz, _, E = x.shape
        N, S = self.d_state, self.n_scales
        candidates = self.adaptive and self.training and torch.is_grad_enabled()
        idx = torch.arange(N, device=x.device) if candidates else self.kept
        Fr, Fi = dft_rows(idx, N, x.dtype)  # (n, N)
        Bh = torch.complex(B @ Fr.T, B @ Fi.T)  # (B, L, n): F_S B
        Cw = torch.complex(C @ Fr.T, -(C @ Fi.T))  # (B, L, n): conj(F_S C)
        if candidates:
            Cw = Cw * self.selection_gate()
        re, im = (p.index_select(0, idx) for p in self.eigenvalues())
        lam = torch.complex(re, im)  # (n, E)
        scales = torch.tensor(self.scale_values, dtype=x.dtype, device=x.device)
        dts = delta.unsqueeze(2) * scales.view(S, 1)  # (B, L, S, E)
        h = None
        if h0 is not None:
            h = torch.complex(*h0)  # (B, k, S, E)
            if candidates:
                h = torch.zeros(Bsz, N, S, E, dtype=h.dtype, device=h.device).index_copy(1, self.kept, h)
        ys, h = spectral_scan(x, dts, lam, Bh, Cw, h, self.chunk_size)  # (B, L, S, E), (B, n, S, E)
        y = (ys * self.scale_weights().view(S, 1)).sum(2) + self.D * x  # (B, L, E)
        if candidates:
            h = h.index_select(1, self.kept)  # (B, k, S, E)
        return y, (h.real, h.imag)  # (B, k, S, E) each

    def forward(self, u: Tensor, state: State | None = None, return_state: bool = False) -> tuple[Tensor, State | None]:
        """u (B, L, D), state (conv, ssm_re, ssm_im) or None (zero) → y (B, L, D), final state (None unless
        return_state)."""
        conv_state = u.new_zeros(u.shape[0], self.d_conv - 1, self.d_inner) if state is None else state[0]
        x, z, delta, B, C, xc = self.mixer_inputs(u, conv_state)
        y, h = self.ssm(x, delta, B, C, None if state is None else state[1:])
        out = self.out_proj(y * F.silu(z))
        if not return_state:
            return out, None
        return out, (xc[:, u.shape[1] :], *h)  # the last d_conv − 1 conv inputs, even when L < d_conv − 1

    def step(self, u_t: Tensor, state: State) -> tuple[Tensor, State]:
        """u_t (B, D), state → y_t (B, D), new state. Pure, real arithmetic, no data-dependent control flow.

        The planes are worked on as (B, k, S·E), the (scale, channel) axis last and contiguous; the input term is an
        outer product per cell and plane ((k, 1) @ (1, S·E)), the readout a (1, k) @ (k, S·E) product per plane and
        the mix over scales a constant (S·E, E) matrix. The DFT rows, eigenvalues and mixing depend on parameters
        and buffers only: constants in an exported graph."""
        conv_state, h_re, h_im = state  # (B, d_conv−1, E), (B, k, S, E) twice
        k, S, E = self.n_kept, self.n_scales, self.d_inner
        xz = self.in_proj(u_t)  # (B, 2E)
        x, z = xz[:, :E], xz[:, E:]  # (B, E) each
        window = torch.cat([conv_state, x.unsqueeze(1)], dim=1)  # (B, d_conv, E), oldest first
        x = (window * self.conv1d.weight[:, 0].t()).sum(1)  # (B, E)
        if self.conv1d.bias is not None:
            x = x + self.conv1d.bias
        x = F.silu(x)
        delta, B, C = self._ssm_inputs(x, step=True)  # (B, E), (B, N), (B, N)
        Fr, Fi = dft_rows(self.kept, self.d_state, x.dtype)  # (k, N)
        br, bi = (B @ Fr.T).unsqueeze(-1), (B @ Fi.T).unsqueeze(-1)  # (B, k, 1): F_S B
        cr, ci = (C @ Fr.T).unsqueeze(1), (C @ Fi.T).unsqueeze(1)  # (B, 1, k): Re(conj(Ĉ)ĥ) = cr·ĥr + ci·ĥi
        lr, li = (p.index_select(0, self.kept).repeat(1, S) for p in self.eigenvalues())  # (k, S·E), scale-major
        scales = torch.tensor(self.scale_values, dtype=x.dtype, device=x.device).repeat_interleave(E)  # (S·E,)
        d = (delta.repeat(1, S) * scales).unsqueeze(1)  # (B, 1, S·E): Δ · scale_s
        mag = torch.exp(d * lr)  # (B, k, S·E): |Ā|
        ar, ai = mag * torch.cos(d * li), mag * torch.sin(d * li)
        hr, hi = h_re.reshape(-1, k, S * E), h_im.reshape(-1, k, S * E)
        u = d * x.repeat(1, S).unsqueeze(1)  # (B, 1, S·E): Δ_s x
        nr = ar * hr - ai * hi + br @ u  # (B, k, S·E): Ā ĥ + Δ_s x F_S B
        ni = ar * hi + ai * hr + bi @ u
        eye = torch.eye(E, dtype=x.dtype, device=x.device)
        mix = (self.scale_weights().view(S, 1, 1) * eye).reshape(S * E, E)  # (S·E, E): w_s on the diagonal blocks
        y = (cr @ nr + ci @ ni).squeeze(1) @ mix + self.D * x  # (B, E)
        plane = (-1, k, S, E)
        return self.out_proj(y * F.silu(z)), (window[:, 1:], nr.view(plane), ni.view(plane))


class WindowAttentionLayer(SequenceLayer):
    """Causal multi-head attention over the last W = attention_window positions (the hybrid option).

    u (B, L, D) → (B, L, D); state (keys, values) each (B, W−1, D): those of the W − 1 positions before u, oldest
    first (zeros at a fresh stream: attended like any key, as a conv's zero padding is convolved). A learned
    bias per head and window offset gives the heads their sense of order."""

    Config = AFSSMConfig

    def __init__(self, config: AFSSMConfig):
        super().__init__()
        d, self.n_heads, self.window = config.d_model, config.n_heads, config.attention_window
        self.d_model, self.d_head = d, d // config.n_heads
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.pos_bias = nn.Parameter(torch.zeros(self.n_heads, self.window))  # (H, W), offset W−1 = now

    def state_spec(self) -> list[StateField]:
        shape = (self.window - 1, self.d_model)
        return [StateField("keys", shape), StateField("values", shape)]

    def forward(self, u: Tensor, state: State | None = None, return_state: bool = False) -> tuple[Tensor, State | None]:
        """u (B, L, D), state (keys, values) or None (zero) → y (B, L, D), final state (None unless return_state)."""
        Bsz, L, d = u.shape
        H, W, dh = self.n_heads, self.window, self.d_head
        q, k, v = self.qkv(u).chunk(3, dim=-1)  # (B, L, D) each
        k0, v0 = (u.new_zeros(Bsz, W - 1, d),) * 2 if state is None else state
        K, V = torch.cat([k0, k], 1), torch.cat([v0, v], 1)  # (B, W−1+L, D)
        Kw = K.unfold(1, W, 1).reshape(Bsz, L, H, dh, W)  # (B, L, H, dh, W): the window of each position
        Vw = V.unfold(1, W, 1).reshape(Bsz, L, H, dh, W)
        scores = torch.einsum("blhd,blhdw->blhw", q.reshape(Bsz, L, H, dh), Kw) / math.sqrt(dh) + self.pos_bias
        att = torch.softmax(scores, -1)  # (B, L, H, W)
        y = self.out(torch.einsum("blhw,blhdw->blhd", att, Vw).reshape(Bsz, L, d))
        return y, ((K[:, L:], V[:, L:]) if return_state else None)

    def step(self, u_t: Tensor, state: State) -> tuple[Tensor, State]:
        """u_t (B, D), (keys, values) (B, W−1, D) → y_t (B, D), the shifted keys and values. Pure."""
        H, W, dh, d = self.n_heads, self.window, self.d_head, self.d_model
        qkv = self.qkv(u_t)  # (B, 3D)
        q, k, v = qkv[:, :d], qkv[:, d : 2 * d], qkv[:, 2 * d :]
        K = torch.cat([state[0], k.unsqueeze(1)], 1)  # (B, W, D)
        V = torch.cat([state[1], v.unsqueeze(1)], 1)
        Kh = K.reshape(-1, W, H, dh).permute(0, 2, 3, 1)  # (B, H, dh, W)
        Vh = V.reshape(-1, W, H, dh).transpose(1, 2)  # (B, H, W, dh)
        scores = (q.reshape(-1, H, 1, dh) @ Kh) / math.sqrt(dh) + self.pos_bias.unsqueeze(1)  # (B, H, 1, W)
        y = (torch.softmax(scores, -1) @ Vh).reshape(-1, d)  # (B, D)
        return self.out(y), (K[:, 1:], V[:, 1:])


@register("afssm")
class AFSSM(SSMForecaster):
    """Stack of AFSSM mixers (windowed attention at attention_layers with the hybrid option), multi-horizon head."""

    Config, Layer = AFSSMConfig, AFSSMLayer

    def make_layer(self, i: int) -> nn.Module:
        c = self.config
        if c.use_hybrid_attention and i in c.attention_layers:
            return WindowAttentionLayer(c)
        layer = AFSSMLayer(c)
        with torch.no_grad():  # Mamba's prenorm-residual rescale: the residual stream's variance is depth-free
            layer.out_proj.weight.div_(math.sqrt(c.n_layers))
        return layer

    def spectral_layers(self) -> list[tuple[int, AFSSMLayer]]:
        return [(i, m) for i, m in enumerate(self.layers) if isinstance(m, AFSSMLayer)]

    def training_event(self, step: int, plateau: bool) -> dict[str, Any] | None:
        """Every mask_update_every optimizer steps, each layer's kept set ← the top-k of its scores. Returns
        {"afssm_mask": {layer: kept indices}} when a set changed (logged; no new phase), else None."""
        every = self.config.mask_update_every
        if not self.config.use_adaptive_mask or every == 0 or step % every:
            return None
        changed = [i for i, layer in self.spectral_layers() if layer.reselect()]
        if not changed:
            return None
        return {"afssm_mask": {f"layer{i}": self.layers[i].kept.tolist() for i in changed}}

    def describe(self) -> dict[str, Any]:
        """Compression facts for the bundle manifest: ratio, kept components per channel (and which), state size."""
        c = self.config
        spectral = self.spectral_layers()
        ssm_floats = sum(f.numel for _, layer in spectral for f in layer.state_spec()[1:])  # the two planes
        return {
            "compression_ratio": c.compression_ratio,
            "d_state": c.d_state,
            "kept_components_per_channel": c.n_kept,
            "kept_indices": {f"layer{i}": layer.kept.tolist() for i, layer in spectral},
            "adaptive_mask": c.use_adaptive_mask and c.n_kept < c.d_state,
            "num_scales": len(c.scales),
            "spectral_state_bytes_per_cell": 4 * ssm_floats,
            "state_bytes_per_cell": self.state_bytes_per_cell(),
        }


AdaptiveFrequencySSMConfig = AFSSMConfig  # the seed's names


def AdaptiveFrequencySSM(config: AFSSMConfig) -> StreamingModel:
    """The seed's entry point: the AFSSM forecaster for `config` (framed when the config asks for it)."""
    return build_model(AFSSM, config)


__all__ = ["AFSSM", "AFSSMConfig", "AFSSMLayer", "AdaptiveFrequencySSM", "AdaptiveFrequencySSMConfig",
           "WindowAttentionLayer", "kept_components"]
