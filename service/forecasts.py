"""Forecasts on request: a cell's latest forecast, and a cold-start forecast from samples sent with the
request (validated like ingest, not stored, no state kept)."""

from __future__ import annotations

import asyncio

import numpy as np

from ms3m.v1 import forecast_pb2, kpm_pb2
from service.api.convert import ForecastRow, forecast_proto
from service.engine.host import ModelHost
from service.ingest.validate import IngestValidator


class PredictGate:
    """At most `limit` cold-start forecast calls at once (each costs a pass over its cells' samples, README
    "Security"); a call beyond is refused at once (HTTP 429 / RESOURCE_EXHAUSTED), never queued. Event loop only."""

    def __init__(self, limit: int):
        if limit < 1:
            raise ValueError(f"limit must be ≥ 1, got {limit}")
        self.limit, self.running, self.refused = limit, 0, 0

    def try_enter(self) -> bool:
        if self.running >= self.limit:
            self.refused += 1
            return False
        self.running += 1
        return True

    def leave(self) -> None:
        self.running -= 1

    def busy_message(self) -> str:
        return f"{self.limit} cold-start predict call(s) already running; retry shortly"


def latest_forecast(host: ModelHost, series: str) -> forecast_pb2.Forecast | None:
    """The host's last forecast for `series`, or None for a series it has not stepped."""
    hit = host.latest(series)
    if hit is None:
        return None
    ts, point, lower, upper, gate = hit
    row = ForecastRow(np.array([ts]), point[None], lower[None], upper[None], None if gate is None else gate[None],
                      np.array([host.table.slot(series)]))
    return forecast_proto(host, series, row, 0)


async def cold_start_forecast(host: ModelHost, kpis: list[str], max_samples: int, ignore_unknown_kpis: bool,
                              cell_id: str, period_ms: int, names: list[str],
                              reports: list[kpm_pb2.KpiReport]) -> tuple[forecast_pb2.Forecast | None, str]:
    """Forecast from `reports` (oldest first, at most `max_samples`); (None, why) when they are not usable.
    The model runs in a worker thread, off the event loop."""
    if len(reports) > max_samples:
        return None, f"at most {max_samples} samples per cell"
    msg = kpm_pb2.KpiIndication(e2_node_id="predict", granularity_period_ms=period_ms, meas_names=names)
    for i, r in enumerate(reports):
        rr = msg.reports.add()
        rr.CopyFrom(r)
        rr.cell_id, rr.sequence = cell_id, i + 1
        rr.ClearField("ue_id")
        rr.ClearField("slice")
    batch, rej = IngestValidator(kpis, max_samples, ignore_unknown_kpis).validate(msg)
    if rej.total:
        first = rej.details[0] if rej.details else None
        return None, f"{rej.total} sample(s) rejected" + (f": {first.detail}" if first else "")
    if not len(batch):
        return None, "no samples"
    point = await asyncio.to_thread(host.forecast_from_samples, batch.values)
    f = forecast_pb2.Forecast(cell_id=cell_id, timestamp_ms=int(batch.timestamp_ms[-1]), period_ms=host.period_ms,
                              horizon_steps=host.horizon, target_names=host.targets,
                              point=point.ravel().tolist(), model=host.name)
    return f, ""
