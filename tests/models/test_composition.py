"""Composition: every valid architecture × sequence core (models.layers.cores) under the streaming contract, and the
invalid combinations refused with the list of valid ones.

The contract checks are the zoo's (tests/models/test_contract.py, tests/export/test_export_zoo.py) on TINY sizes:
step ≡ forward in float64 from the zero and a non-zero state, chunked continuation, ONNX / TorchScript steps
reproducing torch (check_exported, over 100 steps at batch 2 here rather than the registry's 1000 steps at batches
1, 7 and 1024, to keep each case short; the registered default of each architecture runs the full check there).
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load, save

from models import compositions, create_model, model_from_config
from models.base import check_state
from models.export import export_onnx, export_torchscript
from models.layers.cores import CORE_NAMES
from tests.export import test_export_zoo
from tests.models.zoo_helpers import D_IN, HORIZON, N_TGT, random_state, rel_err, run_steps, tiny_model

ARCHITECTURES = ("h3", "gated_mlp", "mamba")
COMBOS = [(arch, core) for arch in ARCHITECTURES for core in compositions()[arch]]
# init variants that change a core's structure: S4's rank-2 LegT, the complex selective SSM
VARIANTS = [("h3", "s4", {"init": "legt"}), ("mamba", "mamba", {"init": "diag-inv"}),
            ("gated_mlp", "mamba", {"init": "legs"}), ("mamba", "s5", {"init": "fourier"})]
CASES = [(a, c, {}) for a, c in COMBOS] + VARIANTS
IDS = [f"{a}-{c}" + "".join(f"-{v}" for v in kw.values()) for a, c, kw in CASES]


def composed(arch: str, core: str, dtype=torch.float64, **kw):
    return tiny_model(arch, dtype, ssm_layer=core, **kw)


def test_the_composition_table():
    assert compositions() == {
        "ssm": ("lru", "mamba", "s4", "s4d", "s5"),
        "gated_mlp": (*CORE_NAMES, "none"),
        "h3": CORE_NAMES,
        "mamba": CORE_NAMES,
        "transformer": (),
    }
    assert len(COMBOS) == 16


@pytest.mark.parametrize("arch,core,kw", CASES, ids=IDS)
def test_step_reproduces_forward_float64(arch, core, kw):
    model = composed(arch, core, **kw)
    assert model.config.ssm_layer == core
    for L in (1, 7, 64):
        x = torch.randn(2, L, D_IN, dtype=torch.float64, generator=torch.Generator().manual_seed(L))
        for s0 in (model.init_state(2), random_state(model, 2)):
            with torch.no_grad():
                y_par, s_par = model.forward_with_state(x, s0)
                y_rec, s_rec = run_steps(model, x, s0)
            assert y_par.shape == (2, L, HORIZON, N_TGT)
            assert rel_err(y_rec, y_par) <= 1e-10, f"{arch}×{core} L={L}"
            for a, b, f in zip(s_rec, s_par, model.state_spec(), strict=True):
                assert rel_err(a, b) <= 1e-9, f"{arch}×{core} L={L}: state '{f.name}'"
        with torch.no_grad():
            assert rel_err(model(x), model.forward_with_state(x)[0]) <= 1e-10  # the stateless path


@pytest.mark.parametrize("arch,core,kw", CASES, ids=IDS)
def test_chunked_continuation_state_and_round_trip(arch, core, kw):
    model = composed(arch, core, **kw)
    x = torch.randn(2, 50, D_IN, dtype=torch.float64)
    s0 = random_state(model, 2)
    with torch.no_grad():
        y_full, s_full = model.forward_with_state(x, s0)
        y1, s1 = model.forward_with_state(x[:, :19], s0)
        y2, s2 = model.forward_with_state(x[:, 19:], s1)
    assert rel_err(torch.cat([y1, y2], 1), y_full) <= 1e-10
    assert all(rel_err(a, b) <= 1e-9 for a, b in zip(s2, s_full, strict=True))
    check_state(model, s_full, 2)
    frozen = tuple(t.clone() for t in s0)
    with torch.no_grad():
        model.step(x[:, 0], s0)
    assert all(torch.equal(a, b) for a, b in zip(s0, frozen, strict=True)), "step modified its input state"
    # the bundle's form: config → JSON → config rebuilds the same composition, safetensors carry the weights
    cfg = json.loads(json.dumps(model.config.to_dict()))
    clone = model_from_config(model.name, cfg).double().eval()
    clone.load_state_dict(load(save({k: v.contiguous() for k, v in model.state_dict().items()})))
    with torch.no_grad():
        assert torch.equal(clone(x[:, :12]), model(x[:, :12]))


@pytest.mark.parametrize("arch,core,kw", CASES, ids=IDS)
def test_exported_steps_match_torch(arch, core, kw, tmp_path):
    model = composed(arch, core, torch.float32, **kw)
    onnx_path = export_onnx(model, tmp_path / "step.onnx")
    ts_path = export_torchscript(model, tmp_path / "step.ts")
    test_export_zoo.check_exported(f"{arch}×{core}", model, onnx_path, ts_path, batches=((2, 100),))


def test_the_pure_gated_mlp_is_position_wise():
    """ssm_layer "none": no SSM, no state: the forecast at t reads x_t only (the seed's pure gated MLP)."""
    model = composed("gated_mlp", "none")
    assert model.state_spec() == [] and model.init_state(3) == ()
    x = torch.randn(2, 10, D_IN, dtype=torch.float64)
    x2 = x.clone()
    x2[:, :5] += 1.0
    with torch.no_grad():
        y, y2 = model(x), model(x2)
    assert torch.equal(y[:, 5:], y2[:, 5:]) and not torch.allclose(y[:, :5], y2[:, :5])


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("core", ["s4", "s4d"])
def test_bidirectional_cores_are_offline_only(arch, core):
    """bidirectional (s4 and s4d cores, as the plain stacks): forward over whole windows sees the future; there is
    no state to stream, so init_state, step and the export refuse with the reason."""
    model = tiny_model(arch, ssm_layer=core, bidirectional=True)
    x = torch.randn(1, 20, D_IN, dtype=torch.float64)
    x2 = x.clone()
    x2[:, 15:] += 1
    with torch.no_grad():
        assert not torch.allclose(model(x)[:, :10], model(x2)[:, :10])  # sees the future
    for call in (lambda: model.init_state(1), lambda: model.state_spec(), lambda: model.step(x[:, 0], ()),
                 lambda: model.forward_with_state(x)):
        with pytest.raises(RuntimeError, match="non-causal"):
            call()
    with pytest.raises(RuntimeError, match="non-causal"):
        export_onnx(model, "/nonexistent/never-written.onnx")


@pytest.mark.parametrize("call,error", [
    (lambda: create_model(architecture="h3", ssm_layer=None), ValueError),
    (lambda: create_model(architecture="mamba", ssm_layer="none"), ValueError),
    (lambda: create_model(architecture="gmlp", ssm_layer="lstm"), ValueError),
    (lambda: create_model(architecture="transformer", ssm_layer="s4"), ValueError),
    (lambda: create_model("transformer", "s4"), ValueError),
    (lambda: create_model("s4d", "s4"), ValueError),
], ids=["h3-none", "mamba-none", "gmlp-lstm", "encdec-s4", "transformer-s4", "s4d-s4"])
def test_invalid_combinations_list_the_valid_ones(call, error):
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    assert "valid combinations" in message
    for arch, cores in compositions().items():
        assert arch in message and all(c in message for c in cores)


def test_invalid_core_options_are_named():
    with pytest.raises(ValueError, match="bidirectional needs a convolutional core"):
        create_model(architecture="h3", ssm_layer="lru", layer_kwargs={"bidirectional": True})
    with pytest.raises(TypeError, match="the s5 core has no option"):
        create_model(architecture="gmlp", ssm_layer="s5", layer_kwargs={"r_min": 0.5})
    with pytest.raises(ValueError, match="no continuous-time A"):
        create_model(architecture="gmlp", ssm_layer="lru", layer_kwargs={"init_method": "legs"})
    with pytest.raises(TypeError, match="needs ssm_layer"):
        create_model(architecture="ssm")
    with pytest.raises(KeyError, match="architectures"):
        create_model(architecture="rwkv")


def test_core_options_travel_in_layer_options():
    """A core's own options (S5's blocks, the LRU's ring) given as layer_kwargs land in the config's layer_options
    and reach the core; shared SSM options (d_state, init, dt_min …) are the architecture's fields."""
    m = create_model(architecture="h3", ssm_layer="s5", d_model=8, d_state=8,
                     layer_kwargs={"blocks": 2, "init_method": "lin", "dt_min": 0.01})
    c = m.config
    assert c.layer_options == {"blocks": 2} and c.init == "diag-lin" and c.dt_min == 0.01
    ssm = m.layers[0].kernel
    assert type(ssm).__name__ == "S5SSM" and ssm.P == 4
    lam = ssm.continuous_poles().detach().to(torch.complex128)
    assert torch.allclose(lam.imag, torch.tensor([0.0, torch.pi] * 2, dtype=torch.float64), atol=1e-6)  # 2 blocks
    m = create_model(architecture="gmlp", ssm_layer="lru", d_model=8, d_state=4,
                     layer_kwargs={"r_min": 0.5, "r_max": 0.6})
    assert m.config.init is None and m.config.disc is None
    assert (m.ssm_poles().abs() >= 0.5 - 1e-6).all() and (m.ssm_poles().abs() <= 0.6 + 1e-6).all()


def test_the_default_cores_keep_the_original_models():
    """Each architecture's default core is the one it had before composition existed, with the same parameter
    names and state (bundles keep loading): H3 and the gated MLP around S4D (`kernel.*`), Mamba's mixer with the
    selective SSM's parameters on the block (`A_log`, `x_proj`, …)."""
    expect = {
        "h3": ({"layers.0.kernel.log_A_real", "layers.0.kernel.C", "layers.0.shift.C", "layers.0.qkv.weight"},
               ["layer0.shift", "layer0.ssm"], "S4DKernel"),
        "gated_mlp": ({"layers.0.kernel.log_A_real", "layers.0.to_v.weight", "layers.0.up.weight"},
                      ["layer0.ssm"], "S4DKernel"),
        "mamba": ({"layers.0.A_log", "layers.0.D", "layers.0.x_proj.weight", "layers.0.dt_proj.bias",
                   "layers.0.conv1d.weight"}, ["layer0.conv", "layer0.ssm"], None),
    }
    for arch, (keys, state, kernel) in expect.items():
        m = create_model(arch, d_model=8, n_layers=1)
        assert keys <= set(m.state_dict()), arch
        assert [f.name for f in m.state_spec()] == state
        if kernel:
            assert type(m.layers[0].kernel).__name__ == kernel
    m = create_model("mamba", d_model=8, n_layers=1)
    assert type(m.layers[0]).__name__ == "MambaLayer" and not hasattr(m.layers[0], "kernel")
    assert type(create_model("mamba", ssm_layer="s4d").layers[0]).__name__ == "MambaBlock"
