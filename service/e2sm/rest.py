"""REST routes of the E2SM path, added to the xApp's FastAPI app: the registered KPM subscriptions and the
E2SM-RC control requests (sent in enforce mode, encoded only in recommend mode)."""

from __future__ import annotations

from fastapi import FastAPI, Query

from service.api.openapi import errors
from service.e2sm.ingest import E2smIngest
from service.e2sm.sink import ControlSink


def add_e2sm_routes(app: FastAPI, ingest: E2smIngest, sink: ControlSink) -> None:
    @app.get("/v1/e2/subscriptions", tags=["E2SM"], summary="KPM subscriptions that bind indications to cells",
             responses=errors(401, 422))
    def subscriptions(limit: int = Query(1000, ge=1, le=100_000)) -> dict:
        subs = ingest.subscriptions.all()
        return {"total": len(subs), "defaultKpmVersion": ingest.subscriptions.default_version,
                "subscriptions": [s.public() for s in subs[:limit]]}

    @app.get("/v1/e2/control", tags=["E2SM"], summary="E2SM-RC control requests of slice PRB quota actions",
             responses=errors(401, 422))
    def control(limit: int = Query(100, ge=1, le=10_000),
                mode: str | None = Query(None, pattern="^(enforce|recommend)$")) -> list:
        """Newest first: the action, its cell and E2 node, whether it was sent (enforce) or only encoded
        (recommend), and the E2SM-RC control header and message in hex."""
        return sink.recent(limit, mode)
