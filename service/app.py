"""The xApp process: wires settings → bundles, buffer, engine, router, actions, APIs, and runs their
lifecycle (README, "Architecture"; docs/architecture.md).

Ingest (asyncio, `ingest/pipeline.py`): validate → append to the window buffer (journaled to disk while
it is unreachable) → acknowledge → queue for the step engine. The engine's worker thread steps every
loaded model and calls `StepControl.on_step` (`control.py`): policies, router, actions, then events to
subscribers (`events.py`) on the event loop. `persistence.py` snapshots cell states and, on start,
restores them and replays newer buffered samples, so state after a restart equals the uninterrupted run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time

import uvicorn
from grpc_health.v1 import health_pb2

from ms3m.v1 import forecast_pb2, kpm_pb2
from service.a1.store import PolicyStore
from service.actions.config import ActionConfig
from service.actions.policy import ActionPolicy
from service.api.auth import GrpcTokenInterceptor, grpc_server_credentials, load_token_auth
from service.api.grpc_errors import DecodeErrorInterceptor
from service.api.grpc_server import create_grpc_server
from service.api.grpc_services import register_services
from service.api.http_server import start_http_server
from service.api.rest import create_app
from service.buffer.base import DURABLE_MODES, WindowBuffer
from service.config import Settings
from service.control import DescriptorWatcher, ExpertWarmups, StepControl
from service.e2sm.config import E2smSettings
from service.e2sm.ingest import E2smIngest
from service.e2sm.rest import add_e2sm_routes
from service.e2sm.sink import ControlSink, RcEventHub
from service.e2sm.subscription import SubscriptionTable
from service.engine.engine import StepEngine
from service.engine.host import ModelHost
from service.forecasts import PredictGate, cold_start_forecast, latest_forecast
from service.ingest.journal import DiskJournal
from service.ingest.pipeline import IngestPipeline
from service.ingest.validate import IngestValidator
from service.metrics import Metrics
from service.persistence import StatePersistence
from service.router.router import ExpertRouter
from service.runtime.bundle import load_bundle
from service.sizing import auto_max_cells, ingest_limits, make_buffer, open_journal, service_kpis
from service.swap import BundleSwapper

log = logging.getLogger("ms3m.xapp")


class XApp:
    """One xApp instance. `await start()` binds both ports (0 = any free port), `await stop()` drains."""

    def __init__(self, settings: Settings, buffer: WindowBuffer | None = None, clock=time.time,
                 e2sm: E2smSettings | None = None):
        self.settings = s = settings
        self.e2sm_settings = e2sm if e2sm is not None else E2smSettings()
        self.clock = clock
        self.metrics = Metrics()
        self.registry = self.metrics.registry
        self.bundles = [load_bundle(p) for p in s.bundles]
        self.kpis = service_kpis(self.bundles)
        self.max_cells = s.max_cells or auto_max_cells(s, self.kpis, self.bundles)
        self.hosts = [self._make_host(b) for b in self.bundles]
        self.routers = {h.name: ExpertRouter(h, s.decision_period_samples) for h in self.hosts if h.is_ms3m}
        self.policies = PolicyStore()
        primary = self.hosts[0] if self.hosts else None
        self.action_policy = ActionPolicy(primary.targets, ActionConfig(mode=s.action_mode)) if primary else None
        self.control_sink = ControlSink(self.e2sm_settings, self.registry)  # E2SM-RC of slice quota actions
        self.events = RcEventHub(primary, self.metrics, s.action_log_size, self.control_sink)
        self.actions, self.subscribers = self.events.actions, self.events.subscribers
        self.control = StepControl(self.hosts, self.routers, self.policies, self.action_policy, self.events,
                                   self.metrics, clock)
        self.buffer = buffer if buffer is not None else (make_buffer(s, self.kpis) if self.kpis else None)
        self.durability: str | None = None  # the buffer's WindowBuffer.durability(), checked every 30 s
        self.predict_gate = PredictGate(s.predict_max_concurrent)
        self.engine = StepEngine(self.hosts, self.metrics, self.control.on_step, s.max_queue_samples, s.max_batch,
                                 s.flush_ms, clock)
        self.validator = IngestValidator(self.kpis, s.max_reports_per_message, s.ignore_unknown_kpis,
                                         ingest_limits(s, self.kpis, self.bundles), clock)
        self.pipeline = IngestPipeline(self.validator, self.buffer, self.engine, self.metrics,
                                       max_cells=self.max_cells, max_queue_samples=s.max_queue_samples,
                                       journal=open_journal(s, self.buffer, self.kpis))
        self.e2sm = E2smIngest(self.pipeline, self.metrics, SubscriptionTable(self.e2sm_settings.kpm_version))
        self.control_sink.node_of = self.e2sm.node_of_cell.get
        self.persistence = None
        if self.buffer is not None:
            self.control.warmups = ExpertWarmups(self.hosts, self.buffer, self.engine, self.metrics, s.window_length)
            self.persistence = StatePersistence(self.hosts, self.buffer, self.engine, self.pipeline, self.metrics,
                                                s.snapshot_interval_s, s.buffer_retry_s)
        self.descriptor_watcher = DescriptorWatcher(s.config_file, self.control.apply_controls)
        self.swapper = BundleSwapper(self.hosts, self.engine, self.buffer, self._make_host, s.window_length,
                                     lambda i, old, new: self.control.host_replaced(i, old, new,
                                                                                    s.decision_period_samples))
        self.control.request_swap = lambda name, path: self._tasks.append(  # descriptor controls.bundles
            asyncio.ensure_future(self.swapper.swap_logged(name, path)))
        self._tasks: list[asyncio.Task] = []
        self.auth = load_token_auth(s.auth_tokens.get_secret_value() if s.auth_tokens else None, s.auth_tokens_file)
        self.rest_app = create_app(self, self.registry, self.auth)
        add_e2sm_routes(self.rest_app, self.e2sm, self.control_sink)
        undecodable = DecodeErrorInterceptor(lambda method: self.metrics.ingest_rejected.labels("malformed").inc())
        self.grpc_server, self.health, self.grpc_services = create_grpc_server(
            s.grpc_max_message_bytes, register_services(self, self.e2sm, self.control_sink),
            [*([GrpcTokenInterceptor(self.auth, s.auth_reads)] if self.auth else ()), undecodable])
        self.http_port: int | None = None
        self.grpc_port: int | None = None
        self._http_server: uvicorn.Server | None = None

    # -- state answered over the APIs (service/api/port.py) ------------------------------------------
    @property
    def restored(self) -> bool:
        return self.persistence is None or self.persistence.restored

    @property
    def journal(self) -> DiskJournal | None:
        return self.pipeline.journal

    @property
    def buffer_ok(self) -> bool:
        return self.pipeline.buffer_ok

    @property
    def descriptor(self) -> dict | None:
        return self.descriptor_watcher.descriptor

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
        self.metrics.ready.set(0 if reasons else 1)
        detail: dict = {"reasons": reasons}
        if self.durability not in (*DURABLE_MODES, "memory", None):  # ready, but the ack promise does not hold
            detail["warnings"] = [f"the Redis window buffer keeps no append-only file (durability "
                                  f"{self.durability!r}): acknowledged samples are lost if Redis restarts; "
                                  "run it with --appendonly yes --appendfsync always (README, \"Security\")"]
        return not reasons, detail

    def public_config(self) -> dict:
        return {"settings": self.settings.public_dict(), "kpis": self.kpis, "max_cells": self.max_cells,
                "journal": str(self.journal.path) if self.journal is not None else None,
                "models": [self.model_info(h) for h in self.hosts], "descriptor": self.descriptor}

    def model_info(self, host: ModelHost) -> dict:
        m = host.bundle.manifest
        test = m.metrics.get("test")
        info = {"name": m.name, "model": m.model, "inputs": m.inputs, "targets": m.targets, "horizon": m.horizon,
                "period_ms": m.period_ms, "cells": len(host.table), "state_bytes_per_cell": host.table.bytes_per_cell,
                "metrics": test.get("mse") if isinstance(test, dict) else None}
        if host.is_ms3m:
            info["experts"] = [{"name": e.name, "scale": e.scale} for e in m.experts]
        return info

    def cells_under_policy(self, policy_id: str) -> int:
        """How many known series take their objective from this policy (A1 status)."""
        if not self.hosts:
            return 0
        return sum(self.policies.objective_for(k).policy_id == policy_id for k in self.hosts[0].table.cells())

    async def ingest(self, msg: kpm_pb2.KpiIndication, received: float | None = None) -> kpm_pb2.IngestAck:
        """Validate, make durable, acknowledge, queue for the engine. Never raises for bad input."""
        return await self.pipeline.ingest(msg, received)

    def latest_forecast(self, series: str, host: ModelHost | None = None) -> forecast_pb2.Forecast | None:
        return latest_forecast(host or self.hosts[0], series)

    async def predict_samples(self, cell_id: str, period_ms: int, names: list[str],
                              reports: list) -> tuple[forecast_pb2.Forecast | None, str]:
        """Cold-start forecast of the primary model from a cell's recent samples (not stored)."""
        s = self.settings
        return await cold_start_forecast(self.hosts[0], self.kpis, s.window_length, s.ignore_unknown_kpis,
                                         cell_id, period_ms, names, reports)

    def _make_host(self, bundle) -> ModelHost:
        s = self.settings
        return ModelHost(bundle, self.kpis, s.runtime, s.inference_threads, max_cells=self.max_cells,
                         coverage=s.interval_coverage)

    async def swap_bundle(self, name: str, path: str) -> dict:
        """Hot-swap (service/swap.py): KeyError for an unknown model, SwapRefused with the reason otherwise."""
        return await self.swapper.swap(name, path)

    # -- lifecycle ------------------------------------------------------------------------------------
    async def start(self) -> None:
        s = self.settings
        self.control.loop = asyncio.get_running_loop()
        self.engine.start()
        address = f"{s.grpc_host}:{s.grpc_port}"
        if s.tls_cert_file is not None:
            creds = grpc_server_credentials(s.tls_cert_file, s.tls_key_file, s.tls_client_ca_file)
            self.grpc_port = self.grpc_server.add_secure_port(address, creds)
        else:
            self.grpc_port = self.grpc_server.add_insecure_port(address)
        await self.grpc_server.start()
        self._http_server, task, self.http_port = await start_http_server(
            self.rest_app, s.http_host, s.http_port, s.tls_cert_file, s.tls_key_file, s.tls_client_ca_file)
        self._tasks.append(task)
        if self.persistence is not None:
            recover = asyncio.create_task(self._recover())
            self._tasks.append(recover)
            await asyncio.wait([recover], timeout=s.restore_wait_s)  # not ready until it ends
        self._tasks += [asyncio.create_task(self.descriptor_watcher.run()), asyncio.create_task(self._health_loop())]
        await self._set_health()
        log.info("xApp listening: REST :%d, gRPC :%d", self.http_port, self.grpc_port)

    async def _recover(self) -> None:
        self._tasks += await self.persistence.recover()

    async def _set_health(self) -> None:
        ok, _ = self.readiness()
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING if ok
                              else health_pb2.HealthCheckResponse.NOT_SERVING)

    async def _health_loop(self) -> None:
        ticks = 0
        while True:
            await asyncio.sleep(1.0)
            if ticks % 30 == 0:  # the buffer's persistence, every 30 s (a Redis can be reconfigured live)
                await self._check_durability()
            ticks += 1
            await self._set_health()
            self.control.publish_gauges()

    async def _check_durability(self) -> None:
        if self.buffer is None:
            return
        mode = await self.buffer.durability()
        if mode == "unknown" and self.durability is not None:
            return  # unreachable now: keep the last answer
        if mode != self.durability:
            if self.durability is not None:
                self.metrics.buffer_durability.labels(self.durability).set(0)
            self.metrics.buffer_durability.labels(mode).set(1)
            if mode not in (*DURABLE_MODES, "memory"):
                log.warning("window buffer durability %r: acknowledged samples are lost if Redis restarts", mode)
            self.durability = mode

    async def stop(self, grace_s: float = 2.0) -> None:
        await self.health.enter_graceful_shutdown()
        if self._http_server is not None:
            self._http_server.should_exit = True
        await self.grpc_server.stop(grace_s)
        if self.persistence is not None and self.persistence.restored:
            with contextlib.suppress(Exception):
                await self.persistence.snapshot()
        if self.control.warmups is not None:
            self.control.warmups.cancel()
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
