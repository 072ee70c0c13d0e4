"""Shared fixtures. Tests bind port 0 only; Redis tests use the real server on 127.0.0.1:6379."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):  # one torch thread per worker: `make test` runs a worker per core
    os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
REDIS_HOST = os.environ.get("MS3M_TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("MS3M_TEST_REDIS_PORT", "6379"))


def redis_reachable() -> str | None:
    """None when the Redis server answers a TCP connection quickly, else the reason."""
    import socket

    try:
        with socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=0.5):
            return None
    except OSError as e:
        return (f"no Redis server at {REDIS_HOST}:{REDIS_PORT} ({e}); start one with "
                "`redis-server --daemonize yes --port 6379 --save '' --appendonly no`")


@pytest.fixture
def redis_client():
    """A client of the real Redis server; each test gets its own key namespace, deleted afterwards."""
    redis = pytest.importorskip("redis")
    reason = redis_reachable()
    if reason:
        pytest.skip(reason)
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_timeout=2)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as e:
        pytest.skip(f"Redis at {REDIS_HOST}:{REDIS_PORT} does not answer PING ({e})")
    client.test_namespace = f"test-{uuid.uuid4().hex[:12]}"
    yield client
    for key in client.scan_iter(match=f"{{{client.test_namespace}}}*", count=1000):
        client.delete(key)
    client.close()


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (see ../shared/data/README.md)")
    return SHARED_DATA
