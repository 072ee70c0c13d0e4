"""gRPC server factory: size limits, keepalive, grpc.health.v1 and reflection."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

Registrar = Callable[[grpc.aio.Server], str]  # adds a servicer, returns its full service name


def create_grpc_server(
    max_message_bytes: int, registrars: Iterable[Registrar] = (), interceptors: Sequence[Any] = ()
) -> tuple[grpc.aio.Server, health.aio.HealthServicer, list[str]]:
    """A grpc.aio server with our servicers, health and reflection (and `interceptors`, e.g. authentication);
    not yet bound or started."""
    server = grpc.aio.server(
        interceptors=list(interceptors),
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.keepalive_timeout_ms", 10_000),
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            ("grpc.keepalive_permit_without_calls", 1),
        ]
    )
    names = [register(server) for register in registrars]
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names += [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME]
    reflection.enable_server_reflection(names, server)
    return server, health_servicer, names
