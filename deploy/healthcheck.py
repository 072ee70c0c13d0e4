#!/usr/bin/env python3
"""Container health check (standard library only): exit 0 when the xApp answers 200 on its readiness endpoint.

    ms3m-healthcheck [--port PORT] [--path PATH] [--timeout SECONDS] [--tls] [--cert FILE --key FILE] [--ca FILE]

The port defaults to MS3M_HTTP_PORT (else 8080), the path to /ric/v1/health/ready. Used by the image's
HEALTHCHECK, which docker-compose uses to start the simulator only once the xApp is ready, and by the Helm chart's
exec probes under mTLS, where the kubelet has no client certificate to present.

TLS follows the xApp's own settings: HTTPS with --tls or when MS3M_TLS_CERT_FILE is set (the xApp then serves
TLS only). Under mTLS (MS3M_TLS_CLIENT_CA_FILE set) the client certificate defaults to the pod's own
MS3M_TLS_CERT_FILE / MS3M_TLS_KEY_FILE, which works when the client CA signed it for client authentication;
--cert / --key name another one. The server's certificate is verified against --ca (its chain only: the probe
dials 127.0.0.1, a name no certificate carries); without --ca it is not verified, like the kubelet's HTTPS
probes: the probe asks its own pod's process over loopback and sends nothing secret.
"""

from __future__ import annotations

import argparse
import os
import ssl
import sys
import urllib.error
import urllib.request

READY_PATH = "/ric/v1/health/ready"


def tls_context(cert: str | None, key: str | None, ca: str | None) -> ssl.SSLContext:
    """A client context presenting `cert` / `key` (when given), verifying the server's chain against `ca`."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False  # 127.0.0.1 is in no certificate; the chain is what --ca checks
    if ca:
        ctx.load_verify_locations(cafile=ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        ctx.verify_mode = ssl.CERT_NONE
    if cert:
        ctx.load_cert_chain(certfile=cert, keyfile=key)
    return ctx


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="ms3m-healthcheck", description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=int(env("MS3M_HTTP_PORT") or 8080))
    p.add_argument("--path", default=READY_PATH)
    p.add_argument("--timeout", type=float, default=2.0)
    p.add_argument("--tls", action="store_true", default=bool(env("MS3M_TLS_CERT_FILE")),
                   help="HTTPS (default: when MS3M_TLS_CERT_FILE is set)")
    mtls = bool(env("MS3M_TLS_CLIENT_CA_FILE"))
    p.add_argument("--cert", default=env("MS3M_TLS_CERT_FILE") if mtls else None,
                   help="client certificate, PEM (default under mTLS: MS3M_TLS_CERT_FILE)")
    p.add_argument("--key", default=env("MS3M_TLS_KEY_FILE") if mtls else None,
                   help="its private key, PEM (default under mTLS: MS3M_TLS_KEY_FILE)")
    p.add_argument("--ca", default=None, help="verify the server's certificate chain against this PEM CA bundle")
    args = p.parse_args(argv)
    if bool(args.cert) != bool(args.key):
        p.error("--cert and --key go together")
    if (args.cert or args.ca) and not args.tls:
        p.error("--cert / --key / --ca need --tls")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    url = f"{'https' if args.tls else 'http'}://127.0.0.1:{args.port}{args.path}"
    try:
        ctx = tls_context(args.cert, args.key, args.ca) if args.tls else None
        with urllib.request.urlopen(url, timeout=args.timeout, context=ctx) as r:
            ok = r.status == 200
            if not ok:
                print(f"{url}: HTTP {r.status}", file=sys.stderr)
            return 0 if ok else 1
    except urllib.error.HTTPError as e:
        print(f"{url}: HTTP {e.code} {e.read(300).decode(errors='replace')}", file=sys.stderr)
    except OSError as e:  # refused, timed out, TLS handshake refused, unreadable certificate files
        print(f"{url}: {e}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
