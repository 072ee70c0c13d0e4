"""S4: structured state-space layer with a diagonal-plus-low-rank state matrix (Gu, Goel, Ré,
"Efficiently Modeling Long Sequences with Structured State Spaces", ICLR 2022).

Per channel h, a real N-dimensional SSM x' = A x + B u, y = C x, written in the eigenbasis V of
the normal part of a HiPPO matrix (models/hippo.py: A_HiPPO = V Λ V* − PᵀP, P of rank r), where it reads

    A = Λ − Σ_r p_r p_r*  (N × N complex, DPLR),   p_r = V* P_r,   B = V* B_HiPPO,   C = C_real V.

The init (`init`, models.layers.ssm_init) is HiPPO-LegS by default (rank 1); LegT needs rank 2, LagT and Fourier
rank 1 (Re Λ = 0 for LegT and Fourier is clamped to −1e-4, which shifts A by at most 1e-4·I); the diagonal methods
(diag-lin, diag-inv, real, random) give Λ their spectrum, one random p and B = 1. Everything below is written for
rank r ∈ {1, 2}; "p p*" stands for the sum over r.

The system is real, so the full state is conjugate-symmetric: x = [z, z̄] with z the N/2 modes of
the half Λ (Im Λ > 0); the layer stores and learns only the half (Λ, p, B, C each N/2), the other
half being their conjugates. The diagonal part acts on z mode by mode; the low-rank part does NOT:
p* x = qᴴz + qᵀz̄ = 2·Re(qᴴz) couples z with z̄, so on the half A acts as the real-linear map

    z ↦ Λ z − Σ_r 2 q_r Re(q_rᴴ z)           (q_r: the first half of p_r)

which is why the state update below is not complex-linear in z. Outputs are y = 2·Re(Σ C z) + D u.
Bilinear discretization: Ā = (I − Δ/2·A)⁻¹(I + Δ/2·A), B̄ = (I − Δ/2·A)⁻¹ Δ B.

Parallel mode (the paper's algorithm): the kernel K_l = C Ā^l B̄ (l < L) from its truncated
generating function at the L-th roots of unity ω_k = e^{−2πik/L},

    K̂(ω_k) = Σ_{l<L} K_l ω_k^l = C̃ (I − Ā ω_k)⁻¹ B̄,     C̃ = C (I − Ā^L),

then K = irfft(K̂) and an FFT causal convolution. With the half-angle form of the bilinear transform
(I − Āω_k)⁻¹B̄ = (Δ/2)·e^{iπk/L}·M_k⁻¹ B, M_k = i·sin(πk/L)·I − cos(πk/L)·(Δ/2)·A: M_k is diagonal
plus rank r, so Woodbury reduces each frequency to Cauchy sums over the N modes and an r × r inverse
(O(N) per frequency, O(NL) per kernel). Numerics: this form has no pole at ω = −1 (the (1+ω)⁻¹ of the paper's
z-form, reached for even L, becomes cos(πk/L) → 0 multiplying A), and for k ≤ L/2 (the rfft
frequencies, the only ones evaluated) Re(M_k's diagonal) ≥ 0, so (rank 1) the Woodbury denominator has real
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
inverse of the diagonal-plus-rank-r matrix applied by Woodbury, O(N) per step, on the half state
with the conjugate coupling made explicit (two real inner products 2·Re(qᴴ·)). The step runs in
real arithmetic on (re, im) pairs (models/complex.py), so it exports to ONNX; its coefficients are
functions of the parameters only.

Stability by construction: Re Λ = −exp(·) < 0 and −Σ p_r p_r* is negative semidefinite, so
Re(v*Av) = Σ Re Λ_n |v_n|² − Σ_r |p_r*v|² < 0 for every v: every eigenvalue of A has Re < 0 and every
eigenvalue of the bilinear Ā has modulus < 1, whatever P is.

The kernel is also a sequence core (models.layers.cores): H3, the gated MLP and the Mamba block can run it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from models.complex import cdiv, split_pair, stack_pair
from models.layers.conv_ssm import ConvSSMBlock, conv_with_skip
from models.layers.ssm_init import canonical_init, dplr_init
from models.layers.ssm_options import SSMOptions
from models.registry import register
from models.stack import SSMForecaster, StackConfig


def s4_legs_init(N2: int) -> tuple[Tensor, Tensor, Tensor]:
    """HiPPO-LegS of size N = 2·N2 in its NPLR eigenbasis, the half with Im Λ > 0:
    Λ (N2,), q = V*P (N2,), B̃ = V*B (N2,), complex128. The other half is their conjugates."""
    lam, q, b = dplr_init("legs", 1, N2)
    return lam[0], q[0, 0], b[0]


def _full(z: Tensor) -> Tensor:
    """Half (..., N2) → conjugate-symmetric full (..., N) = [z, z̄]."""
    return torch.cat([z, z.conj()], -1)


def small_inverse(M: Tensor) -> Tensor:
    """Inverse of (..., r, r) matrices for r ∈ {1, 2}, in closed form (elementwise operations only, so exportable)."""
    if M.shape[-1] == 1:
        return 1 / M
    a, b, c, d = M[..., 0, 0], M[..., 0, 1], M[..., 1, 0], M[..., 1, 1]
    adj = torch.stack([torch.stack([d, -b], -1), torch.stack([-c, a], -1)], -2)
    return adj / (a * d - b * c).unsqueeze(-1).unsqueeze(-1)


@dataclass
class S4Config(StackConfig):
    d_state: int = 8
    init: str = "legs"  # models.layers.ssm_init.INIT_METHODS (or an alias: legendre, lin, inv, …)
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    bidirectional: bool = False
    ssm_lr: float = 1e-3

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.d_state < 2 or self.d_state % 2:
            raise ValueError(f"d_state must be even and ≥ 2, got {self.d_state}")
        self.init = canonical_init(self.init)
        SSMOptions.of(self)  # ValueError naming a bad dt_min / dt_max / ssm_lr


class S4Kernel(nn.Module):
    """The DPLR SSM itself: parameters, discretization, kernel, recurrence. u (B, L, H) → (B, L, H).

    P is stored (H, N2, 2) for rank 1 (the layout of every rank-1 bundle) and (r, H, N2, 2) for rank 2 (init legt)."""

    def __init__(self, d_model: int, d_state: int = 64, options: SSMOptions | None = None, n_directions: int = 1,
                 init: str = "legs"):
        super().__init__()
        opt = options or SSMOptions()
        if d_state < 2 or d_state % 2:
            raise ValueError(f"d_state must be even and ≥ 2 (conjugate pairs), got {d_state}")
        H, N2 = d_model, d_state // 2
        self.H, self.N2 = H, N2
        Lam, q, B = dplr_init(init, H, N2)  # (H, N2), (r, H, N2), (H, N2)
        self.rank = q.shape[0]
        log_dt = opt.log_dt(H)
        C = torch.randn(n_directions, H, N2, dtype=torch.complex128) * (0.5**0.5)
        P = torch.view_as_real(q).float()  # (r, H, N2, 2)
        self.log_dt = opt.mark(nn.Parameter(log_dt.float()))
        self.log_A_real = opt.mark(nn.Parameter(torch.log(-Lam.real).float()))  # Re Λ < 0
        self.A_imag = opt.mark(nn.Parameter(Lam.imag.float()))
        self.P = opt.mark(nn.Parameter((P[0] if self.rank == 1 else P).contiguous()))
        self.B = opt.mark(nn.Parameter(torch.view_as_real(B).float()))  # (H, N2, 2)
        self.C = nn.Parameter(torch.view_as_real(C).float())  # (n_dir, H, N2, 2)
        self.D = nn.Parameter(torch.randn(H))

    @property
    def state_shape(self) -> tuple[int, int, int]:
        """Per-cell state shape: (H, N2, 2), the half state as (re, im) pairs."""
        return (self.H, self.N2, 2)

    @property
    def bidirectional(self) -> bool:
        """True with an anti-causal second kernel (offline only: no state, no step)."""
        return self.C.shape[0] == 2

    def low_rank(self) -> Tensor:
        """The half low-rank vectors q (r, H, N2, 2) as (re, im) pairs, whatever the stored layout."""
        return self.P.view(self.rank, self.H, self.N2, 2)

    # -- the full conjugate-symmetric system, complex (parallel mode and tests) -------------------
    def ssm(self) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Δ (H,), and the full-N Λ (H, N), p (r, H, N), B (H, N), C (n_dir, H, N), complex."""
        lam = torch.complex(-torch.exp(self.log_A_real), self.A_imag)
        q = self.low_rank()
        p = torch.complex(q[..., 0], q[..., 1])
        b = torch.complex(self.B[..., 0], self.B[..., 1])
        c = torch.complex(self.C[..., 0], self.C[..., 1])
        return torch.exp(self.log_dt), _full(lam), _full(p), _full(b), _full(c)

    def dense(self, dtype: torch.dtype | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Dense A, I − Δ/2·A, I + Δ/2·A, each (H, N, N) complex (optionally computed in `dtype`)."""
        dt, lam, p, _, _ = self.ssm()
        if dtype is not None:
            dt, lam, p = dt.to(dtype), lam.to(dtype.to_complex()), p.to(dtype.to_complex())
        A = torch.diag_embed(lam) - torch.einsum("rhn,rhm->hnm", p, p.conj())  # Λ − Σ_r p_r p_r*
        eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
        half_dt = (dt / 2).view(-1, 1, 1)
        return A, eye - half_dt * A, eye + half_dt * A

    def discrete_poles(self) -> Tensor:
        """Eigenvalues of Ā per channel, (H, N) complex; dense eig in float64 (A is far from normal)."""
        _, Mm, Mp = self.dense(torch.float64)
        poles = torch.linalg.eigvals(torch.linalg.solve(Mm, Mp))
        return poles.to(self.log_dt.dtype.to_complex())

    def continuous_poles(self) -> Tensor:
        """Eigenvalues of A = Λ − Σ_r p_r p_r* per channel, (H, N) complex, Re < 0."""
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
        """Woodbury terms of M_k⁻¹, M_k = diag(δ_k) + γ_k Σ_r p_r p_r*, at the rfft frequencies k ≤ L/2:

            x M_k⁻¹ v = Σ x w v − Σ_rs (Σ x w p_r) G_rs (Σ p̄_s w v),   w = 1/δ,  G = γ (I + γ Q)⁻¹,  Q_rs = Σ p̄_r w p_s

        (rank 1: G = γ / (1 + γ Σ |p|² w)) and scale_k = (Δ/2)·e^{iπk/L}, so that (I − Āω_k)⁻¹ B̄ = scale_k · M_k⁻¹ B.
        Returns w (H, K, N), pw (r, H, K, N), qw = p̄ w (r, H, K, N), G (H, K, r, r), scale (H, K)."""
        k = torch.arange(L // 2 + 1, device=dt.device, dtype=dt.dtype)
        ang = math.pi * k / L  # (K,)
        gamma = torch.cos(ang) * dt.unsqueeze(-1) / 2  # (H, K)
        i_sin = torch.complex(torch.zeros_like(ang), torch.sin(ang)).unsqueeze(-1)  # (K, 1)
        delta = i_sin - gamma.unsqueeze(-1) * lam.unsqueeze(1)  # (H, K, N): diagonal of M_k
        w = 1 / delta  # (H, K, N)
        pw = p.unsqueeze(2) * w  # (r, H, K, N)
        qw = p.conj().unsqueeze(2) * w
        Q = torch.einsum("rhkn,shn->hkrs", qw, p)  # (H, K, r, r)
        g = gamma.unsqueeze(-1).unsqueeze(-1)
        G = g * small_inverse(torch.eye(self.rank, dtype=Q.dtype, device=Q.device) + g * Q)
        scale = (dt / 2).unsqueeze(-1) * torch.polar(torch.ones_like(ang), ang)  # (H, K)
        return w, pw, qw, G, scale

    def forward(
        self, u: Tensor, state: Tensor | None = None, return_state: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """u (B, L, H), state (B, H, N2, 2) or None (zero) → y (B, L, H) with D skip, final state."""
        L = u.shape[1]
        if self.bidirectional and (state is not None or return_state):
            raise RuntimeError("a bidirectional S4 layer has no recurrent state (it is non-causal)")
        dt, lam, p, b, c = self.ssm()
        dA_L, one_minus_L, Mp = self._power(L)  # (H, N, N)
        c_t = torch.einsum("dhn,hnm->dhm", c, one_minus_L)  # C̃ = C (I − Ā^L)
        w, pw, qw, G, scale = self._resolvent(dt, lam, p, L)
        cpw = torch.einsum("dhn,rhkn->dhkr", c_t, pw)  # (n_dir, H, K, r)
        qwb = torch.einsum("rhkn,hn->hkr", qw, b)  # (H, K, r)
        k_hat = scale * (torch.einsum("dhn,hkn,hn->dhk", c_t, w, b) - torch.einsum("dhkr,hkrs,hks->dhk", cpw, G, qwb))
        K = torch.fft.irfft(k_hat, n=L)  # (n_dir, H, L)
        uT = u.transpose(1, 2)  # (B, H, L)
        y = conv_with_skip(uT, K, self.D)  # (B, H, L); bidirectional: K[1] anti-causal
        if state is None and not return_state:
            return y.transpose(1, 2), None

        x0 = None if state is None else _full(torch.complex(state[..., 0], state[..., 1]))  # (B, H, N)
        if x0 is not None:
            # C Ā^{t+1} x₋₁: the kernel with B → (I + Δ/2·A) x₋₁ / Δ, whose B̄ is Ā x₋₁
            bs = torch.einsum("hnm,bhm->bhn", Mp, x0) / dt.unsqueeze(-1)  # (B, H, N)
            qwbs = torch.einsum("rhkn,bhn->bhkr", qw, bs)  # (B, H, K, r)
            ks_hat = scale * (torch.einsum("hn,hkn,bhn->bhk", c_t[0], w, bs)
                              - torch.einsum("hkr,hkrs,bhks->bhk", cpw[0], G, qwbs))
            y = y + torch.fft.irfft(ks_hat, n=L)  # (B, H, L)
        new_state = None
        if return_state:
            # Σ_j Ā^j B̄ ũ_j (ũ = u reversed) = (I − Ā^L) Σ_{k<L} G_k a_k, G_k = (I − Āω_k)⁻¹ B̄, a = ifft(ũ)
            low = torch.einsum("rhkn,hkrs,hks->hkn", pw, G, qwb)
            Gv = scale.unsqueeze(-1) * (w * b.unsqueeze(1) - low)  # (H, K, N)
            a = torch.fft.rfft(uT.flip(-1), n=L).conj() / L  # (B, H, K)
            N2 = self.N2
            s = torch.einsum("hkn,bhk->bhn", Gv[..., :N2], a)
            # k > L/2: G_{L-k} = conj of the partner modes' G_k, a_{L-k} = conj(a_k)
            n_mirror = (L - 1) // 2
            s = s + torch.einsum("hkn,bhk->bhn", Gv[:, 1 : n_mirror + 1, N2:], a[..., 1 : n_mirror + 1]).conj()
            xL = torch.einsum("hnm,bhm->bhn", one_minus_L, _full(s))
            if x0 is not None:
                xL = xL + torch.einsum("hnm,bhm->bhn", dA_L, x0)
            new_state = torch.view_as_real(xL[..., :N2]).contiguous()
        return y.transpose(1, 2), new_state

    def step_coefficients(self) -> tuple[Tensor, ...]:
        """(Pa, Qa, R, Cc) (H, N2, 2), E and Sq (r, H, N2, 2) and K⁻¹ (H, r, r) such that one step on the half state is

            s_r = Σ x ⊙ Sq_r                                (= p_r* x_full = 2·Re(q_rᴴ x))
            v = x ⊙ Pa + flip(x) ⊙ Qa + u·R − Σ_r s_r·E_r      (= d⁻¹((I + Δ/2·A) x + Δ B u), d = 1 − Δ/2·Λ)
            x' = v − Σ_r (K⁻¹ t)_r·E_r,  t_r = Σ v ⊙ Sq_r     (Woodbury for the low-rank part of I − Δ/2·A)
            y = Σ x' ⊙ Cc + D u

        flip swaps (re, im), so x ⊙ Pa + flip(x) ⊙ Qa is the complex product ((1 + Δ/2·Λ)/d)·x. E_r = (Δ/2) q_r / d and
        K = I + (Δ/2)·P* d⁻¹ P, K_rs = δ_rs + Δ·Re Σ q̄_r q_s / d, real (rank 1: K⁻¹ = κ ∈ (0, 1] since Re d > 1).
        Real arithmetic only (exportable)."""
        hdt = (torch.exp(self.log_dt) / 2).unsqueeze(-1)  # (H, 1)
        lam_re, lam_im = -torch.exp(self.log_A_real), self.A_imag  # (H, N2)
        d_re, d_im = 1 - hdt * lam_re, -hdt * lam_im  # 1 − Δ/2·Λ
        a_re, a_im = cdiv(1 + hdt * lam_re, hdt * lam_im, d_re, d_im)
        q_re, q_im = split_pair(self.low_rank())  # (r, H, N2)
        b_re, b_im = split_pair(self.B)
        e_re, e_im = cdiv(hdt * q_re, hdt * q_im, d_re, d_im)  # (Δ/2) q / d
        r_re, r_im = cdiv(2 * hdt * b_re, 2 * hdt * b_im, d_re, d_im)  # Δ B / d
        # Re(q̄_r q_s / d) = ((q_r·q_s) d_re + (q_r × q_s) d_im) / |d|²
        dot = q_re.unsqueeze(1) * q_re.unsqueeze(0) + q_im.unsqueeze(1) * q_im.unsqueeze(0)  # (r, s, H, N2)
        cross = q_re.unsqueeze(1) * q_im.unsqueeze(0) - q_im.unsqueeze(1) * q_re.unsqueeze(0)
        re_qq = ((dot * d_re + cross * d_im) / (d_re * d_re + d_im * d_im)).sum(-1)  # (r, s, H)
        eye = torch.eye(self.rank, dtype=re_qq.dtype, device=re_qq.device)
        K = eye + 2 * hdt.unsqueeze(-1) * re_qq.permute(2, 0, 1)  # (H, r, r)
        c_re, c_im = split_pair(self.C[0])
        Pa, Qa = stack_pair(a_re, a_re), stack_pair(-a_im, a_im)
        R, E = stack_pair(r_re, r_im), stack_pair(e_re, e_im)
        Sq, Cc = 2 * self.low_rank(), 2 * stack_pair(c_re, -c_im)
        return Pa, Qa, R, E, Sq, Cc, small_inverse(K)

    def step(self, u_t: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """u_t (B, H), state (B, H, N2, 2) → y_t (B, H) (D skip included), new state. Real arithmetic."""
        if self.bidirectional:
            raise RuntimeError("a bidirectional S4 layer has no recurrent step (it is non-causal)")
        Pa, Qa, R, E, Sq, Cc, K_inv = self.step_coefficients()
        u = u_t.unsqueeze(-1).unsqueeze(-1)  # (B, H, 1, 1)
        if self.rank == 1:
            E, Sq, kappa = E[0], Sq[0], K_inv[:, 0, 0]
            s = (state * Sq).sum((-2, -1)).unsqueeze(-1).unsqueeze(-1)  # (B, H, 1, 1)
            v = state * Pa + state.flip(-1) * Qa + u * R - s * E  # (B, H, N2, 2)
            t = (v * Sq).sum((-2, -1)) * kappa  # (B, H)
            new = v - t.unsqueeze(-1).unsqueeze(-1) * E
        else:
            s = (state.unsqueeze(1) * Sq).sum((-2, -1))  # (B, r, H)
            v = state * Pa + state.flip(-1) * Qa + u * R - (s.unsqueeze(-1).unsqueeze(-1) * E).sum(1)  # (B, H, N2, 2)
            t = (v.unsqueeze(1) * Sq).sum((-2, -1))  # (B, r, H)
            t = torch.einsum("hrs,bsh->brh", K_inv, t)  # K⁻¹ t
            new = v - (t.unsqueeze(-1).unsqueeze(-1) * E).sum(1)
        y = (new * Cc).sum((-2, -1)) + self.D * u_t  # (B, H)
        return y, new


class S4Layer(ConvSSMBlock):
    """S4 block (models.layers.conv_ssm.ConvSSMBlock) around an S4Kernel: `S4Layer(S4Config(...))`, or with the
    seed's keywords `S4Layer(d_model=64, d_state=16, bidirectional=True, dropout=0.1, init_method="legs")`.

    u (B, L, H) → (B, L, H); state (B, H, N/2, 2). bidirectional=True: non-causal, no state or step."""

    Config, kind, core = S4Config, "S4", "s4"

    def make_kernel(self, config: S4Config, n_directions: int) -> S4Kernel:
        return S4Kernel(config.d_model, config.d_state, SSMOptions.of(config), n_directions, config.init)


@register("s4")
class S4(SSMForecaster):
    """Stack of S4 (DPLR, HiPPO) layers with a multi-horizon head."""

    Config, Layer = S4Config, S4Layer
