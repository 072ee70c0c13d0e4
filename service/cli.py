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


def _cmd_eval(args: argparse.Namespace) -> int:
    import dataclasses
    import sys
    from pathlib import Path

    from models.training import compare as cmp
    from service.output import print_result

    preset = args.preset
    if preset == "ablation":
        return _cmd_ablation(args)
    if args.param:
        print("ms3m eval: --param belongs to `ms3m eval ablation`", file=sys.stderr)
        return 2
    if args.split == "app" and preset != "irish5g":
        print("ms3m eval: --split app is the Irish 5G cross-application protocol (preset irish5g)", file=sys.stderr)
        return 2
    horizons = args.horizon or (list(cmp.ETT_HORIZONS) if preset == "ett" else [10])
    models = args.model or (["dlinear", "linear", "s4d", "mamba", "lru", "transformer", "lstm", "ms3m",
                             *cmp.RESEARCH_BASELINES]
                            if preset == "ett" else ["s4d", "mamba", "transformer", "lstm", "tcn", "ms3m"])
    seeds = [args.seed + i for i in range(args.seeds)] if args.seed is not None else list(range(args.seeds))
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
        log = (lambda m: print(m, file=sys.stderr)) if args.json else print
        # --split app: train on one application's traces and test on the other's, both ways
        variants = ([(f"app-{a}", {"split": "app", "train_app": a}) for a in ("Download", "Netflix")]
                    if args.split == "app" else [("", {"split": args.split} if args.split else {})])
        for label, split in variants:
            per_seed = []
            for seed in seeds:
                key = "/".join(p for p in (label, f"h{h}", f"seed{seed}" if len(seeds) > 1 else "") if p)
                summary = cmp.compare(models, dataclasses.replace(base, seed=seed, **split), overrides, out_root / key,
                                      progress=not args.quiet, log=log, published=published)
                everything[key] = summary
                per_seed.append(cmp.table_rows(summary))
            for r in cmp.aggregate_seeds(per_seed):
                rows.append({**({"train": label[4:], "test": "Netflix" if label[4:] == "Download" else "Download"}
                                 if label else {}), "horizon": h, **r})
    if len(horizons) > 1:  # the average over horizons, per model (the papers' "avg" column)
        for model in dict.fromkeys(r["model"] for r in rows):
            rs = [r for r in rows if r["model"] == model]
            if len(rs) == len(horizons):
                rows.append({"horizon": "avg", "model": model, "seeds": rs[0].get("seeds"),
                             **{k: sum(r[k] for r in rs) / len(rs) for k in ("mse", "mae")}})
    rows = [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in rows]
    kpi_cols = sorted({k for r in rows for k in r if k.startswith("mae[") and not k.endswith("_std")})
    std_cols = ["mse_std", "mae_std"] if len(seeds) > 1 else []
    drop_last = ["mse_drop_last"] if any("mse_drop_last" in r for r in rows) else []
    cols = [*(["train", "test"] if args.split == "app" else []), "horizon", "model", "mse", *std_cols[:1], "mae",
            *std_cols[1:], *drop_last, *(kpi_cols if len(kpi_cols) <= 2 else [])]
    result = {"benchmark": f"eval {preset}", "title": f"ms3m eval {preset}", "columns": cols, "rows": rows,
              "summary": {"report": str(out_root), "seeds": seeds}, "results": everything}
    print_result(result, args.json)
    return 0


def _cmd_ablation(args: argparse.Namespace) -> int:
    import sys

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


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="train and compare models under one protocol; Markdown report and PNG plots",
        description="ett: ETTh1 with the standard LTSF protocol (lookback 96, all 7 channels, horizons "
        "96/192/336/720 and their average, every test window, MSE/MAE normalized), next to published figures; "
        "DLinear reproduces its paper. "
        "With --seeds N every model trains N times (seeds seed … seed+N−1) and the table gives mean and std. "
        "irish5g: real operator LTE/5G traces, held-out traces, DL throughput 1–10 s ahead, MAE in kbit/s and "
        "the last-value baseline. compare: any dataset (--data). Each writes reports/<preset>/h<H>/ with "
        "results.json, report.md, error_by_horizon.png and forecast plots. "
        "ablation: one --model trained once per value of --param name=v1,v2,… on --data (ett, irish5g with their "
        "presets' recipe, or any dataset; default ett): validation and test error, state bytes per cell and µs "
        "per exported step at batch 1 and 1,000, with ablation.png under reports/ablation/.",
    )
    p.add_argument("preset", choices=["ett", "irish5g", "compare", "ablation"], help="which comparison")
    p.add_argument("--model", action="append", help="model to include (repeatable; default: the preset's list)")
    p.add_argument("--horizon", type=int, action="append", help="horizon(s) (default: ett 96 and 192; else 10)")
    p.add_argument("--data", help="dataset for `compare` and `ablation` (synthetic, ett, irish5g, a CSV path, ...)")
    p.add_argument("--param", help="ablation: the config field and its values, name=v1,v2,…")
    p.add_argument("--steps", type=int, help="training steps per model (same budget for all)")
    p.add_argument("--seed", type=int, help="first random seed (default 0)")
    p.add_argument("--split", choices=["series", "time", "app"],
                   help="how to split (default: the preset's); app: Irish 5G cross-application protocol, train on "
                   "Download traces and test on Netflix ones, then the other way round")
    p.add_argument("--seeds", type=int, default=1, help="seeds per model (mean ± std over them; default 1)")
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
