"""REST API (FastAPI, port 8080): O-RAN SC health/config/metrics, forecasts, actions, A1 policies.

Every body is size-limited (413) and validated (422 with the offending field); unknown cells are 404
with a hint; an overloaded engine answers 503 with Retry-After.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi_offline import FastAPIOffline
from google.protobuf import json_format
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, ConfigDict, Field

from ms3m.v1 import kpm_pb2
from service import __version__
from service.a1 import OBJECTIVE_POLICY_TYPE, OBJECTIVE_POLICY_TYPE_ID, PolicyValidationError
from service.a1.store import PolicyLimitError
from service.api.auth import TokenAuth, rest_need
from service.api.openapi import WRITE, errors, json_body, message_json_check, message_json_schema
from service.api.openapi import install as install_openapi_rules

if TYPE_CHECKING:
    from service.api.port import XAppPort


class SampleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    timestampMs: int = Field(gt=0, lt=2**63, description="end of the granularity period, Unix epoch ms")
    values: list[float | None] = Field(max_length=256, description="aligned with measNames; null = absent")


class PredictIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cellId: str = Field(min_length=1, max_length=64)
    granularityPeriodMs: int = Field(1000, gt=0, lt=2**32)
    measNames: list[str] = Field(min_length=1, max_length=256)
    samples: list[SampleIn] = Field(min_length=1, max_length=100_000, description="oldest first")


class ReadyOut(BaseModel):
    status: str = Field(description="ready | not ready")
    reasons: list[str] = Field(description="why not ready (empty when ready)")
    warnings: list[str] | None = Field(None, description="ready, but a promise does not hold (e.g. durability)")


class SwapIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bundle: str = Field(min_length=1, max_length=4096, description="bundle directory on the xApp's file system")


def _reject_constant(name: str) -> float:
    """json.loads hook: NaN and ±Infinity are not JSON (RFC 8259); Python's parser would accept them."""
    raise ValueError(f"{name} is not a JSON number")


def _forecast_json(f) -> dict[str, Any]:
    d = json_format.MessageToDict(f, preserving_proto_field_name=False)
    H, K = f.horizon_steps, len(f.target_names)
    for key in ("point", "lower", "upper"):
        vals = list(getattr(f, key))
        if len(vals) == H * K:  # row-major (horizon, target) → per target lists over horizons
            d[key] = {name: vals[k::K] for k, name in enumerate(f.target_names)}
    return d


def create_app(xapp: XAppPort, registry: CollectorRegistry, auth: TokenAuth | None = None) -> FastAPI:
    """The REST app for one xApp instance; with `auth`, requests need the tokens service.api.auth says."""
    # API docs (Swagger UI at /docs, ReDoc at /redoc) from assets installed with the package: RIC clusters are
    # usually air-gapped, and a CDN-hosted page is blank there
    app = FastAPIOffline(title="MS³M xApp", version=__version__,
                  description="Streaming KPI forecasts and control actions from multi-scale state-space models. "
                  "A1 objective policies (policy type 20300) steer the models' objectives and compute budget.")
    install_openapi_rules(app)
    check_indication = message_json_check(kpm_pb2.KpiIndication.DESCRIPTOR)
    limit = xapp.settings.http_max_body_bytes
    auth_reads, auth_metrics = xapp.settings.auth_reads, xapp.settings.auth_metrics

    @app.middleware("http")
    async def body_limit(request: Request, call_next):
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            return JSONResponse({"detail": f"request body larger than {limit} bytes"}, status_code=413)
        if length is None and request.method in ("POST", "PUT"):
            body = await request.body()
            if len(body) > limit:
                return JSONResponse({"detail": f"request body larger than {limit} bytes"}, status_code=413)
        return await call_next(request)

    if auth is not None:  # registered after body_limit, so it runs first: no body is read for a refused call
        @app.middleware("http")
        async def authenticate(request: Request, call_next):
            need = rest_need(request.method, request.url.path, auth_reads, auth_metrics)
            denied = auth.check(request.headers.get("authorization"), need) if need else None
            if denied is not None:
                headers = {"WWW-Authenticate": 'Bearer realm="ms3m"'} if denied.status == 401 else {}
                return JSONResponse({"detail": denied.message}, status_code=denied.status, headers=headers)
            return await call_next(request)

    # -- O-RAN SC platform endpoints -------------------------------------------------------------
    @app.get("/ric/v1/health/alive", tags=["health"])
    def alive() -> dict:
        return {"status": "alive"}

    @app.get("/ric/v1/health/ready", tags=["health"], response_model=ReadyOut,
             responses={503: {"model": ReadyOut, "description": "not ready: `reasons` says why"}})
    def ready() -> JSONResponse:
        ok, detail = xapp.readiness()
        return JSONResponse({"status": "ready" if ok else "not ready", **detail}, status_code=200 if ok else 503)

    @app.get("/ric/v1/config", tags=["config"], responses=errors(401))
    def config() -> dict:
        return xapp.public_config()

    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    app.add_api_route("/ric/v1/metrics", metrics, methods=["GET"], tags=["metrics"], response_class=PlainTextResponse,
                      responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"},
                                 **errors(401)})
    app.add_api_route("/metrics", metrics, methods=["GET"], tags=["metrics"], include_in_schema=False)

    # -- forecasts ---------------------------------------------------------------------------------
    @app.get("/v1/models", tags=["forecasts"], responses=errors(401))
    def models() -> list[dict]:
        return [xapp.model_info(h) for h in xapp.hosts]

    @app.put("/v1/models/{name}", tags=["forecasts"], summary="hot-swap a served model for another bundle",
             responses=errors(*WRITE, 400, 404, 422))
    async def swap(name: str, body: SwapIn) -> JSONResponse:
        """Serve the bundle at `bundle` (a directory the xApp can read) in place of model `name`, warmed from every
        cell's window before it answers; the other models keep their cell state. 404: unknown model; 422: the
        bundle was refused (the reason; the old model keeps serving)."""
        from service.swap import SwapRefused

        try:
            return JSONResponse(await xapp.swap_bundle(name, body.bundle))
        except KeyError as e:
            return JSONResponse({"detail": str(e.args[0])}, 404)
        except SwapRefused as e:
            return JSONResponse({"detail": str(e)}, 422)

    @app.get("/v1/cells", tags=["forecasts"], responses=errors(401, 422))
    def cells(limit: int = Query(1000, ge=1, le=100_000), offset: int = Query(0, ge=0)) -> dict:
        if not xapp.hosts:
            return {"total": 0, "cells": []}
        host = xapp.hosts[0]
        keys = sorted(host.table.cells())
        page = keys[offset : offset + limit]
        out = []
        for k in page:
            slot = host.table.slot(k)
            out.append({"series": k, "lastTimestampMs": int(host.last_ts[slot]) if slot is not None else None})
        return {"total": len(keys), "cells": out}

    @app.get("/v1/cells/{cell_id}/forecast", tags=["forecasts"], responses=errors(401, 404, 422))
    def forecast(cell_id: str, model: str | None = None) -> JSONResponse:
        host = next((h for h in xapp.hosts if model is None or h.name == model), None)
        if host is None:
            return JSONResponse({"detail": f"no model {model!r}; loaded: {[h.name for h in xapp.hosts]}"}, 404)
        f = xapp.latest_forecast(cell_id, host)
        if f is None:
            return JSONResponse({"detail": f"unknown cell {cell_id!r}: no samples received yet; POST its recent "
                                 "samples to /v1/predict for a cold-start forecast"}, 404)
        return JSONResponse(_forecast_json(f))

    @app.post("/v1/predict", tags=["forecasts"], responses=errors(*WRITE, 400, 422, 429, 503))
    async def predict(body: PredictIn) -> JSONResponse:
        """A cold-start forecast from the cell's recent samples (at most the window length), not stored. 429 while
        `predict_max_concurrent` such calls run."""
        if not xapp.hosts:
            return JSONResponse({"detail": "no model bundle loaded"}, 503)
        if not xapp.predict_gate.try_enter():
            return JSONResponse({"detail": xapp.predict_gate.busy_message()}, 429, headers={"Retry-After": "1"})
        try:
            return await _predict(body)
        finally:
            xapp.predict_gate.leave()

    async def _predict(body: PredictIn) -> JSONResponse:
        reports = []
        for s in body.samples:
            if len(s.values) != len(body.measNames):
                return JSONResponse({"detail": f"sample at {s.timestampMs}: {len(s.values)} values for "
                                     f"{len(body.measNames)} measNames"}, 422)
            r = kpm_pb2.KpiReport(timestamp_ms=s.timestampMs, values=[0.0 if v is None else v for v in s.values],
                                  absent=[i for i, v in enumerate(s.values) if v is None])
            reports.append(r)
        f, err = await xapp.predict_samples(body.cellId, body.granularityPeriodMs, body.measNames, reports)
        if f is None:
            return JSONResponse({"detail": err}, 422)
        return JSONResponse(_forecast_json(f))

    @app.post("/v1/indications", tags=["ingest"], summary="ingest one KpiIndication (proto3 JSON form)",
              responses=errors(*WRITE, 422, 503),
              openapi_extra=json_body(message_json_schema(kpm_pb2.KpiIndication.DESCRIPTOR),
                                      "a KpiIndication in its proto3 JSON form; the answer is its IngestAck"))
    async def indications(request: Request) -> JSONResponse:
        try:  # the documented schema, enforced: protobuf's JSON parser alone also takes booleans for numbers
            doc = json.loads(await request.body(), parse_constant=_reject_constant)
            if (why := check_indication(doc)) is not None:
                return JSONResponse({"detail": f"not a KpiIndication: {why}"}, 422)
            msg = json_format.ParseDict(doc, kpm_pb2.KpiIndication())
        except (ValueError, json_format.ParseError) as e:  # ValueError: not JSON (UnicodeDecodeError too)
            return JSONResponse({"detail": f"not a KpiIndication: {e}"}, 422)
        if (why := xapp.pipeline.queue_full(len(msg.reports))) is not None:
            return JSONResponse({"detail": why}, 503, headers={"Retry-After": "1"})
        ack = await xapp.ingest(msg)
        return JSONResponse(json_format.MessageToDict(ack))

    @app.get("/v1/actions", tags=["actions"], responses=errors(401, 422))
    def actions(limit: int = Query(100, ge=1, le=10_000), kind: str | None = None, cell: str | None = None) -> list:
        out = [a for a in reversed(xapp.actions) if (kind is None or a["kind"] == kind)
               and (cell is None or a["cell_id"] == cell)]
        return out[:limit]

    @app.get("/v1/stats", tags=["forecasts"], responses=errors(401, 422))
    def stats(reset: bool = False) -> dict:
        """Engine counters and exact recent latency quantiles (ingest → forecast, batched step)."""
        out = xapp.engine.stats()
        if reset:
            xapp.engine.reset_stats()
        return out

    @app.get("/v1/router/decisions", tags=["actions"], responses=errors(401, 422))
    def decisions(limit: int = Query(100, ge=1, le=10_000)) -> list:
        out = []
        for name, router in xapp.routers.items():
            out += [{"model": name, **d.__dict__} for d in list(router.log)[-limit:]]
        return sorted(out, key=lambda d: -d["time_ms"])[:limit]

    # -- A1 policies -------------------------------------------------------------------------------
    prefix = "/A1-P/v2/policytypes"

    def _type_or_404(type_id: int) -> JSONResponse | None:
        if type_id != OBJECTIVE_POLICY_TYPE_ID:
            return JSONResponse({"detail": f"policy type {type_id} not found; this xApp accepts "
                                 f"{OBJECTIVE_POLICY_TYPE_ID}"}, 404)
        return None

    @app.get(prefix, tags=["A1"], responses=errors(401))
    def policy_types() -> list[int]:
        return [OBJECTIVE_POLICY_TYPE_ID]

    @app.get(prefix + "/{type_id}", tags=["A1"], responses=errors(401, 404, 422))
    def policy_type(type_id: int):
        return _type_or_404(type_id) or OBJECTIVE_POLICY_TYPE

    @app.get(prefix + "/{type_id}/policies", tags=["A1"], responses=errors(401, 404, 422))
    def policy_ids(type_id: int):
        return _type_or_404(type_id) or xapp.policies.ids()

    @app.put(prefix + "/{type_id}/policies/{policy_id}", tags=["A1"], responses=errors(*WRITE, 400, 404, 422),
             openapi_extra=json_body(OBJECTIVE_POLICY_TYPE["create_schema"],
                                     f"a policy instance of type {OBJECTIVE_POLICY_TYPE_ID} (its create_schema)"))
    async def put_policy(type_id: int, policy_id: str, request: Request):
        if (err := _type_or_404(type_id)) is not None:
            return err
        try:
            doc = json.loads(await request.body(), parse_constant=_reject_constant)
        except ValueError as e:  # also UnicodeDecodeError
            return JSONResponse({"detail": f"body is not JSON: {e}"}, 400)
        try:
            created = xapp.policies.put(policy_id, doc)
        except PolicyValidationError as e:
            return JSONResponse({"detail": f"policy does not match type {type_id}: {e}"}, 400)
        except PolicyLimitError as e:
            return JSONResponse({"detail": str(e)}, 413)
        except ValueError as e:
            return JSONResponse({"detail": str(e)}, 400)
        return JSONResponse(doc, status_code=201 if created else 200)

    @app.get(prefix + "/{type_id}/policies/{policy_id}", tags=["A1"], responses=errors(401, 404, 422))
    def get_policy(type_id: int, policy_id: str):
        if (err := _type_or_404(type_id)) is not None:
            return err
        doc = xapp.policies.get(policy_id)
        return doc if doc is not None else JSONResponse({"detail": f"no policy {policy_id!r}"}, 404)

    @app.delete(prefix + "/{type_id}/policies/{policy_id}", tags=["A1"], status_code=204,
                responses=errors(401, 403, 404, 422))
    def delete_policy(type_id: int, policy_id: str):
        if (err := _type_or_404(type_id)) is not None:
            return err
        if not xapp.policies.delete(policy_id):
            return JSONResponse({"detail": f"no policy {policy_id!r}"}, 404)
        return Response(status_code=204)

    @app.get(prefix + "/{type_id}/policies/{policy_id}/status", tags=["A1"], responses=errors(401, 404, 422))
    def policy_status(type_id: int, policy_id: str):
        if (err := _type_or_404(type_id)) is not None:
            return err
        status = xapp.policies.status(policy_id, xapp.cells_under_policy(policy_id))
        return status if status is not None else JSONResponse({"detail": f"no policy {policy_id!r}"}, 404)

    return app
