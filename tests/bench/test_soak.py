"""The soak (bench/soak.py): MS³M with the router on, steady load, every slice conserving samples."""

from __future__ import annotations

import pytest

from bench.soak import run


@pytest.mark.slow
def test_ten_minute_soak_at_50k_samples_per_second():
    """README, "Security": RSS growth after warm-up ≤ 5 %, no sample dropped, every accepted sample forecast."""
    result = run(duration=600, load=50_000, cells=1000, slice_s=30)
    s = result["summary"]
    assert s["dropped"] == 0 and s["accepted"] > 0.9 * 50_000 * 600, s
    assert s["rss_growth_percent"] <= 5.0, s


@pytest.mark.slow  # 30 s: two processes and an MS³M bundle
def test_a_short_soak_conserves_samples_and_reports_growth():
    result = run(duration=6, load=2_000, cells=50, slice_s=2, warmup_slices=1)
    s = result["summary"]
    assert len(result["rows"]) == 3 and s["accepted"] > 0 and s["dropped"] == 0
    assert isinstance(s["rss_growth_percent"], float) and s["p99_ms_max"] > 0
