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


def _cmd_demo(args: argparse.Namespace) -> int:
    from service.demo import main as demo_main

    return demo_main(args.http_port, args.grpc_port, args.cells, args.speedup, args.steps, args.retrain,
                     False if args.no_live else None)


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="the xApp with its built-in simulator and a live table (what `make demo` runs)",
        description="Loads the cached demo bundle (or trains it once: MS³M on the synthetic KPIs, a few minutes, "
        "progress bar), starts the xApp with the embedded memory buffer (no Redis needed), streams the built-in "
        "simulator into it and shows a live table of cells, forecasts with intervals, active experts and control "
        "actions. REST and gRPC stay open for curl and grpcurl while it runs; Ctrl-C stops cleanly. The bundle "
        "cache is $MS3M_CACHE_DIR/demo (default ~/.cache/ms3m/demo).",
    )
    p.add_argument("--http-port", type=int, default=8080, help="REST port (default 8080)")
    p.add_argument("--grpc-port", type=int, default=50051, help="gRPC port (default 50051)")
    p.add_argument("--cells", type=int, default=40, help="simulated cells (default 40)")
    p.add_argument("--speedup", type=float, default=5.0, help="simulated time per real second (default 5×)")
    p.add_argument("--steps", type=int, default=300, help="training steps if the bundle must be trained")
    p.add_argument("--retrain", action="store_true", help="train the demo bundle again")
    p.add_argument("--no-live", action="store_true", help="plain log lines instead of the live table")
    p.set_defaults(handler=_cmd_demo)


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
    table = Table(title=result.get("title") or f"ms3m bench {result.get('benchmark', '')}".strip())
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


def _output_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON document last")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def _bench_progress(args: argparse.Namespace):
    if getattr(args, "quiet", False):
        return None
    from rich.console import Console

    console = Console(stderr=True)
    return lambda msg: console.print(f"[dim]{msg}[/dim]", highlight=False)


def _cmd_bench_step(args: argparse.Namespace) -> int:
    from models.training.benchmarks import step

    result = step.run(models=args.model, histories=args.history, batches=args.batch, rounds=args.rounds,
                      min_seconds=args.min_seconds, threads=args.threads, runtime=args.runtime,
                      progress=_bench_progress(args))
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
    s.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    s.add_argument("--runtime", choices=["onnxruntime", "torchscript", "torch"], default="onnxruntime",
                   help="runtime of the timed step (default onnxruntime, what the xApp serves)")
    _output_args(s)
    s.set_defaults(handler=_cmd_bench_step)
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
    r.set_defaults(handler=_cmd_bench_runtime)
    sv = bsub.add_parser(
        "service",
        help="the xApp end to end under load, next to a naive FastAPI + torch service",
        description="Starts `ms3m serve` (memory buffer by default) with a bundle (default: the registry-default "
        "S4D over the simulator's KPIs) and drives it with `ms3m simulate` at each offered load and then as fast as "
        "possible: sustained samples/s ingest → forecast, p50/p99 ingest-to-forecast latency (exact, inside the "
        "xApp), CPU and RSS. Then the same loads against a naive service that recomputes a full-window torch "
        "forward per request, and the ratio.",
    )
    sv.add_argument("--bundle", help="bundle to serve (default: a registry-default S4D bundle)")
    sv.add_argument("--load", type=int, nargs="+", default=[10_000, 20_000, 50_000], help="offered samples/s")
    sv.add_argument("--duration", type=float, default=8.0, help="seconds per load")
    sv.add_argument("--cells", type=int, default=1000, help="cells in the simulated stream")
    sv.add_argument("--buffer", choices=["memory", "redis"], default="memory",
                    help="window buffer of the xApp (redis: MS3M_REDIS_HOST / DBAAS_SERVICE_HOST)")
    sv.add_argument("--no-naive", action="store_true", help="skip the naive baseline")
    _output_args(sv)
    sv.set_defaults(handler=_cmd_bench_service)
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
    mem.set_defaults(handler=_cmd_bench_memory)
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
    c.set_defaults(handler=_cmd_bench_controllability)
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
    tr.set_defaults(handler=_cmd_bench_train)
    p.set_defaults(handler=lambda a: (p.print_help(), 2)[1])


def _cmd_bench_train(args: argparse.Namespace) -> int:
    from models.training.benchmarks import train

    result = train.run(models=args.model or train.MODELS, lengths=args.seq_len, batch=args.batch, steps=args.steps,
                       threads=args.threads, progress=_bench_progress(args))
    print_result(result, args.json)
    return 0


def _cmd_bench_controllability(args: argparse.Namespace) -> int:
    from service.bench import controllability

    result = controllability.run(steps=args.steps, cells=args.cells, days=args.days, out=args.out, seed=args.seed,
                                 progress=_bench_progress(args))
    print_result(result, args.json)
    return 0


def _cmd_bench_service(args: argparse.Namespace) -> int:
    from service.bench import service

    try:
        result = service.run(bundle=args.bundle, loads=args.load, duration=args.duration, cells=args.cells,
                             buffer=args.buffer, naive=not args.no_naive, progress=_bench_progress(args))
    except service.ConservationError as e:
        print(f"ms3m bench service: FAILED, samples lost: {e}", file=sys.stderr)
        return 1
    print_result(result, args.json)
    return 0


def _cmd_bench_memory(args: argparse.Namespace) -> int:
    from pathlib import Path

    from service.bench import memory

    bundles = [(Path(b).name, Path(b)) for b in args.bundle] if args.bundle else None
    result = memory.run(bundles=bundles, cells=args.cells, window=args.window, progress=_bench_progress(args))
    print_result(result, args.json)
    return 0


def _cmd_bench_runtime(args: argparse.Namespace) -> int:
    from service.bench import runtime

    result = runtime.run(models=args.model or runtime.DEFAULT_MODELS, batches=args.batch, rounds=args.rounds,
                         min_seconds=args.min_seconds, progress=_bench_progress(args))
    print_result(result, args.json)
    return 0


def _key_values(items: list[str] | None, what: str) -> dict:
    """["d_model=64", "init=legs", "experts=[...]"] → dict; values parsed as JSON when they parse."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"ms3m: {what} expects KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _cmd_train(args: argparse.Namespace) -> int:
    import os
    import sys
    from pathlib import Path

    if args.nproc > 1 and "RANK" not in os.environ:  # re-launch this command under torchrun (DDP, gloo)
        import subprocess

        argv, skip = [], False  # forward our arguments minus --nproc (torchrun would read it as its own)
        for a in sys.argv[1:]:
            if skip:
                skip = False
            elif a == "--nproc":
                skip = True
            elif not a.startswith("--nproc="):
                argv.append(a)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.nproc}",
               "-m", "service.cli", *argv]
        return subprocess.call(cmd)
    from models.training.trainer import TrainConfig, Trainer

    options = {k: v for k, v in {
        "model": args.model, "data": args.data, "horizon": args.horizon, "window": args.window,
        "batch_size": args.batch_size, "max_steps": args.steps, "lr": args.lr, "seed": args.seed,
        "targets": args.target, "inputs": args.input, "eval_every": args.eval_every, "patience": args.patience,
        "loss_positions": args.loss_positions, "split": args.split, "threads": args.threads,
    }.items() if v is not None}
    options["model_config"] = _key_values(args.set, "--set")
    options["data_options"] = _key_values(args.data_opt, "--data-opt")
    try:
        config = TrainConfig(**options)
    except (ValueError, KeyError, TypeError) as e:
        print(f"ms3m train: {e}", file=sys.stderr)
        return 2
    out = Path(args.out or f"runs/{config.model}-{Path(str(config.data)).stem}")
    try:
        trainer = Trainer(config, out, progress=not args.quiet)
    except (ValueError, KeyError, FileNotFoundError, TypeError) as e:
        print(f"ms3m train: {e}", file=sys.stderr)
        return 2
    result = trainer.fit(resume=not args.no_resume)
    if trainer.is_main:
        if not args.no_bundle:
            bundle = trainer.write_bundle(args.bundle)
            result["bundle"] = str(bundle)
        test = result.get("test", {})
        print(f"done: {result['steps']} steps, best val MSE {result['val_mse']:.4f} (step {result['best_step']})"
              + (f", test MSE {test['mse']:.4f} (last value {test['last_value']['mse']:.4f})"
                 if "last_value" in test else (f", test MSE {test['mse']:.4f}" if test else ""))
              + (f"\nbundle: {result['bundle']}" if "bundle" in result else "") + f"\nrun: {out}")
        if args.json:
            print(json.dumps(result, default=str))
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model of the zoo and write a deployable bundle",
        description="Train one model (AdamW with SSM parameter groups, warm-up + cosine, clipping, early "
        "stopping on validation, checkpoint/resume) and write a bundle the xApp serves. A re-run with the "
        "same --out resumes from its checkpoint. --nproc N trains data-parallel over N processes (torchrun, "
        "gloo). Model hyperparameters: --set d_model=64 --set n_layers=4 (see `ms3m models`).",
    )
    p.add_argument("--model", default="s4d", help="model name (default s4d; `ms3m models` lists them)")
    p.add_argument("--data", default="synthetic",
                   help="synthetic | ett | irish5g | path to a .csv/.parquet KPI table (default synthetic)")
    p.add_argument("--data-opt", action="append", metavar="KEY=VALUE",
                   help="dataset option, e.g. n_cells=64, length=4000, path=..., columns={...}")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="model hyperparameter (JSON values)")
    p.add_argument("--target", action="append", help="target KPI (repeatable; default: the dataset's main KPI)")
    p.add_argument("--input", action="append", help="input KPI (repeatable; default: all)")
    p.add_argument("--horizon", type=int, help="forecast steps ahead (default 8)")
    p.add_argument("--window", type=int, help="training window length (default 256)")
    p.add_argument("--batch-size", type=int, help="sequences per step (default 32)")
    p.add_argument("--steps", type=int, help="maximum optimizer steps (default 1500)")
    p.add_argument("--lr", type=float, help="peak learning rate (default 3e-3)")
    p.add_argument("--eval-every", type=int, help="validate every N steps (default 100)")
    p.add_argument("--patience", type=int, help="early-stop after N validations without improvement (default 8)")
    p.add_argument("--loss-positions", choices=["all", "last"], help="train on all positions or only the last")
    p.add_argument("--split", choices=["auto", "time", "series"], help="how to split train/val/test")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--threads", type=int, help="torch threads per process")
    p.add_argument("--nproc", type=int, default=1, help="data-parallel processes (torchrun, gloo on CPU)")
    p.add_argument("--out", help="run directory (default runs/<model>-<data>)")
    p.add_argument("--bundle", help="bundle directory (default <out>/bundle)")
    p.add_argument("--no-bundle", action="store_true", help="do not write a bundle at the end")
    p.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the result as one JSON document last")
    p.set_defaults(handler=_cmd_train)


def _cmd_export(args: argparse.Namespace) -> int:
    import sys

    from models.training.trainer import export_run

    try:
        path = export_run(args.run, args.out)
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(f"ms3m export: {e}", file=sys.stderr)
        return 2
    print(f"bundle written: {path}")
    return 0


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="write the deployable bundle of a training run",
        description="Export a training run (the directory `ms3m train --out` wrote; its best weights) as a "
        "bundle: config.json, weights.safetensors, step.onnx, step.ts, and for MS³M one step graph per "
        "expert plus the gate.",
    )
    p.add_argument("run", help="training run directory (holds train_config.json, data.json, best.safetensors)")
    p.add_argument("--out", required=True, help="bundle directory to write (replaced if it exists)")
    p.set_defaults(handler=_cmd_export)


def _cmd_eval(args: argparse.Namespace) -> int:
    import dataclasses
    import sys
    from pathlib import Path

    from models.training import compare as cmp

    preset = args.preset
    horizons = args.horizon or ([96, 192] if preset == "ett" else [10])
    models = args.model or (["dlinear", "s4d", "mamba", "lru", "transformer", "lstm", "ms3m"] if preset == "ett"
                            else ["s4d", "mamba", "transformer", "lstm", "tcn", "ms3m"])
    out_root = Path(args.out or f"reports/{preset}")
    rows, everything = [], {}
    for h in horizons:
        if preset == "compare":
            if not args.data:
                print("ms3m eval compare: --data is required", file=sys.stderr)
                return 2
            from models.training.trainer import TrainConfig

            base, overrides = TrainConfig(data=args.data, horizon=h, max_steps=args.steps or 1500), {}
            published = None
        else:
            base, overrides = cmp.PRESETS[preset](h, args.steps or (2640 if preset == "ett" else 1500))
            published = cmp.ETT_PUBLISHED.get(h) if preset == "ett" else None
        if args.seed is not None:
            base = dataclasses.replace(base, seed=args.seed)
        log = (lambda m: print(m, file=sys.stderr)) if args.json else print
        summary = cmp.compare(models, base, overrides, out_root / f"h{h}", progress=not args.quiet, log=log,
                              published=published)
        everything[f"h{h}"] = summary
        for r in cmp.table_rows(summary):
            rows.append({"horizon": h, **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}})
    kpi_cols = sorted({k for r in rows for k in r if k.startswith("mae[")})
    cols = ["horizon", "model", "mse", "mae", *(kpi_cols if len(kpi_cols) <= 2 else [])]
    result = {"benchmark": f"eval {preset}", "title": f"ms3m eval {preset}", "columns": cols, "rows": rows,
              "summary": {"report": str(out_root)}, "results": everything}
    print_result(result, args.json)
    return 0


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="train and compare models under one protocol; Markdown report and PNG plots",
        description="ett: ETTh1 with the standard LTSF protocol (lookback 96, all 7 channels, horizons 96/192, "
        "every test window, MSE/MAE normalized), next to published figures; DLinear reproduces its paper. "
        "irish5g: real operator LTE/5G traces, held-out traces, DL throughput 1–10 s ahead, MAE in kbit/s and "
        "the last-value baseline. compare: any dataset (--data). Each writes reports/<preset>/h<H>/ with "
        "results.json, report.md, error_by_horizon.png and forecast plots.",
    )
    p.add_argument("preset", choices=["ett", "irish5g", "compare"], help="which comparison")
    p.add_argument("--model", action="append", help="model to include (repeatable; default: the preset's list)")
    p.add_argument("--horizon", type=int, action="append", help="horizon(s) (default: ett 96 and 192; else 10)")
    p.add_argument("--data", help="dataset for `compare` (synthetic, irish5g, a CSV path, ...)")
    p.add_argument("--steps", type=int, help="training steps per model (same budget for all)")
    p.add_argument("--seed", type=int, help="random seed")
    p.add_argument("--out", help="report folder (default reports/<preset>)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print one JSON document last")
    p.set_defaults(handler=_cmd_eval)


def _cmd_models(args: argparse.Namespace) -> int:
    from models.registry import config_fields, list_models

    for name in list_models():
        fields = {k: v for k, v in config_fields(name).items()
                  if k not in ("d_input", "n_targets", "horizon", "target_index")}
        print(f"{name:12s} " + " ".join(f"{k}={json.dumps(v)}" for k, v in fields.items() if k != "experts"))
    return 0


def _add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the models of the zoo and their hyperparameters",
                       description="Every registered model with its hyperparameters and defaults "
                       "(set them with `ms3m train --set KEY=VALUE`).")
    p.set_defaults(handler=_cmd_models)


def _add_simulate(sub: argparse._SubParsersAction) -> None:
    from service.sim import add_simulate_parser

    add_simulate_parser(sub)


def _add_replay(sub: argparse._SubParsersAction) -> None:
    from service.sim import add_replay_parser

    add_replay_parser(sub)


# Subcommands are registered here only once their feature works.
SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_demo, _add_serve, _add_simulate, _add_replay, _add_config, _add_models, _add_train, _add_export, _add_eval,
    _add_bench,
]


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
