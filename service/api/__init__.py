"""External interfaces of the xApp: REST (FastAPI) and gRPC."""
