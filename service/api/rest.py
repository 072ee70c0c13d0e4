"""REST API (FastAPI): O-RAN SC health and config endpoints, Prometheus metrics."""

from __future__ import annotations

from typing import Protocol

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from service import __version__


class Readiness(Protocol):
    def readiness(self) -> tuple[bool, dict]: ...
    def public_config(self) -> dict: ...


def create_app(xapp: Readiness, registry: CollectorRegistry) -> FastAPI:
    """The REST app for one xApp instance; `xapp` answers readiness and config, `registry` holds metrics."""
    app = FastAPI(
        title="MS³M xApp",
        version=__version__,
        description="Streaming KPI forecasts and control actions from multi-scale state-space models.",
    )

    @app.get("/ric/v1/health/alive", tags=["health"])
    def alive() -> dict:
        return {"status": "alive"}

    @app.get("/ric/v1/health/ready", tags=["health"])
    def ready() -> JSONResponse:
        ok, detail = xapp.readiness()
        return JSONResponse({"status": "ready" if ok else "not ready", **detail}, status_code=200 if ok else 503)

    @app.get("/ric/v1/config", tags=["config"])
    def config() -> dict:
        return xapp.public_config()

    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    app.add_api_route("/ric/v1/metrics", metrics, methods=["GET"], tags=["metrics"])
    app.add_api_route("/metrics", metrics, methods=["GET"], tags=["metrics"], include_in_schema=False)
    return app
