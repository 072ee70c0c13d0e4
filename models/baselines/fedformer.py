"""FEDformer (Zhou, Ma, Wen, Wang, Sun & Jin, "FEDformer: Frequency Enhanced Decomposed Transformer for Long-term
Series Forecasting", ICML 2022), the Fourier version FEDformer-f, made streaming.

An encoder-decoder Transformer whose attention runs on a few Fourier modes, with seasonal-trend decomposition
inside every layer. On a window w (W × D_in, every input column) ending at t, with l = label_len, L_d = l + H:

    decomposition:   T(x) = moving average of kernel m (odd) along time, edge-replicate padding by (m−1)/2 at
                     both ends;  S(x) = x − T(x)                  (series_decomp; one kernel, as TSLib)
    decoder inputs:  s⁰ = [S(w)_{W−l … W−1} ; 0_H]  (L_d × D_in),   τ⁰ = [T(w)_{W−l … W−1} ; mean(w) × H] (L_d × K,
                     the targets' columns)
    embedding:       E(x) = Conv1d_{k=3, circular, no bias}(x)  (no positional, no temporal embedding)
    FEB-f(q):        Q = DFT(q) at the M selected modes k_1 < … < k_M (per head h, channel e);
                     Y_{h,o,m} = Σ_e Q_{h,e,k_m} · R_{h,e,o,m}    (R complex, learned: real/imag planes);
                     y = iDFT of the spectrum holding Y_m at bin m (m = 0 … M−1: the reference's placement)
    FEA-f(q, k):     Q, K = DFT(q), DFT(k) at their own M selected modes;  A_{x,y} = σ(Σ_e Q_{e,x} K_{e,y})
                     (no conjugate; σ = tanh on the real and imaginary parts, or softmax over y of |A|);
                     V_{e,x} = Σ_y A_{x,y} K_{e,y};  Z_{o,x} = Σ_e V_{e,x} R_{h,e,o,x};
                     y = iDFT(spectrum with Z_x at bin k_x) / d_model²
    attention layer: a(x) = W_o · fold(block(W_q x + b_q, …)) + b_o       (the reference's AutoCorrelationLayer)
    encoder layer:   x ← S(x + a_FEB(x)),  x ← S(x + FFN(x)),   FFN = Conv1d_{k=1} → GELU → Conv1d_{k=1} (no bias)
    encoder:         h = LN*(encoder layers(E(w)))               LN*(x) = LayerNorm(x) − its mean over time
    decoder layer:   x ← x + a_FEB(x) = S + τ₁,  x ← x + a_FEA(x, h) = S + τ₂,  x ← x + FFN(x) = S + τ₃,
                     τ ← τ + Conv1d_{k=3, circular, no bias}(τ₁ + τ₂ + τ₃)   (d_model → K)
    output:          ŷ = (Linear(LN*(x)) + τ)_{l … L_d−1}        (H × K: the forecasts of t+1 … t+H)

Each block runs at its own length: the encoder's FEB-f at W, the decoder's at L_d, FEA-f with queries at L_d
and keys at W. Mode selection: M = min(modes, L // 2) modes out of the bins 0 … L//2 − 1 of each block (the
reference's clipping rule; the Nyquist bin is never used), either "random" (the reference's default, and so the
default here, since the published figures were made with it: a fixed draw, made once at construction from a
torch.Generator seeded with mode_seed, in the order encoder FEB, decoder FEB, FEA queries, FEA keys) or "low"
(the lowest M). The DFT / inverse DFT are real matmuls with constant cos/sin matrices of the selected bins only,
registered as buffers (rfft and irfft restricted to those bins, exactly: DC and the factor 2 of the other bins
included), each complex product one real matmul with [[Re, Im], [−Im, Re]] blocks: no complex tensor and no
torch.fft anywhere, so the step exports to ONNX and TorchScript as is. The moving average is a constant (L, L)
matrix too (edge replication folded in), and the network runs time-major, (L, N, ·), so each of these maps along
time is one GEMM. The constant matrices are built in float64 (a float64 model holds them exactly) and are not
part of the state_dict (they follow from the config).

Faithful to the code the published numbers come from (thuml/Time-Series-Library, and the authors'
MAZiqing/FEDformer), including what differs there from the paper's text (reference_quirks=True, the default):
(1) FEB-f writes its M outputs at bins 0 … M−1, not at the selected ones; (2) FEA-f uses the keys' Fourier
coefficients as its values (the value projection is never read); (3) the blocks' output (N, h, E, L) (h heads of
E channels) is reinterpreted as (N, L, h·E) without moving the time axis back (`view`, so time and channels are
interleaved before W_o; the authors confirmed it and kept it); (4) one FEB-f (modes and weights) is shared by all
encoder layers, one by all decoder layers and one FEA-f by all decoder layers (the reference builds each block
once).
reference_quirks=False gives the paper's description instead: outputs at the selected bins, values from the
value projection, the axes moved back before W_o, one block per layer (each with its own draw). Both: the FEA-f
output divided by d_model² and R ~ U[0, 1)²/d_model² at init (real and imaginary planes, as the reference); the
token embedding's Kaiming-normal init; PyTorch's default init elsewhere. Not carried over: the reference's key /
value projections that FEB-f never reads (they get no gradient), the temporal embedding (our inputs carry no
timestamps), RevIN (the reference has none). Ours: the FFN's k=1 convolutions are nn.Linear (the same map); the
softmax cross activation takes |A| = √(re² + im² + 1e-24) so its gradient stays finite at A = 0; tanh is
applied to the real and imaginary parts (TSLib's current real-plane code; the first release used the complex
tanh, which has poles). Targets: the model forecasts the K target columns (target_index) with c_out = K, the
trend init holding those columns; the seasonal path still reads every input column. This is the reference's
"M" model with its outputs restricted to the targets (every other output only adds weights of its own).
The config's dropout acts after both embeddings, on every residual branch and inside the FFN (the reference's).

Sizes: the default is TSLib's ETTh1 script (seq_len 96, label_len 48, d_model 512, 8 heads, e_layers 2,
d_layers 1, d_ff 2048, moving_avg 25, modes 32, random modes, GELU): 14,984,711 parameters at d_input =
n_targets = 7, H = 96 (test_fedformer.py asserts it). TSLib's model has 16,827,399: 7 more d×d projections
(with biases) that it never reads and its 2 × 4 × 512 temporal embedding.

Streaming (as models.baselines.itransformer): forward_with_state(x, state) forecasts at every position t from the
window x[t−W+1 … t] of every input column, the positions before x[:, 0] taken from the state, a shift register of
the last W−1 inputs, (W−1, D_in) per cell, oldest first (665 values, 2.6 KiB in float32, at the default). The
zero state is zero padding (in normalized units), so forward(x) at t < W−1 sees a zero-padded window; at
t ≥ W−1 it is exactly the model applied to x[t−W+1 … t]. forward unfolds all windows at once, (B·L, W, D_in),
and runs them as one batch; forward_last and training_forward(last_only=True) (the window protocol) run the last
window only; step shifts the register by one (torch.cat, pure) and runs the same computation on its one window:
O((n_layers·W + d_layers·L_d)·d_model·(d_model + d_ff + W + L_d)) per step (the last two: the dense maps along time,
moving averages and restricted DFTs).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.base import ModelConfig
from models.baselines.fedformer_parts import (  # noqa: F401 (re-exported for tests)
    SeasonalLayerNorm,
    SeriesDecomp,
    TokenEmbedding,
    _angles,
    _const,
    circular_conv3,
    dft_matrix,
    idft_matrix,
    moving_average_matrix,
    n_modes,
    select_modes,
    time_mix,
)
from models.baselines.window import WindowModel
from models.registry import register

MODE_SELECTS = ("random", "low")  # FEDformerConfig.mode_select
ACTIVATIONS = ("gelu", "relu")  # FEDformerConfig.activation (the FFN's)
CROSS_ACTIVATIONS = ("tanh", "softmax")  # FEDformerConfig.cross_activation (FEA-f's σ)
ABS_EPS = 1e-24  # |A| = √(re² + im² + ε) in the softmax cross activation: a finite gradient at A = 0


@dataclass
class FEDformerConfig(ModelConfig):
    window: int = 96  # lookback W (TSLib's seq_len): the encoder reads the last W inputs of every column
    label_len: int | None = None  # l: the decoder's start tokens, the last l positions of the window; None: W // 2
    d_model: int = 512
    n_heads: int = 8  # must divide d_model; the Fourier weights are per head (E × E per mode)
    n_layers: int = 2  # encoder layers (TSLib's e_layers)
    d_layers: int = 1  # decoder layers
    d_ff: int = 2048  # FFN width
    modes: int = 32  # M: Fourier modes per block, clipped to L // 2 at each block's length L
    mode_select: str = "random"  # "random" (a fixed seeded draw) or "low" (the lowest M modes)
    mode_seed: int = 0  # seed of the "random" draw
    moving_avg: int = 25  # kernel of the decomposition's moving average (odd)
    activation: str = "gelu"  # of the FFN: "gelu" or "relu"
    cross_activation: str = "tanh"  # FEA-f's σ on the query-key products: "tanh" or "softmax"
    reference_quirks: bool = True  # the reference code's behaviour (see the module docstring); False: the paper's

    def __post_init__(self) -> None:
        super().__post_init__()
        self.require_targets("FEDformer's trend path starts from the targets' own trend and window mean")
        if int(self.window) < 2:
            raise ValueError(f"window must be ≥ 2 (a Fourier mode needs two samples), got {self.window}")
        if self.label_len is None:
            self.label_len = int(self.window) // 2
        if not 1 <= int(self.label_len) <= int(self.window):
            raise ValueError(f"label_len must be in [1, window={self.window}], got {self.label_len}")
        for name in ("d_model", "n_heads", "n_layers", "d_layers", "d_ff", "modes"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model must be a multiple of n_heads, got d_model={self.d_model}, "
                             f"n_heads={self.n_heads}")
        if self.moving_avg < 1 or self.moving_avg % 2 == 0:
            raise ValueError(f"moving_avg must be odd and ≥ 1 (an even kernel shortens the series), "
                             f"got {self.moving_avg}")
        if self.mode_select not in MODE_SELECTS:
            raise ValueError(f"mode_select must be one of {MODE_SELECTS}, got {self.mode_select!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.cross_activation not in CROSS_ACTIVATIONS:
            raise ValueError(f"cross_activation must be one of {CROSS_ACTIVATIONS}, got {self.cross_activation!r}")
        if not isinstance(self.reference_quirks, bool):
            raise ValueError(f"reference_quirks must be true or false, got {self.reference_quirks!r}")

    @property
    def dec_len(self) -> int:
        """L_d = label_len + H, the decoder's length."""
        return int(self.label_len) + int(self.horizon)


# -- the Fourier blocks ---------------------------------------------------------------------------------------------
def _complex_weights(n: int, n_heads: int, d_head: int, d_model: int) -> tuple[nn.Parameter, nn.Parameter]:
    """Real and imaginary planes (n, h, E, E), each U[0, 1)/d_model² (the reference's init)."""
    scale = 1.0 / (d_model * d_model)
    shape = (n, n_heads, d_head, d_head)
    return nn.Parameter(scale * torch.rand(shape)), nn.Parameter(scale * torch.rand(shape))


def complex_block(re: Tensor, im: Tensor) -> Tensor:
    """The real form of a complex matrix w = re + i·im (…, P, Q): [[re, im], [−im, re]] (…, 2P, 2Q), so that
    [Re x | Im x] @ it = [Re(x w) | Im(x w)]: one real matmul per complex product."""
    return torch.cat([torch.cat([re, im], -1), torch.cat([-im, re], -1)], -2)


def _mode_mix(x: Tensor, weight: Tensor, n: int, n_heads: int, d_head: int) -> Tensor:
    """Per mode and head complex products: x [Re ; Im] (2, n, h, N, E), weight (n, h, 2E, 2E) from complex_block →
    Σ_e x_e w_{e,o}, [Re ; Im] stacked by rows, (2n, h·N·E)."""
    xc = torch.cat([x[0], x[1]], -1)  # (n, h, N, 2E): [Re | Im]
    y = (xc @ weight).reshape(n, n_heads, -1, 2, d_head)  # (n, h, N, 2, E)
    return y.permute(3, 0, 1, 2, 4).reshape(2 * n, -1)  # (2n, h·N·E)


class FourierBlock(nn.Module):
    """FEB-f on projected queries q (L, N, d) time-major → (L, N, h, E), before folding."""

    def __init__(self, d_model: int, n_heads: int, length: int, bins: list[int], out_bins: list[int]):
        super().__init__()
        self.n_heads, self.d_head, self.length, self.n = n_heads, d_model // n_heads, length, len(bins)
        self.bins, self.out_bins = list(bins), list(out_bins)
        self.weight_re, self.weight_im = _complex_weights(self.n, n_heads, self.d_head, d_model)  # (M, h, E, E)
        self.register_buffer("dft", dft_matrix(length, bins), persistent=False)  # (2M, L)
        self.register_buffer("idft", idft_matrix(length, out_bins).T.contiguous(), persistent=False)  # (L, 2M)

    def forward(self, q: Tensor) -> Tensor:
        M, h, E = self.n, self.n_heads, self.d_head
        X = time_mix(self.dft, q, self.length).reshape(2, M, -1, h, E).transpose(2, 3)  # (2, M, h, N, E)
        Y = _mode_mix(X, complex_block(self.weight_re, self.weight_im), M, h, E)  # (2M, h·N·E)
        return time_mix(self.idft, Y, 2 * M).reshape(self.length, h, -1, E).transpose(1, 2)  # (L, N, h, E)


class FourierCrossAttention(nn.Module):
    """FEA-f: queries q (L_q, N, d) attend to keys k (L_kv, N, d) over their selected modes → (L_q, N, h, E); the
    values' coefficients come from v (L_kv, N, d), or from k when v is None (the reference)."""

    def __init__(self, d_model: int, n_heads: int, len_q: int, len_kv: int, bins_q: list[int], bins_kv: list[int],
                 activation: str):
        super().__init__()
        self.n_heads, self.d_head, self.activation = n_heads, d_model // n_heads, activation
        self.len_q, self.len_kv, self.n_q, self.n_kv = len_q, len_kv, len(bins_q), len(bins_kv)
        self.bins_q, self.bins_kv = list(bins_q), list(bins_kv)
        self.weight_re, self.weight_im = _complex_weights(self.n_q, n_heads, self.d_head, d_model)  # (Mq, h, E, E)
        self.register_buffer("dft_q", dft_matrix(len_q, bins_q), persistent=False)  # (2Mq, L_q)
        self.register_buffer("dft_kv", dft_matrix(len_kv, bins_kv), persistent=False)  # (2Mkv, L_kv)
        scale = 1.0 / (d_model * d_model)  # the reference's out_ft / in_channels / out_channels
        self.register_buffer("idft_q", idft_matrix(len_q, bins_q, scale).T.contiguous(), persistent=False)  # (L_q, 2Mq)

    def _spectrum(self, dft: Tensor, x: Tensor, length: int, n: int) -> Tensor:
        """x (L, N, d) → its coefficients at n bins, [real ; imaginary], (2, N, h, n, E)."""
        X = time_mix(dft, x, length).reshape(2, n, -1, self.n_heads, self.d_head)  # (2, n, N, h, E)
        return X.permute(0, 2, 3, 1, 4)

    def forward(self, q: Tensor, k: Tensor, v: Tensor | None = None) -> Tensor:
        Mq, Mkv = self.n_q, self.n_kv
        Q = self._spectrum(self.dft_q, q, self.len_q, Mq)  # (2, N, h, Mq, E)
        K = self._spectrum(self.dft_kv, k, self.len_kv, Mkv)  # (2, N, h, Mkv, E)
        V = K if v is None else self._spectrum(self.dft_kv, v, self.len_kv, Mkv)
        kt = K.transpose(-1, -2)  # (2, N, h, E, Mkv)
        a = torch.cat([Q[0], Q[1]], -1) @ complex_block(kt[0], kt[1])  # (N, h, Mq, 2Mkv): Σ_e Q_{e,x} K_{e,y}
        if self.activation == "tanh":  # on the real and imaginary parts, then Σ_y A_{x,y} V_{e,y}
            s = torch.tanh(a) @ complex_block(V[0], V[1])  # (N, h, Mq, 2E): [Re | Im]
        else:  # softmax over the key modes of |A|, a real weighting
            ar, ai = a[..., :Mkv], a[..., Mkv:]
            p = torch.softmax(torch.sqrt(ar * ar + ai * ai + ABS_EPS), -1)  # (N, h, Mq, Mkv)
            s = torch.cat([p @ V[0], p @ V[1]], -1)  # (N, h, Mq, 2E)
        s = s.permute(2, 1, 0, 3).reshape(Mq, self.n_heads, -1, 2, self.d_head)  # (Mq, h, N, 2, E)
        s = s.permute(3, 0, 1, 2, 4)  # (2, Mq, h, N, E)
        Z = _mode_mix(s, complex_block(self.weight_re, self.weight_im), Mq, self.n_heads, self.d_head)  # (2Mq, h·N·E)
        out = time_mix(self.idft_q, Z, 2 * Mq)  # (L_q, h·N·E), divided by d_model²
        return out.reshape(self.len_q, self.n_heads, -1, self.d_head).transpose(1, 2)  # (L_q, N, h, E)


def fold_heads(o: Tensor, length: int, d_model: int, quirk: bool) -> Tensor:
    """A block's output (L, N, h, E) → (L, N, d): heads concatenated at each position, or (quirk) the reference's
    view of its (N, h, E, L) tensor as (N, L, h·E), which interleaves time and channels."""
    L = length
    if quirk:
        return o.permute(1, 2, 3, 0).reshape(-1, L, d_model).transpose(0, 1)
    return o.reshape(L, -1, d_model)


class FourierSelfLayer(nn.Module):
    """a_FEB(x) = W_o fold(FEB-f(W_q x + b_q)) + b_o on x (L, N, d) (FEB-f reads the queries only)."""

    def __init__(self, block: FourierBlock, d_model: int, quirk: bool):
        super().__init__()
        object.__setattr__(self, "block", block)  # a reference, not a submodule: see FEDformer.blocks
        self.d_model, self.quirk = d_model, quirk
        self.query = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(fold_heads(self.block(self.query(x)), self.block.length, self.d_model, self.quirk))


class FourierCrossLayer(nn.Module):
    """a_FEA(x, h) = W_o fold(FEA-f(W_q x + b_q, W_k h + b_k[, W_v h + b_v])) + b_o; x (L_d, N, d), h (W, N, d)."""

    def __init__(self, block: FourierCrossAttention, d_model: int, quirk: bool):
        super().__init__()
        object.__setattr__(self, "block", block)  # a reference, not a submodule: see FEDformer.blocks
        self.d_model, self.quirk = d_model, quirk
        self.query = nn.Linear(d_model, d_model)
        self.key = nn.Linear(d_model, d_model)
        self.value = None if quirk else nn.Linear(d_model, d_model)  # the reference reads the keys as values
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: Tensor, cross: Tensor) -> Tensor:
        v = None if self.value is None else self.value(cross)
        o = self.block(self.query(x), self.key(cross), v)  # (L_d, N, h, E)
        return self.out(fold_heads(o, self.block.len_q, self.d_model, self.quirk))


# -- layers ---------------------------------------------------------------------------------------------------------
class FeedForward(nn.Module):
    """FFN(x) = W₂ drop(act(W₁ x)) without biases (the reference's two k=1 convolutions)."""

    def __init__(self, d_model: int, d_ff: int, activation: str, dropout: float):
        super().__init__()
        self.fc1 = nn.Linear(d_model, d_ff, bias=False)
        self.fc2 = nn.Linear(d_ff, d_model, bias=False)
        self.act = F.gelu if activation == "gelu" else F.relu
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.dropout(self.act(self.fc1(x))))


class EncoderLayer(nn.Module):
    """x ← S(x + drop(a_FEB(x))), x ← S(x + drop(FFN(x))) on x (W, N, d)."""

    def __init__(self, attention: FourierSelfLayer, decomp: SeriesDecomp, c: FEDformerConfig):
        super().__init__()
        self.attention, self.decomp = attention, decomp
        self.ffn = FeedForward(c.d_model, c.d_ff, c.activation, c.dropout)
        self.dropout = nn.Dropout(c.dropout)

    def forward(self, x: Tensor) -> Tensor:
        x, _ = self.decomp(x + self.dropout(self.attention(x)))
        x, _ = self.decomp(x + self.dropout(self.ffn(x)))
        return x


class DecoderLayer(nn.Module):
    """Seasonal x (L_d, N, d), encoder output h (W, N, d) → (x, the trend increment (L_d, N, K))."""

    def __init__(self, self_attention: FourierSelfLayer, cross_attention: FourierCrossLayer, decomp: SeriesDecomp,
                 c: FEDformerConfig):
        super().__init__()
        self.self_attention, self.cross_attention, self.decomp = self_attention, cross_attention, decomp
        self.ffn = FeedForward(c.d_model, c.d_ff, c.activation, c.dropout)
        self.dropout = nn.Dropout(c.dropout)
        self.trend_proj = nn.Conv1d(c.d_model, c.n_targets, kernel_size=3, bias=False)  # circular, d → K

    def forward(self, x: Tensor, cross: Tensor) -> tuple[Tensor, Tensor]:
        x, t1 = self.decomp(x + self.dropout(self.self_attention(x)))
        x, t2 = self.decomp(x + self.dropout(self.cross_attention(x, cross)))
        x, t3 = self.decomp(x + self.dropout(self.ffn(x)))
        return x, circular_conv3(t1 + t2 + t3, self.trend_proj.weight)  # (L_d, N, d), (L_d, N, K)


# -- the model ------------------------------------------------------------------------------------------------------
@register("fedformer")
class FEDformer(WindowModel):
    """FEDformer-f forecaster. x (B, L, D_in) → y (B, L, H, K); y[:, t, h−1, k] forecasts target k at t + h from the
    window x[:, t−W+1 : t+1] of every input column (zero-padded, or the state, before x[:, 0])."""

    Config = FEDformerConfig
    time_major = True  # windows (N, W, D)

    def __init__(self, config: FEDformerConfig):
        super().__init__()
        self.config = c = config
        self.target_index = list(c.target_index)
        W, Ld, d, h, quirk = c.window, c.dec_len, c.d_model, c.n_heads, c.reference_quirks
        g = torch.Generator().manual_seed(int(c.mode_seed))  # every "random" draw, in the order the blocks are built

        def feb(length: int) -> FourierBlock:
            bins = select_modes(length, c.modes, c.mode_select, g)
            return FourierBlock(d, h, length, bins, list(range(len(bins))) if quirk else bins)

        def fea() -> FourierCrossAttention:
            bins_q = select_modes(Ld, c.modes, c.mode_select, g)
            bins_kv = select_modes(W, c.modes, c.mode_select, g)
            return FourierCrossAttention(d, h, Ld, W, bins_q, bins_kv, c.cross_activation)

        # the reference builds each block once and hands it to every layer; the paper's version, one per layer
        if quirk:
            enc_blocks = [feb(W)] * c.n_layers
            dec_blocks = [(feb(Ld), fea())] * c.d_layers
        else:
            enc_blocks = [feb(W) for _ in range(c.n_layers)]
            dec_blocks = [(feb(Ld), fea()) for _ in range(c.d_layers)]
        # The model owns each Fourier block once; layers only refer to theirs. A block shared by several layers
        # (reference_quirks) would otherwise appear under each layer's name in the state_dict, which safetensors
        # (checkpoints, bundles) refuses to write.
        unique = [*dict.fromkeys([*enc_blocks, *(m for pair in dec_blocks for m in pair)])]
        self.blocks = nn.ModuleList(unique)
        self.input_decomp = SeriesDecomp(W, c.d_input, c.moving_avg)
        enc_decomp, dec_decomp = SeriesDecomp(W, d, c.moving_avg), SeriesDecomp(Ld, d, c.moving_avg)
        self.enc_embed = TokenEmbedding(c.d_input, d)
        self.dec_embed = TokenEmbedding(c.d_input, d)
        self.dropout = nn.Dropout(c.dropout)
        self.encoder = nn.ModuleList(EncoderLayer(FourierSelfLayer(b, d, quirk), enc_decomp, c) for b in enc_blocks)
        self.enc_norm = SeasonalLayerNorm(d)
        self.decoder = nn.ModuleList(
            DecoderLayer(FourierSelfLayer(b, d, quirk), FourierCrossLayer(x, d, quirk), dec_decomp, c)
            for b, x in dec_blocks
        )
        self.dec_norm = SeasonalLayerNorm(d)
        self.proj = nn.Linear(d, c.n_targets)

    def forecast(self, w: Tensor) -> Tensor:
        """The FEDformer formula on explicit windows: w (N, W, D_in), oldest first → forecasts (N, H, K). Runs
        time-major, (L, N, ·), so every map along time is one GEMM with a constant matrix."""
        c = self.config
        W, l, H = c.window, c.label_len, c.horizon
        w = w.transpose(0, 1)  # (W, N, D)
        seasonal, trend = self.input_decomp(w)  # (W, N, D) each
        mean = w[..., self.target_index].mean(0, keepdim=True).repeat(H, 1, 1)  # (H, N, K): the window mean
        trend = torch.cat([trend[W - l :][..., self.target_index], mean], 0)  # (L_d, N, K)
        seasonal = F.pad(seasonal[W - l :], (0, 0, 0, 0, 0, H))  # (L_d, N, D): H zeros after the last l
        enc = self.dropout(self.enc_embed(w))  # (W, N, d)
        for layer in self.encoder:
            enc = layer(enc)
        enc = self.enc_norm(enc)
        x = self.dropout(self.dec_embed(seasonal))  # (L_d, N, d)
        for layer in self.decoder:
            x, dt = layer(x, enc)
            trend = trend + dt
        y = self.proj(self.dec_norm(x)) + trend  # (L_d, N, K)
        return y[l:].transpose(0, 1)  # (N, H, K)
