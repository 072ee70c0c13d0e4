#!/usr/bin/env python3
"""Container health check (standard library only): exit 0 when the xApp answers 200 on its readiness endpoint.

    ms3m-healthcheck [--port PORT] [--path PATH] [--timeout SECONDS]

The port defaults to MS3M_HTTP_PORT (else 8080), the path to /ric/v1/health/ready. Used by the image's
HEALTHCHECK, which docker-compose uses to start the simulator only once the xApp is ready.
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.error
import urllib.request

READY_PATH = "/ric/v1/health/ready"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="ms3m-healthcheck", description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=int(os.environ.get("MS3M_HTTP_PORT") or 8080))
    p.add_argument("--path", default=READY_PATH)
    p.add_argument("--timeout", type=float, default=2.0)
    args = p.parse_args(argv)
    url = f"http://127.0.0.1:{args.port}{args.path}"
    try:
        with urllib.request.urlopen(url, timeout=args.timeout) as r:
            ok = r.status == 200
            if not ok:
                print(f"{url}: HTTP {r.status}", file=sys.stderr)
            return 0 if ok else 1
    except urllib.error.HTTPError as e:
        print(f"{url}: HTTP {e.code} {e.read(300).decode(errors='replace')}", file=sys.stderr)
    except OSError as e:
        print(f"{url}: {e}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
