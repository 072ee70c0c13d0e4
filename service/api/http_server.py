"""The REST app's server: uvicorn on a socket we bind ourselves, so port 0 reports the port it got."""

from __future__ import annotations

import asyncio
import socket
import ssl
from pathlib import Path

import uvicorn
from fastapi import FastAPI


async def start_http_server(app: FastAPI, host: str, port: int, cert_file: Path | None = None,
                            key_file: Path | None = None, client_ca_file: Path | None = None
                            ) -> tuple[uvicorn.Server, asyncio.Task, int]:
    """Bind `host:port` (0 = any free port), serve `app` (HTTPS with cert_file / key_file; with client_ca_file
    clients must present a certificate that CA signed); returns once listening: (server, its task, port).
    Raises OSError when the address cannot be bound; a server that fails to start re-raises its error."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    bound = sock.getsockname()[1]
    tls = {}
    if cert_file is not None:
        tls = {"ssl_certfile": str(cert_file), "ssl_keyfile": str(key_file)}
        if client_ca_file is not None:
            tls |= {"ssl_ca_certs": str(client_ca_file), "ssl_cert_reqs": ssl.CERT_REQUIRED}
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False, **tls))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("HTTP server stopped before it started")
        await asyncio.sleep(0.01)
    return server, task, bound
