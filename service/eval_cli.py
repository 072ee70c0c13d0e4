"""`ms3m eval`: the comparisons (ett, irish5g, compare) and the one-parameter ablation, from the command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable


def _cmd_eval(args: argparse.Namespace) -> int:
    import dataclasses
    from pathlib import Path

    from models.training import compare as cmp
    from service.output import print_result

    preset = args.preset
    if preset == "ablation":
        if args.ablation is None:
            print("ms3m eval ablation needs the bench package (a source checkout: `make install`)", file=sys.stderr)
            return 2
        return args.ablation(args)
    if args.param:
        print("ms3m eval: --param belongs to `ms3m eval ablation`", file=sys.stderr)
        return 2
    if args.split == "app" and preset != "irish5g":
        print("ms3m eval: --split app is the Irish 5G cross-application protocol (preset irish5g)", file=sys.stderr)
        return 2
    horizons = args.horizon or (list(cmp.ETT_HORIZONS) if preset == "ett" else [10])
    models = args.model or (["dlinear", "linear", "s4d", "mamba", "lru", "transformer", "lstm", "ms3m",
                             *cmp.TSLIB_RECIPE_MODELS, *cmp.SEED_ARCHITECTURES]
                            if preset == "ett" else ["s4d", "mamba", "transformer", "lstm", "tcn", "ms3m",
                                                     *cmp.SEED_ARCHITECTURES])
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


def add_eval_parser(sub: argparse._SubParsersAction, ablation: Callable[[argparse.Namespace], int] | None) -> None:
    """`ms3m eval`; `ablation` runs `ms3m eval ablation` (bench.cli.cmd_ablation: it times exported steps)."""
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
    p.set_defaults(handler=_cmd_eval, ablation=ablation)
