"""The xApp process: settings → bundles, buffer, engine, router, actions, APIs (DESIGN.md §2).

Ingest path (asyncio): validate → append to the window buffer (one round trip; journaled in memory while
the buffer is unreachable) → acknowledge → queue for the step engine. The engine's worker thread steps
every loaded model, feeds the router and the action policy, and hands forecasts and actions to the
event loop for subscribers. Periodic tasks snapshot cell states, flush the journal and reload the
xApp descriptor. On start, snapshots are restored and newer buffered samples replayed, so state after a
restart equals the uninterrupted run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np
import uvicorn
from grpc_health.v1 import health_pb2

from contract.objectives import objective_names
from contract.series import parse_series
from ms3m.v1 import forecast_pb2, kpm_pb2
from service.a1.store import PolicyStore
from service.actions.policy import Action, ActionConfig, ActionPolicy
from service.api.convert import ForecastRow, forecast_proto
from service.api.grpc_server import create_grpc_server
from service.api.rest import create_app
from service.buffer.base import BufferUnavailable, SampleBatch, WindowBuffer
from service.buffer.memory import MemoryWindowBuffer
from service.config import Settings
from service.engine.engine import StepBatch, StepEngine
from service.engine.host import ModelHost
from service.events import EventHub
from service.ingest.journal import DiskJournal
from service.ingest.pipeline import IngestPipeline
from service.ingest.validate import IngestLimits, IngestValidator, plausible_range
from service.metrics import Metrics
from service.router.router import ExpertRouter
from service.runtime.bundle import load_bundle

log = logging.getLogger("ms3m.xapp")
R = kpm_pb2.RejectReason

def service_kpis(bundles) -> list[str]:
    """The column order of samples: every input and target KPI of the bundles, first bundle first."""
    out: list[str] = []
    for b in bundles:
        for k in b.manifest.inputs + b.manifest.targets:
            if k not in out:
                out.append(k)
    return out


def make_buffer(settings: Settings, kpis: list[str]) -> WindowBuffer:
    if settings.buffer_kind == "redis":
        from service.buffer.redis_buffer import RedisWindowBuffer

        return RedisWindowBuffer.from_settings(
            host=settings.redis_host or "127.0.0.1", port=settings.redis_port, password=settings.redis_password,
            db=settings.redis_db, namespace=settings.namespace, kpis=kpis, window_length=settings.window_length)
    from service.buffer.memory import MemoryWindowBuffer

    return MemoryWindowBuffer(kpis, settings.window_length)


def ingest_limits(settings: Settings, kpis: list[str], bundles) -> IngestLimits:
    """Ingest bounds from the settings, plausible KPI ranges from the bundles' training statistics."""
    low = high = None
    if settings.value_range_sigmas is not None:
        stats = []
        for b in bundles:
            n = b.manifest.normalization
            if not any(n.input_mean) and all(sd == 1 for sd in n.input_std):
                continue  # identity normalization (an untrained bundle): no training statistics to bound by
            stats += [(b.manifest.inputs, n.input_mean, n.input_std), (b.manifest.targets, n.target_mean, n.target_std)]
        low, high = plausible_range(kpis, stats, settings.value_range_sigmas)
    return IngestLimits(settings.max_future_ms or None, settings.max_sample_age_ms or None, settings.max_sequence_gap,
                        low, high)


def memory_per_cell(settings: Settings, kpis: list[str], bundles) -> int:
    """Bytes one series costs: its window in the memory buffer (if embedded) and every bundle's state and
    per-cell bookkeeping (forecasts, intervals), rounded up."""
    from service.buffer.memory import PAGE_ROWS

    w = settings.window_length
    rows = (-(-(w - 1) // min(PAGE_ROWS, w)) + 1) * min(PAGE_ROWS, w)
    total = rows * (16 + 4 * len(kpis)) if settings.buffer_kind == "memory" else 0
    for b in bundles:
        m = b.manifest
        state = sum(4 * int(np.prod(f.shape)) for f in m.state)
        hk = m.horizon * len(m.targets)
        total += state + 4 * (len(m.inputs) + 1) + 3 * 4 * hk + 4 * hk * 2 + 256  # + intervals, arrays
    return int(total)


def auto_max_cells(settings: Settings, kpis: list[str], bundles) -> int:
    """How many series half of the memory available now holds (cgroup limit respected), at most 1M."""
    import psutil

    avail = psutil.virtual_memory().available
    with contextlib.suppress(OSError, ValueError):
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            avail = min(avail, int(limit) - psutil.Process().memory_info().rss)
    return int(max(1000, min(1_000_000, 0.5 * avail // max(1, memory_per_cell(settings, kpis, bundles)))))


class XApp:
    """One xApp instance. `await start()` binds both ports (0 = any free port), `await stop()` drains."""

    def __init__(self, settings: Settings, buffer: WindowBuffer | None = None, clock=time.time):
        self.settings = s = settings
        self.clock = clock
        self.metrics = Metrics()
        self.registry = self.metrics.registry
        self.bundles = [load_bundle(p) for p in s.bundles]
        self.kpis = service_kpis(self.bundles)
        self.max_cells = s.max_cells or auto_max_cells(s, self.kpis, self.bundles)
        self.hosts = [ModelHost(b, self.kpis, s.runtime, s.inference_threads, max_cells=self.max_cells,
                                coverage=s.interval_coverage) for b in self.bundles]
        self.routers = {h.name: ExpertRouter(h, s.decision_period_samples) for h in self.hosts if h.is_ms3m}
        self.policies = PolicyStore()
        self._policy_version = -1
        primary = self.hosts[0] if self.hosts else None
        self.action_policy = ActionPolicy(primary.targets, ActionConfig(mode=s.action_mode)) if primary else None
        self.events = EventHub(primary, self.metrics, s.action_log_size)
        self.actions = self.events.actions
        self.buffer = buffer if buffer is not None else (make_buffer(s, self.kpis) if self.kpis else None)
        self.restored = False
        self.engine = StepEngine(self.hosts, self.metrics, self._on_step, s.max_queue_samples, s.max_batch,
                                 s.flush_ms, clock)
        self.validator = IngestValidator(self.kpis, s.max_reports_per_message, s.ignore_unknown_kpis,
                                         ingest_limits(s, self.kpis, self.bundles), clock)
        journal = None
        if self.buffer is not None and not isinstance(self.buffer, MemoryWindowBuffer) and s.journal:
            try:
                journal = DiskJournal(s.journal_path, self.kpis, s.journal_max_samples)
            except OSError as e:  # JournalError (acknowledged samples of other KPIs) stops the start instead
                log.error("journal %s not usable (%s): while the buffer is unreachable, reports are refused as "
                          "UNAVAILABLE; set MS3M_JOURNAL_DIR to a writable directory", s.journal_path, e)
            if journal is not None and journal.samples:
                log.warning("journal %s holds %d acknowledged samples from an earlier run; they go to the "
                            "buffer before state is restored", journal.path, journal.samples)
        self.pipeline = IngestPipeline(self.validator, self.buffer, self.engine, self.metrics,
                                       max_cells=self.max_cells, max_queue_samples=s.max_queue_samples,
                                       journal=journal)
        self.subscribers = self.events.subscribers
        self._ingest_lock = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task] = []
        self._descriptor_mtime: float | None = None
        self.descriptor: dict[str, Any] | None = None
        self.rest_app = create_app(self, self.registry)
        from service.api.grpc_services import register_services

        self.grpc_server, self.health, self.grpc_services = create_grpc_server(
            s.grpc_max_message_bytes, register_services(self))
        self.http_port: int | None = None
        self.grpc_port: int | None = None
        self._http_server: uvicorn.Server | None = None

    # -- state answered over REST -------------------------------------------------------------
    def readiness(self) -> tuple[bool, dict]:
        reasons = []
        if not self.hosts:
            reasons.append("no model bundle loaded")
        if not self.restored:
            reasons.append("restoring state")
        if not self.buffer_ok:
            reasons.append(f"window buffer unreachable ({self.pipeline.journaled()} samples journaled)"
                           if self.journal is not None else "window buffer unreachable (reports refused)")
        if self.hosts and not self.engine.alive:
            reasons.append("step engine not running")
        ok = not reasons
        self.metrics.ready.set(1 if ok else 0)
        return ok, {"reasons": reasons}

    def public_config(self) -> dict:
        return {"settings": self.settings.public_dict(), "kpis": self.kpis, "max_cells": self.max_cells,
                "journal": str(self.journal.path) if self.journal is not None else None,
                "models": [self.model_info(h) for h in self.hosts], "descriptor": self.descriptor}

    def model_info(self, host: ModelHost) -> dict:
        m = host.bundle.manifest
        info = {"name": m.name, "model": m.model, "inputs": m.inputs, "targets": m.targets, "horizon": m.horizon,
                "period_ms": m.period_ms, "cells": len(host.table), "state_bytes_per_cell": host.table.bytes_per_cell,
                "metrics": m.metrics.get("test", {}).get("mse") if isinstance(m.metrics.get("test"), dict) else None}
        if host.is_ms3m:
            info["experts"] = [{"name": e.name, "scale": e.scale} for e in m.experts]
        return info

    def cells_under_policy(self, policy_id: str) -> int:
        """How many known series take their objective from this policy (A1 status)."""
        if not self.hosts:
            return 0
        return sum(self.policies.objective_for(k).policy_id == policy_id for k in self.hosts[0].table.cells())

    # -- ingest (IngestPipeline) ----------------------------------------------------------------
    async def ingest(self, msg: kpm_pb2.KpiIndication, received: float | None = None) -> kpm_pb2.IngestAck:
        """Validate, make durable, acknowledge, queue for the engine. Never raises for bad input."""
        return await self.pipeline.ingest(msg, received)

    @property
    def journal(self):
        return self.pipeline.journal

    @property
    def buffer_ok(self) -> bool:
        return self.pipeline.buffer_ok

    # -- engine callback (worker thread) -----------------------------------------------------------
    def _on_step(self, step: StepBatch) -> None:
        self._apply_policies_to_new_cells()
        warm: list[tuple[ModelHost, int, int]] = []
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
        if warm and self._loop is not None:
            self._loop.call_soon_threadsafe(self._schedule_warmups, warm)
        if step.replay:
            return
        primary, res = self.hosts[0], step.results[0]
        if res is None:
            return
        ok = step.ok[0]
        series = list(step.series) if ok.all() else [k for k, o in zip(step.series, ok.tolist()) if o]
        acts: list[Action] = []
        if self.action_policy is not None:
            objective = objective_names(primary.objective[res.slots])
            slices = [parse_series(k)[1] for k in series]
            acts = self.action_policy.decide(int(self.clock() * 1000), series, res.slots, res.point, res.lower,
                                             res.upper, res.actual, res.outside, slices, objective,
                                             [("enforce" if e else None) for e in primary.enforce[res.slots].tolist()])
            for a in acts:
                self.metrics.actions.labels(a.kind, a.mode).inc()
        if (self.subscribers or acts) and self._loop is not None:
            self._loop.call_soon_threadsafe(self._publish, series, res, acts)

    def _apply_policies_to_new_cells(self) -> None:
        """Objective, budget and action mode of each cell from the A1 policies (worker thread)."""
        version = self.policies.version
        for host in self.hosts:
            if version != self._policy_version:
                cells = host.table.cells()
            else:
                cells = [host.table.cell_of(s) for s in host.take_new_slots()]
            for key in cells:
                slot = host.table.slot(key)
                if slot is None:
                    continue
                obj = self.policies.objective_for(key)
                host.objective[slot] = obj.vector()
                host.enforce[slot] = obj.mode == "enforce"
                router = self.routers.get(host.name)
                if router is not None and obj.decision_period_ms:
                    router.set_period(np.array([slot]), obj.decision_period_ms // max(1, host.period_ms))
            if version != self._policy_version:
                host.take_new_slots()
        self._policy_version = version

    # -- events to subscribers and the action log (event loop) -----------------------------------
    def _publish(self, series: list[str], res, acts: list[Action]) -> None:
        self.events.publish(series, res, acts)

    # -- forecasts on request ---------------------------------------------------------------------------
    def latest_forecast(self, series: str, host: ModelHost | None = None) -> forecast_pb2.Forecast | None:
        host = host or self.hosts[0]
        hit = host.latest(series)
        if hit is None:
            return None
        ts, point, lower, upper, gate = hit
        row = ForecastRow(np.array([ts]), point[None], lower[None], upper[None], None if gate is None else gate[None],
                          np.array([host.table.slot(series)]))
        return forecast_proto(host, series, row, 0)

    async def predict_samples(self, cell_id: str, period_ms: int, names: list[str],
                              reports: list) -> tuple[forecast_pb2.Forecast | None, str]:
        """Cold-start forecast from a cell's recent samples (not stored, no state kept)."""
        if len(reports) > self.settings.window_length:
            return None, f"at most {self.settings.window_length} samples per cell"
        msg = kpm_pb2.KpiIndication(e2_node_id="predict", granularity_period_ms=period_ms, meas_names=names)
        for i, r in enumerate(reports):
            rr = msg.reports.add()
            rr.CopyFrom(r)
            rr.cell_id, rr.sequence = cell_id, i + 1
            rr.ClearField("ue_id")
            rr.ClearField("slice")
        batch, rej = IngestValidator(self.kpis, self.settings.window_length, self.settings.ignore_unknown_kpis
                                     ).validate(msg)
        if rej.total:
            first = rej.details[0] if rej.details else None
            return None, f"{rej.total} sample(s) rejected" + (f": {first.detail}" if first else "")
        if not len(batch):
            return None, "no samples"
        host = self.hosts[0]
        point = await asyncio.to_thread(host.forecast_from_samples, batch.values)
        f = forecast_pb2.Forecast(cell_id=cell_id, timestamp_ms=int(batch.timestamp_ms[-1]), period_ms=host.period_ms,
                                  horizon_steps=host.horizon, target_names=host.targets,
                                  point=point.ravel().tolist(), model=host.name)
        return f, ""

    # -- MS³M warm-ups (event loop → buffer → worker) -------------------------------------------------
    def _schedule_warmups(self, warm: list[tuple[ModelHost, int, int]]) -> None:
        task = asyncio.ensure_future(self._warm(warm))
        self._tasks.append(task)
        task.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)

    async def _warm(self, warm: list[tuple[ModelHost, int, int]]) -> None:
        groups: dict[tuple[int, int], list[int]] = {}
        for host, slot, e in warm:
            groups.setdefault((self.hosts.index(host), e), []).append(slot)
        for (hi, e), slots in groups.items():
            host = self.hosts[hi]
            series = [host.table.cell_of(s) for s in slots]
            try:
                windows = [await self.buffer.window(k, self.settings.window_length) for k in series]
            except BufferUnavailable:
                self.metrics.redis_errors.labels("window").inc()
                continue  # the expert stays off; the router will ask again next period

            def job(host=host, slots=slots, series=series, windows=windows, e=e):
                keep = [i for i, k in enumerate(series) if host.table.cell_of(slots[i]) == k and len(windows[i])]
                if not keep:
                    return 0
                vals = [windows[i].values[windows[i].timestamp_ms <= host.last_ts[slots[i]]] for i in keep]
                keep = [i for i, v in zip(keep, vals) if len(v)]
                vals = [v for v in vals if len(v)]
                if keep:
                    host.warm(np.array([slots[i] for i in keep]), e, vals)
                    self.metrics.expert_warmups.inc(len(keep))
                return len(keep)

            await asyncio.wrap_future(self.engine.call(job))

    # -- persistence ----------------------------------------------------------------------------------
    async def restore(self) -> dict[str, int]:
        """Snapshots → hosts; buffered samples newer than each snapshot (or all, without one) → replayed.
        Raises BufferUnavailable (then nothing half-done is left queued; calling again is safe)."""
        stats = {"snapshots": 0, "replayed": 0, "series": 0}
        try:
            known = await self.buffer.series()
            self.validator.restore(await self.buffer.last(known))
            since: dict[str, int] = {k: -1 for k in known}
            for host in self.hosts:
                records = await self.buffer.load_snapshots(host.name)
                restored = self.engine.call(lambda h=host, r=records: h.restore(r))
                stats["snapshots"] += await asyncio.wrap_future(restored)
                for k, (ts, _) in records.items():
                    # replay from the oldest point any model needs (models with newer snapshots skip)
                    since[k] = ts if since.get(k, -1) == -1 else min(since[k], ts)
            stats["series"] = len(known)
            for key in known:
                samples = await self.buffer.since(key, since.get(key, -1))
                if not len(samples):
                    continue
                batch = SampleBatch([key] * len(samples), samples.timestamp_ms, samples.sequence, samples.values)
                self.engine.submit(self._skip_applied(batch), replay=True)
                stats["replayed"] += len(samples)
        finally:
            await asyncio.wrap_future(self.engine.call(lambda: None))  # replay done (or drained)
        return stats

    async def _recover(self) -> None:
        """Journal of an earlier run → buffer, then restore; until both succeed, ingest answers UNAVAILABLE
        (retried every buffer_retry_s)."""
        self.pipeline.ready = False
        self.pipeline.not_ready_reason = "restoring state; retry later"
        while True:
            try:
                if not await self.pipeline.flush_journal():
                    raise BufferUnavailable("journal not flushed")
                stats = await self.restore()
                break
            except BufferUnavailable as e:
                self.pipeline.buffer_ok = False
                log.warning("restore waits for the window buffer: %s", e)
                await asyncio.sleep(self.settings.buffer_retry_s)
        self.pipeline.buffer_ok = True
        log.info("restored %d snapshots, replayed %d samples of %d series", stats["snapshots"],
                 stats["replayed"], stats["series"])
        self.restored = True
        self.pipeline.ready = True
        self._tasks += [asyncio.create_task(self.pipeline.flush_loop(self.settings.buffer_retry_s)),
                        asyncio.create_task(self._snapshot_loop())]

    def _skip_applied(self, batch: SampleBatch) -> SampleBatch:
        """Drop samples every host has already applied (snapshot newer than the sample)."""
        keep = []
        for i, (key, ts) in enumerate(zip(batch.series, batch.timestamp_ms.tolist())):
            if any((s := h.table.slot(key)) is None or h.last_ts[s] < ts for h in self.hosts):
                keep.append(i)
        return batch.take(keep)

    async def snapshot(self) -> int:
        """Write the states of cells changed since the last snapshot."""
        total = 0
        for host in self.hosts:
            records = await asyncio.wrap_future(self.engine.call(host.snapshot_dirty))
            if not records:
                continue
            try:
                await self.buffer.save_snapshots(host.name, records)
                total += len(records)
            except BufferUnavailable:
                self.metrics.redis_errors.labels("snapshot").inc()
                await asyncio.wrap_future(self.engine.call(lambda h=host, r=records: h.mark_dirty(list(r))))
        self.metrics.snapshots.inc(total)
        return total

    async def _snapshot_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.snapshot_interval_s)
            with contextlib.suppress(Exception):
                await self.snapshot()

    async def _descriptor_loop(self) -> None:
        """Reload the xApp descriptor (CONFIG_FILE) when it changes."""
        path = self.settings.config_file
        while path is not None:
            with contextlib.suppress(OSError, ValueError):
                mtime = Path(path).stat().st_mtime
                if mtime != self._descriptor_mtime:
                    self.descriptor = json.loads(Path(path).read_text())
                    self._descriptor_mtime = mtime
                    self.apply_controls(self.descriptor.get("controls", {}))
            await asyncio.sleep(2.0)

    def apply_controls(self, controls: dict[str, Any]) -> None:
        """Descriptor `controls`: actionMode (recommend|enforce), intervalCoverage, decisionPeriodSamples."""
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

    # -- lifecycle ------------------------------------------------------------------------------------
    async def start(self) -> None:
        s = self.settings
        self._loop = asyncio.get_running_loop()
        self.engine.start()
        self.grpc_port = self.grpc_server.add_insecure_port(f"{s.grpc_host}:{s.grpc_port}")
        await self.grpc_server.start()
        sock = socket.socket(socket.AF_INET6 if ":" in s.http_host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((s.http_host, s.http_port))
        self.http_port = sock.getsockname()[1]
        config = uvicorn.Config(self.rest_app, log_level="warning", lifespan="off", access_log=False)
        self._http_server = uvicorn.Server(config)
        self._tasks.append(asyncio.create_task(self._http_server.serve(sockets=[sock])))
        while not self._http_server.started:
            if self._tasks[0].done():
                self._tasks[0].result()
            await asyncio.sleep(0.01)
        if self.buffer is not None:
            recover = asyncio.create_task(self._recover())
            self._tasks.append(recover)
            await asyncio.wait([recover], timeout=self.settings.restore_wait_s)  # not ready until it ends
        else:
            self.restored = True
        self._tasks.append(asyncio.create_task(self._descriptor_loop()))
        self._tasks.append(asyncio.create_task(self._health_loop()))
        await self._set_health()
        log.info("xApp listening: REST :%d, gRPC :%d", self.http_port, self.grpc_port)

    async def _set_health(self) -> None:
        ok, _ = self.readiness()
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING if ok
                              else health_pb2.HealthCheckResponse.NOT_SERVING)

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            await self._set_health()
            for router in self.routers.values():
                host = router.host
                cells = host.table.cells()
                if cells:
                    slots = np.array([host.table.slot(c) for c in cells])
                    active = host.active[slots]
                    for i, name in enumerate(host.expert_names):
                        self.metrics.expert_active.labels(name).set(int(active[:, i].sum()))
                        self.metrics.expert_share.labels(name).set(float(np.nan_to_num(host.gate[slots, i]).mean()))

    async def stop(self, grace_s: float = 2.0) -> None:
        await self.health.enter_graceful_shutdown()
        if self._http_server is not None:
            self._http_server.should_exit = True
        await self.grpc_server.stop(grace_s)
        if self.buffer is not None and self.restored:
            with contextlib.suppress(Exception):
                await self.snapshot()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self.engine.stop()
        if self.journal is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.pipeline.flush_journal(), grace_s)  # else the next start does it
            self.journal.close()
        if self.buffer is not None:
            with contextlib.suppress(Exception):
                await self.buffer.close()


async def serve_until_signalled(settings: Settings) -> None:
    xapp = XApp(settings)  # inside the running loop: the grpc.aio server binds to it
    await xapp.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"ms3m xApp: REST http://localhost:{xapp.http_port}  gRPC localhost:{xapp.grpc_port}  "
          f"(Ctrl-C to stop)", flush=True)
    await stop.wait()
    await xapp.stop()


def run_xapp(settings: Settings) -> int:
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve_until_signalled(settings))
    return 0
