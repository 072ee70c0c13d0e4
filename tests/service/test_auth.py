"""Authentication (bearer tokens, read / write roles) and TLS / mTLS on both APIs (service/api/auth.py)."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ms3m.v1 import kpm_pb2_grpc
from service.api.auth import TokenAuth, grpc_need, load_token_auth, rest_need
from service.config import Settings
from tests.service.helpers import indication, make_bundle, running_xapp

WRITE, READ = "w" * 8 + "-write-token-0123", "r" * 8 + "-read-token-45678"
TOKENS = f"write:{WRITE},read:{READ}"


def test_tokens_parse_and_check():
    auth = TokenAuth.parse(f"write:{WRITE}\n read:{READ} ,")
    assert auth.check(None, "read").status == 401
    assert auth.check("Basic abc", "read").status == 401
    assert auth.check("Bearer nope-nope-nope-nope", "read").message == "unknown token"
    assert auth.check(f"Bearer {READ}", "write").status == 403
    assert auth.check(f"Bearer {READ}", "read") is None and auth.check(f"bearer {WRITE}", "write") is None
    with pytest.raises(ValueError, match="entry 2") as e:
        TokenAuth.parse(f"write:{WRITE},admin:{READ}")
    assert READ not in str(e.value)  # a token is never echoed
    with pytest.raises(ValueError, match="entry 1"):
        TokenAuth.parse("write:short")
    assert load_token_auth(None, None) is None and load_token_auth("  ", None) is None
    with pytest.raises(ValueError, match="auth tokens file"):
        load_token_auth(None, Path("/nonexistent/tokens"))


def test_what_needs_which_role():
    assert rest_need("PUT", "/A1-P/v2/policytypes/20300/policies/p", False, False) == "write"
    assert rest_need("POST", "/v1/predict", False, False) == "write"
    assert rest_need("GET", "/v1/cells", False, False) is None and rest_need("GET", "/v1/cells", True, False) == "read"
    assert rest_need("GET", "/ric/v1/health/ready", True, True) is None
    assert rest_need("GET", "/metrics", True, False) is None and rest_need("GET", "/metrics", False, True) == "read"
    assert grpc_need("/ms3m.v1.E2Ingest/PublishAcked", False) == "write"
    assert grpc_need("/ms3m.v1.Forecasting/Predict", False) == "write"
    assert grpc_need("/ms3m.v1.Forecasting/Subscribe", False) is None
    assert grpc_need("/ms3m.v1.Forecasting/Subscribe", True) == "read"
    assert grpc_need("/grpc.health.v1.Health/Check", True) is None
    assert grpc_need("/ms3m.v1.Anything/New", False) == "write"  # a method added later is protected


def test_secrets_are_masked_in_the_public_config():
    s = Settings(auth_tokens=TOKENS)
    assert s.public_dict()["auth_tokens"] == "***"
    with pytest.raises(ValueError, match="go together"):
        Settings(tls_cert_file=Path("/x.pem"))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("auth-bundle"), "s4d")


async def _publish(port: int, token: str | None, channel=None):
    meta = (("authorization", f"Bearer {token}"),) if token else None
    ch = channel or grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    async with ch:
        stub = kpm_pb2_grpc.E2IngestStub(ch)
        return [a async for a in stub.PublishAcked(iter([indication(1, 0, mid=1)]), metadata=meta)]


async def test_without_a_token_mutations_are_refused_everywhere(bundle, tmp_path):
    async with (running_xapp([bundle], auth_tokens=TOKENS) as xapp,
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{xapp.http_port}") as http):
        policy = {"objective": "energy", "computeBudget": 0.5}
        calls = [("PUT", "/A1-P/v2/policytypes/20300/policies/p1", policy),
                 ("DELETE", "/A1-P/v2/policytypes/20300/policies/p1", None),
                 ("POST", "/v1/predict", {"cellId": "c", "measNames": ["DRB.UEThpDl"],
                                          "samples": [{"timestampMs": 1000, "values": [1.0]}]}),
                 ("POST", "/v1/indications", {"e2NodeId": "n", "measNames": [], "reports": []}),
                 ("PUT", f"/v1/models/{xapp.hosts[0].name}", {"bundle": str(tmp_path)})]
        for method, path, body in calls:
            r = await http.request(method, path, json=body)
            assert r.status_code == 401 and "token" in r.json()["detail"], (method, path, r.text)
            assert r.headers["www-authenticate"].startswith("Bearer")
            r = await http.request(method, path, json=body, headers={"Authorization": f"Bearer {READ}"})
            assert r.status_code == 403, (method, path, r.text)
            r = await http.request(method, path, json=body, headers={"Authorization": f"Bearer {WRITE}"})
            assert r.status_code not in (401, 403), (method, path, r.text)
        for path in ("/ric/v1/health/alive", "/metrics", "/v1/cells", "/docs"):  # reads and probes stay open
            assert (await http.get(path)).status_code == 200, path
        for token, code in ((None, grpc.StatusCode.UNAUTHENTICATED), (READ, grpc.StatusCode.PERMISSION_DENIED)):
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await _publish(xapp.grpc_port, token)
            assert e.value.code() == code
        (ack,) = await _publish(xapp.grpc_port, WRITE)
        assert ack.accepted == 1
        async with grpc.aio.insecure_channel(f"127.0.0.1:{xapp.grpc_port}") as ch:  # health stays open
            await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest())


# -- TLS and mTLS ---------------------------------------------------------------------------------------------
def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """A CA, a server certificate for 127.0.0.1 / localhost, a client certificate it signed, and a client
    certificate of another CA (untrusted)."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make test certificates")
    d = tmp_path_factory.mktemp("pki")
    for ca in ("ca", "rogue-ca"):
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={ca}",
                 "-keyout", f"{ca}.key", "-out", f"{ca}.pem", cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, ca, ext in (("server", "ca", ["-extfile", "san.ext"]), ("client", "ca", []),
                          ("rogue", "rogue-ca", [])):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
                 "-out", f"{name}.csr", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
                 "-CAcreateserial", "-days", "2", "-out", f"{name}.pem", *ext, cwd=d)
    return d


def _tls_channel(port: int, pki: Path, client: str | None):
    creds = grpc.ssl_channel_credentials(
        root_certificates=(pki / "ca.pem").read_bytes(),
        private_key=(pki / f"{client}.key").read_bytes() if client else None,
        certificate_chain=(pki / f"{client}.pem").read_bytes() if client else None)
    return grpc.aio.secure_channel(f"127.0.0.1:{port}", creds)


def _https(port: int, pki: Path, client: str | None) -> httpx.AsyncClient:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    if client:
        ctx.load_cert_chain(str(pki / f"{client}.pem"), str(pki / f"{client}.key"))
    return httpx.AsyncClient(base_url=f"https://127.0.0.1:{port}", verify=ctx)


async def test_mtls_admits_trusted_clients_only(bundle, pki):
    tls = {"tls_cert_file": pki / "server.pem", "tls_key_file": pki / "server.key",
           "tls_client_ca_file": pki / "ca.pem", "auth_tokens": TOKENS}
    async with running_xapp([bundle], **tls) as xapp:
        (ack,) = await _publish(xapp.grpc_port, WRITE, _tls_channel(xapp.grpc_port, pki, "client"))
        assert ack.accepted == 1  # trusted certificate and the right token
        for client in ("rogue", None):  # an untrusted certificate, or none, is refused at the handshake
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await _publish(xapp.grpc_port, WRITE, _tls_channel(xapp.grpc_port, pki, client))
            assert e.value.code() == grpc.StatusCode.UNAVAILABLE, client
        async with _https(xapp.http_port, pki, "client") as http:
            assert (await http.get("/ric/v1/health/alive")).status_code == 200
            r = await http.put("/A1-P/v2/policytypes/20300/policies/p1", json={"objective": "energy",
                               "computeBudget": 0.5}, headers={"Authorization": f"Bearer {WRITE}"})
            assert r.status_code == 201
        for client in ("rogue", None):
            async with _https(xapp.http_port, pki, client) as http:
                with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
                    await http.get("/ric/v1/health/alive")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{xapp.http_port}") as plain:
            with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError, httpx.ConnectError)):
                await plain.get("/ric/v1/health/alive")  # no plaintext beside TLS
