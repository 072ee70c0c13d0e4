"""Input framing (models.framing): the streaming contract with causal normalization and channel independence on,
for every model of the zoo, and what each of the two does."""

from __future__ import annotations

import json

import pytest
import torch

from models import create_model, list_models, model_from_config
from models.base import check_state
from models.framing import CausalNorm, FramedModel, core_model
from tests.models.zoo_helpers import D_IN, HORIZON, N_TGT, TARGET_INDEX, random_state, rel_err, run_steps, tiny_model

MODELS = list_models()
FRAMINGS = {
    "causal": {"normalization": "causal"},
    "independent": {"channels": "independent"},
    "causal+independent": {"normalization": "causal", "channels": "independent", "norm_rate": 0.1},
}
TOL = {torch.float64: 1e-10, torch.float32: 1e-4}


def framed(name: str, framing: str, dtype=torch.float64) -> FramedModel:
    model = tiny_model(name, dtype, **FRAMINGS[framing])
    assert isinstance(model, FramedModel)
    if model.norm is not None:  # affine parameters away from their identity start, so they are exercised
        with torch.no_grad():
            model.norm.weight.uniform_(0.5, 1.5, generator=torch.Generator().manual_seed(3))
            model.norm.bias.uniform_(-0.3, 0.3, generator=torch.Generator().manual_seed(4))
    return model


# float32 framed under -m slow: float32 exactness is checked unframed (test_contract) and framed through the
# exported float32 step graphs (tests/export), and the zoo's 24 models × 3 framings × 2 dtypes cost minutes
@pytest.mark.parametrize("dtype", [torch.float64, pytest.param(torch.float32, marks=pytest.mark.slow)],
                         ids=["f64", "f32"])
@pytest.mark.parametrize("framing", FRAMINGS)
@pytest.mark.parametrize("name", MODELS)
def test_step_reproduces_forward_framed(name, framing, dtype):
    model = framed(name, framing, dtype)
    B = 2
    for L in (1, 9, 70):
        x = 1.5 + torch.randn(B, L, D_IN, dtype=dtype, generator=torch.Generator().manual_seed(L))
        for s0 in (model.init_state(B), random_state(model, B)):
            with torch.no_grad():
                y_par, s_par = model.forward_with_state(x, s0)
                y_rec, s_rec = run_steps(model, x, s0)
                y_fwd = model(x, s0)
            assert y_par.shape == (B, L, HORIZON, N_TGT)
            assert rel_err(y_rec, y_par) <= TOL[dtype], f"{name}/{framing} L={L}: outputs differ"
            assert rel_err(y_fwd, y_par) <= TOL[dtype]
            for a, b, f in zip(s_rec, s_par, model.state_spec()):
                assert rel_err(a, b) <= TOL[dtype] * 10, f"{name}/{framing} L={L}: state '{f.name}' differs"


@pytest.mark.parametrize("framing", FRAMINGS)
@pytest.mark.parametrize("name", MODELS)
def test_framed_chunks_causality_state_and_round_trip(name, framing):
    model = framed(name, framing)
    x = torch.randn(2, 60, D_IN, dtype=torch.float64)
    s0 = random_state(model, 2)
    with torch.no_grad():
        y_full, s_full = model.forward_with_state(x, s0)
        y1, s1 = model.forward_with_state(x[:, :23], s0)
        y2, s2 = model.forward_with_state(x[:, 23:], s1)
    assert rel_err(torch.cat([y1, y2], 1), y_full) <= 1e-10
    assert all(rel_err(a, b) <= 1e-9 for a, b in zip(s2, s_full))

    x2 = x.clone()
    x2[:, 31:] += torch.randn_like(x2[:, 31:])
    with torch.no_grad():
        y, y2 = model(x), model(x2)
    assert rel_err(y2[:, :31], y[:, :31]) < 1e-12 and not torch.allclose(y[:, 31:], y2[:, 31:])

    state = random_state(model, 3)
    check_state(model, state, 3)
    frozen = tuple(t.clone() for t in state)
    with torch.no_grad():
        model.step(torch.randn(3, D_IN, dtype=torch.float64), state)
    assert all(torch.equal(a, b) for a, b in zip(state, frozen)), "step modified its input state"

    clone = model_from_config(name, json.loads(json.dumps(model.config.to_dict()))).double().eval()
    clone.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(clone(x[:, :12]), model(x[:, :12]))
    ids = sorted(id(p) for g in model.param_groups(lr=1e-2, weight_decay=0.1) for p in g["params"])
    assert ids == sorted(id(p) for p in model.parameters())


def test_causal_statistics_are_the_weighted_mean_and_variance_of_the_samples_seen():
    torch.manual_seed(0)
    norm = CausalNorm(3, rate=0.1, affine=False).double()
    x = 2.0 + 3.0 * torch.randn(1, 50, 3, dtype=torch.float64)
    stats = norm.scan(x, torch.zeros(1, 3, 3, dtype=torch.float64))
    mu, sigma = CausalNorm.loc_scale(stats)
    for t in (0, 7, 49):
        w = 0.9 ** torch.arange(t, -1, -1, dtype=torch.float64)  # weight of x_0 … x_t
        w = w / w.sum()
        m = (w[:, None] * x[0, : t + 1]).sum(0)
        v = (w[:, None] * (x[0, : t + 1] - m) ** 2).sum(0)
        assert torch.allclose(mu[0, t], m) and torch.allclose(sigma[0, t], torch.sqrt(v + 1e-5))


def test_normalization_removes_level_and_scale():
    """A series shifted and scaled (same shape) gets the forecast shifted and scaled the same way: the core
    never sees the level or the scale."""
    model = framed("s4d", "causal")
    with torch.no_grad():
        model.norm.bias.zero_()  # the affine shift is not scaled with the series
    x = torch.randn(2, 80, D_IN, dtype=torch.float64)
    with torch.no_grad():
        y = model(x)
        y2 = model(5.0 + 7.0 * x)
    assert rel_err(y2[:, 10:], 5.0 + 7.0 * y[:, 10:]) < 1e-3  # ε in σ makes it approximate where σ is small


def test_channel_independence_is_one_shared_core_per_target_with_the_covariates():
    model = framed("lstm", "independent")
    core = core_model(model)
    assert core.config.d_input == 1 + (D_IN - N_TGT) and core.config.n_targets == 1
    x = torch.randn(2, 30, D_IN, dtype=torch.float64)
    cov = [d for d in range(D_IN) if d not in TARGET_INDEX]
    with torch.no_grad():
        y = model(x)
        for k, col in enumerate(TARGET_INDEX):
            own = torch.cat([x[..., [col]], x[..., cov]], -1)
            assert torch.allclose(y[..., k], core(own)[..., 0])


def test_framing_needs_to_know_the_targets_and_checks_its_options():
    with pytest.raises(ValueError, match="target_index"):
        create_model("s4d", d_input=3, n_targets=1, normalization="causal")
    with pytest.raises(ValueError, match="normalization"):
        create_model("s4d", d_input=1, n_targets=1, normalization="revin")
    with pytest.raises(ValueError, match="channels"):
        create_model("s4d", d_input=1, n_targets=1, channels="shared")
    with pytest.raises(ValueError, match="norm_rate"):
        create_model("s4d", d_input=1, n_targets=1, normalization="causal", norm_rate=0.0)
    m = create_model("s4d", d_input=2, n_targets=2, channels="independent")  # all columns targets: inferred
    assert m.config.target_index == (0, 1)


@pytest.mark.parametrize("framing", [None, *FRAMINGS])
@pytest.mark.parametrize("name", MODELS)
def test_last_position_paths_equal_the_full_forward(name, framing):
    """forward_last and training_forward(last_only=True) (the window protocol's cheap paths) give the last
    position of the full forward."""
    model = framed(name, framing) if framing else tiny_model(name)
    x = torch.randn(3, 30, D_IN, dtype=torch.float64)
    s0 = random_state(model, 3)
    with torch.no_grad():
        full = model(x, s0)
        assert rel_err(model.forward_last(x, s0), full[:, -1]) <= 1e-12
        torch.manual_seed(5)
        y_all, aux_all, _ = model.training_forward(x, s0)
        torch.manual_seed(5)
        y_last, aux_last, _ = model.training_forward(x, s0, last_only=True)
    assert y_last.shape == (3, 1, HORIZON, N_TGT) and rel_err(y_last, y_all[:, -1:]) <= 1e-12
    for k, v in aux_last.items():
        if isinstance(v, tuple):
            assert rel_err(v[1], aux_all[k][1][:, -1:]) <= 1e-12
