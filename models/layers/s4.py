"""S4: structured state-space layer with a diagonal-plus-low-rank state matrix (Gu, Goel, Ré,
"Efficiently Modeling Long Sequences with Structured State Spaces", ICLR 2022).

Per channel h, a real N-dimensional SSM x' = A x + B u, y = C x, written in the eigenbasis V of
the normal part of HiPPO-LegS (models/hippo.py: A_LegS = V Λ V* − P Pᵀ), where it reads

    A = Λ − p p*  (N × N complex, DPLR),   p = V* P,   B = V* B_LegS,   C = C_real V.

The system is real, so the full state is conjugate-symmetric: x = [z, z̄] with z the N/2 modes of
the half Λ (Im Λ > 0); the layer stores and learns only the half (Λ, p, B, C each N/2), the other
half being their conjugates. The diagonal part acts on z mode by mode; the rank-1 part does NOT:
p* x = qᴴz + qᵀz̄ = 2·Re(qᴴz) couples z with z̄, so on the half A acts as the real-linear map

    z ↦ Λ z − 2 q Re(qᴴ z)           (q: the first half of p)

which is why the state update below is not complex-linear in z. Outputs are y = 2·Re(Σ C z) + D u.
Bilinear discretization: Ā = (I − Δ/2·A)⁻¹(I + Δ/2·A), B̄ = (I − Δ/2·A)⁻¹ Δ B.

Parallel mode (the paper's algorithm): the kernel K_l = C Ā^l B̄ (l < L) from its truncated
generating function at the L-th roots of unity ω_k = e^{−2πik/L},

    K̂(ω_k) = Σ_{l<L} K_l ω_k^l = C̃ (I − Ā ω_k)⁻¹ B̄,     C̃ = C (I − Ā^L),

then K = irfft(K̂) and an FFT causal convolution. With the half-angle form of the bilinear transform
(I − Āω_k)⁻¹B̄ = (Δ/2)·e^{iπk/L}·M_k⁻¹ B, M_k = i·sin(πk/L)·I − cos(πk/L)·(Δ/2)·A: M_k is diagonal
plus rank 1, so Woodbury reduces each frequency to Cauchy sums over the N modes (O(N) per
frequency, O(NL) per kernel). Numerics: this form has no pole at ω = −1 (the (1+ω)⁻¹ of the paper's
z-form, reached for even L, becomes cos(πk/L) → 0 multiplying A), and for k ≤ L/2 (the rfft
frequencies, the only ones evaluated) Re(M_k's diagonal) ≥ 0, so the Woodbury denominator has real
part ≥ 1: no cancellation. Ā^L is a dense (H, N, N) power by repeated squaring, O(N³ log L), as the
reference computes C̃; I − Ā^L is formed as (I − Ā)·Σ_{l<L} Ā^l with I − Ā = −Δ (I − Δ/2·A)⁻¹ A, which
keeps its relative accuracy when Ā^L ≈ I (small Δ·L) instead of cancelling I − (I − O(ΔL)).

An initial state x₋₁ adds C Ā^{t+1} x₋₁ to y_t: the same generating function with B replaced by
(I + Δ/2·A) x₋₁ / Δ (so that B̄ becomes Ā x₋₁). The final state x_{L-1} = Ā^L x₋₁ + Σ_j Ā^j B̄ u_{L-1-j}
is exact too: by DFT orthogonality Σ_j Ā^j B̄ ũ_j = (I − Ā^L) Σ_k (I − Āω_k)⁻¹B̄ · ifft(ũ)_k, the same
Woodbury vectors contracted with the spectrum of the reversed input (conjugate symmetry folds the
k > L/2 half onto the rfft frequencies). Everything is exact up to rounding, so step ≡ forward and
windows chain.

Recurrent mode (the reference "step mode"): x' = (I − Δ/2·A)⁻¹((I + Δ/2·A) x + Δ B u) with the
inverse of the diagonal-plus-rank-1 matrix applied by Woodbury, O(N) per step, on the half state
with the conjugate coupling made explicit (two real inner products 2·Re(qᴴ·)). The step runs in
real arithmetic on (re, im) pairs (models/complex.py), so it exports to ONNX; its coefficients are
functions of the parameters only.

Stability by construction: Re Λ = −exp(·) < 0 and −p p* is negative semidefinite, so
Re(v*Av) = Σ Re Λ_n |v_n|² − |p*v|² < 0 for every v: every eigenvalue of A has Re < 0 and every
eigenvalue of the bilinear Ā has modulus < 1, whatever P is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from models.complex import cdiv, split_pair, stack_pair
from models.hippo import nplr_legs
from models.layers.conv_ssm import ConvSSMBlock, conv_with_skip
from models.layers.ssm_options import SSMOptions
from models.registry import register
from models.stack import SSMForecaster, StackConfig


def s4_legs_init(N2: int) -> tuple[Tensor, Tensor, Tensor]:
    """HiPPO-LegS of size N = 2·N2 in its NPLR eigenbasis, the half with Im Λ > 0:
    Λ (N2,), q = V*P (N2,), B̃ = V*B (N2,), complex128. The other half is their conjugates."""
    Lam, V, P, B = nplr_legs(2 * N2)
    Vh = V[:, :N2].conj().T  # (N2, N)
    return torch.from_numpy(Lam[:N2]), torch.from_numpy(Vh @ P), torch.from_numpy(Vh @ B)


def _full(z: Tensor) -> Tensor:
    """Half (..., N2) → conjugate-symmetric full (..., N) = [z, z̄]."""
    return torch.cat([z, z.conj()], -1)


@dataclass
class S4Config(StackConfig):
    d_state: int = 8
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    bidirectional: bool = False
    ssm_lr: float = 1e-3

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.d_state < 2 or self.d_state % 2:
            raise ValueError(f"d_state must be even and ≥ 2, got {self.d_state}")
        SSMOptions.of(self)  # ValueError naming a bad dt_min / dt_max / ssm_lr


class S4Kernel(nn.Module):
    """The DPLR SSM itself: parameters, discretization, kernel, recurrence. u (B, L, H) → (B, L, H)."""

    def __init__(self, d_model: int, d_state: int = 64, options: SSMOptions | None = None, n_directions: int = 1):
        super().__init__()
        opt = options or SSMOptions()
        if d_state < 2 or d_state % 2:
            raise ValueError(f"d_state must be even and ≥ 2 (conjugate pairs), got {d_state}")
        H, N2 = d_model, d_state // 2
        self.H, self.N2 = H, N2
        Lam, q, B = s4_legs_init(N2)
        log_dt = opt.log_dt(H)
        C = torch.randn(n_directions, H, N2, dtype=torch.complex128) * (0.5**0.5)
        self.log_dt = opt.mark(nn.Parameter(log_dt.float()))
        self.log_A_real = opt.mark(nn.Parameter(torch.log(-Lam.real).expand(H, N2).float()))  # Re Λ < 0
        self.A_imag = opt.mark(nn.Parameter(Lam.imag.expand(H, N2).float()))
        self.P = opt.mark(nn.Parameter(torch.view_as_real(q).expand(H, N2, 2).float()))  # (H, N2, 2)
        self.B = opt.mark(nn.Parameter(torch.view_as_real(B).expand(H, N2, 2).float()))  # (H, N2, 2)
        self.C = nn.Parameter(torch.view_as_real(C).float())  # (n_dir, H, N2, 2)
        self.D = nn.Parameter(torch.randn(H))

    @property
    def state_shape(self) -> tuple[int, int, int]:
        """Per-cell state shape: (H, N2, 2), the half state as (re, im) pairs."""
        return (self.H, self.N2, 2)

    # -- the full conjugate-symmetric system, complex (parallel mode and tests) -------------------
    def ssm(self) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Δ (H,), and the full-N Λ (H, N), p (H, N), B (H, N), C (n_dir, H, N), complex."""
        lam = torch.complex(-torch.exp(self.log_A_real), self.A_imag)
        p = torch.complex(self.P[..., 0], self.P[..., 1])
        b = torch.complex(self.B[..., 0], self.B[..., 1])
        c = torch.complex(self.C[..., 0], self.C[..., 1])
        return torch.exp(self.log_dt), _full(lam), _full(p), _full(b), _full(c)

    def dense(self, dtype: torch.dtype | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Dense A, I − Δ/2·A, I + Δ/2·A, each (H, N, N) complex (optionally computed in `dtype`)."""
        dt, lam, p, _, _ = self.ssm()
        if dtype is not None:
            dt, lam, p = dt.to(dtype), lam.to(dtype.to_complex()), p.to(dtype.to_complex())
        A = torch.diag_embed(lam) - p.unsqueeze(-1) * p.conj().unsqueeze(-2)  # Λ − p p*
        eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
        half_dt = (dt / 2).view(-1, 1, 1)
        return A, eye - half_dt * A, eye + half_dt * A

    def discrete_poles(self) -> Tensor:
        """Eigenvalues of Ā per channel, (H, N) complex; dense eig in float64 (A is far from normal)."""
        _, Mm, Mp = self.dense(torch.float64)
        poles = torch.linalg.eigvals(torch.linalg.solve(Mm, Mp))
        return poles.to(self.log_dt.dtype.to_complex())

    def continuous_poles(self) -> Tensor:
        """Eigenvalues of A = Λ − p p* per channel, (H, N) complex, Re < 0."""
        A, _, _ = self.dense(torch.float64)
        return torch.linalg.eigvals(A).to(self.log_dt.dtype.to_complex())

    def _power(self, L: int) -> tuple[Tensor, Tensor, Tensor]:
        """Ā^L, E_L = I − Ā^L and I + Δ/2·A, each (H, N, N).

        E_L by binary powering in the E form, E_{m+n} = E_m + E_n − E_m E_n, from the exact
        E_1 = I − Ā = −Δ (I − Δ/2·A)⁻¹ A: it keeps its relative accuracy both when Ā^L ≈ I (short L,
        small Δ, where I − Ā^L would cancel) and when Ā^L ≈ 0."""
        A, Mm, Mp = self.dense()
        dt = torch.exp(self.log_dt).view(-1, 1, 1)
        base = -dt * torch.linalg.solve(Mm, A)  # E_1 (H, N, N)
        E = None
        m = L
        while m:
            if m & 1:
                E = base if E is None else E + base - E @ base
            m >>= 1
            if m:
                base = 2 * base - base @ base  # E_{2m}
        eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
        return eye - E, E, Mp

    def _resolvent(self, dt: Tensor, lam: Tensor, p: Tensor, L: int) -> tuple[Tensor, ...]:
        """Woodbury terms of M_k⁻¹, M_k = diag(δ_k) + γ_k p p*, at the rfft frequencies k ≤ L/2:

            x M_k⁻¹ v = Σ x w v − g (Σ x p w)(Σ p̄ w v),   w = 1/δ,  g = γ / (1 + γ Σ |p|² w)

        and scale_k = (Δ/2)·e^{iπk/L}, so that (I − Āω_k)⁻¹ B̄ = scale_k · M_k⁻¹ B.
        Returns w (H, K, N), pw (H, K, N), qw = p̄ w (H, K, N), g (H, K), scale (H, K)."""
        k = torch.arange(L // 2 + 1, device=dt.device, dtype=dt.dtype)
        ang = math.pi * k / L  # (K,)
        gamma = torch.cos(ang) * dt.unsqueeze(-1) / 2  # (H, K)
        i_sin = torch.complex(torch.zeros_like(ang), torch.sin(ang)).unsqueeze(-1)  # (K, 1)
        delta = i_sin - gamma.unsqueeze(-1) * lam.unsqueeze(1)  # (H, K, N): diagonal of M_k
        w = 1 / delta  # (H, K, N)
        pw = p.unsqueeze(1) * w
        qw = p.conj().unsqueeze(1) * w
        g = gamma / (1 + gamma * (qw * p.unsqueeze(1)).sum(-1))  # (H, K)
        scale = (dt / 2).unsqueeze(-1) * torch.polar(torch.ones_like(ang), ang)  # (H, K)
        return w, pw, qw, g, scale

    def forward(
        self, u: Tensor, state: Tensor | None = None, return_state: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """u (B, L, H), state (B, H, N2, 2) or None (zero) → y (B, L, H) with D skip, final state."""
        L = u.shape[1]
        bidirectional = self.C.shape[0] == 2
        if bidirectional and (state is not None or return_state):
            raise RuntimeError("a bidirectional S4 layer has no recurrent state (it is non-causal)")
        dt, lam, p, b, c = self.ssm()
        dA_L, one_minus_L, Mp = self._power(L)  # (H, N, N)
        c_t = torch.einsum("dhn,hnm->dhm", c, one_minus_L)  # C̃ = C (I − Ā^L)
        w, pw, qw, g, scale = self._resolvent(dt, lam, p, L)
        cpw = torch.einsum("dhn,hkn->dhk", c_t, pw)  # (n_dir, H, K)
        qwb = torch.einsum("hkn,hn->hk", qw, b)  # (H, K)
        k_hat = scale * (torch.einsum("dhn,hkn,hn->dhk", c_t, w, b) - g * cpw * qwb)
        K = torch.fft.irfft(k_hat, n=L)  # (n_dir, H, L)
        uT = u.transpose(1, 2)  # (B, H, L)
        y = conv_with_skip(uT, K, self.D)  # (B, H, L); bidirectional: K[1] anti-causal
        if state is None and not return_state:
            return y.transpose(1, 2), None

        x0 = None if state is None else _full(torch.complex(state[..., 0], state[..., 1]))  # (B, H, N)
        if x0 is not None:
            # C Ā^{t+1} x₋₁: the kernel with B → (I + Δ/2·A) x₋₁ / Δ, whose B̄ is Ā x₋₁
            bs = torch.einsum("hnm,bhm->bhn", Mp, x0) / dt.unsqueeze(-1)  # (B, H, N)
            ks_hat = scale * (torch.einsum("hn,hkn,bhn->bhk", c_t[0], w, bs)
                              - g * cpw[0] * torch.einsum("hkn,bhn->bhk", qw, bs))
            y = y + torch.fft.irfft(ks_hat, n=L)  # (B, H, L)
        new_state = None
        if return_state:
            # Σ_j Ā^j B̄ ũ_j (ũ = u reversed) = (I − Ā^L) Σ_{k<L} G_k a_k, G_k = (I − Āω_k)⁻¹ B̄, a = ifft(ũ)
            G = scale.unsqueeze(-1) * (w * b.unsqueeze(1) - (g * qwb).unsqueeze(-1) * pw)  # (H, K, N)
            a = torch.fft.rfft(uT.flip(-1), n=L).conj() / L  # (B, H, K)
            N2 = self.N2
            s = torch.einsum("hkn,bhk->bhn", G[..., :N2], a)
            # k > L/2: G_{L-k} = conj of the partner modes' G_k, a_{L-k} = conj(a_k)
            n_mirror = (L - 1) // 2
            s = s + torch.einsum("hkn,bhk->bhn", G[:, 1 : n_mirror + 1, N2:], a[..., 1 : n_mirror + 1]).conj()
            xL = torch.einsum("hnm,bhm->bhn", one_minus_L, _full(s))
            if x0 is not None:
                xL = xL + torch.einsum("hnm,bhm->bhn", dA_L, x0)
            new_state = torch.view_as_real(xL[..., :N2]).contiguous()
        return y.transpose(1, 2), new_state

    def step_coefficients(self) -> tuple[Tensor, ...]:
        """(Pa, Qa, R, E, Sq, Cc), each (H, N2, 2), and κ (H,), such that one step on the half state is

            s = Σ x ⊙ Sq                                  (= p* x_full = 2·Re(qᴴ x))
            v = x ⊙ Pa + flip(x) ⊙ Qa + u·R − s·E          (= d⁻¹((I + Δ/2·A) x + Δ B u), d = 1 − Δ/2·Λ)
            x' = v − κ·(Σ v ⊙ Sq)·E                        (Woodbury for the rank-1 part of I − Δ/2·A)
            y = Σ x' ⊙ Cc + D u

        flip swaps (re, im), so x ⊙ Pa + flip(x) ⊙ Qa is the complex product ((1 + Δ/2·Λ)/d)·x.
        κ = 1 / (1 + Δ·Re Σ |q|²/d) ∈ (0, 1] since Re d > 1. Real arithmetic only (exportable)."""
        hdt = (torch.exp(self.log_dt) / 2).unsqueeze(-1)  # (H, 1)
        lam_re, lam_im = -torch.exp(self.log_A_real), self.A_imag  # (H, N2)
        d_re, d_im = 1 - hdt * lam_re, -hdt * lam_im  # 1 − Δ/2·Λ
        a_re, a_im = cdiv(1 + hdt * lam_re, hdt * lam_im, d_re, d_im)
        q_re, q_im = split_pair(self.P)
        b_re, b_im = split_pair(self.B)
        e_re, e_im = cdiv(hdt * q_re, hdt * q_im, d_re, d_im)  # (Δ/2) q / d
        r_re, r_im = cdiv(2 * hdt * b_re, 2 * hdt * b_im, d_re, d_im)  # Δ B / d
        qq_re = ((q_re * q_re + q_im * q_im) * d_re / (d_re * d_re + d_im * d_im)).sum(-1)  # Re Σ |q|²/d
        kappa = 1 / (1 + 2 * hdt.squeeze(-1) * qq_re)  # (H,)
        c_re, c_im = split_pair(self.C[0])
        Pa, Qa = stack_pair(a_re, a_re), stack_pair(-a_im, a_im)
        R, E = stack_pair(r_re, r_im), stack_pair(e_re, e_im)
        Sq, Cc = 2 * self.P, 2 * stack_pair(c_re, -c_im)
        return Pa, Qa, R, E, Sq, Cc, kappa

    def step(self, u_t: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """u_t (B, H), state (B, H, N2, 2) → y_t (B, H) (D skip included), new state. Real arithmetic."""
        if self.C.shape[0] != 1:
            raise RuntimeError("a bidirectional S4 layer has no recurrent step (it is non-causal)")
        Pa, Qa, R, E, Sq, Cc, kappa = self.step_coefficients()
        u = u_t.unsqueeze(-1).unsqueeze(-1)  # (B, H, 1, 1)
        s = (state * Sq).sum((-2, -1)).unsqueeze(-1).unsqueeze(-1)  # (B, H, 1, 1)
        v = state * Pa + state.flip(-1) * Qa + u * R - s * E  # (B, H, N2, 2)
        t = (v * Sq).sum((-2, -1)) * kappa  # (B, H)
        new = v - t.unsqueeze(-1).unsqueeze(-1) * E
        y = (new * Cc).sum((-2, -1)) + self.D * u_t  # (B, H)
        return y, new


class S4Layer(ConvSSMBlock):
    """S4 block (models.layers.conv_ssm.ConvSSMBlock) around an S4Kernel: `S4Layer(S4Config(...))`.

    u (B, L, H) → (B, L, H); state (B, H, N/2, 2). bidirectional=True: non-causal, no state or step."""

    Config, kind = S4Config, "S4"

    def make_kernel(self, config: S4Config, n_directions: int) -> S4Kernel:
        return S4Kernel(config.d_model, config.d_state, SSMOptions.of(config), n_directions)


@register("s4")
class S4(SSMForecaster):
    """Stack of S4 (DPLR, HiPPO-LegS) layers with a multi-horizon head."""

    Config, Layer = S4Config, S4Layer
