"""Helpers for the zoo's contract tests: tiny configs, a synthetic KPI signal, comparisons."""

from __future__ import annotations

import dataclasses
import math

import torch

from models import create_model, model_class

D_IN, N_TGT, HORIZON = 3, 2, 4
TARGET_INDEX = (0, 2)

# Small sizes for any config field a model has (unknown fields are skipped per model).
TINY = {
    "d_model": 8, "n_layers": 2, "d_state": 8, "d_inner": 16, "expand": 2, "n_heads": 2, "d_ff": 16,
    "window": 48, "d_head": 4, "kernel_size": 3, "d_conv": 3, "patch_len": 4, "stride": 4, "n_experts": 3,
    "d_hidden": 16, "rank": 2, "top_k": 2, "d_feature": 8, "d_gate": 8,
    "r": 2, "m": 4, "n_states": 4, "max_states": 6, "num_scales": 2,  # the seed architectures (models/seeds)
    "experts": [  # MS³M: three tiny experts, one per scale
        {"kind": "s4d", "scale": 1, "d_model": 8, "n_layers": 1, "options": {"d_state": 4}},
        {"kind": "lru", "scale": 4, "d_model": 8, "n_layers": 1, "options": {"d_state": 4}},
        {"kind": "mamba", "scale": 16, "d_model": 8, "n_layers": 1, "options": {"d_state": 4, "d_conv": 3}},
        {"kind": "linear", "scale": 1, "options": {"window": 12}},  # the linear long-memory expert
    ],
}


def tiny_model(name: str, dtype=torch.float64, **overrides):
    """A tiny `name` (TINY sizes) on D_IN inputs and targets TARGET_INDEX, in eval mode; `overrides` may also set
    d_input, n_targets, horizon and target_index."""
    fields = {f.name for f in dataclasses.fields(model_class(name).Config)}
    frame = {"d_input": D_IN, "n_targets": N_TGT, "horizon": HORIZON, "target_index": TARGET_INDEX}
    frame.update({k: overrides.pop(k) for k in list(overrides) if k in frame})
    cfg = {k: v for k, v in TINY.items() if k in fields}
    # size overrides a model lacks (d_model for DLinear) are skipped; any other unknown key still fails
    cfg.update({k: v for k, v in overrides.items() if k in fields or k not in TINY})
    torch.manual_seed(0)
    m = create_model(name, **frame, **cfg)
    return m.to(dtype).eval()


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a − b| / max |b| (scale-relative error)."""
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def run_steps(model, x: torch.Tensor, state):
    ys = []
    for t in range(x.shape[1]):
        y_t, state = model.step(x[:, t], state)
        ys.append(y_t)
    return torch.stack(ys, 1), state


def random_state(model, batch: int, seed: int = 1):
    """A non-zero state a real stream could reach: run the model over a random prefix."""
    g = torch.Generator().manual_seed(seed)
    dtype = next(model.parameters()).dtype
    prefix = torch.randn(batch, 40, D_IN, generator=g, dtype=dtype)
    with torch.no_grad():
        _, state = model.forward_with_state(prefix)
    return state


def synthetic_kpis(n_cells: int, length: int, seed: int = 0) -> torch.Tensor:
    """(n_cells, length, 3) normalized KPI-like series: daily cycle + AR(1) noise + a coupled KPI."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(length, dtype=torch.float32)
    phase = torch.rand(n_cells, 1, generator=g) * 2 * math.pi
    period = 48.0
    load = torch.sin(2 * math.pi * t / period + phase) + 0.5 * torch.sin(4 * math.pi * t / period + 2 * phase)
    noise = torch.zeros(n_cells, length)
    eps = 0.3 * torch.randn(n_cells, length, generator=g)
    for i in range(1, length):
        noise[:, i] = 0.8 * noise[:, i - 1] + eps[:, i]
    load = load + noise
    prb = 0.7 * load + 0.2 * torch.randn(n_cells, length, generator=g)
    rsrp = 0.5 * torch.roll(load, 3, dims=1) + 0.3 * torch.randn(n_cells, length, generator=g)
    x = torch.stack([load, rsrp, prb], -1)
    return (x - x.mean((0, 1))) / x.std((0, 1))


def horizon_targets(x: torch.Tensor, horizon: int, target_index=TARGET_INDEX) -> torch.Tensor:
    """(B, L, D) → (B, L−H, H, K): the true targets at t+1 … t+H for t < L−H."""
    L = x.shape[1]
    tgt = x[..., list(target_index)]
    return torch.stack([tgt[:, h + 1 : L - horizon + h + 1] for h in range(horizon)], dim=2)


MS3M_EXPERTS = [  # four tiny experts at scales 1, 4, 3, 16 (phases of every kind)
    {"kind": "s4d", "scale": 1, "d_model": 8, "n_layers": 1, "options": {"d_state": 4, "dt_min": 0.02}},
    {"kind": "lru", "scale": 4, "d_model": 8, "n_layers": 1, "options": {"d_state": 4, "r_max": 0.95}},
    {"kind": "s4d", "scale": 3, "d_model": 8, "n_layers": 2, "options": {"d_state": 4, "dt_min": 0.05}},
    {"kind": "mamba", "scale": 16, "d_model": 8, "n_layers": 1, "options": {"d_state": 4, "dt_min": 0.05}},
]


def tiny_ms3m(dtype=torch.float64, **kw):
    """A small MS³M (float64 unless asked) with MS3M_EXPERTS, seeded, in eval mode."""
    torch.manual_seed(0)
    m = create_model("ms3m", d_input=D_IN, n_targets=2, horizon=3, target_index=(0, 2), experts=MS3M_EXPERTS,
                     d_feature=8, d_gate=8, **kw)
    return m.to(dtype).eval()


def check_target_windows(model, reference, positions, tol: float, L: int, seed: int = 0) -> None:
    """For a model forecasting each target channel from its own last W values (DLinear, PatchTST): forward at
    `positions` equals `reference(model, window (K, W))` on the explicit windows, zero-padded without a state
    and preceded by a random ring state with one; the final ring is the last W − 1 target values."""
    torch.manual_seed(seed)
    W = model.config.window
    B = 2
    x = torch.randn(B, L, D_IN, dtype=torch.float64)
    ring = torch.randn(B, N_TGT, W - 1, dtype=torch.float64)
    tgt = x[..., list(TARGET_INDEX)].transpose(1, 2)  # (B, K, L)
    with torch.no_grad():
        y = model(x)
        y_state, (ring_out,) = model.forward_with_state(x, (ring,))
        for b in range(B):
            zero_hist = torch.cat([torch.zeros(N_TGT, W - 1, dtype=torch.float64), tgt[b]], -1)
            ring_hist = torch.cat([ring[b], tgt[b]], -1)
            for t in positions:
                # t ≥ W−1: the window is x itself; before that, zeros (no state) or the ring
                assert (y[b, t] - reference(model, zero_hist[:, t : t + W])).abs().max() <= tol
                assert (y_state[b, t] - reference(model, ring_hist[:, t : t + W])).abs().max() <= tol
    assert torch.equal(ring_out, tgt[..., L - W + 1 :])


def check_window_steps(model, dtype, tol: float, L: int) -> None:
    """A window model's steps from the zero and a random state reproduce forward (≤ tol) and end in its ring."""
    x = torch.randn(2, L, D_IN, dtype=dtype)
    for s0 in (model.init_state(2), random_state(model, 2)):
        with torch.no_grad():
            y_par, s_par = model.forward_with_state(x, s0)
            y_rec, s_rec = run_steps(model, x, s0)
        assert rel_err(y_rec, y_par) <= tol
        assert torch.equal(s_rec[0], s_par[0])


def check_last_window_paths(model) -> None:
    """forward_last and training_forward(last_only=True) run the last window only: the same forecast as forward's
    last position (from a non-zero and from the zero state), the same state, no auxiliary terms."""
    x = torch.randn(3, 20, D_IN, dtype=torch.float64)
    s0 = random_state(model, 3)
    with torch.no_grad():
        y, (ring,) = model.forward_with_state(x, s0)
        y_last, aux, (ring_last,) = model.training_forward(x, s0, last_only=True)
        assert rel_err(model.forward_last(x, s0), y[:, -1]) <= 1e-12
        assert rel_err(model.forward_last(x), model(x)[:, -1]) <= 1e-12
    assert y_last.shape == (3, 1, model.config.horizon, N_TGT) and rel_err(y_last, y[:, -1:]) <= 1e-12 and aux == {}
    assert torch.equal(ring_last, ring)


def window_register(model) -> int:
    """W when the model's whole state is a shift register of its last W − 1 inputs (a window model), else 0.

    Such a state carries nothing from one step to the next but exact copies of inputs (checked bit for bit), so
    after W steps every step sees a fresh window: 2W + 8 steps cover the register's filling and two wraps, and
    more steps would repeat the same check on other data (tests/export/test_export_zoo.py). States that accumulate
    (SSMs, LSTM, the causal normalization's statistics) are no window register."""
    spec = model.state_spec()
    window = getattr(model.config, "window", 0)
    return window if [f.name for f in spec] == ["window"] and window - 1 in spec[0].shape else 0
