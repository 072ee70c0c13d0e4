"""Checks every sequence layer of the SSM stack shares: gradients, step ≡ forward, config validation, the
bidirectional conv-SSM block, and the shared SSM options; also for layers around other sequence cores (H3, the
gated MLP, the Mamba block with s4, s5, lru, mamba cores). Layer-specific numerics live in test_<layer>.py."""

from __future__ import annotations

import math

import pytest
import torch

from models import create_model, list_models, model_class
from models.layers.gated_mlp import GatedMLPLayer
from models.layers.h3 import H3Layer
from models.layers.lru import LRULayer
from models.layers.mamba import MambaBlock, MambaLayer
from models.layers.s4 import S4Layer
from models.layers.s4d import S4DLayer
from models.layers.s5 import S5Layer
from models.layers.ssm_options import SSMOptions
from models.stack import SequenceLayer, SSMForecaster
from tests.models.zoo_helpers import rel_err

# registry name: (layer class, its config fields for a small layer, sequence length)
LAYERS = {
    "s4d": (S4DLayer, {"d_model": 3, "d_state": 4, "init": "legs"}, 6),
    "s4": (S4Layer, {"d_model": 2, "d_state": 4}, 6),
    "s5": (S5Layer, {"d_model": 3, "d_state": 4}, 5),
    "mamba": (MambaLayer, {"d_model": 6, "d_state": 2, "d_conv": 2, "expand": 1, "chunk_size": 2}, 5),
    "lru": (LRULayer, {"d_model": 3, "d_state": 4, "r_min": 0.5, "r_max": 0.95, "max_phase": 2 * math.pi}, 7),
    "h3": (H3Layer, {"d_model": 4, "d_state": 4, "shift_size": 3, "d_head": 2}, 5),
    "gated_mlp": (GatedMLPLayer, {"d_model": 3, "d_ff": 5, "d_ssm": 2, "d_state": 4, "init": "legs"}, 6),
}
WITH_DT = ["s4d", "s4", "s5", "mamba", "h3", "gated_mlp"]  # layers with a Δ (dt_min / dt_max)
# layers around another sequence core (models.layers.cores), and the complex selective SSM
COMPOSED = {
    "mamba-s4d": (MambaBlock, {"d_model": 4, "d_state": 4, "d_conv": 2, "expand": 1, "ssm_layer": "s4d"}, 5),
    "mamba-complex": (MambaLayer, {"d_model": 4, "d_state": 4, "d_conv": 2, "expand": 1, "init": "diag-inv",
                                   "chunk_size": 2}, 5),
    "h3-s5": (H3Layer, {"d_model": 4, "d_state": 4, "shift_size": 2, "d_head": 2, "ssm_layer": "s5"}, 5),
    "h3-mamba": (H3Layer, {"d_model": 4, "d_state": 2, "shift_size": 2, "ssm_layer": "mamba",
                           "layer_options": {"chunk_size": 2}}, 5),
    "gated_mlp-lru": (GatedMLPLayer, {"d_model": 3, "d_ff": 4, "d_ssm": 2, "d_state": 2, "ssm_layer": "lru",
                                      "layer_options": {"r_min": 0.5, "r_max": 0.9}}, 5),
    "gated_mlp-s4-legt": (GatedMLPLayer, {"d_model": 2, "d_ff": 2, "d_ssm": 1, "d_state": 4, "ssm_layer": "s4",
                                          "init": "legt"}, 4),
}
ALL_LAYERS = {**LAYERS, **COMPOSED}


def small_layer(name: str, dtype=torch.float64, seed: int = 0):
    """The small layer of ALL_LAYERS, its parameters moved off their init (so every path matters), and an input."""
    cls, fields, L = ALL_LAYERS[name]
    fields = dict(fields)
    torch.manual_seed(seed)
    layer = cls.build(fields.pop("d_model"), **fields).to(dtype).eval()
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return layer, torch.randn(1, L, layer.d_model, dtype=dtype)


def random_layer_state(layer, batch: int, dtype=torch.float64, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(batch, *f.shape, generator=g, dtype=dtype) for f in layer.state_spec())


@pytest.mark.parametrize("name", ALL_LAYERS)
def test_gradcheck_inputs_and_state_float64(name):
    """Outputs and final states of forward (from a state) and step, w.r.t. the input and the state."""
    layer, u = small_layer(name)
    u.requires_grad_()
    s = tuple(t.requires_grad_() for t in random_layer_state(layer, 1))
    n = len(s)

    def fwd(u, *s):
        y, st = layer(u, s, return_state=True)
        return (y, *st)

    def step(u, *s):
        y, st = layer.step(u[:, 0], s)
        return (y, *st)

    assert n == len(layer.state_spec()) >= 1
    assert torch.autograd.gradcheck(fwd, (u, *s))
    assert torch.autograd.gradcheck(step, (u, *s))


class _Method(torch.nn.Module):
    """layer.<method> as a module's forward, so that torch.func.functional_call can swap its parameters."""

    def __init__(self, layer: torch.nn.Module, method: str):
        super().__init__()
        self.layer, self.method = layer, method

    def forward(self, *args):
        y, state = getattr(self.layer, self.method)(*args)
        return (y, *state)


@pytest.mark.parametrize("name", ALL_LAYERS)
def test_gradcheck_parameters_float64(name):
    """Gradients reach every parameter (Λ / A, Δ, B, C, D and the projections) through forward, from a zero
    and from a non-zero state, and through step."""
    layer, u = small_layer(name)
    names = [f"layer.{n}" for n, _ in layer.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for p in layer.parameters())
    s0 = random_layer_state(layer, 1)

    def call(method: str, *args):
        module = _Method(layer, method)
        return lambda *ps: torch.func.functional_call(module, dict(zip(names, ps, strict=True)), args)

    assert torch.autograd.gradcheck(call("forward", u, None, True), params)
    assert torch.autograd.gradcheck(call("forward", u, s0, True), params)
    assert torch.autograd.gradcheck(call("step", u[:, 0], s0), params)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)], ids=["f64", "f32"])
@pytest.mark.parametrize("name", ALL_LAYERS)
def test_step_reproduces_forward(name, dtype, tol):
    layer, _ = small_layer(name, dtype)
    u = torch.randn(2, 41, layer.d_model, dtype=dtype, generator=torch.Generator().manual_seed(2))
    zero = tuple(torch.zeros(2, *f.shape, dtype=dtype) for f in layer.state_spec())
    for s0 in (zero, random_layer_state(layer, 2, dtype)):
        with torch.no_grad():
            y, s_par = layer(u, s0, return_state=True)
            state, ys = s0, []
            for t in range(u.shape[1]):
                y_t, state = layer.step(u[:, t], state)
                ys.append(y_t)
            y_none, none = layer(u)
        assert rel_err(torch.stack(ys, 1), y) <= tol
        for a, b in zip(state, s_par, strict=True):
            assert rel_err(a, b) <= 10 * tol
        assert none is None
        if s0 is zero:
            assert rel_err(y_none, y) <= tol


# (model, config fields, error, message): every bad config raises naming the field
BAD_CONFIGS = [
    ("s4d", {"init": "nope"}, ValueError, "init must be one of"),
    ("s4d", {"d_state": 5}, ValueError, "even"),
    ("s4", {"d_state": 5}, ValueError, "d_state"),
    ("s4", {"dt_min": 0.1, "dt_max": 0.01}, ValueError, "dt_min"),
    ("s4", {"init": "nope"}, ValueError, "init must be one of"),
    ("s5", {"init": "nope"}, ValueError, "init must be one of"),
    ("mamba", {"init": "nope"}, ValueError, "init must be one of"),
    ("mamba", {"init": "diag-lin", "d_state": 5}, ValueError, "even"),  # complex A: conjugate pairs
    ("mamba", {"disc": "bilinear"}, ValueError, "disc must be one of"),  # ZOH for A, Euler for B only
    ("mamba", {"ssm_layer": "s4", "disc": "zoh"}, ValueError, "disc must be one of"),  # S4's kernel is bilinear
    ("mamba", {"ssm_layer": "none"}, ValueError, "valid combinations"),
    ("mamba", {"ssm_layer": "s5", "bidirectional": True}, ValueError, "bidirectional"),
    ("mamba", {"layer_options": {"dt_rank": 2}}, TypeError, "not layer_options"),
    ("mamba", {"activation": "swish"}, ValueError, "activation must be one of"),
    ("h3", {"ssm_layer": "none"}, ValueError, "valid combinations"),
    ("h3", {"ssm_layer": "transformer"}, ValueError, "valid combinations"),
    ("h3", {"ssm_layer": "lru", "init": "legs"}, ValueError, "no continuous-time A"),
    ("h3", {"ssm_layer": "s5", "d_state": 6, "layer_options": {"blocks": 2}}, ValueError, "d_state"),
    ("h3", {"ssm_layer": "s4d", "layer_options": {"blocks": 2}}, TypeError, "has no option"),
    ("h3", {"ssm_layer": "lru", "layer_options": {"r_max": 2.0}}, ValueError, "LRU ring needs"),
    ("gated_mlp", {"ssm_layer": "none", "init": "legs"}, ValueError, "no continuous-time A"),
    ("gated_mlp", {"expand": 0.01}, ValueError, "expand"),
    ("gated_mlp", {"activation": "nope"}, ValueError, "activation must be one of"),
    ("s5", {"d_state": 5}, ValueError, "d_state"),
    ("s5", {"d_state": 12, "blocks": 4}, ValueError, "d_state"),  # blocks of odd size 3
    ("s5", {"blocks": 0}, ValueError, "blocks"),
    ("s5", {"disc": "euler"}, ValueError, "disc must be one of"),
    ("mamba", {"d_conv": 1}, ValueError, "d_conv"),
    ("mamba", {"d_state": 0}, ValueError, "d_state"),
    ("mamba", {"expand": 0}, ValueError, "expand"),
    ("mamba", {"dt_rank": "big"}, ValueError, "dt_rank"),
    ("mamba", {"dt_rank": 0}, ValueError, "dt_rank"),
    ("mamba", {"dt_min": 0.5}, ValueError, "dt_min"),
    ("mamba", {"chunk_size": 0}, ValueError, "chunk_size"),
    ("mamba", {"dt_init_floor": -1.0}, ValueError, "dt_init_floor"),
    ("lru", {"r_min": 0.99, "r_max": 0.9}, ValueError, "r_min and r_max"),
    ("lru", {"r_max": 0.99999}, ValueError, "r_min and r_max"),
    ("lru", {"max_phase": 0.0}, ValueError, "max_phase"),
    ("lru", {"d_state": 0}, ValueError, "d_state"),
    ("h3", {"d_model": 8, "d_head": 3}, ValueError, "d_head"),
    ("h3", {"shift_size": 1}, ValueError, "shift_size"),
    ("h3", {"d_state": 5}, ValueError, "even"),
    ("h3", {"init": "nope"}, ValueError, "init must be one of"),
    ("gated_mlp", {"d_ff": 0}, ValueError, "d_ff"),
    ("gated_mlp", {"d_ssm": 0}, ValueError, "d_ssm"),
    ("gated_mlp", {"d_state": 7}, ValueError, "even"),
    ("gated_mlp", {"disc": "euler"}, ValueError, "disc must be one of"),
    *[(name, {"not_a_field": 1}, TypeError, "valid fields") for name in LAYERS],
    *[(name, {"ssm_lr": 0.0}, ValueError, "ssm_lr") for name in LAYERS],
    *[(name, {"dt_min": 0.2, "dt_max": 0.1}, ValueError, "dt_min") for name in WITH_DT],
    *[(name, {"dt_min": 0.0}, ValueError, "dt_min") for name in WITH_DT],
]


@pytest.mark.parametrize("name,fields,error,match", BAD_CONFIGS,
                         ids=[f"{c[0]}-{'-'.join(c[1])}" for c in BAD_CONFIGS])
def test_bad_config_is_rejected_clearly(name, fields, error, match):
    with pytest.raises(error, match=match):
        create_model(name, **fields)
    fields = dict(fields)
    with pytest.raises(error, match=match):  # the same through the layer's keyword construction
        LAYERS[name][0].build(fields.pop("d_model", 8), **fields)


@pytest.mark.parametrize("name", [n for n in list_models() if issubclass(model_class(n), SSMForecaster)])
def test_every_stack_layer_is_built_from_the_model_config(name):
    """A stack model is its config, its layer class and a registration: the layer is `Layer(config)`."""
    cls = model_class(name)
    assert issubclass(cls.Layer, SequenceLayer) and cls.Layer.Config is cls.Config
    m = create_model(name, d_model=8, n_layers=2)
    assert all(type(layer) is cls.Layer for layer in m.layers)
    torch.manual_seed(0)
    alone = cls.Layer(m.config)
    shapes = [(n, p.shape) for n, p in alone.named_parameters()]
    assert shapes == [(n, p.shape) for n, p in m.layers[0].named_parameters()]


@pytest.mark.parametrize("name", ["s4d", "s4"])
def test_bidirectional_is_non_causal_and_refuses_step(name):
    m = create_model(name, d_input=2, n_targets=1, horizon=2, d_model=4, d_state=4, n_layers=1, bidirectional=True)
    m = m.double().eval()
    x = torch.randn(1, 20, 2, dtype=torch.float64)
    x2 = x.clone()
    x2[:, 15:] += 1
    with torch.no_grad():
        assert not torch.allclose(m(x)[:, :10], m(x2)[:, :10])  # sees the future
    with pytest.raises(RuntimeError, match="non-causal"):
        m.step(x[:, 0], ())
    with pytest.raises(RuntimeError, match="non-causal"):
        m.init_state(1)
    with pytest.raises(RuntimeError, match="non-causal"):
        m.layers[0].state_spec()
    with pytest.raises(RuntimeError, match="non-causal"):
        m.layers[0](torch.randn(1, 5, 4, dtype=torch.float64), return_state=True)
    with pytest.raises(RuntimeError, match="non-causal"):
        m.layers[0].kernel.step(torch.randn(1, 4, dtype=torch.float64), None)


def test_ssm_options_validate_once_and_mark_parameters():
    with pytest.raises(ValueError, match="dt_min and dt_max"):
        SSMOptions(dt_min=0.2, dt_max=0.1)
    with pytest.raises(ValueError, match="dt_min"):
        SSMOptions(dt_min=-1.0)
    with pytest.raises(ValueError, match="ssm_lr"):
        SSMOptions(ssm_lr=-1e-3)
    assert SSMOptions(ssm_lr=None).ssm_lr is None  # None: the trainer's ssm_lr
    opt = SSMOptions(dt_min=0.01, dt_max=0.02, ssm_lr=5e-4)
    torch.manual_seed(0)
    dt = torch.exp(opt.log_dt(1000))
    assert dt.dtype == torch.float64 and dt.min() >= 0.01 and dt.max() <= 0.02
    p = opt.mark(torch.nn.Parameter(torch.zeros(2)))
    assert p._ssm_optim == {"lr": 5e-4}
    m = create_model("s4d", d_model=4, n_layers=1, ssm_lr=5e-4)
    assert SSMOptions.of(m.config) == SSMOptions(1e-3, 1e-1, 5e-4)
    assert SSMOptions.of(create_model("lru", ssm_lr=2e-4).config) == SSMOptions(ssm_lr=2e-4)  # no Δ
