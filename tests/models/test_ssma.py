"""SSMA (models.seeds.ssma): every part reaches the forecast, the ternary quantizer and its straight-through gradient,
top-k selection and its ties, the dense → lottery-ticket → dynamic schedule, the frozen export form, and a state
that does not grow with the sequence length. The streaming contract itself is tests/models/test_contract.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from models import model_from_config
from models.seeds.ssma import SSMA_Model, SSMAConfig
from models.seeds.ssma_ops import block_diagonal, ternary_quantize, topk_mask
from models.training.trainer import masked_error, training_loss
from tests.models.zoo_helpers import D_IN, HORIZON, N_TGT, random_state, rel_err, run_steps, tiny_model


def assert_step_equals_forward(model, L: int = 40, tol: float = 1e-12) -> None:
    """Steps from a non-zero state reproduce forward (f64: to rounding; S is the same code both ways)."""
    x = torch.randn(2, L, D_IN, dtype=torch.float64, generator=torch.Generator().manual_seed(L))
    s0 = random_state(model, 2)
    with torch.no_grad():
        y_par, s_par = model.forward_with_state(x, s0)
        y_rec, s_rec = run_steps(model, x, s0)
    assert rel_err(y_rec, y_par) <= tol
    assert all(rel_err(a, b) <= 10 * tol for a, b in zip(s_rec, s_par))


def train_steps(model, opt, n: int, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x = torch.randn(2, 8, D_IN, dtype=torch.float64, generator=g)
        target = torch.randn(2, 8, HORIZON, N_TGT, dtype=torch.float64, generator=g)
        y, aux, _ = model.training_forward(x)
        loss = torch.nn.functional.mse_loss(y, target) + sum(aux.values())
        opt.zero_grad()
        loss.backward()
        opt.step()


# -- every part is used ---------------------------------------------------------------------------------------------

ABLATIONS = {  # part → the parameters (of every layer) whose zeroing switches it off
    "low_rank_UV": ["u_proj.weight"],  # U(x) = 0: ℓ = U(x)·Z = 0
    "memory_M": ["c_m"],  # M no longer read out
    "state_S_readout": ["c_s"],  # S no longer read out directly (it still feeds M)
    "state_S": ["w_in", "b_in"],  # S ≡ 0 from the zero state, and with it M
    "transition_W_state": ["w_state"],  # S_t no longer depends on S_{t−1}
}


@pytest.mark.parametrize("part", ABLATIONS)
def test_zeroing_any_part_changes_the_forecast(part):
    model = tiny_model("ssma")
    x = torch.randn(2, 30, D_IN, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = model(x)
        for layer in model.layers:
            for name in ABLATIONS[part]:
                layer.get_parameter(name).zero_()
        y_ablated = model(x)
    assert torch.isfinite(y_ablated).all()
    assert rel_err(y_ablated, y) > 1e-3, f"zeroing {part} leaves the forecast unchanged"


def test_low_rank_path_is_the_causal_decayed_sum():
    """With the S and M readouts off, a layer's update is FFN(ℓ_t), ℓ_t = U(u_t) Z_t with
    Z_t = λ Z_{t−1} + (1 − λ) V(u_t)ᵀ u_t: U(X)·V(X)ᵀ·X in causal, decayed form. Written out by hand here."""
    model = tiny_model("ssma")
    layer = model.layers[0]
    h = torch.randn(1, 12, 8, dtype=torch.float64)
    with torch.no_grad():
        layer.c_s.zero_()
        layer.c_m.zero_()
        Z0 = torch.randn(1, 2, 8, dtype=torch.float64)
        S0, M0 = torch.zeros(2, 1, 8, 4, dtype=torch.float64)
        dh, (_, _, Z_final) = layer(h, (S0, M0, Z0), model.weights()[0])
        u = layer.norm(h)[0]
        lam = torch.sigmoid(layer.lam_logit)
        q, k = layer.u_proj(u), layer.v_proj(u)  # (L, r)
        Z = Z0[0]
        for t in range(12):
            Z = lam[:, None] * Z + ((1 - lam) * k[t])[:, None] * u[t][None, :]  # (r, d)
            assert torch.allclose(dh[0, t], layer.ffn(q[t] @ Z), atol=1e-12)
    assert torch.allclose(Z_final[0], Z, atol=1e-13)


# -- ternary quantization ------------------------------------------------------------------------------------------

def test_ternary_quantizer_gives_three_values_per_block_with_twn_thresholds():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(6, 4, 4, dtype=torch.float64, generator=g)
    support = (torch.rand(6, 4, 4, generator=g) > 0.3).to(torch.float64)
    q = ternary_quantize(w * support, support)
    for b in range(6):
        a = (w[b] * support[b]).abs()
        on = support[b] > 0
        delta = 0.7 * a[on].mean()
        big = a > delta
        alpha = a[big].mean()
        values = torch.unique(q[b])
        assert values.numel() == 3 and torch.allclose(values, torch.stack([-alpha, alpha.new_zeros(()), alpha]))
        assert torch.equal(q[b] == 0, ~big)  # zero below Δ and wherever the mask is off
        assert torch.equal(torch.sign(q[b][big]), torch.sign(w[b][big]))


def test_ternary_weights_use_a_straight_through_gradient_and_a_penalty():
    model = tiny_model("ssma", quantize="ternary", m=8, block_size=4).train()
    layer = model.layers[0]
    with torch.no_grad():  # small enough that the rho rescale is exactly 1 (its gradient then vanishes too)
        layer.w_state.mul_(0.05)
    w = layer.weights(dynamic=False, sample=False)
    assert torch.equal(w.blocks, ternary_quantize(layer.w_state.detach(), torch.ones_like(layer.w_state)))
    assert all(torch.unique(b).numel() == 3 for b in w.blocks)
    assert torch.equal(w.w_state, block_diagonal(w.blocks)) and (w.w_state.reshape(2, 4, 2, 4)[0, :, 1] == 0).all()
    G = torch.randn_like(w.blocks)
    (w.blocks * G).sum().backward()
    assert torch.equal(layer.w_state.grad, G)  # straight through: dQ/dW = identity

    model.zero_grad()
    x = torch.randn(2, 10, D_IN, dtype=torch.float64)
    y, aux, _ = model.training_forward(x)
    expected = sum(((lay.w_state - ternary_quantize(lay.w_state.detach(), torch.ones_like(lay.w_state))) ** 2).sum()
                   for lay in model.layers)
    assert set(aux) == {"ternary_penalty"} and aux["ternary_penalty"].dim() == 0
    assert torch.allclose(aux["ternary_penalty"], model.config.ternary_weight * expected)
    target = torch.randn_like(y)
    mask = torch.ones_like(y, dtype=torch.bool)
    loss = training_loss(y, aux, target, mask)  # the trainer adds the scalar term as it is
    assert torch.allclose(loss - masked_error(y, target, mask), aux["ternary_penalty"])
    aux["ternary_penalty"].backward()
    assert layer.w_state.grad.abs().sum() > 0
    assert tiny_model("ssma").training_forward(x)[1] == {}  # no penalty without QAT


def test_ternary_model_serves_three_values_per_block_and_steps_equal_forward_in_train_mode():
    model = tiny_model("ssma", quantize="ternary", m=8, block_size=4)
    info = model.describe()
    assert info["ternary"] and info["w_state_distinct_values_per_block"] <= 3
    for w in model.weights():
        for block in w.blocks:
            values = torch.unique(block)
            assert (values == 0).any() and len({round(abs(v), 12) for v in values.tolist() if v}) == 1
    assert_step_equals_forward(model.train())  # the same quantized weights in training (dropout is 0)
    assert_step_equals_forward(model.eval())


# -- top-k -----------------------------------------------------------------------------------------------------------

def test_topk_mask_keeps_exactly_k_and_breaks_ties_towards_the_lower_index():
    v = torch.rand(200, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    mask = topk_mask(v, 3)
    assert (mask.sum(-1) == 3).all()
    assert torch.equal(mask, torch.zeros_like(mask).scatter(-1, torch.topk(v, 3).indices, True))
    ties = torch.tensor([[1.0, 1.0, 1.0, 1.0], [2.0, 5.0, 2.0, 2.0], [0.0, 3.0, 3.0, 1.0], [0.0, 0.0, 0.0, 4.0]])
    expected = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0], [1, 0, 0, 1]], dtype=torch.bool)
    assert torch.equal(topk_mask(ties, 2), expected)
    assert torch.equal(topk_mask(ties.flip(0), 2), expected.flip(0))  # per row, whatever the batch


@pytest.mark.parametrize("mode", ["hard", "shift"])
def test_state_selection_keeps_the_k_largest_activations(mode):
    layer = tiny_model("ssma", topk_mode=mode, m=8, top_k=3, block_size=4).layers[0]
    a = torch.randn(500, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) + 1.5
    s = layer.select(a)
    top = torch.topk(a, 4).values
    positive = (top[:, :3] > 0).sum(-1)
    if mode == "hard":
        assert torch.equal((s != 0).sum(-1), positive)
        assert torch.equal(s, torch.where(topk_mask(a, 3) & (a > 0), a, torch.zeros_like(a)))
    else:  # the same entries, measured above the 4th largest (which is ≥ 0 after ReLU)
        shift = top[:, 3:].clamp_min(0)
        assert torch.equal((s != 0).sum(-1), ((top[:, :3] - shift) > 0).sum(-1))
        assert torch.equal(s, torch.where(topk_mask(a, 3), (a - shift).clamp_min(0), torch.zeros_like(a)))
    tied = torch.tensor([[3.0, 1.0, 3.0, 3.0, 3.0, 0.0, 0.0, 0.0]], dtype=torch.float64)  # four 3s for k = 3
    kept = layer.select(tied)
    if mode == "hard":  # the three lowest-indexed 3s
        assert torch.equal(kept, torch.tensor([[3.0, 0, 3.0, 3.0, 0, 0, 0, 0]], dtype=torch.float64))
    else:  # measured above the 4th largest, itself a 3: no tie-breaking needed, the tied entries all drop to 0
        assert torch.equal(kept, torch.zeros_like(tied))


@pytest.mark.parametrize("mode", ["hard", "shift"])
def test_exact_ties_in_the_state_are_resolved_the_same_way_by_step_and_forward(mode):
    """Columns 0 and 1 of S are copies (same input weights, same transition column): they tie at every step. The
    state keeps at most top_k non-zeros per row, and steps reproduce forward."""
    model = tiny_model("ssma", topk_mode=mode, top_k=1)
    with torch.no_grad():
        for layer in model.layers:
            layer.w_in[:, 1] = layer.w_in[:, 0]
            layer.b_in[:, 1] = layer.b_in[:, 0] = 0.3
            layer.w_state[:, :, 1] = layer.w_state[:, :, 0]
    assert_step_equals_forward(model, L=60)
    x = torch.randn(2, 60, D_IN, dtype=torch.float64)
    with torch.no_grad():
        _, state = model.forward_with_state(x)
    S = state[0]
    assert ((S != 0).sum(-1) <= 1).all()
    if mode == "hard":  # the tie goes to column 0
        assert (S[..., 1] == 0).all() and (S[..., 0] > 0).any()


# -- the three-phase schedule ------------------------------------------------------------------------------------------

def params(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_three_phases_prune_rewind_gate_and_keep_step_equal_to_forward():
    model = tiny_model("ssma", phases="dense,lth,dynamic", dense_steps=6, lth_steps=4, rewind_step=2,
                       sparsity=0.8, sparsity_in=0.5, m=8, block_size=4).train()
    opt = torch.optim.AdamW(model.param_groups(lr=1e-2, weight_decay=0.01))
    assert model.describe()["phase"] == "dense"
    events = {}
    for step in range(1, 7):
        train_steps(model, opt, 1, seed=step)
        if step == 2:
            early = params(model)
        if step == 6:
            trained = params(model)
        events[step] = model.training_event(step, plateau=False)
    assert events[2] == {"rewind_point": 2} and all(events[s] is None for s in (1, 3, 4, 5))
    ev = events[6]
    assert ev["phase"] == "lth" and ev["reset_optimizer"] is True and ev["rewound_to_step"] == 2
    assert ev["w_state_sparsity"] >= 0.8
    for name, p in model.named_parameters():  # the whole network is back at step 2
        assert torch.equal(p, early[name]), name
    for i, layer in enumerate(model.layers):
        keep = layer.keep_state
        assert keep == 3  # ⌊0.2 · 16⌋ of each 4 × 4 block
        flat = layer.mask_state.reshape(layer.nb, -1)
        assert (flat.sum(-1) == keep).all() and layer.keep_in == 4 and (layer.mask_in.sum(-1) == 4).all()
        magnitude = trained[f"layers.{i}.w_state"].abs().reshape(layer.nb, -1)
        assert torch.equal(flat.bool(), topk_mask(magnitude, keep))  # the largest trained weights survive
        assert (model.weights()[i].blocks[layer.mask_state == 0] == 0).all()
    model.eval()
    assert_step_equals_forward(model)
    info = model.describe()
    assert info["phase"] == "lth" and info["w_state_sparsity"] >= 0.8 and info["w_in_sparsity"] == 0.5

    model.train()  # pruned entries get no gradient
    opt = torch.optim.AdamW(model.param_groups(lr=1e-2, weight_decay=0.0))
    train_steps(model, opt, 1, seed=7)
    assert all((layer.w_state.grad[layer.mask_state == 0] == 0).all() for layer in model.layers)
    for step in range(7, 11):
        if step > 7:
            train_steps(model, opt, 1, seed=step)
        ev = model.training_event(step, plateau=False)
        assert (ev is None) == (step < 10)
    assert ev["phase"] == "dynamic" and "reset_optimizer" not in ev and ev["w_state_sparsity"] >= 0.8
    lth_masks = [layer.mask_state.clone() for layer in model.layers]
    model.eval()
    for layer, mask in zip(model.layers, lth_masks):  # the gates start as the lottery ticket
        assert torch.equal(layer.state_gate(dynamic=True, sample=False), mask)
    assert_step_equals_forward(model)

    model.train()  # Gumbel-sampled gates: still exactly keep per block, straight-through gradient into the logits
    torch.manual_seed(3)
    gates = [model.layers[0].state_gate(dynamic=True, sample=True) for _ in range(50)]
    assert all(torch.equal(g.detach().reshape(2, -1).sum(-1), torch.full((2,), 3.0, dtype=g.dtype)) for g in gates)
    assert all(set(torch.unique(g.detach()).tolist()) <= {0.0, 1.0} for g in gates)
    model.zero_grad()
    train_steps(model, opt, 1, seed=11)
    assert all(layer.gate_logits.grad.abs().sum() > 0 for layer in model.layers)
    assert model.training_event(12, plateau=True) is None  # the last phase: a plateau ends training

    model.eval()
    resumed = tiny_model("ssma", phases="dense,lth,dynamic", dense_steps=6, lth_steps=4, rewind_step=2,
                         sparsity=0.8, sparsity_in=0.5, m=8, block_size=4)
    resumed.load_state_dict(model.state_dict())  # a checkpoint restores phase, masks, gates and the rewind copy
    x = torch.randn(2, 20, D_IN, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(resumed(x), model(x))
    assert resumed.describe() == model.describe() and resumed.describe()["phase"] == "dynamic"


def test_plateaus_move_the_phases_and_the_lottery_ticket_baselines():
    base = dict(m=8, block_size=4, sparsity=0.8, rewind_step=0)
    model = tiny_model("ssma", phases="dense,lth", **base)
    assert model.training_event(5, plateau=False) is None  # no step budget: only a plateau ends the phase
    init = params(model)
    with torch.no_grad():
        for layer in model.layers:
            layer.w_state.add_(1.0)
    assert model.training_event(6, plateau=True)["phase"] == "lth"
    assert all(torch.equal(p, init[n]) for n, p in model.named_parameters())  # rewound to the initialization
    assert model.training_event(7, plateau=True) is None

    finetune = tiny_model("ssma", phases="dense,lth", lth_mode="finetune", **base)
    before = params(finetune)
    ev = finetune.training_event(1, plateau=True)
    assert ev["reset_optimizer"] is False and ev["rewound_to_step"] is None
    assert all(torch.equal(p, before[n]) for n, p in finetune.named_parameters())

    rand = tiny_model("ssma", phases="dense,lth", lth_mode="random", **base)
    rand.training_event(1, plateau=True)
    magnitude = tiny_model("ssma", phases="dense,lth", **base)
    magnitude.training_event(1, plateau=True)
    masks = [(layer.mask_state, other.mask_state) for layer, other in zip(rand.layers, magnitude.layers)]
    assert all(torch.equal(a.sum((-2, -1)), b.sum((-2, -1))) for a, b in masks)
    assert any(not torch.equal(a, b) for a, b in masks)

    dynamic = tiny_model("ssma", phases="dense,dynamic", **base)  # straight to dynamic: gates = magnitude pruning
    assert dynamic.training_event(3, plateau=True)["phase"] == "dynamic"
    for layer in dynamic.layers:
        gate = layer.state_gate(dynamic=True, sample=False).reshape(layer.nb, -1)
        assert torch.equal(gate.bool(), topk_mask(layer.w_state.abs().reshape(layer.nb, -1), layer.keep_state))
    assert dynamic.describe()["w_state_sparsity"] >= 0.8
    assert_step_equals_forward(dynamic)


# -- export form, state size, entry point, config ----------------------------------------------------------------

def test_export_form_serves_the_same_function_with_constant_ternary_weights(tmp_path):
    import onnx

    from models.export import export_onnx
    from service.runtime.backends import OnnxStepRuntime

    model = tiny_model("ssma", torch.float32, quantize="ternary", phases="dense,lth,dynamic", m=8, block_size=4)
    model.training_event(1, plateau=True)
    model.training_event(2, plateau=True)
    served = model.export_form()
    assert served is not model and not model.frozen and served.frozen
    x = torch.randn(2, 30, D_IN)
    with torch.no_grad():
        assert torch.equal(served(x), model(x))
    assert served.describe() == model.describe()
    rebuilt = model_from_config("ssma", json.loads(json.dumps(served.config.to_dict()))).float().eval()
    rebuilt.load_state_dict(served.state_dict(), strict=True)  # as a bundle's weights are loaded
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))
    with pytest.raises(RuntimeError, match="frozen"):
        served.train()(x)
    served.eval()

    path = export_onnx(served, tmp_path / "ssma.onnx")
    graph = onnx.load(str(path)).graph
    assert not {"Sign", "Abs", "ReduceMax", "EyeLike"} & {n.op_type for n in graph.node}  # no quantizer in the graph
    consts = [onnx.numpy_helper.to_array(i) for i in graph.initializer if "served_w_state" in i.name]
    assert len(consts) == 2
    for c in consts:
        for b in range(2):
            assert len(np.unique(c[4 * b : 4 * b + 4, 4 * b : 4 * b + 4])) <= 3
    rt = OnnxStepRuntime(path)
    state, ref, worst = [s.numpy() for s in model.init_state(3)], model.init_state(3), 0.0
    rng = np.random.default_rng(0)
    with torch.no_grad():
        for _ in range(100):
            xt = rng.standard_normal((3, D_IN), dtype=np.float32)
            y, state = rt.run(xt, state)
            y_ref, ref = model.step(torch.from_numpy(xt), ref)
            worst = max(worst, float(np.abs(y - y_ref.numpy()).max() / np.abs(y_ref.numpy()).max()))
    assert worst <= 1e-4


def test_state_is_constant_in_the_sequence_length():
    model = tiny_model("ssma")
    c = model.config
    expected = 4 * c.n_layers * (2 * c.d_model * c.m + c.r * c.d_model)
    assert model.state_bytes_per_cell() == expected == model.describe()["state_bytes_per_cell"]
    for L in (1, 16, 300):
        with torch.no_grad():
            _, state = model.forward_with_state(torch.randn(2, L, D_IN, dtype=torch.float64))
        assert [tuple(s.shape[1:]) for s in state] == [f.shape for f in model.state_spec()]
        assert 4 * sum(s[0].numel() for s in state) == expected


def test_seed_entry_point_and_describe():
    model = SSMA_Model(input_dim=3, output_dim=1, target_index=[0], horizon=2, d_model=8, num_layers=3, r=2, m=8,
                       top_k=3, block_size=4)
    assert model.name == "ssma" and model.config.n_layers == 3 and len(model.layers) == 3
    assert model(torch.randn(2, 5, 3)).shape == (2, 5, 2, 1)
    info = model.describe()
    assert info["phase"] == "dense" and info["w_state_sparsity"] == 0.0 and not info["ternary"]
    assert info["w_state_distinct_values_per_block"] == 16  # dense, float weights
    json.dumps(info)


def test_config_checks_and_phase_lists():
    assert SSMAConfig(phases=["dense", "lth", "dynamic"]).phases == "dense,lth,dynamic"
    assert SSMAConfig(phases="dense, dynamic").phase_list == ["dense", "dynamic"]
    for bad in ("lth", "dense,dynamic,lth", "dense,dense", "dense,prune"):
        with pytest.raises(ValueError, match="phases"):
            SSMAConfig(phases=bad)
    for field, value in [("top_k", 17), ("block_size", 5), ("topk_mode", "soft"), ("quantize", "binary"),
                         ("lth_mode", "late"), ("rho", 1.5), ("sparsity", 1.0), ("r", 0), ("dense_steps", -1)]:
        with pytest.raises(ValueError):
            SSMAConfig(**{field: value})
    assert SSMAConfig().kept(16, 0.8) == 3 and SSMAConfig().kept(64, 0.8) == 12 and SSMAConfig().kept(4, 0.9) == 1
