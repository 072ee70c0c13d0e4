"""The demo's live table renders cells, forecasts with intervals and active experts from a running xApp."""

from __future__ import annotations

import io

from rich.console import Console

from service.demo import cache_dir, render
from tests.service.helpers import indication, make_bundle, publish, running_xapp, wait_for


async def test_live_table_shows_cells_forecasts_and_experts(tmp_path, monkeypatch):
    bundle = make_bundle(tmp_path, "ms3m")
    async with running_xapp([bundle]) as xapp:
        await publish(xapp.grpc_port, [indication(3, t, mid=t + 1) for t in range(10)])
        await wait_for(lambda: xapp.engine.samples == 30)
        out = io.StringIO()
        Console(file=out, width=220).print(render(xapp, {"rate_now": 1234.0}, 0.0))
        text = out.getvalue()
    assert "MS³M xApp demo" in text and "ingest 1,234 samples/s" in text
    for c in range(3):
        assert f"cell-{c:03d}" in text
    assert "s4d@1:" in text and "[" in text  # experts with gate weights, forecast with its interval
    monkeypatch.setenv("MS3M_CACHE_DIR", str(tmp_path))
    assert cache_dir() == tmp_path / "demo" / "v2"


async def test_no_number_in_the_live_table_is_cut_at_any_terminal_width(tmp_path):
    """Numbers keep their columns' width; long action texts wrap between words (they were cut mid-number)."""
    import re

    bundle = make_bundle(tmp_path, "ms3m")
    async with running_xapp([bundle]) as xapp:
        await publish(xapp.grpc_port, [indication(3, t, mid=t + 1) for t in range(10)])
        await wait_for(lambda: xapp.engine.samples == 30)
        reason = ("DRB.UEThpDl = 12.345 outside its forecast interval [8.876, 11.234] (expected 10.055; "
                  "coverage 0.9012 over the last 600 samples, 17 consecutive misses)")
        xapp.actions.append({"cell_id": "cell-001", "kind": "anomaly_alarm", "reason": reason})
        for width in (70, 90, 120, 220):
            out = io.StringIO()
            Console(file=out, width=width).print(render(xapp, {"rate_now": 1.0}, 0.0))
            text = out.getvalue()
            rows = [line for line in text.splitlines() if "│" in line]
            cells = [c.strip() for line in rows for c in line.split("│")]
            for number in re.findall(r"[\d.]+", reason):  # each number whole in one table cell line
                assert any(re.search(rf"(?<![\d.]){re.escape(number)}(?![\d.])", c) for c in cells), (width, number)
            for c in range(3):
                assert f"cell-{c:03d}" in text, width
            intervals = re.findall(r"\S+ \[\S+, \S+\]", text)  # "9503.8 [4519.8, 14.5k]": each on one line
            assert len(intervals) >= 3, (width, text)  # the three cells' forecasts with their intervals


async def test_the_trained_bundle_is_swapped_in_when_its_training_ends(tmp_path, monkeypatch):
    import shutil
    from types import SimpleNamespace

    from service.demo import swap_in_when_trained

    monkeypatch.setenv("MS3M_CACHE_DIR", str(tmp_path / "cache"))
    quick = make_bundle(tmp_path / "quick", "ms3m")
    codes = iter([None, None, 0])
    proc = SimpleNamespace(poll=lambda: next(codes), returncode=0)
    async with running_xapp([quick]) as xapp:
        await publish(xapp.grpc_port, [indication(3, t, mid=t + 1) for t in range(10)])
        await wait_for(lambda: xapp.engine.samples == 30)
        shutil.copytree(make_bundle(tmp_path / "full", "ms3m", d_feature=12), cache_dir() / "bundle")
        status: dict = {}
        await swap_in_when_trained(xapp, proc, 300, status, tmp_path / "train.log")
        assert status["text"].startswith("serving the full MS³M bundle") and "3 cells warmed" in status["text"]
        assert xapp.hosts[0].bundle.root == cache_dir() / "bundle"
        failed = SimpleNamespace(poll=lambda: 1, returncode=1)
        await swap_in_when_trained(xapp, failed, 300, status, tmp_path / "train.log")
        assert "training failed" in status["text"]
