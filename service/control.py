"""Control around the step: the engine's callback, MS³M expert warm-ups and the descriptor's controls.

`StepControl.on_step` runs in the engine's worker thread after every sub-step: it applies the A1
policies to cells it has not seen, feeds the routers (their decisions become warm-ups), asks the action
policy for actions, and hands warm-ups and events to the event loop. `ExpertWarmups` reads each
switched-on expert's window from the buffer (event loop) and warms it in the worker thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from contract.objectives import OBJECTIVES
from contract.series import parse_series
from service.a1.store import PolicyStore
from service.actions.policy import Action, ActionPolicy
from service.buffer.base import BufferUnavailable, WindowBuffer
from service.engine.engine import StepBatch, StepEngine
from service.engine.host import ModelHost
from service.events import EventHub
from service.metrics import Metrics
from service.router.router import ExpertRouter

Warm = tuple[ModelHost, int, int]  # (host, slot, expert index)


class Rows(Sequence):
    """A read-only sequence of n values computed on access (the action policy reads a few rows of many)."""

    def __init__(self, n: int, value: Callable[[int], Any]):
        self._n, self._value = n, value

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self._value(j) for j in range(*i.indices(self._n))]
        if not -self._n <= i < self._n:
            raise IndexError(i)
        return self._value(i % self._n)


class ExpertWarmups:
    """Warm switched-on experts from the cells' buffered windows (README, "MS³M"), off the step path:
    the engine thread only marks the start (begin_warm) and installs the result (finish_warm, which also
    replays the few samples stepped meanwhile); the pass over the window runs in one warm-up thread of its
    own, so at most one core goes to warm-ups and a step never waits for one."""

    def __init__(self, hosts: list[ModelHost], buffer: WindowBuffer, engine: StepEngine, metrics: Metrics,
                 window_length: int):
        self.hosts, self.buffer, self.engine = hosts, buffer, engine
        self.metrics = metrics
        self.window_length = window_length
        self.tasks: set[asyncio.Task] = set()
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ms3m-warmup")

    def schedule(self, warm: list[Warm]) -> None:
        """Start warming (event loop); `cancel` stops what is still running."""
        task = asyncio.ensure_future(self.run(warm))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def cancel(self) -> None:
        for t in list(self.tasks):
            t.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def run(self, warm: list[Warm]) -> int:
        """Warm every (host, slot, expert); returns how many were warmed. A buffer outage skips the group
        (the expert stays off; the router asks again next period)."""
        groups: dict[tuple[int, int], list[int]] = {}
        for host, slot, e in warm:
            if host in self.hosts:  # a swapped-out host is not warmed any more
                groups.setdefault((self.hosts.index(host), e), []).append(slot)
        total = 0
        for (hi, e), slot_list in groups.items():
            total += await self._warm_group(self.hosts[hi], np.array(slot_list, np.int64), e)
        return total

    async def _warm_group(self, host: ModelHost, slots: np.ndarray, e: int) -> int:
        t0 = time.perf_counter()
        begun, ends, clocks = await asyncio.wrap_future(self.engine.call(lambda: host.begin_warm(slots, e)))
        slots, ends, clocks = slots[begun], ends[begun], clocks[begun]
        if not len(slots):
            return 0
        series = [host.table.cell_of(int(s)) for s in slots]
        try:
            windows = await self.buffer.windows(series, self.window_length)  # one round trip
        except BufferUnavailable:
            self.metrics.redis_errors.labels("window").inc()
            await asyncio.wrap_future(self.engine.call(lambda: host.cancel_warm(slots, e)))
            return 0
        keep = []
        for i, w in enumerate(windows):
            windows[i] = w.values[w.timestamp_ms <= ends[i]]  # up to the last sample stepped at begin_warm
            if len(windows[i]):
                keep.append(i)
        if len(keep) < len(slots):
            drop = np.setdiff1d(np.arange(len(slots)), keep)
            await asyncio.wrap_future(self.engine.call(lambda: host.cancel_warm(slots[drop], e)))
        if not keep:
            return 0
        slots, clocks = slots[keep], clocks[keep]
        series, windows = [series[i] for i in keep], [windows[i] for i in keep]
        try:
            pieces = await asyncio.get_running_loop().run_in_executor(
                self.executor, host.warm_pieces, e, windows, clocks)
        except BaseException:
            self.engine.call(lambda: host.cancel_warm(slots, e))
            raise
        n = await asyncio.wrap_future(self.engine.call(lambda: host.finish_warm(slots, series, e, pieces)))
        self.metrics.expert_warmups.inc(n)
        self.metrics.warmup_seconds.observe(time.perf_counter() - t0)
        return n


class StepControl:
    """The step engine's callback and the controls it obeys. `loop` is set by the xApp when it starts."""

    def __init__(self, hosts: list[ModelHost], routers: dict[str, ExpertRouter], policies: PolicyStore,
                 action_policy: ActionPolicy | None, events: EventHub, metrics: Metrics,
                 clock: Callable[[], float] = time.time):
        self.hosts, self.routers, self.policies = hosts, routers, policies
        self.action_policy = action_policy
        self.events = events
        self.metrics = metrics
        self.clock = clock
        self.warmups: ExpertWarmups | None = None
        self.request_swap: Callable[[str, str], None] | None = None  # (model name, bundle dir), event loop
        self.loop: asyncio.AbstractEventLoop | None = None
        self._policy_version = -1

    def on_step(self, step: StepBatch) -> None:
        """Worker thread: policies → routers → actions; warm-ups and events go to the event loop."""
        self.apply_policies()
        warm: list[Warm] = []
        for host, res in zip(self.hosts, step.results):
            router = self.routers.get(host.name)
            if router is None or res is None:
                continue
            due = router.observe(res)
            if len(due):
                self.metrics.router_decisions.inc(len(due))
                for slot, e in router.decide(due):
                    warm.append((host, slot, e))
                    self.metrics.expert_activations.labels(host.expert_names[e]).inc()
        if warm and self.loop is not None and self.warmups is not None:
            self.loop.call_soon_threadsafe(self.warmups.schedule, warm)
        primary, res = self.hosts[0], step.results[0]
        if step.replay or res is None:
            return
        ok = step.ok[0]
        series = list(step.series) if ok.all() else [k for k, o in zip(step.series, ok.tolist()) if o]
        acts: list[Action] = []
        if self.action_policy is not None:  # per-series arguments computed only for the rows a rule reads
            kinds = np.argmax(primary.objective[res.slots][:, : len(OBJECTIVES)], 1)
            enforce = primary.enforce[res.slots]
            n = len(series)
            objective = Rows(n, lambda i: OBJECTIVES[kinds[i]])
            slices = Rows(n, lambda i: parse_series(series[i])[1])
            modes = Rows(n, lambda i: "enforce" if enforce[i] else None)
            acts = self.action_policy.decide(int(self.clock() * 1000), series, res.slots, res.point, res.lower,
                                             res.upper, res.actual, res.outside, slices, objective, modes)
            for a in acts:
                self.metrics.actions.labels(a.kind, a.mode).inc()
        if (self.events.subscribers or acts) and self.loop is not None:
            self.loop.call_soon_threadsafe(self.events.publish, series, res, acts)

    def apply_policies(self) -> None:
        """Objective, budget and action mode of each cell from the A1 policies: every cell after a policy
        change, else only the cells new since the last step (worker thread)."""
        version = self.policies.version
        for host in self.hosts:
            changed = version != self._policy_version
            cells = host.table.cells() if changed else [host.table.cell_of(s) for s in host.take_new_slots()]
            router = self.routers.get(host.name)
            for key in cells:
                slot = host.table.slot(key)
                if slot is None:
                    continue
                obj = self.policies.objective_for(key)
                host.objective[slot] = obj.vector()
                host.enforce[slot] = obj.mode == "enforce"
                if router is not None and obj.decision_period_ms:
                    router.set_period(np.array([slot]), obj.decision_period_ms // max(1, host.period_ms))
            if changed:
                host.take_new_slots()
        self._policy_version = version

    def host_replaced(self, index: int, old: ModelHost, new: ModelHost, decision_period: int) -> None:
        """Engine thread, right after a bundle swap: the router, the events and (primary host) the action
        policy follow the new host; its cells take their A1 objectives at the next step."""
        self.routers.pop(old.name, None)
        if new.is_ms3m:
            self.routers[new.name] = ExpertRouter(new, decision_period)
        if index == 0:
            self.events.host = new
            if self.action_policy is not None and list(new.targets) != list(old.targets):
                self.action_policy = ActionPolicy(new.targets, self.action_policy.config)
        self._policy_version = -1  # apply every policy to every cell again (the new host's cells are new)

    def apply_controls(self, controls: dict[str, Any]) -> None:
        """Descriptor `controls`: actionMode (recommend|enforce), intervalCoverage, decisionPeriodSamples, bundles
        (model name → bundle directory: a served model whose directory differs is hot-swapped through
        `request_swap`); values out of range are ignored."""
        if self.action_policy is not None and controls.get("actionMode") in ("recommend", "enforce"):
            self.action_policy.config.mode = controls["actionMode"]
        cov = controls.get("intervalCoverage")
        if isinstance(cov, int | float) and 0.5 <= cov < 1:
            for h in self.hosts:
                h.intervals.set_coverage(float(cov))
        period = controls.get("decisionPeriodSamples")
        if isinstance(period, int) and period > 0:
            for r in self.routers.values():
                r.decision_period = period
        bundles = controls.get("bundles")
        if isinstance(bundles, dict) and self.request_swap is not None:
            for name, path in bundles.items():
                host = next((h for h in self.hosts if h.name == name), None)
                if isinstance(path, str) and host is not None and Path(path).resolve() != host.bundle.root.resolve():
                    self.request_swap(name, path)

    def publish_gauges(self) -> None:
        """The gauges read off the hosts (event loop, once a second): ms3m_forecast_mae and
        ms3m_forecast_interval_coverage of every host, ms3m_expert_active / ms3m_expert_share of the routers'."""
        for host in self.hosts:
            mae, coverage = host.intervals.recent_mae(), host.intervals.recent_coverage()
            for k, kpi in enumerate(host.targets):
                if np.isfinite(coverage[k]):
                    self.metrics.interval_coverage.labels(host.name, kpi).set(float(coverage[k]))
                for h in range(host.horizon):
                    if np.isfinite(mae[h, k]):
                        self.metrics.forecast_mae.labels(host.name, kpi, str(h + 1)).set(float(mae[h, k]))
        for router in self.routers.values():
            host = router.host
            for name in host.expert_names:  # series at 0 before the router's first switch
                self.metrics.expert_activations.labels(name)
            cells = host.table.cells()
            if not cells:
                continue
            slots = np.array([host.table.slot(c) for c in cells])
            active = host.active[slots]
            for i, name in enumerate(host.expert_names):
                self.metrics.expert_active.labels(name).set(int(active[:, i].sum()))
                self.metrics.expert_share.labels(name).set(float(np.nan_to_num(host.gate[slots, i]).mean()))


class DescriptorWatcher:
    """The xApp descriptor (CONFIG_FILE), reloaded when its mtime changes; its `controls` go to `apply`."""

    def __init__(self, path: str | Path | None, apply: Callable[[dict[str, Any]], None], interval_s: float = 2.0):
        self.path = Path(path) if path is not None else None
        self.apply = apply
        self.interval_s = interval_s
        self.descriptor: dict[str, Any] | None = None
        self._mtime: float | None = None

    def poll(self) -> bool:
        """Reload if changed; True when a new descriptor was applied. Unreadable or invalid JSON keeps the last."""
        if self.path is None:
            return False
        with contextlib.suppress(OSError, ValueError):
            mtime = self.path.stat().st_mtime
            if mtime != self._mtime:
                self.descriptor = json.loads(self.path.read_text())
                self._mtime = mtime
                controls = self.descriptor.get("controls") if isinstance(self.descriptor, dict) else None
                self.apply(controls if isinstance(controls, dict) else {})
                return True
        return False

    async def run(self) -> None:
        while self.path is not None:
            self.poll()
            await asyncio.sleep(self.interval_s)
