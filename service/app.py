"""The xApp process: wires settings, APIs and (as they land) buffer, engine and router together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket

import uvicorn
from grpc_health.v1 import health_pb2
from prometheus_client import CollectorRegistry

from service.api.grpc_server import create_grpc_server
from service.api.rest import create_app
from service.config import Settings

log = logging.getLogger("ms3m.xapp")


class XApp:
    """One xApp instance. `await start()` binds both ports (0 = any free port), `await stop()` drains."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.registry = CollectorRegistry()
        self.rest_app = create_app(self, self.registry)
        self.grpc_server, self.health, self.grpc_services = create_grpc_server(settings.grpc_max_message_bytes)
        self.http_port: int | None = None
        self.grpc_port: int | None = None
        self._http_server: uvicorn.Server | None = None
        self._http_task: asyncio.Task | None = None

    # -- state answered over REST -------------------------------------------------------------
    def readiness(self) -> tuple[bool, dict]:
        reasons = []
        if not self.settings.bundles:
            reasons.append("no model bundle loaded")
        return (not reasons), {"reasons": reasons}

    def public_config(self) -> dict:
        return {"settings": self.settings.public_dict()}

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        s = self.settings
        self.grpc_port = self.grpc_server.add_insecure_port(f"{s.grpc_host}:{s.grpc_port}")
        await self.grpc_server.start()

        sock = socket.socket(socket.AF_INET6 if ":" in s.http_host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((s.http_host, s.http_port))
        self.http_port = sock.getsockname()[1]
        config = uvicorn.Config(self.rest_app, log_level="warning", lifespan="off", access_log=False)
        self._http_server = uvicorn.Server(config)
        self._http_task = asyncio.create_task(self._http_server.serve(sockets=[sock]))
        while not self._http_server.started:
            if self._http_task.done():
                self._http_task.result()  # raises the bind/start error
            await asyncio.sleep(0.01)
        ok, _ = self.readiness()
        status = health_pb2.HealthCheckResponse.SERVING if ok else health_pb2.HealthCheckResponse.NOT_SERVING
        await self.health.set("", status)
        log.info("xApp listening: REST :%d, gRPC :%d", self.http_port, self.grpc_port)

    async def stop(self, grace_s: float = 2.0) -> None:
        await self.health.enter_graceful_shutdown()
        if self._http_server is not None:
            self._http_server.should_exit = True
        if self._http_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._http_task
        await self.grpc_server.stop(grace_s)


async def serve_until_signalled(xapp: XApp) -> None:
    await xapp.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"ms3m xApp: REST http://localhost:{xapp.http_port}  gRPC localhost:{xapp.grpc_port}  "
          f"(Ctrl-C to stop)", flush=True)
    await stop.wait()
    await xapp.stop()


def run_xapp(settings: Settings) -> int:
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve_until_signalled(XApp(settings)))
    return 0
