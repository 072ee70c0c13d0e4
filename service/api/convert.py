"""Pure converters between the engine's results and the API's messages (protobuf, JSON). No I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from contract.series import parse_series, ue_of
from ms3m.v1 import common_pb2, forecast_pb2
from service.actions.policy import Action
from service.engine.host import ModelHost

ACTION_KINDS = {"slice_prb_quota": forecast_pb2.ACTION_KIND_SLICE_PRB_QUOTA,
                "traffic_steering": forecast_pb2.ACTION_KIND_TRAFFIC_STEERING,
                "cell_sleep": forecast_pb2.ACTION_KIND_CELL_SLEEP,
                "anomaly_alarm": forecast_pb2.ACTION_KIND_ANOMALY_ALARM}


@dataclass
class ForecastRow:
    """The fields of a StepResult that forecast_proto reads, for a forecast that is not a fresh step."""

    timestamp_ms: np.ndarray  # (N,)
    point: np.ndarray  # (N, H, K)
    lower: np.ndarray  # (N, H, K)
    upper: np.ndarray  # (N, H, K)
    gate: np.ndarray | None  # (N, E)
    slots: np.ndarray  # (N,)


def forecast_proto(host: ModelHost, series: str, res, i: int) -> forecast_pb2.Forecast:
    """Row i of a step result (or a ForecastRow) of `host` as a Forecast message."""
    cell, sl = parse_series(series)
    f = forecast_pb2.Forecast(
        cell_id=cell, timestamp_ms=int(res.timestamp_ms[i]), period_ms=host.period_ms,
        horizon_steps=host.horizon, target_names=host.targets, point=res.point[i].ravel().tolist(),
        lower=res.lower[i].ravel().tolist(), upper=res.upper[i].ravel().tolist(),
        interval_coverage=host.intervals.coverage, model=host.name)
    if (ue := ue_of(series)) is not None:
        f.ue_id = ue
    if sl is not None:
        f.slice.sst = sl[0]
        if sl[1] is not None:
            f.slice.sd = sl[1]
    if res.gate is not None:
        active = host.active[res.slots[i]]
        for name, scale, w, a in zip(host.expert_names, host.scales, res.gate[i].tolist(), active.tolist()):
            f.experts.add(name=name, scale=scale, weight=w, active=a)
    return f

def action_dict(a: Action) -> dict:
    """An action as the JSON object of the action log (`GET /v1/actions`)."""
    return {"action_id": a.action_id, "cell_id": a.cell, "timestamp_ms": a.time_ms, "kind": a.kind,
            "mode": a.mode, "reason": a.reason, "confidence": round(float(a.confidence), 4),
            "detail": jsonable(a.detail)}

def action_proto(a: Action, host: ModelHost, res, i: int | None) -> forecast_pb2.ControlAction:
    """An action as a ControlAction message, with row i of `res` as its forecast when given."""
    msg = forecast_pb2.ControlAction(
        action_id=a.action_id, cell_id=parse_series(a.cell)[0], timestamp_ms=a.time_ms,
        kind=ACTION_KINDS[a.kind], reason=a.reason, confidence=float(a.confidence),
        mode=common_pb2.ACTION_MODE_ENFORCE if a.mode == "enforce" else common_pb2.ACTION_MODE_RECOMMEND)
    if i is not None:
        msg.forecast.CopyFrom(forecast_proto(host, a.cell, res, i))
    d = a.detail
    if a.kind == "slice_prb_quota":
        sst, sd = d["slice"]
        msg.prb_quota.slice.sst = sst
        if sd is not None:
            msg.prb_quota.slice.sd = sd
        msg.prb_quota.min_prb_ratio = int(d["min_prb_ratio"])
        msg.prb_quota.max_prb_ratio = int(d["max_prb_ratio"])
        msg.prb_quota.dedicated_prb_ratio = int(d["dedicated_prb_ratio"])
    elif a.kind == "traffic_steering":
        msg.steering.target_cell_id = d.get("target_cell_id", "")
        msg.steering.traffic_share = float(d.get("traffic_share", 0.0))
    elif a.kind == "cell_sleep":
        msg.sleep.sleep = bool(d["sleep"])
        msg.sleep.duration_s = int(d.get("duration_s", 0))
    elif a.kind == "anomaly_alarm":
        for k in ("observed", "expected", "lower", "upper"):
            setattr(msg.alarm, k, float(d[k]))
        msg.alarm.kpi = d["kpi"]
        msg.alarm.severity = int(d["severity"])
    return msg


def jsonable(d: Any) -> Any:
    """numpy scalars inside dicts / lists → plain Python values."""
    if isinstance(d, dict):
        return {k: jsonable(v) for k, v in d.items()}
    if isinstance(d, list | tuple):
        return [jsonable(v) for v in d]
    if isinstance(d, np.generic):
        return d.item()
    return d
