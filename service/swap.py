"""Hot-swap of one served bundle (REST `PUT /v1/models/{name}`) while the xApp keeps serving.

The new bundle is loaded and checked first (a bundle that fails is refused with the reason; the old one keeps
serving). Then, without stopping the step path:

1. the engine starts keeping every sub-step's samples (`StepEngine.record`), and the last sample each cell
   has applied is noted;
2. each cell's window up to that sample is read from the buffer (one round trip) and replayed through the
   new host from a zero state: a cold start warmed from the window, in a thread of its own;
3. the samples the engine stepped meanwhile are replayed too, in rounds, until few are left;
4. in the engine thread, between two steps: the rest is replayed and the new host takes the old one's place.

So the new model answers only once warm, it has seen every acknowledged sample the old one saw after the
window, and the cells of the other bundles are never touched.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from service.buffer.base import SampleBatch, WindowBuffer
from service.engine.engine import StepEngine
from service.engine.host import ModelHost
from service.runtime.bundle import BundleError, load_bundle

log = logging.getLogger("ms3m.swap")
FINAL_BACKLOG_SAMPLES = 5_000  # what the engine thread may replay itself at the switch (a few steps' worth)
MAX_CATCH_UP_ROUNDS = 20


class SwapRefused(ValueError):
    """The bundle cannot replace the served one; the message says why. Nothing changed."""


def replay_windows(host: ModelHost, series: list[str], windows: list) -> int:
    """Step `host` over each series' window (Samples, oldest first), the windows aligned at their ends, so
    each cell starts from a zero state; returns the samples stepped."""
    T = max((len(w) for w in windows), default=0)
    total = 0
    for t in range(T):
        rows = [i for i, w in enumerate(windows) if len(w) >= T - t]
        if not rows:
            continue
        keys = [series[i] for i in rows]
        k = [len(windows[i]) - (T - t) for i in rows]
        values = np.stack([windows[i].values[j] for i, j in zip(rows, k)])
        ts = np.array([windows[i].timestamp_ms[j] for i, j in zip(rows, k)], np.int64)
        slots, ok = host.slots(keys, 0)
        host.step(slots[ok], values[ok], ts[ok])
        total += int(ok.sum())
    return total


def replay_batches(host: ModelHost, batches: list[SampleBatch]) -> int:
    """Step `host` over recorded sub-steps (each at most one sample per series), in order."""
    total = 0
    for b in batches:
        if len(b):
            slots, ok = host.slots(b.series, 0)
            host.step(slots[ok], b.values[ok], b.timestamp_ms[ok])
            total += int(ok.sum())
    return total


class BundleSwapper:
    """Replaces `hosts[i]` (the list the xApp's parts share) with a host of a new bundle; `on_swapped(i, old, new)`
    runs in the engine thread right after the switch (routers, events, action policy follow the new host)."""

    def __init__(self, hosts: list[ModelHost], engine: StepEngine, buffer: WindowBuffer | None,
                 make_host: Callable[[object], ModelHost], window_length: int,
                 on_swapped: Callable[[int, ModelHost, ModelHost], None]):
        self.hosts, self.engine, self.buffer = hosts, engine, buffer
        self.make_host = make_host
        self.window_length = window_length
        self.on_swapped = on_swapped
        self._lock = asyncio.Lock()

    async def swap(self, name: str, path: str | Path) -> dict:
        """Serve the bundle at `path` in place of the model `name`. Raises KeyError for an unknown model and
        SwapRefused for a bundle that cannot replace it; returns what was done."""
        index = next((i for i, h in enumerate(self.hosts) if h.name == name), None)
        if index is None:
            raise KeyError(f"no model {name!r}; loaded: {[h.name for h in self.hosts]}")
        async with self._lock:
            t0 = time.perf_counter()
            try:
                bundle = await asyncio.to_thread(load_bundle, Path(path))
                new = await asyncio.to_thread(self.make_host, bundle)
            except (BundleError, OSError, ValueError) as e:
                raise SwapRefused(f"bundle {path} refused: {e}") from e
            old = self.hosts[index]
            others = {h.name for i, h in enumerate(self.hosts) if i != index}
            if new.name in others:
                raise SwapRefused(f"bundle {path} is named {new.name!r}, like another served model")

            def begin():
                self.engine.record(True)
                cells = old.table.cells()
                return cells, np.array([old.last_ts[old.table.slot(c)] for c in cells], np.int64)

            series, ends = await asyncio.wrap_future(self.engine.call(begin))
            try:
                windows = await self.buffer.windows(series, self.window_length) if self.buffer and series else []
                windows = [w.take(np.flatnonzero(w.timestamp_ms <= end)) for w, end in zip(windows, ends)]
                warmed = await asyncio.to_thread(replay_windows, new, series, windows)
                caught_up = 0
                for _ in range(MAX_CATCH_UP_ROUNDS):
                    backlog = await asyncio.wrap_future(self.engine.call(self.engine.take_recorded))
                    caught_up += await asyncio.to_thread(replay_batches, new, backlog)
                    if sum(len(b) for b in backlog) <= FINAL_BACKLOG_SAMPLES:
                        break

                def switch():
                    n = replay_batches(new, self.engine.take_recorded())
                    self.engine.record(False)
                    self.hosts[index] = new
                    self.engine.hosts[index] = new
                    self.on_swapped(index, old, new)
                    return n

                caught_up += await asyncio.wrap_future(self.engine.call(switch))
            except BaseException:
                self.engine.call(lambda: self.engine.record(False))
                raise
        return {"replaced": old.name, "model": new.name, "cells": len(series), "window_samples": warmed,
                "caught_up_samples": caught_up, "seconds": round(time.perf_counter() - t0, 3)}

    async def swap_logged(self, name: str, path: str | Path) -> dict | None:
        """`swap` for a request without a caller to answer (the descriptor's `controls.bundles`): a model already
        serving `path` is left alone; a refusal is logged, not raised."""
        host = next((h for h in self.hosts if h.name == name), None)
        if host is not None and host.bundle.root.resolve() == Path(path).resolve():
            return None
        try:
            done = await self.swap(name, path)
        except (KeyError, SwapRefused) as e:
            log.error("descriptor asked to swap %s for %s: %s", name, path, e)
            return None
        log.info("swapped %s for %s: %s", name, path, done)
        return done
