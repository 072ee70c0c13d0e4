"""NLinear (models.baselines.linear): the formula, its start as the last-value forecast, the decomposed form."""

from __future__ import annotations

import pytest
import torch

from models import create_model
from models.baselines.dlinear import series_decomp
from tests.models.zoo_helpers import rel_err, run_steps


def test_starts_as_the_last_value_forecast():
    m = create_model("linear", d_input=2, n_targets=1, horizon=3, target_index=(1,), window=8).double()
    with torch.no_grad():
        m.head.proj.bias.zero_()
        x = torch.randn(1, 20, 2, dtype=torch.float64)
        assert torch.equal(m(x), x[..., 1:].unsqueeze(-2).expand(1, 20, 3, 1))


@pytest.mark.parametrize("decomposition", [0, 5])
def test_forecast_is_the_linear_map_of_the_centred_window(decomposition):
    torch.manual_seed(0)
    W = 6
    m = create_model("linear", d_input=2, n_targets=2, horizon=3, target_index=(0, 1), window=W,
                     decomposition=decomposition).double().eval()
    torch.nn.init.normal_(m.head.proj.weight)
    x = torch.randn(2, 30, 2, dtype=torch.float64)
    with torch.no_grad():
        y = m(x)
        y_rec, _ = run_steps(m, x, m.init_state(2))
        assert rel_err(y_rec, y) <= 1e-12
        t = 17
        c = x[:, t - W + 1 : t + 1].transpose(1, 2) - x[:, t].unsqueeze(-1)  # (B, D, W)
        if decomposition:
            c = torch.cat(series_decomp(c, decomposition), -1)
        ref = (c.flatten(1) @ m.head.proj.weight.T + m.head.proj.bias).unflatten(-1, (3, 2)) + x[:, t].unsqueeze(1)
        assert rel_err(y[:, t], ref) <= 1e-12


def test_bad_options_are_explained():
    with pytest.raises(ValueError, match="decomposition"):
        create_model("linear", d_input=1, n_targets=1, decomposition=4)
    with pytest.raises(ValueError, match="window"):
        create_model("linear", d_input=1, n_targets=1, window=1)
