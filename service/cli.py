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


def print_result(result: dict, as_json: bool) -> None:
    """A benchmark or evaluation result: a table on stderr-free stdout, and with --json one JSON document last."""
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=as_json)  # with --json the table goes to stderr so stdout is pure JSON
    table = Table(title=f"ms3m bench {result.get('benchmark', '')}".strip())
    cols = result.get("columns") or (list(result["rows"][0]) if result.get("rows") else [])
    for c in cols:
        table.add_column(c, justify="left" if c in ("model", "runtime", "name", "kind") else "right")
    for row in result.get("rows", []):
        table.add_row(*(_fmt(row.get(c)) for c in cols))
    console.print(table)
    for k, v in (result.get("summary") or {}).items():
        console.print(f"  {k}: {_fmt(v)}")
    if as_json:
        print(json.dumps(result, indent=None, default=str))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.3e}"
    return "" if v is None else str(v)


def _bench_progress(args: argparse.Namespace):
    if getattr(args, "quiet", False):
        return None
    from rich.console import Console

    console = Console(stderr=True)
    return lambda msg: console.print(f"[dim]{msg}[/dim]", highlight=False)


def _cmd_bench_step(args: argparse.Namespace) -> int:
    from models.training.benchmarks import step

    result = step.run(models=args.model, histories=args.history, batches=args.batch, rounds=args.rounds,
                      min_seconds=args.min_seconds, threads=args.threads, progress=_bench_progress(args))
    print_result(result, args.json)
    return 0


def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmarks that print figures (add --json for one JSON document last)",
        description="Benchmarks measured side by side in one run. Each prints a table; with --json the table "
        "goes to stderr and stdout carries one JSON document, so runs can be compared.",
    )
    bsub = p.add_subparsers(title="benchmarks", metavar="BENCH")
    s = bsub.add_parser(
        "step",
        help="per-sample step cost vs history length for every model, vs the Transformer",
        description="For every registered model (or --model ...): per-sample cost of one recurrent step after "
        "history h samples, at batch 1 and 1024, and the ratios against a Transformer recomputing its full "
        "window and against the Transformer's KV-cache step, all measured in this run (torch eager, CPU).",
    )
    s.add_argument("--model", action="append", help="model to measure (repeatable; default: all)")
    s.add_argument("--history", type=int, nargs="+", default=[256, 1024, 4096], help="history lengths")
    s.add_argument("--batch", type=int, nargs="+", default=[1, 1024], help="batch sizes (cells)")
    s.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median is reported")
    s.add_argument("--min-seconds", type=float, default=0.2, help="minimum timing per measurement")
    s.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    s.add_argument("--json", action="store_true", help="print one JSON document last")
    s.add_argument("--quiet", action="store_true", help="no progress lines")
    s.set_defaults(handler=_cmd_bench_step)
    p.set_defaults(handler=lambda a: (p.print_help(), 2)[1])


# Subcommands are registered here only once their feature works.
SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_serve, _add_config, _add_bench]


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
