"""The `ms3m` command line: one entry point, one subcommand per job.

Each subcommand imports what it needs only when it runs, so `ms3m --help` is instant and the
serving commands never import torch. `ms3m bench …` is defined in bench/cli.py and registered only
where bench/ is installed (a source install; the images carry none).
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
        description="Loads the cached demo bundle (without one: serves a small MS³M trained in seconds while the "
        "full one trains in a background process, then hot-swaps it in), starts the xApp with the embedded memory "
        "buffer (no Redis needed), streams the built-in "
        "simulator into it and shows a live table of cells, forecasts with intervals, active experts and control "
        "actions. REST and gRPC stay open for curl and grpcurl while it runs; Ctrl-C stops cleanly. The bundle "
        "cache is $MS3M_CACHE_DIR/demo (default ~/.cache/ms3m/demo).",
    )
    p.add_argument("--http-port", type=int, default=8080, help="REST port (default 8080)")
    p.add_argument("--grpc-port", type=int, default=50051, help="gRPC port (default 50051)")
    p.add_argument("--cells", type=int, default=40, help="simulated cells (default 40)")
    p.add_argument("--speedup", type=float, default=5.0, help="simulated time per real second (default 5×)")
    p.add_argument("--steps", type=int, default=300, help="training steps of the full bundle (in the background)")
    p.add_argument("--retrain", action="store_true", help="train the full demo bundle again (in the background)")
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


def _add_bench(sub: argparse._SubParsersAction) -> None:
    try:
        from bench.cli import add_bench_parser  # argparse only; each benchmark imports torch when it runs
    except ModuleNotFoundError as e:  # an install without bench/ (the images, see Dockerfile): no `ms3m bench`
        if e.name != "bench":
            raise
        return
    add_bench_parser(sub)


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
        "loss_positions": args.loss_positions, "split": args.split, "threads": args.threads, "loss": args.loss,
        "train_app": args.train_app,
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
    p.add_argument("--split", choices=["auto", "time", "series", "app"],
                   help="how to split train/val/test (app: irish5g, train on --train-app, test on the other)")
    p.add_argument("--train-app", help="with --split app: the application trained on (Download or Netflix)")
    p.add_argument("--loss", choices=["mse", "mae"], help="training error, also the validation metric (default mse)")
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


def _add_eval(sub: argparse._SubParsersAction) -> None:
    from service.eval_cli import add_eval_parser

    try:
        from bench.cli import cmd_ablation  # the ablation times exported steps (bench.step)
    except ModuleNotFoundError as e:
        if e.name != "bench":
            raise
        cmd_ablation = None
    add_eval_parser(sub, cmd_ablation)


def _cmd_models(args: argparse.Namespace) -> int:
    from models.layers.ssm_init import ALIASES, INIT_METHODS
    from models.registry import compositions, config_fields, list_models

    if args.json:
        print(json.dumps({"models": {n: config_fields(n) for n in list_models()},
                          "architectures": {a: list(c) for a, c in compositions().items()},
                          "init_methods": list(INIT_METHODS), "init_aliases": ALIASES}, default=str))
        return 0
    for name in list_models():
        fields = {k: v for k, v in config_fields(name).items()
                  if k not in ("d_input", "n_targets", "horizon", "target_index")}
        print(f"{name:12s} " + " ".join(f"{k}={json.dumps(v)}" for k, v in fields.items() if k != "experts"))
    print("\narchitectures × SSM cores (create_model(architecture=…, ssm_layer=…), `--set ssm_layer=…`):")
    for arch, cores in compositions().items():
        print(f"  {arch:12s} {', '.join(cores) if cores else '(no SSM core)'}")
    print(f"init methods (`--set init=…`): {', '.join(INIT_METHODS)}; aliases: "
          + ", ".join(f"{a}={b}" for a, b in ALIASES.items()))
    return 0


def _add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the models of the zoo, their hyperparameters, architectures × cores",
                       description="Every registered model with its hyperparameters and defaults (set them with "
                       "`ms3m train --set KEY=VALUE`), the architectures and the SSM cores each takes, and the "
                       "init methods.")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(handler=_cmd_models)


def _add_simulate(sub: argparse._SubParsersAction) -> None:
    from service.sim import add_simulate_parser

    add_simulate_parser(sub)


def _add_replay(sub: argparse._SubParsersAction) -> None:
    from service.sim import add_replay_parser

    add_replay_parser(sub)


def _add_e2(sub: argparse._SubParsersAction) -> None:
    from service.e2sm.cli import add_e2_parser

    add_e2_parser(sub)


# Subcommands are registered here only once their feature works.
SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_demo, _add_serve, _add_simulate, _add_replay, _add_e2, _add_config, _add_models, _add_train, _add_export,
    _add_eval, _add_bench,
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
