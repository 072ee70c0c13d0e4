"""What the REST and gRPC APIs need from the xApp: a Protocol, so the APIs never import the xApp itself."""

from __future__ import annotations

import collections
from typing import Protocol

from ms3m.v1 import forecast_pb2, kpm_pb2
from service.a1.store import PolicyStore
from service.config import Settings
from service.engine.engine import StepEngine
from service.engine.host import ModelHost
from service.events import Subscriber
from service.forecasts import PredictGate
from service.ingest.pipeline import IngestPipeline
from service.metrics import Metrics
from service.router.router import ExpertRouter


class XAppPort(Protocol):
    settings: Settings
    hosts: list[ModelHost]
    routers: dict[str, ExpertRouter]
    policies: PolicyStore
    engine: StepEngine
    metrics: Metrics
    pipeline: IngestPipeline
    actions: collections.deque[dict]
    subscribers: set[Subscriber]
    predict_gate: PredictGate

    def readiness(self) -> tuple[bool, dict]: ...

    def public_config(self) -> dict: ...

    def model_info(self, host: ModelHost) -> dict: ...

    def cells_under_policy(self, policy_id: str) -> int: ...

    async def ingest(self, msg: kpm_pb2.KpiIndication, received: float | None = None) -> kpm_pb2.IngestAck: ...

    def latest_forecast(self, series: str, host: ModelHost | None = None) -> forecast_pb2.Forecast | None: ...

    async def predict_samples(self, cell_id: str, period_ms: int, names: list[str],
                              reports: list) -> tuple[forecast_pb2.Forecast | None, str]: ...

    async def swap_bundle(self, name: str, path: str) -> dict: ...
