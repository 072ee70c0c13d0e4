"""The xApp process starts on ephemeral ports and answers health, config, metrics and reflection."""

from __future__ import annotations

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from service.app import XApp
from service.config import Settings


async def test_xapp_serves_health_on_ephemeral_ports():
    xapp = XApp(Settings(http_port=0, grpc_port=0, http_host="127.0.0.1", grpc_host="127.0.0.1", buffer="memory"))
    await xapp.start()
    try:
        assert xapp.http_port and xapp.grpc_port
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{xapp.http_port}") as http:
            assert (await http.get("/ric/v1/health/alive")).status_code == 200
            ready = await http.get("/ric/v1/health/ready")
            assert ready.status_code == 503 and "no model bundle loaded" in ready.json()["reasons"]
            assert (await http.get("/ric/v1/config")).json()["settings"]["grpc_port"] == 0
            assert (await http.get("/metrics")).status_code == 200
        async with grpc.aio.insecure_channel(f"127.0.0.1:{xapp.grpc_port}") as ch:
            status = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest())
            assert status.status == health_pb2.HealthCheckResponse.NOT_SERVING
            stub = reflection_pb2_grpc.ServerReflectionStub(ch)
            responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
            async for resp in responses:
                names = {s.name for s in resp.list_services_response.service}
                assert "grpc.health.v1.Health" in names
                break
    finally:
        await xapp.stop()
