"""service/sim/generator.py: the streaming KPI generator, continuous, deterministic, and matching the offline
synthetic dataset."""

from __future__ import annotations

import numpy as np
import pytest

from service.sim import generator


def test_stream_generator_is_continuous_and_deterministic():
    a = generator.CellKpiStream(8, seed=5)
    b = generator.CellKpiStream(8, seed=5)
    x = np.concatenate([a.next_block(100), a.next_block(100)])
    y = np.concatenate([b.next_block(100), b.next_block(100)])
    assert x.shape == (200, 8, len(generator.KPIS)) and np.isfinite(x).all()
    np.testing.assert_array_equal(x, y)
    # the AR(1) closed form equals the recursion
    rng = np.random.default_rng(0)
    xs, y0 = rng.normal(size=(3, 1024)), rng.normal(size=3)
    ref, prev = np.empty_like(xs), y0.copy()
    for t in range(xs.shape[1]):
        prev = 0.9 * prev + xs[:, t]
        ref[:, t] = prev
    np.testing.assert_allclose(generator._ar1_block(xs, 0.9, y0), ref, atol=1e-9)


def test_stream_generator_matches_the_offline_generator():
    """Same per-cell parameters for a seed and the same KPI distributions as models/training/data/synthetic.py."""
    synthetic = pytest.importorskip("models.training.data.synthetic", reason="needs the train extra (torch)")
    assert synthetic.KPIS == generator.KPIS
    cells, steps = 64, 1440
    off = synthetic.synthetic_kpis(cells, steps, seed=11)
    offline = np.stack([s.values for s in off.series], axis=1)  # (T, C, K)
    st = generator.CellKpiStream(cells, seed=11)
    online = np.concatenate([st.next_block(720), st.next_block(720)])
    for k, name in enumerate(generator.KPIS):
        q_off = np.quantile(offline[:, :, k], [0.1, 0.5, 0.9])
        q_on = np.quantile(online[:, :, k], [0.1, 0.5, 0.9])
        spread = q_off[2] - q_off[0]
        assert np.all(np.abs(q_on - q_off) <= 0.15 * spread + 1e-6), (name, q_off, q_on)
    # per-cell structure: the mean level of each cell agrees (same per-cell parameters)
    thp = generator.KPIS.index("RF.serving.RSRP")
    assert np.corrcoef(offline[:, :, thp].mean(0), online[:, :, thp].mean(0))[0, 1] > 0.95
