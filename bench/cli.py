"""`ms3m bench …`: the parsers and handlers of every benchmark, registered by service/cli.py.

Importing this module costs argparse only; each handler imports its benchmark (and torch) when it runs.
Every benchmark takes --json (one JSON document last on stdout, the table on stderr) and --quiet.
"""

from __future__ import annotations

import argparse
import sys

from contract.objectives import OBJECTIVES
from service.output import print_result


def _output_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON document last")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def _progress(args: argparse.Namespace):
    if getattr(args, "quiet", False):
        return None
    from rich.console import Console

    console = Console(stderr=True)
    return lambda msg: console.print(f"[dim]{msg}[/dim]", highlight=False)


def _cmd_step(args: argparse.Namespace) -> int:
    from bench import step

    result = step.run(models=args.model, histories=args.history, batches=args.batch, rounds=args.rounds,
                      min_seconds=args.min_seconds, threads=args.threads, runtime=args.runtime,
                      progress=_progress(args))
    print_result(result, args.json)
    return 0


def _cmd_runtime(args: argparse.Namespace) -> int:
    from bench import runtime

    result = runtime.run(models=args.model or runtime.DEFAULT_MODELS, batches=args.batch, rounds=args.rounds,
                         min_seconds=args.min_seconds, progress=_progress(args))
    print_result(result, args.json)
    return 0


def _cmd_service(args: argparse.Namespace) -> int:
    from bench import service

    try:
        result = service.run(bundle=args.bundle, loads=args.load, duration=args.duration, cells=args.cells,
                             buffer=args.buffer, naive=not args.no_naive, progress=_progress(args),
                             reference=None if args.reference == "none" else args.reference,
                             objective=args.objective, budget=args.budget)
    except service.ConservationError as e:
        print(f"ms3m bench service: FAILED, samples lost: {e}", file=sys.stderr)
        return 1
    print_result(result, args.json)
    return 0


def _cmd_memory(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bench import memory

    bundles = [(Path(b).name, Path(b)) for b in args.bundle] if args.bundle else None
    result = memory.run(bundles=bundles, cells=args.cells, window=args.window, progress=_progress(args))
    print_result(result, args.json)
    return 0


def _cmd_controllability(args: argparse.Namespace) -> int:
    from bench import controllability

    result = controllability.run(steps=args.steps, cells=args.cells, days=args.days, out=args.out, seed=args.seed,
                                 progress=_progress(args))
    print_result(result, args.json)
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from bench import train

    result = train.run(models=args.model or train.MODELS, lengths=args.seq_len, batch=args.batch, steps=args.steps,
                       threads=args.threads, progress=_progress(args))
    print_result(result, args.json)
    return 0


def _cmd_e2sm(args: argparse.Namespace) -> int:
    from bench import e2sm

    result = e2sm.run(version=args.kpm_version, min_seconds=args.min_seconds, service=not args.no_service,
                      bundle=args.bundle, cells=args.cells, samples=args.samples, progress=_progress(args))
    print_result(result, args.json)
    return 0


def cmd_ablation(args: argparse.Namespace) -> int:
    """`ms3m eval ablation` (service/eval_cli.py parses it): one model trained per value of one config field."""

    from bench.ablation import parse_values, run_ablation
    from service.output import print_result

    if not args.model or len(args.model) != 1 or not args.param or "=" not in args.param:
        print("ms3m eval ablation: give one --model and --param name=v1,v2,… (e.g. --model afssm "
              "--param compression_ratio=0.25,0.5,1.0)", file=sys.stderr)
        return 2
    name, _, text = args.param.partition("=")
    try:
        values = parse_values(text)
    except ValueError as e:
        print(f"ms3m eval ablation: {e}", file=sys.stderr)
        return 2
    data = args.data or "ett"
    horizon = args.horizon[0] if args.horizon else None
    log = (lambda m: print(m, file=sys.stderr)) if args.json else print
    try:
        result = run_ablation(args.model[0], name.strip(), values, data, args.out or f"reports/ablation/"
                              f"{args.model[0]}-{name.strip()}-{data.replace('/', '_')}", horizon=horizon,
                              steps=args.steps, seed=args.seed or 0, progress=not args.quiet, log=log)
    except (KeyError, TypeError) as e:
        print(f"ms3m eval ablation: {e.args[0] if e.args else e}", file=sys.stderr)
        return 2
    rows = [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items() if k != "model_info"}
            for r in result["rows"]]
    cols = [name.strip(), "val", "mse", "mae", "params", "state_bytes_per_cell", "us_per_step_b1",
            "us_per_step_b1000"]
    print_result({"benchmark": "eval ablation", "title": f"ms3m eval ablation: {args.model[0]} {name} on {data}",
                  "columns": cols, "rows": rows, "summary": {k: v for k, v in result.items() if k != "rows"},
                  "results": result}, args.json)
    return 0


def add_bench_parser(sub: argparse._SubParsersAction) -> None:
    """Adds `bench` and its benchmarks (step, runtime, service, memory, controllability, train, e2sm) to `sub`."""
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
    s.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    s.add_argument("--runtime", choices=["onnxruntime", "torchscript", "torch"], default="onnxruntime",
                   help="runtime of the timed step (default onnxruntime, what the xApp serves)")
    _output_args(s)
    s.set_defaults(handler=_cmd_step)
    r = bsub.add_parser(
        "runtime",
        help="one batched step on onnxruntime vs TorchScript vs torch eager",
        description="Writes a bundle per model (default S4D, Mamba, LRU, MS³M at registry defaults) and times one "
        "batched step on each runtime at batch 1, 64 and 1024, interleaved rounds, median kept; plus one step for "
        "1,000 cells of the default S4D bundle and the onnxruntime session options (threads × spinning) behind "
        "the service defaults.",
    )
    r.add_argument("--model", action="append", help="model (repeatable; default s4d mamba lru ms3m)")
    r.add_argument("--batch", type=int, nargs="+", default=[1, 64, 1024], help="batch sizes (cells)")
    r.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median is reported")
    r.add_argument("--min-seconds", type=float, default=0.2, help="minimum timing per measurement")
    _output_args(r)
    r.set_defaults(handler=_cmd_runtime)
    sv = bsub.add_parser(
        "service",
        help="the xApp end to end under load, next to a naive FastAPI + torch service",
        description="Starts `ms3m serve` (memory buffer by default) with a bundle (default: the cached trained demo "
        "bundle if `make demo` made one, else the registry-default MS³M, over the simulator's KPIs), sets one A1 "
        "objective policy for every cell (the router on), and drives it with `ms3m simulate` at each offered load "
        "and then as fast as possible: sustained samples/s ingest → forecast, p50/p99 ingest-to-forecast latency "
        "(exact, inside the xApp), mean active experts per cell, CPU and RSS, and a check that every accepted "
        "sample was forecast or counted dropped (exit 1 otherwise). Then the same for the reference model's "
        "registry-default bundle (S4D) and the ratios, then the naive service that recomputes a full-window torch "
        "forward per request.",
    )
    sv.add_argument("--bundle", help="bundle to serve (default: the demo bundle if cached, else a registry-default "
                    "MS³M bundle)")
    sv.add_argument("--reference", default="s4d", help="model whose registry-default bundle is measured beside it "
                    "(default s4d; 'none' to skip)")
    sv.add_argument("--objective", default="balanced", choices=OBJECTIVES,
                    help="A1 objective of every cell (default balanced)")
    sv.add_argument("--budget", type=float, default=1.0, help="A1 compute budget in (0, 1] (default 1)")
    sv.add_argument("--load", type=int, nargs="+", default=[10_000, 20_000, 50_000], help="offered samples/s")
    sv.add_argument("--duration", type=float, default=8.0, help="seconds per load")
    sv.add_argument("--cells", type=int, default=1000, help="cells in the simulated stream")
    sv.add_argument("--buffer", choices=["memory", "redis"], default="memory",
                    help="window buffer of the xApp (redis: MS3M_REDIS_HOST / DBAAS_SERVICE_HOST)")
    sv.add_argument("--no-naive", action="store_true", help="skip the naive baseline")
    _output_args(sv)
    sv.set_defaults(handler=_cmd_service)
    mem = bsub.add_parser(
        "memory",
        help="resident memory per cell: window buffer + model state, at 10k and 100k cells",
        description="For the MS³M and S4D registry-default bundles (or --bundle), in a fresh process each: fill "
        "the embedded window buffer with a full window for every cell and step every cell once; prints RSS, its "
        "growth per cell, and the allocated buffer / state / bookkeeping bytes per cell. A 'chatty' row shows "
        "that one cell sending a whole window does not grow the other cells' allocation.",
    )
    mem.add_argument("--bundle", action="append", help="bundle directory (repeatable; default MS³M and S4D)")
    mem.add_argument("--cells", type=int, nargs="+", default=[10_000, 100_000], help="cell counts")
    mem.add_argument("--window", type=int, help="window length (default: the service's window_length)")
    _output_args(mem)
    mem.set_defaults(handler=_cmd_memory)
    c = bsub.add_parser(
        "controllability",
        help="does the objective steer MS³M's compute, and does MS³M beat its own experts?",
        description="Trains MS³M (objectives sampled per sequence) and each of its experts alone on the synthetic "
        "multi-cell KPIs with regime changes, then serves the held-out cells through the real serving path "
        "(expert-level ONNX stepper + ExpertRouter with warm-ups) once per objective: MSE, measured expert compute "
        "per step and the active experts' relative cost; writes gate_weights.png (gate weights of one cell over "
        "time under the accuracy, balanced and energy objectives, with its regime changes) and results.json into "
        "--out.",
    )
    c.add_argument("--steps", type=int, default=600, help="training steps per model (same budget for all)")
    c.add_argument("--cells", type=int, default=32, help="synthetic cells")
    c.add_argument("--days", type=int, default=4, help="synthetic (compressed) days per cell")
    c.add_argument("--seed", type=int, default=0, help="random seed")
    c.add_argument("--out", default="reports/controllability", help="report folder")
    _output_args(c)
    c.set_defaults(handler=_cmd_controllability)
    tr = bsub.add_parser(
        "train",
        help="training throughput and peak memory vs sequence length, SSMs vs the Transformer",
        description="For each model (default S4D, S5, LRU, Mamba, MS³M, Transformer at registry defaults) and "
        "sequence length (default 256 1024 4096): AdamW steps on random data in a fresh process — samples (time "
        "steps) per second and peak memory above the model's own, and both relative to the Transformer (which "
        "attends over the whole sequence).",
    )
    tr.add_argument("--model", action="append", help="model (repeatable)")
    tr.add_argument("--seq-len", type=int, nargs="+", default=[256, 1024, 4096], help="sequence lengths")
    tr.add_argument("--batch", type=int, default=8, help="sequences per step")
    tr.add_argument("--steps", type=int, default=3, help="timed steps per configuration")
    tr.add_argument("--threads", type=int, default=1, help="torch threads")
    _output_args(tr)
    tr.set_defaults(handler=_cmd_train)
    e2 = bsub.add_parser(
        "e2sm",
        help="E2SM-KPM decode / encode rates on one core, and the service with KPM ingest beside protobuf",
        description="Indications/s on one core of the E2SM-KPM codec: decode format 1 with 10 measurements (the "
        "specialised aligned-PER decoder, with the measInfoList repeated as E2 nodes send it and with every "
        "message distinct, and asn1tools alone), encode format 1, decode and encode format 3 with 32 UEs; then "
        "`ms3m serve` fed the simulator's samples pre-encoded, as KpiIndications (E2Ingest) and as E2SM-KPM "
        "indications (E2smIngest), on one acked stream: accepted samples/s and ack latency of each.",
    )
    e2.add_argument("--kpm-version", type=int, choices=[2, 3, 4], default=3, help="E2SM-KPM version (default 3)")
    e2.add_argument("--min-seconds", type=float, default=1.0, help="CPU seconds per codec measurement")
    e2.add_argument("--no-service", action="store_true", help="codec rows only")
    e2.add_argument("--bundle", help="bundle of the service rows (default: the registry-default S4D bundle)")
    e2.add_argument("--cells", type=int, default=1000, help="simulated cells of the service rows")
    e2.add_argument("--samples", type=int, default=100_000, help="samples per service row")
    _output_args(e2)
    e2.set_defaults(handler=_cmd_e2sm)
    p.set_defaults(handler=lambda a: (p.print_help(), 2)[1])
