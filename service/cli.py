"""The `ms3m` command line: one entry point, one subcommand per job.

Each subcommand imports what it needs only when it runs, so `ms3m --help` is instant and the
serving commands never import torch.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from service import __version__

Handler = Callable[[argparse.Namespace], int]


def _cmd_serve(args: argparse.Namespace) -> int:
    from service.app import run_xapp
    from service.config import Settings

    overrides = {k: v for k, v in {
        "http_port": args.http_port,
        "grpc_port": args.grpc_port,
        "buffer": args.buffer,
        "runtime": args.runtime,
        "bundles": args.bundle or None,
    }.items() if v is not None}
    return run_xapp(Settings(**overrides))


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="run the xApp (gRPC ingest + REST + metrics)",
        description="Run the xApp: gRPC on --grpc-port (E2Ingest, Forecasting, health, reflection) and "
        "REST on --http-port (/ric/v1/health/*, /ric/v1/config, /metrics, A1, forecasts). "
        "Every option also reads from the environment with the MS3M_ prefix "
        "(MS3M_HTTP_PORT, MS3M_BUNDLES, ...); DBAAS_SERVICE_HOST/PORT select Redis.",
    )
    p.add_argument("--http-port", type=int, help="REST port (default 8080, env MS3M_HTTP_PORT; 0 = any free)")
    p.add_argument("--grpc-port", type=int, help="gRPC port (default 50051, env MS3M_GRPC_PORT; 0 = any free)")
    p.add_argument("--buffer", choices=["auto", "memory", "redis"],
                   help="window buffer (default auto: Redis when a host is configured, else memory)")
    p.add_argument("--runtime", choices=["onnxruntime", "torchscript", "torch"],
                   help="model runtime (default onnxruntime)")
    p.add_argument("--bundle", action="append", metavar="DIR", help="model bundle directory (repeatable)")
    p.set_defaults(handler=_cmd_serve)


def _cmd_config(args: argparse.Namespace) -> int:
    from service.config import Settings

    print(json.dumps(Settings().public_dict(), indent=2))
    return 0


def _add_config(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "config",
        help="print the effective service settings as JSON",
        description="Print the settings `ms3m serve` would use, resolved from the environment "
        "(MS3M_* variables, DBAAS_SERVICE_HOST/PORT, CONFIG_FILE), secrets masked.",
    )
    p.set_defaults(handler=_cmd_config)


# Subcommands are registered here only once their feature works.
SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_serve, _add_config]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ms3m",
        description="MS³M xApp: streaming KPI forecasting and control for the O-RAN near-RT RIC "
        "with multi-scale structured state-space models.",
    )
    parser.add_argument("--version", action="version", version=f"ms3m {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return int(handler(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
