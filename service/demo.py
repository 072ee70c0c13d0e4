"""`ms3m demo` (what `make demo` runs): the whole product on one machine, no Redis needed.

1. Loads the demo bundle from the cache, or trains it once (MS³M on the synthetic multi-cell KPIs,
   forecasting DL throughput and PRB use, a few minutes on 2 cores, with a progress bar).
2. Starts the xApp with the embedded memory buffer (REST on 8080, gRPC on 50051 by default).
3. Streams the built-in simulator into it over gRPC.
4. Shows a live table: cells, latest values, forecasts with intervals, active experts and gate weights,
   the latest control action; plus ingest rate, latency and router activity. Ctrl-C stops cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

DEMO_VERSION = "v2"  # bump to retrain cached demo bundles when the recipe or the bundle format changes
DEMO_TARGETS = ["DRB.UEThpDl", "RRU.PrbUsedDl"]


def cache_dir() -> Path:
    base = os.environ.get("MS3M_CACHE_DIR") or os.path.join(os.environ.get("XDG_CACHE_HOME") or
                                                             Path.home() / ".cache", "ms3m")
    return Path(base) / "demo" / DEMO_VERSION


QUICK_STEPS = 60  # the bundle served at once: a small MS³M that trains in seconds
QUICK_MODEL = {"d_feature": 16, "d_gate": 16, "experts": [
    {"kind": "s4d", "scale": 1, "d_model": 16, "n_layers": 1, "options": {"d_state": 8}},
    {"kind": "lru", "scale": 4, "d_model": 16, "n_layers": 1, "options": {"d_state": 16}}]}


def _train(run: Path, bundle: Path, steps: int, model_config: dict, data: dict, window: int, progress: bool,
           retrain: bool, log=print) -> Path:
    try:
        from models.training.trainer import TrainConfig, Trainer
    except ImportError as e:
        raise SystemExit(f"ms3m demo: no cached bundle in {bundle} and training needs the train extra "
                         f"(pip install 'ms3m-xapp[train]'): {e}") from None
    config = TrainConfig(model="ms3m", model_config=model_config, data="synthetic", targets=DEMO_TARGETS, horizon=8,
                         window=window, batch_size=16, max_steps=steps, eval_every=max(30, steps // 6),
                         warmup_steps=min(30, steps // 4), patience=100, data_options=data)
    trainer = Trainer(config, run, progress=progress, log=log)
    trainer.fit(resume=not retrain)
    return trainer.write_bundle(bundle)


def ensure_bundle(steps: int = 300, retrain: bool = False, log=print, progress: bool = True) -> Path:
    """The cached full demo bundle (MS³M, `steps` training steps); trains it when missing (needs the `train`
    extra: torch; minutes)."""
    root = cache_dir()
    bundle = root / "bundle"
    if bundle.joinpath("config.json").is_file() and not retrain:
        return bundle
    log(f"training the demo bundle (MS³M, synthetic KPIs, {steps} steps); cached in {bundle}")
    return _train(root / "run", bundle, steps, {}, {"n_cells": 24, "length": 3 * 1440}, 128, progress, retrain, log)


def quick_bundle(log=print) -> Path:
    """A small MS³M over the same KPIs, trained in seconds (cached): what the demo serves while the full bundle
    trains in the background."""
    root = cache_dir()
    bundle = root / "quick"
    if bundle.joinpath("config.json").is_file():
        return bundle
    log(f"training a quick MS³M bundle ({QUICK_STEPS} steps, seconds) to serve while the full one trains")
    return _train(root / "quick-run", bundle, QUICK_STEPS, QUICK_MODEL, {"n_cells": 8, "length": 1440}, 64, False,
                  True, log)


def start_full_training(steps: int, retrain: bool, log_path: Path) -> subprocess.Popen:
    """Train the full bundle in a process of its own (the xApp keeps both cores' worth of Python to itself)."""
    code = (f"from service.demo import ensure_bundle; ensure_bundle({int(steps)}, {bool(retrain)}, "
            "log=lambda *a: None, progress=False)")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as err:
        return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=err)


def training_step() -> int:
    """The full bundle's last evaluated training step (0 before the first evaluation)."""
    with contextlib.suppress(OSError, ValueError, IndexError, KeyError):
        lines = (cache_dir() / "run" / "history.jsonl").read_text().splitlines()
        return int(json.loads(lines[-1])["step"])
    return 0


def _fmt(v: float) -> str:
    if not np.isfinite(v):
        return "–"
    a = abs(v)
    return f"{v / 1e3:.1f}k" if a >= 1e4 else (f"{v:.1f}" if a >= 10 else f"{v:.2f}")


def render(xapp, sim_stats: dict, started: float, max_rows: int = 14, status: str = ""):
    """A rich renderable: header line and the cell table."""
    from rich.console import Group
    from rich.text import Text

    host = xapp.hosts[0]
    stats = xapp.engine.stats()
    lat = stats["latency_s"]
    names = host.targets
    k_dl = names.index("DRB.UEThpDl") if "DRB.UEThpDl" in names else 0
    k_prb = names.index("RRU.PrbUsedDl") if "RRU.PrbUsedDl" in names else None
    last_action = {}
    for a in list(xapp.actions)[-500:]:
        last_action[a["cell_id"]] = a
    router = next(iter(xapp.routers.values()), None)
    compute = router.compute_fraction() if router else None
    rate = sim_stats.get("rate_now") or 0
    header = Text.assemble(
        ("MS³M xApp demo  ", "bold"), f"REST http://localhost:{xapp.http_port}  gRPC :{xapp.grpc_port}  |  ",
        f"ingest {rate:,.0f} samples/s  cells {len(host.table)}  forecasts {stats['samples']:,}  ",
        f"latency p50 {lat['p50'] * 1e3:.1f} ms p99 {lat['p99'] * 1e3:.1f} ms  " if lat["p50"] else "",
        f"actions {len(xapp.actions)}  " + (f"expert compute {compute:.0%}  " if compute is not None else ""),
        f"up {time.time() - started:.0f}s  (Ctrl-C to stop)", *([f"\n{status}"] if status else []))
    rows = []
    cells = sorted(host.table.cells())[:max_rows]
    ffill = host.table.arrays[-2]
    for cell in cells:
        slot = host.table.slot(cell)
        hit = host.latest(cell)
        if slot is None or hit is None:
            continue
        _, point, lower, upper, gate = hit
        now = ffill[slot]
        dl_now = now[host.inputs.index("DRB.UEThpDl")] if "DRB.UEThpDl" in host.inputs else np.nan
        prb_now = now[host.inputs.index("RRU.PrbUsedDl")] if "RRU.PrbUsedDl" in host.inputs else np.nan
        experts = ""
        if gate is not None:
            active = host.active[slot]
            experts = " ".join(f"{n}:{w:.2f}" for n, w, a in zip(host.expert_names, gate, active) if a)
        act = last_action.get(cell)
        said = textwrap.shorten(f"{act['kind']}: {act['reason']}", 160, placeholder=" …") if act else ""
        rows.append((cell, _fmt(dl_now), f"{_fmt(point[0, k_dl])} [{_fmt(lower[0, k_dl])}, {_fmt(upper[0, k_dl])}]",
                     _fmt(point[-1, k_dl]), _fmt(prb_now), _fmt(point[-1, k_prb]) if k_prb is not None else "–",
                     experts, said))
    heads = ("cell", "DL thp now", "DL +1 [90%]", f"DL +{host.horizon}", "PRB % now", f"PRB +{host.horizon}",
             "active experts (gate weight)", "latest action")
    return Group(header, LiveTable(heads, rows))


class LiveTable:
    """The cell table, fitted to the terminal: numbers never wrap or truncate (their columns are as wide as their
    widest entry), the two text columns (experts, action) share the rest and wrap between words, and on a
    terminal too narrow for every column the least important ones are left out (DROP_ORDER)."""

    TEXT_MIN = (12, 24)  # experts, action: narrowest useful widths
    DROP_ORDER = (4, 1, 5, 6)  # PRB now, DL now, PRB +H, experts

    def __init__(self, heads: tuple[str, ...], rows: list[tuple[str, ...]]):
        self.heads, self.rows = heads, rows

    def _widths(self) -> list[int]:
        numeric = [max([len(h), *(len(r[i]) for r in self.rows)]) for i, h in enumerate(self.heads[:6])]
        return numeric + list(self.TEXT_MIN)

    def table(self, width: int):
        from rich.table import Table

        widths, keep = self._widths(), list(range(len(self.heads)))
        for i in self.DROP_ORDER:  # each column costs its width plus padding and a border (3)
            if sum(widths[j] + 3 for j in keep) + 1 <= width:
                break
            keep.remove(i)
        t = Table(expand=True)
        for i in keep:
            if i < 6:
                t.add_column(self.heads[i], no_wrap=True, min_width=widths[i])
            else:
                t.add_column(self.heads[i], overflow="fold", min_width=widths[i], ratio=1 if i == 6 else 2)
        for r in self.rows:
            t.add_row(*(r[i] for i in keep))
        return t

    def __rich_console__(self, console, options):
        yield self.table(options.max_width)


async def swap_in_when_trained(xapp, proc: subprocess.Popen, steps: int, status: dict, log_path: Path) -> None:
    """Follow the background training (status["text"]) and hot-swap its bundle in when it is done."""
    t0 = time.time()
    while proc.poll() is None:
        status["text"] = f"serving the quick bundle; training the full MS³M bundle: step {training_step()}/{steps}"
        await asyncio.sleep(1.0)
    full = cache_dir() / "bundle"
    if proc.returncode != 0 or not (full / "config.json").is_file():
        status["text"] = f"full bundle training failed (exit {proc.returncode}; see {log_path}); serving the quick one"
        return
    status["text"] = "swapping in the full MS³M bundle (warming it from every cell's window)"
    try:
        done = await xapp.swap_bundle(xapp.hosts[0].name, str(full))
    except Exception as e:
        status["text"] = f"swap refused: {e}"
        return
    status["text"] = (f"serving the full MS³M bundle (trained in {time.time() - t0:.0f} s, swapped in "
                      f"{done['seconds']:.1f} s, {done['cells']} cells warmed)")


async def run_demo(http_port: int, grpc_port: int, cells: int, speedup: float, bundle: Path, live: bool,
                   train_steps: int | None = None, retrain: bool = False) -> int:
    from rich.console import Console
    from rich.live import Live

    from service.app import XApp
    from service.config import Settings
    from service.runtime import load_bundle
    from service.sim.simulator import simulate

    settings = Settings(bundles=[bundle], buffer="memory", http_port=http_port, grpc_port=grpc_port,
                        decision_period_samples=30, max_future_ms=0)  # simulated time runs ahead of the clock
    xapp = XApp(settings)
    try:
        await xapp.start()
    except OSError as e:
        print(f"ms3m demo: cannot listen ({e}); choose other ports with --http-port / --grpc-port", file=sys.stderr)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    sim_stats: dict = {}
    kpis = load_bundle(bundle).manifest.inputs
    sim = asyncio.create_task(simulate(f"127.0.0.1:{xapp.grpc_port}", n_cells=cells, speedup=speedup, kpis=kpis,
                                       stop=stop, on_progress=sim_stats.update, progress_interval_s=0.5,
                                       cycle_steps=600))
    started = time.time()
    console = Console()
    status: dict = {"text": ""}
    trainer = swapper = None
    if train_steps is not None:
        log_path = cache_dir() / "train.log"
        trainer = start_full_training(train_steps, retrain, log_path)
        swapper = asyncio.create_task(swap_in_when_trained(xapp, trainer, train_steps, status, log_path))
    try:
        if live:
            with Live(render(xapp, sim_stats, started), console=console, refresh_per_second=2, screen=False) as lv:
                while not stop.is_set() and not sim.done():
                    await asyncio.sleep(0.5)
                    lv.update(render(xapp, sim_stats, started, status=status["text"]))
        else:
            while not stop.is_set() and not sim.done():
                await asyncio.sleep(2)
                s = xapp.engine.stats()
                console.print(f"forecasts {s['samples']:,}  cells {len(xapp.hosts[0].table)}  "
                              f"actions {len(xapp.actions)}  ingest {sim_stats.get('rate_now', 0):,.0f}/s  "
                              f"model {xapp.hosts[0].name}  {status['text']}")
    finally:
        stop.set()
        if swapper is not None:
            swapper.cancel()
        if trainer is not None and trainer.poll() is None:
            trainer.terminate()  # resumes from its checkpoint next time
        with contextlib.suppress(Exception):
            await asyncio.wait_for(sim, 10)
        await xapp.stop()
    if sim.done() and not sim.cancelled() and sim.exception() is not None:
        print(f"ms3m demo: simulator failed: {sim.exception()}", file=sys.stderr)
        return 1
    console.print("demo stopped")
    return 0


def main(http_port: int = 8080, grpc_port: int = 50051, cells: int = 40, speedup: float = 5.0, steps: int = 300,
         retrain: bool = False, live: bool | None = None) -> int:
    """Serve the cached full demo bundle; without one (or with retrain), serve a quick bundle within seconds,
    train the full one in the background and hot-swap it in when done."""
    full = cache_dir() / "bundle"
    live = sys.stdout.isatty() if live is None else live
    if full.joinpath("config.json").is_file() and not retrain:
        return asyncio.run(run_demo(http_port, grpc_port, cells, speedup, full, live))
    bundle = quick_bundle()
    return asyncio.run(run_demo(http_port, grpc_port, cells, speedup, bundle, live, train_steps=steps,
                                retrain=retrain))
