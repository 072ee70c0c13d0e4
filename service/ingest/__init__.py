"""KPI ingest: validation of E2SM-KPM-style indications and the E2Ingest gRPC service."""
