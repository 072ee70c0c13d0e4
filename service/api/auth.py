"""Bearer tokens with two roles for the REST and gRPC APIs, and the TLS material both servers use.

Tokens come from the environment (`MS3M_AUTH_TOKENS`) or a mounted secret (`MS3M_AUTH_TOKENS_FILE`), never from
a config file: entries `role:token` separated by commas or newlines, role `read` or `write` (write includes read).
With no token configured authentication is off (the zero-config demo on localhost; /ric/v1/config says so).

What needs a token (README, "Security"): every mutating call — REST POST / PUT / DELETE (A1 policies, predict,
indications, model swap) and the gRPC ingest and Predict methods — needs a write token; reads (GET, Subscribe)
need a read token only when `auth_reads` is on; the health probes, `/metrics` and the API docs stay open.
No token → 401 / UNAUTHENTICATED; a read token on a write call → 403 / PERMISSION_DENIED.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from pathlib import Path

import grpc

ROLES = ("read", "write")
_ENTRY = re.compile(r"^(read|write):(\S{16,512})$")


@dataclass(frozen=True)
class Denied:
    """Why a call is refused: `status` 401 (no or unknown token) or 403 (the token's role is not enough)."""

    status: int
    message: str


class TokenAuth:
    """The configured tokens. `check(header, need)` → None when allowed, else Denied."""

    def __init__(self, tokens: dict[str, str]):
        if not tokens:
            raise ValueError("TokenAuth needs at least one token")
        self._tokens = [(t.encode(), role) for t, role in tokens.items()]

    @classmethod
    def parse(cls, text: str) -> TokenAuth:
        """Entries `role:token` (commas or newlines between them; tokens 16–512 non-space characters).
        Raises ValueError naming the entry's position, never echoing a token."""
        tokens: dict[str, str] = {}
        for i, entry in enumerate(e.strip() for e in re.split(r"[,\n]", text)):
            if not entry:
                continue
            m = _ENTRY.match(entry)
            if m is None:
                raise ValueError(f"auth token entry {i + 1}: expected role:token with role read or write and a "
                                 "token of 16–512 non-space characters")
            tokens[m.group(2)] = m.group(1)
        return cls(tokens)

    def role_of(self, token: str) -> str | None:
        """The role of `token`, comparing in constant time against every configured token."""
        given, role = token.encode(), None
        for t, r in self._tokens:
            if hmac.compare_digest(given, t):
                role = r
        return role

    def check(self, authorization: str | None, need: str) -> Denied | None:
        """`authorization`: the header / metadata value ("Bearer <token>"); need: "read" or "write"."""
        if not authorization:
            return Denied(401, f"this call needs a {need} token: send 'Authorization: Bearer <token>'")
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return Denied(401, "the Authorization header must be 'Bearer <token>'")
        role = self.role_of(token.strip())
        if role is None:
            return Denied(401, "unknown token")
        if need == "write" and role != "write":
            return Denied(403, "this token may read only; this call needs a write token")
        return None


def load_token_auth(tokens: str | None, tokens_file: Path | None) -> TokenAuth | None:
    """The tokens of the environment value and / or the mounted file together; None when there are none.
    Raises ValueError for a malformed entry or an unreadable file (the xApp refuses to start)."""
    text = tokens or ""
    if tokens_file is not None:
        try:
            text += "\n" + Path(tokens_file).read_text()
        except OSError as e:
            raise ValueError(f"auth tokens file {tokens_file}: {e.strerror}") from None
    return TokenAuth.parse(text) if text.strip() else None


# REST: what each request needs ------------------------------------------------------------------------------
OPEN_PATHS = ("/ric/v1/health/", "/docs", "/redoc", "/openapi.json", "/static-offline-docs/")
METRICS_PATHS = ("/metrics", "/ric/v1/metrics")


def rest_need(method: str, path: str, auth_reads: bool, auth_metrics: bool) -> str | None:
    """The role a REST request needs: "write" for mutating methods, "read" for reads when `auth_reads`
    (the metrics paths when `auth_metrics`), None for the open paths."""
    if method in ("POST", "PUT", "DELETE", "PATCH"):
        return "write"
    if path in METRICS_PATHS:
        return "read" if auth_metrics else None
    if path.startswith(OPEN_PATHS):
        return None
    return "read" if auth_reads else None


# gRPC: what each method needs --------------------------------------------------------------------------------
GRPC_OPEN_SERVICES = ("grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection",
                      "grpc.reflection.v1.ServerReflection")
GRPC_READ_METHODS = ("Subscribe",)


def grpc_need(full_method: str, auth_reads: bool) -> str | None:
    """"/pkg.Service/Method" → the role it needs: None for health and reflection, "read" (when `auth_reads`) or
    None for the read methods, "write" for everything else (ingest, Predict, and any method added later)."""
    service, _, method = full_method.lstrip("/").partition("/")
    if service in GRPC_OPEN_SERVICES:
        return None
    if method in GRPC_READ_METHODS:
        return "read" if auth_reads else None
    return "write"


class GrpcTokenInterceptor(grpc.aio.ServerInterceptor):
    """grpc.aio server interceptor: each call's `authorization` metadata checked against what its method needs
    (grpc_need); a refused call ends with UNAUTHENTICATED / PERMISSION_DENIED and never reaches the servicer."""

    def __init__(self, auth: TokenAuth, auth_reads: bool):
        self._auth, self._auth_reads = auth, auth_reads

    async def intercept_service(self, continuation, handler_call_details):
        need = grpc_need(handler_call_details.method, self._auth_reads)
        handler = await continuation(handler_call_details)
        if need is None or handler is None:
            return handler
        token = next((v for k, v in handler_call_details.invocation_metadata or () if k == "authorization"), None)
        denied = self._auth.check(token if isinstance(token, str) else None, need)
        if denied is None:
            return handler
        return self._refusal(handler, denied)

    def _refusal(self, handler, denied: Denied):
        code = grpc.StatusCode.UNAUTHENTICATED if denied.status == 401 else grpc.StatusCode.PERMISSION_DENIED

        async def abort(request_or_iterator, context):
            await context.abort(code, denied.message)

        async def abort_stream(request_or_iterator, context):
            await context.abort(code, denied.message)
            yield  # an async generator: the method streams its responses

        kinds = {(False, False): grpc.unary_unary_rpc_method_handler,
                 (True, False): grpc.stream_unary_rpc_method_handler,
                 (False, True): grpc.unary_stream_rpc_method_handler,
                 (True, True): grpc.stream_stream_rpc_method_handler}
        make = kinds[(handler.request_streaming, handler.response_streaming)]
        return make(abort_stream if handler.response_streaming else abort,
                    request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer)


def grpc_server_credentials(cert_file: Path, key_file: Path, client_ca_file: Path | None):
    """grpc.ServerCredentials from PEM files; with client_ca_file every client must present a certificate that CA
    signed (mTLS). Raises ValueError naming an unreadable file."""

    def read(path: Path) -> bytes:
        try:
            return Path(path).read_bytes()
        except OSError as e:
            raise ValueError(f"TLS file {path}: {e.strerror}") from None

    ca = read(client_ca_file) if client_ca_file is not None else None
    return grpc.ssl_server_credentials([(read(key_file), read(cert_file))], root_certificates=ca,
                                       require_client_auth=ca is not None)


__all__ = ["GRPC_READ_METHODS", "ROLES", "Denied", "GrpcTokenInterceptor", "TokenAuth", "grpc_need",
           "grpc_server_credentials", "load_token_auth", "rest_need"]
