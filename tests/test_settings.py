from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.config import Settings


def test_defaults_use_memory_buffer_and_oran_ports(monkeypatch):
    for var in ("DBAAS_SERVICE_HOST", "DBAAS_SERVICE_PORT", "MS3M_REDIS_HOST", "CONFIG_FILE"):
        monkeypatch.delenv(var, raising=False)
    s = Settings()
    assert (s.http_port, s.grpc_port) == (8080, 50051)
    assert s.buffer_kind == "memory"


def test_dbaas_variables_select_redis(monkeypatch):
    monkeypatch.setenv("DBAAS_SERVICE_HOST", "dbaas.ricplt")
    monkeypatch.setenv("DBAAS_SERVICE_PORT", "6380")
    s = Settings()
    assert (s.redis_host, s.redis_port, s.buffer_kind) == ("dbaas.ricplt", 6380, "redis")


def test_ms3m_prefix_and_config_file(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("MS3M_HTTP_PORT", "9090")
    monkeypatch.setenv("MS3M_BUNDLES", '["/b/one", "/b/two"]')
    monkeypatch.setenv("CONFIG_FILE", str(tmp_path / "config-file.json"))
    s = Settings()
    assert s.http_port == 9090
    assert s.bundles == [Path("/b/one"), Path("/b/two")]
    assert s.config_file == tmp_path / "config-file.json"


def test_secret_is_masked(monkeypatch):
    monkeypatch.setenv("MS3M_REDIS_PASSWORD", "hunter2")
    s = Settings()
    assert s.redis_password.get_secret_value() == "hunter2"
    assert "hunter2" not in str(s.public_dict())


@pytest.mark.parametrize("env", [{"MS3M_HTTP_PORT": "70000"}, {"MS3M_NAMESPACE": "bad ns"}, {"MS3M_RUNTIME": "tf"}])
def test_bad_values_rejected(monkeypatch, env):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ValidationError):
        Settings()
