"""A soak: the xApp serving MS³M (router on) under a steady load for minutes, in consecutive slices, each checked for
conservation (every accepted sample forecast or counted as dropped) and measured (sustained rate, p99, RSS).

The figures the README quotes: RSS growth from the end of the warm-up slices to the end (target ≤ 5 %), dropped
samples (target 0), the worst slice's p99. Uses the same processes and counters as `ms3m bench service`.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.service import _start_xapp, _xapp_phase, default_bundles


def run(duration: float = 600.0, load: int = 50_000, cells: int = 1000, slice_s: float = 30.0,
        warmup_slices: int = 2, bundle: str | Path | None = None, buffer: str = "memory",
        progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Soak for `duration` seconds at `load` samples/s over `cells` cells; returns {"rows": per slice, "summary"}.
    Raises bench.service.ConservationError when a slice lost an accepted sample."""
    say = progress or (lambda s: None)
    root = Path(tempfile.mkdtemp(prefix="ms3m-soak-"))
    (path,) = default_bundles(root, bundle, None)
    slices = max(warmup_slices + 1, round(duration / slice_s))
    per_cell_ms = int(load * slice_s / cells * 1000 * 1.5) + 60_000  # simulated time one slice spans
    base = int(time.time() * 1000) - per_cell_ms * (slices + 1)
    proc, http, grpc_port = _start_xapp(path, buffer, root / "xapp.log", f"soak-{os.getpid()}")
    rows = []
    try:
        for k in range(slices):
            row = _xapp_phase(proc, http, grpc_port, load, slice_s, cells, base + k * per_cell_ms)
            rows.append({"slice": k, "t_s": round((k + 1) * slice_s), **row})
            say(f"slice {k + 1}/{slices}: {row['sustained_per_s']:,}/s p99 {row['p99_ms']} ms rss {row['rss_mb']} MB "
                f"dropped {row['dropped']}")
    finally:
        proc.terminate()
        proc.wait(30)
    settled = rows[warmup_slices - 1]["rss_mb"]
    summary = {
        "bundle": str(path), "load_per_s": load, "cells": cells, "duration_s": round(slices * slice_s),
        "rss_mb_after_warmup": settled, "rss_mb_end": rows[-1]["rss_mb"],
        "rss_growth_percent": round(100 * (rows[-1]["rss_mb"] - settled) / settled, 2),
        "accepted": sum(r["accepted"] for r in rows), "dropped": sum(r["dropped"] for r in rows),
        "rejected": sum(int(r.get("rejected") or 0) for r in rows),
        "sustained_per_s_min": min(r["sustained_per_s"] for r in rows),
        "p99_ms_max": max(r["p99_ms"] or 0 for r in rows[warmup_slices:]),
    }
    return {"benchmark": "soak", "rows": rows, "summary": summary}
