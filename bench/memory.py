"""`ms3m bench memory`: resident memory per cell of the serving path — the embedded window buffer holding a
full window for every cell, and each cell's model state and bookkeeping — at 10k and 100k cells.

Each configuration runs in a fresh process (`python -m bench.memory --worker …`) so RSS is its own:
RSS after loading the bundle is the baseline; then every cell gets `window` samples through
`MemoryWindowBuffer.append` and one step through `ModelHost.step` (which allocates its state rows), and
the RSS growth divided by the cells is the figure. The allocated bytes (buffer pages, state table, per-cell
arrays) are reported beside it, and a "chatty cell" row shows that one cell sending a whole window does not
grow the others' allocation.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

STEP_CHUNK = 8192


def _host_bytes(host) -> int:
    """Bytes of a host's per-slot arrays (state table, forecasts, intervals, router inputs)."""
    total = sum(a.nbytes for a in host.table.arrays) + host.table.last_seen.nbytes
    for name in ("last_ts", "dirty", "point", "lower", "upper", "objective", "enforce", "active", "pending_off",
                 "gate"):
        if hasattr(host, name):
            total += getattr(host, name).nbytes
    total += sum(v.nbytes for v in vars(host.intervals).values() if isinstance(v, np.ndarray))
    return total


def _worker(bundle: str, cells: int, window: int, chatty: bool) -> dict[str, Any]:
    import psutil

    from service.buffer.base import SampleBatch
    from service.buffer.memory import PAGE_ROWS, MemoryWindowBuffer
    from service.engine.host import ModelHost
    from service.runtime import load_bundle

    b = load_bundle(bundle)
    kpis = list(dict.fromkeys(b.manifest.inputs + b.manifest.targets))
    host = ModelHost(b, kpis, capacity=cells, max_cells=cells)
    buf = MemoryWindowBuffer(kpis, window)
    proc = psutil.Process()
    rng = np.random.default_rng(0)
    keys = [f"cell-{i:06d}" for i in range(cells)]
    base = 1_700_000_000_000
    rows = rng.normal(size=(cells, len(kpis))).astype(np.float32)
    host.slots(keys[:1], 0)  # warm the allocators before the baseline
    rss0 = proc.memory_info().rss
    rounds = 1 if chatty else window + PAGE_ROWS  # past a full window: every page of the ring in use
    for r in range(rounds):
        batch = SampleBatch(keys, np.full(cells, base + 1000 * r, np.int64), np.full(cells, r + 1, np.uint64), rows)
        asyncio.run(buf.append(batch))
    if chatty:  # one cell sends a whole window
        n = window
        asyncio.run(buf.append(SampleBatch([keys[0]] * n, base + 1000 * (1 + np.arange(n, dtype=np.int64)),
                                           np.arange(2, n + 2, dtype=np.uint64), np.repeat(rows[:1], n, 0))))
    for lo in range(0, cells, STEP_CHUNK):
        chunk = keys[lo:lo + STEP_CHUNK]
        slots, _ = host.slots(chunk, 0)
        host.step(slots, rows[lo:lo + len(chunk)].astype(np.float64), np.full(len(chunk), base, np.int64))
    rss1 = proc.memory_info().rss
    return {"rss_mb": round(rss1 / 2**20), "rss_growth_kib_per_cell": round((rss1 - rss0) / cells / 1024, 2),
            "buffer_kib_per_cell": round(buf._slab.nbytes / cells / 1024, 2),
            "state_kib_per_cell": round(host.table.bytes_per_cell / 1024, 2),
            "host_kib_per_cell": round(_host_bytes(host) / cells / 1024, 2)}


def run(bundles: Sequence[tuple[str, Path]] | None = None, cells: Sequence[int] = (10_000, 100_000),
        window: int | None = None, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    from bench.service import default_bundle
    from service.config import Settings

    say = progress or (lambda s: None)
    window = window or Settings().window_length
    if bundles is None:
        root = Path(tempfile.mkdtemp(prefix="ms3m-bench-memory-"))
        bundles = [("ms3m", default_bundle(root, "ms3m")), ("s4d", default_bundle(root, "s4d"))]
    rows = []
    for name, path in bundles:
        for n, chatty in [*((n, False) for n in cells), (cells[0], True)]:
            say(f"{name}: {n} cells{' (one chatty cell, the rest 1 sample)' if chatty else ''}, window {window}")
            out = subprocess.run([sys.executable, "-m", "bench.memory", "--worker", str(path), str(n),
                                  str(window)] + (["--chatty"] if chatty else []),
                                 capture_output=True, text=True, timeout=1800)
            if out.returncode:
                raise RuntimeError(f"memory worker failed: {out.stderr[-2000:]}")
            row = json.loads(out.stdout.strip().splitlines()[-1])
            row["total_kib_per_cell"] = round(row["buffer_kib_per_cell"] + row["host_kib_per_cell"], 2)
            rows.append({"model": name, "cells": n, "case": "chatty" if chatty else "full windows", **row})
    summary = {f"{r['model']}_rss_mb_at_{r['cells'] // 1000}k": r["rss_mb"] for r in rows if r["case"] != "chatty"}
    summary.update({f"{r['model']}_kib_per_cell": r["total_kib_per_cell"] for r in rows
                    if r["case"] != "chatty" and r["cells"] == max(cells)})
    return {"benchmark": "memory",
            "columns": ["model", "cells", "case", "rss_mb", "rss_growth_kib_per_cell", "buffer_kib_per_cell",
                        "state_kib_per_cell", "host_kib_per_cell", "total_kib_per_cell"],
            "rows": rows, "summary": summary, "settings": {"window_length": window, "buffer": "memory"}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="memory worker of `ms3m bench memory` (one configuration)")
    p.add_argument("--worker", nargs=3, metavar=("BUNDLE", "CELLS", "WINDOW"), required=True)
    p.add_argument("--chatty", action="store_true")
    a = p.parse_args(argv)
    print(json.dumps(_worker(a.worker[0], int(a.worker[1]), int(a.worker[2]), a.chatty)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
