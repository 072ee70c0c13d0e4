"""NSM (models/seeds/nsm.py): the streaming contract for every propagator / communication / readout variant, the
node mask, pruning and allocation, compaction at export, interpretability outputs and the description."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load, save

from models import model_from_config
from models.export import export_onnx
from models.framing import core_model
from models.seeds.nsm import NSM, NSMConfig, NSMLayer, StateManager, StatePropagator, TokenToStateRouter
from tests.models.zoo_helpers import (
    D_IN,
    HORIZON,
    N_TGT,
    horizon_targets,
    random_state,
    rel_err,
    run_steps,
    synthetic_kpis,
    tiny_model,
)

TOL = {torch.float64: 1e-10, torch.float32: 1e-4}
VARIANTS = {  # propagator × communication, and the readout without content attention
    "gru": {"propagator": "gru", "enable_communication": False},  # the default
    "lstm": {"propagator": "lstm", "enable_communication": False},
    "gru+comm": {"propagator": "gru", "enable_communication": True},
    "lstm+comm": {"propagator": "lstm", "enable_communication": True},
    "lstm+comm-routed-readout": {"propagator": "lstm", "enable_communication": True, "hybrid_attention": False},
}


def set_active(model: NSM, per_layer: list[list[int]]) -> None:
    """Make exactly the listed nodes active in each layer."""
    for layer, nodes in zip(model.layers, per_layer):
        layer.manager.active.zero_()
        layer.manager.active[nodes] = True


def set_importance(model: NSM, per_layer: list[list[float]]) -> None:
    """Importance σ(logit) of the first nodes of each layer."""
    with torch.no_grad():
        for layer, g in zip(model.layers, per_layer):
            g = torch.tensor(g, dtype=torch.float64)
            layer.manager.importance_logit[: len(g)] = torch.log(g / (1 - g)).to(layer.manager.importance_logit)


# -- the contract for every variant --------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_step_reproduces_forward(variant, dtype):
    model = tiny_model("nsm", dtype, **VARIANTS[variant])
    for L in (1, 9, 40):
        x = torch.randn(2, L, D_IN, dtype=dtype, generator=torch.Generator().manual_seed(L))
        for s0 in (model.init_state(2), random_state(model, 2)):
            with torch.no_grad():
                y_par, s_par = model.forward_with_state(x, s0)
                y_rec, s_rec = run_steps(model, x, s0)
            assert y_par.shape == (2, L, HORIZON, N_TGT)
            assert rel_err(y_rec, y_par) <= TOL[dtype]
            assert all(rel_err(a, b) <= 10 * TOL[dtype] for a, b in zip(s_rec, s_par))


@pytest.mark.parametrize("variant", VARIANTS)
def test_chunked_continuation_and_causality(variant):
    model = tiny_model("nsm", **VARIANTS[variant])
    x = torch.randn(2, 30, D_IN, dtype=torch.float64)
    s0 = random_state(model, 2)
    with torch.no_grad():
        y_full, s_full = model.forward_with_state(x, s0)
        y1, s1 = model.forward_with_state(x[:, :11], s0)
        y2, s2 = model.forward_with_state(x[:, 11:], s1)
        x2 = x.clone()
        x2[:, 20:] += 1.0
        y_changed = model(x2, s0)
    assert rel_err(torch.cat([y1, y2], 1), y_full) <= 1e-10
    assert all(rel_err(a, b) <= 1e-9 for a, b in zip(s2, s_full))
    assert torch.equal(y_changed[:, :20], y_full[:, :20]) and not torch.allclose(y_changed[:, 20:], y_full[:, 20:])


def test_state_layout_and_size_do_not_grow_with_the_sequence():
    gru, lstm = tiny_model("nsm"), tiny_model("nsm", propagator="lstm")
    assert [(f.name, f.shape) for f in gru.state_spec()] == [("layer0.nodes", (6, 8)), ("layer1.nodes", (6, 8))]
    assert [f.name for f in lstm.state_spec()] == ["layer0.nodes", "layer0.cells", "layer1.nodes", "layer1.cells"]
    assert gru.state_bytes_per_cell() == 4 * 2 * 6 * 8 and lstm.state_bytes_per_cell() == 2 * gru.state_bytes_per_cell()
    with torch.no_grad():
        short = gru.forward_with_state(torch.randn(1, 3, D_IN, dtype=torch.float64))[1]
        long = gru.forward_with_state(torch.randn(1, 300, D_IN, dtype=torch.float64))[1]
    assert [t.shape for t in short] == [t.shape for t in long] == [(1, 6, 8)] * 2


def test_parts_are_importable_and_the_lstm_remembers_by_default():
    model = tiny_model("nsm", propagator="lstm")
    layer = model.layers[0]
    assert isinstance(layer, NSMLayer) and isinstance(layer.manager, StateManager)
    assert isinstance(layer.router, TokenToStateRouter) and isinstance(layer.propagator, StatePropagator)
    d = model.config.d_model
    b = layer.propagator.inp.bias + layer.propagator.hid.bias  # gate order i, f, g, o
    assert torch.equal(b[d : 2 * d], torch.ones(d, dtype=b.dtype))


# -- the node mask -------------------------------------------------------------------------------


def test_routing_and_readout_weights_are_distributions_over_the_active_nodes():
    model = tiny_model("nsm", enable_communication=True)
    set_active(model, [[0, 2, 3], [5]])
    x = torch.randn(3, 12, D_IN, dtype=torch.float64)
    s0 = random_state(model, 3)
    with torch.no_grad():
        out = model.forward_detailed(x, s0)
        routing = model.routing_weights(x, s0)
        steps, state = [], s0
        for t in range(x.shape[1]):
            o = model.step_detailed(x[:, t], state)
            steps.append(o.routing)
            state = o.state
    for k, layer in enumerate(model.layers):
        active = layer.manager.active
        for w in (out.routing[k], out.readout[k]):
            assert w.shape == (3, 12, 6)
            assert torch.allclose(w.sum(-1), torch.ones(3, 12, dtype=torch.float64), atol=1e-12)
            assert torch.equal(w[..., ~active], torch.zeros_like(w[..., ~active]))  # exactly zero
            assert (w[..., active] > 0).all()
        assert torch.equal(routing[k], out.routing[k])
        assert rel_err(torch.stack([s[k] for s in steps], 1), out.routing[k]) <= 1e-12
        g = out.importance[k]
        assert torch.equal(g[~active], torch.zeros_like(g[~active])) and (g[active] > 0).all()
    assert torch.equal(out.routing[1][..., 5], torch.ones(3, 12, dtype=torch.float64))  # a single node takes all


def test_inactive_nodes_influence_nothing_and_keep_their_state():
    model = tiny_model("nsm", propagator="lstm", enable_communication=True)
    set_active(model, [[1, 4], [0, 2, 5]])
    inactive = [~layer.manager.active for layer in model.layers for _ in layer.state_spec()]  # per state tensor
    x = torch.randn(2, 25, D_IN, dtype=torch.float64)
    s0 = random_state(model, 2)
    noisy = tuple(torch.where(off[:, None], 5 * torch.randn_like(t), t) for t, off in zip(s0, inactive))
    with torch.no_grad():
        y, s = model.forward_with_state(x, s0)
        y_noisy, s_noisy = model.forward_with_state(x, noisy)
        y_step, s_step = model.step(x[:, 0], noisy)
        y_step0, _ = model.step(x[:, 0], s0)
    assert torch.equal(y, y_noisy) and torch.equal(y_step, y_step0)
    for a, b, b0, b1, off in zip(s, s_noisy, noisy, s_step, inactive):
        assert torch.equal(a[:, ~off], b[:, ~off])
        assert torch.equal(b[:, off], b0[:, off]) and torch.equal(b1[:, off], b0[:, off])  # frozen bit for bit


# -- pruning, allocation, compaction -------------------------------------------------------------


def test_pruning_removes_the_nodes_below_the_threshold_and_keeps_one():
    model = tiny_model("nsm", prune_every=10, prune_threshold=0.1, allocate_threshold=0.99)
    set_importance(model, [[0.5, 0.05, 0.6, 0.02], [0.03, 0.09, 0.01, 0.02]])
    assert model.training_event(5, plateau=False) is None  # not a check step
    event = model.training_event(10, plateau=False)
    assert event == {"phase": "prune", "pruned": [[1, 3], [0, 2, 3]], "allocated": [[], []], "active": 3,
                     "active_per_layer": [2, 1]}
    json.dumps(event)
    assert model.layers[0].manager.active.tolist() == [True, False, True, False, False, False]
    assert model.layers[1].manager.active.tolist() == [False, True, False, False, False, False]  # the best kept
    assert model.training_event(20, plateau=False) is None  # nothing left below the threshold
    assert model.describe()["active_states"] == [2, 1]


def test_no_schedule_without_prune_every():
    model = tiny_model("nsm")
    set_importance(model, [[0.01] * 4, [0.01] * 4])
    assert model.config.prune_every == 0
    assert all(model.training_event(s, plateau=p) is None for s in (1, 100, 1000) for p in (False, True))
    assert model.active_states() == [4, 4]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("variant", ["gru", "lstm+comm"])
def test_pruned_and_compacted_export_equals_the_masked_model(variant, dtype):
    model = tiny_model("nsm", dtype, prune_every=1, **VARIANTS[variant])
    set_importance(model, [[0.5, 0.05, 0.6, 0.7], [0.02, 0.5, 0.01, 0.4]])
    before = model.state_bytes_per_cell()
    assert model.training_event(1, plateau=False)["pruned"] == [[1], [0, 2]]
    compact = model.export_form()
    assert isinstance(compact, NSM) and compact is not model and compact.config.bank_sizes == (3, 2)
    assert next(compact.parameters()).dtype == dtype
    per_value = 2 if VARIANTS[variant]["propagator"] == "lstm" else 1
    assert before == 4 * 2 * 6 * 8 * per_value
    assert compact.state_bytes_per_cell() == 4 * (3 + 2) * 8 * per_value  # only the active nodes
    assert [f.shape for f in compact.state_spec()][::per_value] == [(3, 8), (2, 8)]
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    x = torch.randn(2, 50, D_IN, dtype=dtype)
    s0 = random_state(model, 2)
    with torch.no_grad():
        y, s = model.forward_with_state(x, s0)
        y_c, s_c = compact.forward_with_state(x, model.compact_state(s0))
        y_zero, y_c_zero = model(x), compact(x)
        y_step, _ = run_steps(compact, x[:, :10], model.compact_state(s0))
    assert rel_err(y_c, y) <= tol and rel_err(y_c_zero, y_zero) <= tol and rel_err(y_step, y[:, :10]) <= tol
    assert all(rel_err(a, b) <= 10 * tol for a, b in zip(s_c, model.compact_state(s)))
    assert compact.describe()["active_states"] == model.describe()["active_states"] == [3, 2]
    assert compact.export_form() is compact


def test_export_form_is_the_model_itself_when_every_node_is_active():
    model = tiny_model("nsm", n_states=6)
    assert model.export_form() is model


def test_compacted_model_rebuilds_from_its_config_and_weights():
    """What a bundle does: config JSON + safetensors weights → the same compacted model."""
    model = tiny_model("nsm", prune_every=1)
    set_importance(model, [[0.5, 0.05, 0.6, 0.7], [0.5, 0.5, 0.01, 0.4]])
    model.training_event(1, plateau=False)
    compact = model.export_form()
    clone = model_from_config("nsm", json.loads(json.dumps(compact.config.to_dict()))).double().eval()
    clone.load_state_dict(load(save({k: v.contiguous() for k, v in compact.state_dict().items()})))
    x = torch.randn(1, 20, D_IN, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(clone(x), compact(x))
    assert clone.describe() == compact.describe()


def test_checkpoint_resume_restores_the_node_mask():
    model = tiny_model("nsm", prune_every=1)
    set_importance(model, [[0.05, 0.5, 0.5, 0.5], [0.5, 0.05, 0.05, 0.5]])
    model.training_event(1, plateau=False)
    fresh = model_from_config("nsm", model.config.to_dict()).double().eval()
    assert fresh.active_states() == [4, 4]
    fresh.load_state_dict(load(save({k: v.contiguous() for k, v in model.state_dict().items()})))
    assert fresh.active_states() == [3, 2]
    assert all(torch.equal(a.manager.active, b.manager.active) for a, b in zip(fresh.layers, model.layers))
    x = torch.randn(2, 15, D_IN, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))


def test_plateau_allocates_a_fresh_node_per_layer_until_the_banks_are_full():
    model = tiny_model("nsm", prune_every=100)  # n_states 4 of max_states 6
    key_before = model.layers[0].router.node_key[4].clone()
    event = model.training_event(37, plateau=True)
    assert event == {"phase": "grow", "pruned": [[], []], "allocated": [[4], [4]], "active": 10,
                     "active_per_layer": [5, 5]}
    layer = model.layers[0]
    assert layer.manager.active[4] and not torch.equal(layer.router.node_key[4], key_before)
    assert torch.allclose(layer.manager.importance()[4], torch.tensor(0.5, dtype=torch.float64))
    with torch.no_grad():
        w = model.routing_weights(torch.randn(1, 5, D_IN, dtype=torch.float64))
    assert (w[0][..., 4] > 0).all() and torch.equal(w[0][..., 5], torch.zeros_like(w[0][..., 5]))
    assert model.training_event(38, plateau=True)["allocated"] == [[5], [5]]
    assert model.training_event(39, plateau=True) is None  # full: the plateau ends training
    assert model.active_states() == [6, 6]


def test_a_check_allocates_where_every_active_node_is_important_and_recycles_pruned_nodes():
    model = tiny_model("nsm", prune_every=10, allocate_threshold=0.8, grow_on_plateau=False)
    set_importance(model, [[0.9, 0.95, 0.85, 0.99], [0.9, 0.5, 0.85, 0.99]])
    event = model.training_event(10, plateau=True)  # grow_on_plateau off: only the busy layer grows
    assert event["phase"] == "grow" and event["allocated"] == [[4], []] and event["active_per_layer"] == [5, 4]
    set_importance(model, [[0.01, 0.9, 0.9, 0.9, 0.9], [0.9, 0.5, 0.9, 0.9]])
    event = model.training_event(20, plateau=False)
    assert event["phase"] == "prune" and event["pruned"] == [[0], []]
    model = tiny_model("nsm", prune_every=10)
    set_importance(model, [[0.01, 0.5, 0.5, 0.5], [0.5, 0.5, 0.5, 0.5]])
    event = model.training_event(10, plateau=True)  # prune and grow at once: the freed node is the first free one
    assert event["phase"] == "prune+grow" and event["pruned"] == [[0], []] and event["allocated"] == [[0], [4]]


def test_importance_penalty_is_an_auxiliary_loss_with_pruning_on():
    x = torch.randn(2, 10, D_IN, dtype=torch.float64)
    assert tiny_model("nsm").training_forward(x)[1] == {}
    model = tiny_model("nsm", prune_every=50, importance_l1=0.1).train()
    set_active(model, [[0, 1, 2], [3]])
    set_importance(model, [[0.2, 0.4, 0.6], [0.3, 0.3, 0.3, 0.8]])
    y, aux, _ = model.training_forward(x)
    assert torch.allclose(aux["importance"], torch.tensor(0.1 * (0.4 + 0.8) / 2, dtype=torch.float64))
    (y.square().mean() + aux["importance"]).backward()
    for layer in model.layers:
        grad, active = layer.manager.importance_logit.grad, layer.manager.active
        assert (grad[active] != 0).all() and torch.equal(grad[~active], torch.zeros_like(grad[~active]))


def test_a_training_loop_with_the_schedule_prunes_and_stays_exact():
    """Training with a strong importance penalty and checks every 4 steps prunes nodes; the pruned model keeps
    the streaming contract and its compacted export."""
    model = tiny_model("nsm", torch.float32, prune_every=4, importance_l1=1.0, prune_threshold=0.4,
                       grow_on_plateau=False).train()
    opt = torch.optim.AdamW(model.param_groups(lr=0.1, weight_decay=0.0))
    data = synthetic_kpis(4, 24)
    events = []
    for step in range(1, 13):
        y, aux, _ = model.training_forward(data[:, :-HORIZON])
        loss = torch.nn.functional.mse_loss(y[:, : 20 - HORIZON], horizon_targets(data[:, :20], HORIZON))
        opt.zero_grad()
        (loss + sum(aux.values())).backward()
        opt.step()
        event = model.training_event(step, plateau=False)
        if event is not None:
            events.append(event)
    assert events and all(e["phase"] == "prune" for e in events)
    assert sum(model.active_states()) < 8
    model.eval()
    x = torch.randn(2, 30, D_IN)
    with torch.no_grad():
        y, _ = model.forward_with_state(x)
        y_rec, _ = run_steps(model, x, model.init_state(2))
        y_c = model.export_form()(x)
    assert rel_err(y_rec, y) <= 1e-4 and rel_err(y_c, y) <= 1e-5


def test_compacted_onnx_step_matches_torch(tmp_path):
    """The compacted LSTM with communication (the zoo's export test covers the default variant)."""
    model = tiny_model("nsm", torch.float32, propagator="lstm", enable_communication=True, prune_every=1)
    set_importance(model, [[0.5, 0.05, 0.6, 0.7], [0.02, 0.5, 0.01, 0.4]])
    model.training_event(1, plateau=False)
    compact = model.export_form()

    ort = pytest.importorskip("onnxruntime")
    path = export_onnx(compact, tmp_path / "nsm.onnx")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    state = compact.init_state(3)
    rt_state = [s.numpy() for s in state]
    xs = np.random.default_rng(0).standard_normal((100, 3, D_IN), dtype=np.float32)
    worst = 0.0
    with torch.inference_mode():
        for x_t in xs:
            y_ref, state = compact.step(torch.from_numpy(x_t), state)
            out = sess.run(None, dict(zip(names, [x_t, *rt_state])))
            y, rt_state = out[0], out[1:]
            worst = max(worst, float(np.abs(y - y_ref.numpy()).max() / np.abs(y_ref.numpy()).max()))
    assert worst <= 1e-4


# -- description, framing, config --------------------------------------------------------------------


def test_describe_reports_the_node_set():
    model = tiny_model("nsm", propagator="lstm", enable_communication=True, prune_every=1)
    set_importance(model, [[0.5, 0.05, 0.6, 0.7], [0.5, 0.5, 0.5, 0.5]])
    model.training_event(1, plateau=False)
    info = json.loads(json.dumps(model.describe()))
    assert info == {"active_states": [3, 4], "active_total": 7, "max_states": 6, "bank_sizes": [6, 6],
                    "propagator": "lstm", "communication": True, "hybrid_attention": True,
                    "node_importance": [[0.5, 0.6, 0.7], [0.5, 0.5, 0.5, 0.5]]}
    assert model.export_form().describe()["bank_sizes"] == [3, 4]


def test_framed_model_passes_the_schedule_and_description_through():
    model = tiny_model("nsm", normalization="causal", channels="independent", prune_every=5)
    core = core_model(model)
    set_importance(core, [[0.01, 0.5, 0.5, 0.5], [0.5, 0.5, 0.5, 0.5]])
    assert model.training_event(5, plateau=False)["pruned"] == [[0], []]
    assert model.describe() == core.describe() and model.describe()["active_states"] == [3, 4]


def test_config_validation():
    with pytest.raises(ValueError, match="n_states"):
        NSMConfig(n_states=7, max_states=6)
    with pytest.raises(ValueError, match="propagator"):
        NSMConfig(propagator="rnn")
    with pytest.raises(ValueError, match="n_heads"):
        NSMConfig(d_model=8, n_heads=3, enable_communication=True)
    NSMConfig(d_model=8, n_heads=3)  # heads unused without communication (the default)
    with pytest.raises(ValueError, match="importance_init"):
        NSMConfig(importance_init=1.0)
    with pytest.raises(ValueError, match="prune_threshold"):
        NSMConfig(prune_threshold=1.5)
    with pytest.raises(ValueError, match="bank_sizes"):
        NSMConfig(n_layers=2, bank_sizes=(3,))
    with pytest.raises(ValueError, match="bank_sizes"):
        NSMConfig(n_states=2, max_states=4, bank_sizes=(3, 5))


# -- training (slow) -----------------------------------------------------------------------------


TRAINED_VARIANTS = ["lstm", "gru+comm", "lstm+comm", "lstm+comm-routed-readout"]  # the default: test_contract.py


@pytest.mark.slow
@pytest.mark.parametrize("variant", TRAINED_VARIANTS)
def test_variant_is_stable_under_aggressive_training(variant):
    """The contract's check: 100 AdamW steps at lr 1e-2 on random data leave every parameter finite."""
    model = tiny_model("nsm", torch.float32, **VARIANTS[variant]).train()
    opt = torch.optim.AdamW(model.param_groups(lr=1e-2, weight_decay=0.01))
    g = torch.Generator().manual_seed(0)
    for _ in range(100):
        x = torch.randn(4, 32, D_IN, generator=g) * 3
        loss = torch.nn.functional.mse_loss(model(x), torch.randn(4, 32, HORIZON, N_TGT, generator=g))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.slow
@pytest.mark.timeout(1200)  # ~1 min of CPU with communication on, far more on a shared machine
@pytest.mark.parametrize("variant", TRAINED_VARIANTS)
def test_variant_beats_the_last_value_after_brief_training(variant):
    """The contract's check: 150 AdamW steps on the synthetic KPIs, then a lower validation MSE than the last value."""
    torch.manual_seed(0)
    data = synthetic_kpis(24, 160)
    train, val = data[:18], data[18:]
    model = tiny_model("nsm", torch.float32, d_model=16, **VARIANTS[variant]).train()
    opt = torch.optim.AdamW(model.param_groups(lr=3e-3, weight_decay=0.01))
    g = torch.Generator().manual_seed(0)
    for _ in range(150):
        x = train[torch.randint(0, 18, (8,), generator=g)]
        loss = torch.nn.functional.mse_loss(model(x)[:, : x.shape[1] - HORIZON], horizon_targets(x, HORIZON))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    model.eval()
    with torch.no_grad():
        truth = horizon_targets(val, HORIZON)
        pred = model(val)[:, : val.shape[1] - HORIZON]
        last = val[:, : val.shape[1] - HORIZON, [0, 2]].unsqueeze(2).expand_as(truth)
    mse_model, mse_last = torch.mean((pred - truth) ** 2).item(), torch.mean((last - truth) ** 2).item()
    assert mse_model < mse_last, f"{variant}: MSE {mse_model:.4f} ≥ last-value {mse_last:.4f}"
