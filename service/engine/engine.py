"""StepEngine: the micro-batcher and its inference thread.

Ingest (asyncio) submits batches of accepted samples; one worker thread drains the queue, merges what
arrived within `flush_ms` (or up to `max_batch` samples), and steps every model over the merged batch:
at most one sample per cell per step — a cell's later samples follow in the next sub-step, in order.
Jobs (warm-ups, snapshots, restores, hot swaps) run in the same thread between steps, in queue order,
so they never race with a step. The queue is bounded in samples: `submit` returns False when full
(ingest answers RESOURCE_EXHAUSTED / HTTP 503).
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.buffer.base import SampleBatch
from service.engine.host import ModelHost, StepResult, concat_results
from service.metrics import Metrics

log = logging.getLogger("ms3m.engine")
LATENCY_SAMPLES_PER_STEP = 64  # ingest-to-forecast latency is observed for an even subset of each step
LATENCY_RING = 65_536  # recent latencies kept for exact quantiles (stats())


@dataclass
class StepBatch:
    """One sub-step: which samples, their series, and every model's results (None if a model skipped)."""

    series: list[str]
    batch: SampleBatch  # the samples of this sub-step
    results: list[StepResult | None]  # per host, rows aligned with `series` where ok
    ok: list[np.ndarray]  # per host: (n,) bool, rows that the host stepped
    received: np.ndarray  # (n,) perf_counter seconds at receipt
    replay: bool  # restart replay: no actions, no subscribers


class StepEngine:
    def __init__(self, hosts: list[ModelHost], metrics: Metrics,
                 on_step: Callable[[StepBatch], None] | None = None, max_queue_samples: int = 500_000,
                 max_batch: int = 8192, flush_ms: float = 2.0, clock: Callable[[], float] = time.time):
        self.hosts = list(hosts)
        self.metrics = metrics
        self.on_step = on_step
        self.max_queue = max_queue_samples
        self.max_batch = max_batch
        self.flush_s = flush_ms / 1000
        self.clock = clock
        self._items: collections.deque = collections.deque()
        self._cond = threading.Condition()
        self._queued = 0
        self._running = False
        self._thread: threading.Thread | None = None
        self.steps = 0
        self.samples = 0
        self.last_error: str | None = None
        self._lat = np.zeros(LATENCY_RING)
        self._lat_n = 0
        self._step_s = np.zeros(4096)
        self._step_n = 0
        self._causes: set[str] = set()
        self._recorded: list[SampleBatch] | None = None  # sub-steps kept for a bundle swap (worker thread)

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        self._running = True
        self._thread = threading.Thread(target=self._work, name="ms3m-step-engine", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._running = False
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def depth(self) -> int:
        return self._queued

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stats(self) -> dict:
        """Counters and exact quantiles of recent ingest-to-forecast latencies and step times (seconds)."""
        lat = self._lat[: min(self._lat_n, LATENCY_RING)]
        st = self._step_s[: min(self._step_n, len(self._step_s))]
        q = lambda a, p: float(np.percentile(a, p)) if len(a) else None  # noqa: E731
        return {"samples": self.samples, "steps": self.steps, "queue": self._queued,
                "latency_s": {"p50": q(lat, 50), "p90": q(lat, 90), "p99": q(lat, 99), "n": len(lat)},
                "step_s": {"p50": q(st, 50), "p99": q(st, 99), "n": len(st)}, "last_error": self.last_error}

    def reset_stats(self) -> None:
        self._lat_n = 0
        self._step_n = 0

    # -- input ---------------------------------------------------------------------------------
    def submit(self, batch: SampleBatch, received: float | None = None, replay: bool = False,
               force: bool = False) -> bool:
        """Queue samples (thread-safe). False when the queue is full: nothing was queued. `force` (samples
        already acknowledged, the bound checked before they were stored) and `replay` always queue."""
        n = len(batch)
        if n == 0:
            return True
        with self._cond:
            if self._queued + n > self.max_queue and not (replay or force):
                return False
            self._items.append(("batch", batch, received if received is not None else time.perf_counter(), replay))
            self._queued += n
            self.metrics.queue_depth.set(self._queued)
            self._cond.notify()
        return True

    def call(self, fn: Callable[[], Any]) -> concurrent.futures.Future:
        """Run fn in the worker thread after everything queued so far; returns its future."""
        fut: concurrent.futures.Future = concurrent.futures.Future()
        with self._cond:
            self._items.append(("call", fn, fut, False))
            self._cond.notify()
        return fut

    def record(self, on: bool) -> None:
        """Worker thread (a `call` job): from now on keep every sub-step's samples (on) or stop and drop them."""
        self._recorded = [] if on else None

    def take_recorded(self) -> list[SampleBatch]:
        """Worker thread: the sub-steps kept since `record(True)` or the last take, oldest first."""
        out, self._recorded = (self._recorded or []), ([] if self._recorded is not None else None)
        return out

    # -- worker --------------------------------------------------------------------------------
    def _take(self) -> list | None:
        """Next unit of work: a callable item, or a list of batch items to merge. None when stopping."""
        with self._cond:
            while not self._items:
                if not self._running:
                    return None
                self._cond.wait(0.1)
            first = self._items[0]
            if first[0] == "call":
                return [self._items.popleft()]
            taken, n, deadline = [], 0, time.perf_counter() + self.flush_s
            while True:
                # merge batches of the same kind only: a replayed sample emits no actions, a live one does
                while (self._items and self._items[0][0] == "batch" and n < self.max_batch
                       and self._items[0][3] == first[3]):
                    item = self._items.popleft()
                    taken.append(item)
                    n += len(item[1])
                if n >= self.max_batch or (self._items and (self._items[0][0] == "call"
                                                            or self._items[0][3] != first[3])):
                    break
                left = deadline - time.perf_counter()
                if left <= 0 or not self._running:
                    break
                self._cond.wait(left)
            self._queued -= n
            self.metrics.queue_depth.set(self._queued)
            return taken

    def _work(self) -> None:
        while True:
            items = self._take()
            if items is None:
                return
            if items[0][0] == "call":
                _, fn, fut, _ = items[0]
                if fut.set_running_or_notify_cancel():
                    try:
                        fut.set_result(fn())
                    except BaseException as e:  # delivered to the caller through the future
                        fut.set_exception(e)
                continue
            try:
                self._process(items)
            except Exception as e:  # a bug must not kill the thread; it is logged and counted
                self.last_error = f"{type(e).__name__}: {e}"
                log.exception("step failed")
                self.metrics.dropped.labels("step_error").inc(sum(len(i[1]) for i in items))

    def _log_once(self, what: str, e: BaseException) -> None:
        cause = f"{what}: {type(e).__name__}: {e}"
        self.last_error = cause
        if cause not in self._causes and len(self._causes) < 1000:
            self._causes.add(cause)
            log.error("%s (logged once per cause)", cause, exc_info=e)

    def _step_host(self, host: ModelHost, slots: np.ndarray, values: np.ndarray,
                   timestamp_ms: np.ndarray) -> StepResult | None:
        """One host's batched step; a failing batch is retried cell by cell so that one cell's problem
        costs only that cell's sample (counted `step_error`, logged once per cause)."""
        try:
            res = host.step(slots, values, timestamp_ms)
        except Exception as e:
            self._log_once(f"step of {host.name} failed for a batch of {len(slots)}; retrying cell by cell", e)
            parts, applied = [], np.zeros(len(slots), bool)
            for i in range(len(slots)):
                try:
                    one = host.step(slots[i:i + 1], values[i:i + 1], timestamp_ms[i:i + 1])
                except Exception as e1:
                    self._log_once(f"step of {host.name} failed for a cell", e1)
                    continue
                applied[i] = bool(one.applied is None or one.applied[0])
                if applied[i]:
                    parts.append(one)
            self.metrics.dropped.labels("step_error").inc(int((~applied).sum()))
            res = concat_results(parts, applied)
        else:
            if res.applied is not None and not res.applied.all():
                n_bad = int((~res.applied).sum())
                self.metrics.dropped.labels("non_finite").inc(n_bad)
                self._log_once(f"step of {host.name}", FloatingPointError(
                    f"{n_bad} cell(s) would get a non-finite forecast or state; their samples were not applied"))
        return res

    def _process(self, items: list) -> None:
        replay = items[0][3]
        batch = SampleBatch.concat([i[1] for i in items])
        received = np.concatenate([np.full(len(i[1]), i[2]) for i in items])
        n = len(batch)
        now_ms = int(self.clock() * 1000)
        slots, oks = [], []
        for host in self.hosts:
            s, ok = host.slots(batch.series, now_ms)
            slots.append(s)
            oks.append(ok)
            if not ok.all():
                self.metrics.dropped.labels("table_full").inc(int((~ok).sum()))
        # rank of each sample among its series' samples in this batch (0 = first)
        key_slots = slots[0] if self.hosts else np.arange(n)
        order = np.argsort(key_slots, kind="stable")
        sorted_slots = key_slots[order]
        starts = np.r_[True, sorted_slots[1:] != sorted_slots[:-1]]
        first_pos = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
        rank = np.empty(n, np.int64)
        rank[order] = np.arange(n) - first_pos
        for r in range(int(rank.max()) + 1 if n else 0):
            sel = np.flatnonzero(rank == r)
            sub = batch.take(sel)
            if self._recorded is not None:
                self._recorded.append(sub)
            results, sub_oks = [], []
            for host, s, ok in zip(self.hosts, slots, oks):
                ok_sel = ok[sel]
                rows = sel[ok_sel]
                if len(rows) == 0:
                    results.append(None)
                    sub_oks.append(ok_sel)
                    continue
                t0 = time.perf_counter()
                res = self._step_host(host, s[rows], batch.values[rows], batch.timestamp_ms[rows])
                dt = time.perf_counter() - t0
                self.metrics.step_latency.labels(host.name).observe(dt)
                self._step_s[self._step_n % len(self._step_s)] = dt
                self._step_n += 1
                if res is not None and len(res.slots) == 0:
                    res = None
                if res is None:
                    ok_sel = np.zeros_like(ok_sel)
                elif res.applied is not None and not res.applied.all():
                    ok_sel = ok_sel.copy()
                    ok_sel[np.flatnonzero(ok_sel)[~res.applied]] = False
                self.metrics.forecasts.labels(host.name).inc(0 if res is None else len(res.slots))
                results.append(res)
                sub_oks.append(ok_sel)
            self.metrics.step_batch.observe(len(sel))
            self.steps += 1
            self.samples += len(sel)
            step = StepBatch(sub.series, sub, results, sub_oks, received[sel], replay)
            if self.on_step is not None:
                try:
                    self.on_step(step)
                except Exception as e:  # the samples were stepped; routing / actions of this step are lost
                    self.metrics.callback_errors.inc()
                    self._log_once("step callback failed", e)
            if not replay:
                done = time.perf_counter()
                pick = sel[:: max(1, len(sel) // LATENCY_SAMPLES_PER_STEP)]
                lats = done - received[pick]
                for lat in lats.tolist():
                    self.metrics.ingest_to_forecast.observe(lat)
                idx = (self._lat_n + np.arange(len(lats))) % LATENCY_RING
                self._lat[idx] = lats
                self._lat_n += len(lats)
        for host in self.hosts:
            self.metrics.active_cells.labels(host.name).set(len(host.table))
