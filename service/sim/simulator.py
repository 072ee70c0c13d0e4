"""`simulate`: a seeded, endless synthetic multi-cell E2SM-KPM stream published to E2Ingest.

The values come from `service.sim.generator` (cell reports, and per-slice reports with slices=True); this
module names the cells, spreads them over E2 nodes (one `Publisher` stream each), paces the samples and
returns the final statistics (the `ms3m simulate` command of README, "Command line").

Time: each cell produces one report per round; round k has the simulated timestamp start_ms + k·period_ms
(strictly increasing per series). `rate` (samples/s, all series together; one sample = one report) sets
how fast rounds are emitted in wall-clock time; without it `speedup` does (1.0 = real time, i.e.
rate = series / period). Accelerated runs have timestamps that run ahead of the wall clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Sequence

import numpy as np

from service.sim.generator import KPIS, MAX_BLOCK, SLICE_KPIS, SLICES, CellKpiStream, SliceSplit
from service.sim.publisher import Publisher, SeriesKey, combine_stats


def cell_ids(n_cells: int, nodes: int = 1) -> tuple[list[str], list[str]]:
    """Cell ids "gnb-001-cell-03" spread evenly over E2 nodes "gnb-001" …; returns (cells, node of each)."""
    if nodes < 1 or nodes > n_cells:
        raise ValueError(f"nodes must be in 1..n_cells ({n_cells}), got {nodes}")
    per = math.ceil(n_cells / nodes)
    wn, wc = max(3, len(str(nodes))), max(2, len(str(per - 1)))
    node = [f"gnb-{c // per + 1:0{wn}d}" for c in range(n_cells)]
    return [f"{node[c]}-cell-{c % per:0{wc}d}" for c in range(n_cells)], node


class Pacer:
    """Token bucket: `rate` tokens/s, at most `burst` saved; `take` waits until a worthwhile chunk is due."""

    def __init__(self, rate: float, *, burst: float, min_chunk: int, clock: Callable[[], float],
                 sleep: Callable[[float], object] = asyncio.sleep):
        self.rate, self.burst, self.min_chunk = rate, burst, max(1, int(min_chunk))
        self.clock, self.sleep = clock, sleep
        self.tokens = 0.0
        self.t = clock()

    async def take(self, max_n: int, deadline: float | None = None) -> int:
        """Up to max_n tokens (≥ min(max_n, min_chunk)); 0 if they would only come after `deadline`."""
        if self.rate <= 0:
            return max_n
        need = min(max_n, self.min_chunk)
        while True:
            now = self.clock()
            self.tokens = min(self.burst, self.tokens + (now - self.t) * self.rate)
            self.t = now
            if self.tokens >= need:
                n = min(max_n, int(self.tokens))
                self.tokens -= n
                return n
            wait = (need - self.tokens) / self.rate
            if deadline is not None and now + wait > deadline:
                return 0
            await self.sleep(wait)


MAX_BACKDATE_MS = 6 * 86_400_000  # within the xApp's default max_sample_age_ms (7 days)
ENCODINGS = ("protobuf", "e2sm-kpm")


def make_publisher(target: str, encoding: str = "protobuf", kpm_version: int = 3, **kw) -> Publisher:
    """A Publisher of `encoding`: protobuf KpiIndications, or E2SM-KPM RIC indications (E2smPublisher)."""
    if encoding == "e2sm-kpm":
        from service.sim.e2sm_publisher import E2smPublisher

        return E2smPublisher(target, kpm_version=kpm_version, **kw)
    return Publisher(target, **kw)


async def simulate(
    target: str = "localhost:50051",
    *,
    n_cells: int = 100,
    rate: float | None = None,
    speedup: float | None = None,
    period_ms: int = 1000,
    duration_s: float | None = None,
    n_samples: int | None = None,
    seed: int = 0,
    kpis: Sequence[str] | None = None,
    slices: bool = False,
    missing_rate: float = 0.0,
    nodes: int = 1,
    batch_size: int = 1000,
    acked: bool = True,
    max_in_flight: int = 8,
    cycle_steps: int = 1440,
    anomalies: bool = True,
    start_ms: int | None = None,
    on_progress: Callable[[dict], None] | None = None,
    progress_interval_s: float = 1.0,
    stop: asyncio.Event | None = None,
    publisher_factory: Callable[[str], Publisher] | None = None,
    clock: Callable[[], float] = time.monotonic,
    encoding: str = "protobuf",
    kpm_version: int = 3,
) -> dict:
    """Stream synthetic KPIs of n_cells to target until duration_s, n_samples or `stop`; return final stats.

    rate: samples/s over all series (0: as fast as possible); speedup: rate as a multiple of real time
    (default 1.0); give one of them. kpis: a subset of KPIS (default all); missing_rate: fraction of values
    sent as absent; nodes: E2 nodes (one stream each) the cells are spread over; start_ms: the first
    simulated timestamp (default now, floored to the period). publisher_factory(e2_node_id) → Publisher
    replaces the default. on_progress(stats) is called every progress_interval_s with the running stats.
    encoding: "protobuf" (KpiIndication to E2Ingest) or "e2sm-kpm" (E2SM-KPM RIC indications of KPM
    kpm_version to E2smIngest, service/sim/e2sm_publisher.py).
    Raises ValueError on bad arguments, PublishError when delivery fails for good.
    """
    kpis = list(KPIS if kpis is None else kpis)
    unknown = [k for k in kpis if k not in KPIS]
    if unknown or not kpis or len(set(kpis)) != len(kpis):
        raise ValueError(f"kpis must be distinct names from {KPIS}, got {kpis}")
    if slices and not set(kpis) & set(SLICE_KPIS):
        raise ValueError(f"slices need at least one of the per-slice KPIs {list(SLICE_KPIS)} in kpis")
    if rate is not None and speedup is not None:
        raise ValueError("give rate or speedup, not both")
    if (rate is not None and rate < 0) or (speedup is not None and speedup <= 0):
        raise ValueError(f"rate must be >= 0 and speedup > 0, got rate={rate}, speedup={speedup}")
    if int(period_ms) != period_ms or period_ms < 1:
        raise ValueError(f"period_ms must be a positive integer, got {period_ms!r}")
    if not 0.0 <= missing_rate < 1.0:
        raise ValueError(f"missing_rate must be in [0, 1), got {missing_rate}")
    if (duration_s is not None and duration_s <= 0) or (n_samples is not None and n_samples < 1):
        raise ValueError("duration_s must be > 0 and n_samples >= 1")
    cells, node_of_cell = cell_ids(n_cells, nodes)
    stream = CellKpiStream(n_cells, seed, cycle_steps=cycle_steps, anomalies=anomalies)
    split = SliceSplit(n_cells, seed) if slices else None
    cols = [KPIS.index(k) for k in kpis]
    per_cell = 1 + (len(SLICES) if slices else 0)
    S = n_cells * per_cell  # series (samples per round)
    if rate is None:
        rate = (1.0 if speedup is None else speedup) * S * 1000.0 / period_ms
    keys = [SeriesKey(c, None, sst) for c in cells for sst in (None, *(s for s, _ in SLICES[: per_cell - 1]))]
    node_names = sorted(set(node_of_cell))
    node_of = np.repeat(np.array([node_names.index(n) for n in node_of_cell]), per_cell)  # per series
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
    if publisher_factory is None:
        def publisher_factory(node: str) -> Publisher:
            return make_publisher(target, encoding, kpm_version, e2_node_id=node, batch_size=batch_size,
                                  acked=acked, max_in_flight=max_in_flight, granularity_period_ms=int(period_ms))
    pubs = [publisher_factory(n) for n in node_names]
    local = np.empty(S, np.int64)  # series → index in its node's publisher
    for k, pub in enumerate(pubs):
        mine = np.flatnonzero(node_of == k)
        local[mine] = pub.register([keys[i] for i in mine])
    rng = np.random.default_rng([seed, 2])
    if start_ms is None:  # a bounded, paced run ends near the wall clock (the xApp bounds how far ahead it may be)
        now_ms = time.time_ns() // 1_000_000
        span = int(rate * duration_s / S) * int(period_ms) if rate and duration_s is not None else 0
        start_ms = now_ms - min(span, MAX_BACKDATE_MS)
        start_ms -= start_ms % int(period_ms)
    rounds_per_block = max(1, min(MAX_BLOCK, 65_536 // S))
    config = {"target": target, "n_cells": n_cells, "series": S, "slices": slices, "nodes": len(pubs),
              "kpis": kpis, "period_ms": int(period_ms), "rate": rate,
              "speedup": rate * period_ms / (1000.0 * S) if rate else None, "duration_s": duration_s,
              "n_samples": n_samples, "seed": seed, "batch_size": batch_size, "acked": acked,
              "missing_rate": missing_rate, "start_ms": start_ms, "encoding": encoding,
              **({"kpm_version": kpm_version} if encoding == "e2sm-kpm" else {})}

    # the flat sample stream: round-major, series in `keys` order
    buf_series = np.zeros(0, np.int64)
    buf_ts = np.zeros(0, np.int64)
    buf_vals = np.zeros((0, len(kpis)), np.float64)

    def refill(need: int) -> None:
        nonlocal buf_series, buf_ts, buf_vals
        parts_s, parts_t, parts_v, have = [buf_series], [buf_ts], [buf_vals], len(buf_series)
        while have < need:
            r0 = stream.t
            block = stream.next_block(rounds_per_block)  # (R, C, K)
            R = block.shape[0]
            if split is not None:
                block = np.concatenate([block[:, :, None, :], split.split(block)], axis=2)  # (R, C, 3, K)
            v = block.reshape(R * S, len(KPIS))[:, cols].astype(np.float64)
            if missing_rate > 0:
                v[rng.random(v.shape) < missing_rate] = np.nan
            parts_s.append(np.tile(np.arange(S), R))
            parts_t.append(np.repeat(start_ms + (r0 + np.arange(R, dtype=np.int64)) * int(period_ms), S))
            parts_v.append(v)
            have += R * S
        buf_series, buf_ts, buf_vals = (np.concatenate(parts_s), np.concatenate(parts_t), np.concatenate(parts_v))

    pacer = Pacer(rate, burst=max(batch_size * len(pubs), rate * 0.25), min_chunk=max(1, rate * 0.01),
                  clock=clock)
    t0 = clock()
    deadline = None if duration_s is None else t0 + duration_s
    sent = 0
    ticker = None
    if on_progress is not None:
        ticker = asyncio.get_running_loop().create_task(
            _progress(lambda: combine_stats(pubs), on_progress, progress_interval_s, clock, t0, rate))
    try:
        for pub in pubs:
            await pub.start()
        while (stop is None or not stop.is_set()) and (n_samples is None or sent < n_samples):
            if deadline is not None and clock() >= deadline:
                break
            want = batch_size * len(pubs) if n_samples is None else min(batch_size * len(pubs), n_samples - sent)
            n = await pacer.take(want, deadline)
            if n == 0:
                break
            if len(buf_series) < n:
                refill(n)
            s, t, v = buf_series[:n], buf_ts[:n], buf_vals[:n]
            buf_series, buf_ts, buf_vals = buf_series[n:], buf_ts[n:], buf_vals[n:]
            if len(pubs) == 1:
                sending = pubs[0].send(local[s], t, None, v, kpis)
            else:
                node = node_of[s]
                sending = asyncio.gather(*(pubs[k].send(local[s[m]], t[m], None, v[m], kpis)
                                           for k in range(len(pubs)) if (m := node == k).any()))
            if not await until_stopped(sending, stop):
                break
            sent += n
        await asyncio.gather(*(p.close() for p in pubs))
    except BaseException:
        for p in pubs:
            await p.close(flush=False)
        raise
    finally:
        if ticker is not None:
            ticker.cancel()
    return {"command": "simulate", "config": config, "wall_s": round(clock() - t0, 3), **combine_stats(pubs)}


async def until_stopped(aw, stop: asyncio.Event | None) -> bool:
    """Await aw unless `stop` is set first (then cancel it, e.g. a send blocked on backpressure); True if done."""
    if stop is None:
        await aw
        return True
    task, waiter = asyncio.ensure_future(aw), asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if task.done():
        task.result()
        return True
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return False


async def _progress(snapshot: Callable[[], dict], callback: Callable[[dict], None], interval: float,
                    clock: Callable[[], float], t0: float, target_rate: float | None) -> None:
    """Call back once per interval with the stats, the current send rate and the target rate."""
    prev_n, prev_t = 0, clock()
    while True:
        await asyncio.sleep(interval)
        st = snapshot()
        now = clock()
        st["rate_now"] = round((st["samples"] - prev_n) / max(now - prev_t, 1e-9), 1)
        st["target_rate"] = target_rate
        st["wall_s"] = round(now - t0, 3)
        prev_n, prev_t = st["samples"], now
        callback(st)
