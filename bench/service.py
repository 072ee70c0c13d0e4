"""`ms3m bench service`: the xApp end to end (gRPC ingest → buffer → batched step → forecast) under load, serving
MS³M with the router on (and an S4D bundle beside it as the reference), next to a naive service (FastAPI + torch
forward over each cell's full window per request), in one run.

The xApp runs as its own process (`ms3m serve`), the load generator as another (`ms3m simulate`), so the
figures include gRPC, validation, the buffer append, the engine and the forecast bookkeeping; latency is
measured inside the xApp from the receipt of a report to its forecast (exact quantiles from /v1/stats).
The naive service gets the same cells and KPIs over HTTP, batches of `naive_batch` samples per request,
latency measured by the client from send to response.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from contract.kpis import DEFAULT_TARGETS, SYNTHETIC_KPIS


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def default_bundle(root: Path, model: str = "s4d") -> Path:
    """The model's registry-default bundle over the simulator's KPIs (contract.kpis.SYNTHETIC_KPIS), forecasting
    contract.kpis.DEFAULT_TARGETS; weights untrained: cost is what counts."""
    import torch

    from models import create_model
    from models.export import write_bundle

    torch.manual_seed(0)
    target_index = tuple(SYNTHETIC_KPIS.index(k) for k in DEFAULT_TARGETS)
    m = create_model(model, d_input=len(SYNTHETIC_KPIS), n_targets=len(DEFAULT_TARGETS), horizon=8,
                     target_index=target_index)
    return write_bundle(m, root / f"{model}-default", name=f"{model}-default", inputs=list(SYNTHETIC_KPIS),
                        targets=list(DEFAULT_TARGETS), period_ms=1000)


def _get(port: int, path: str) -> dict:
    import httpx

    return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=10).json()


def _start_xapp(bundle: Path, buffer: str, log: Path, namespace: str) -> tuple[subprocess.Popen, int, int]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MS3M_BUFFER=buffer, MS3M_HTTP_HOST="127.0.0.1",
               MS3M_GRPC_HOST="127.0.0.1", MS3M_LOG_LEVEL="warning", MS3M_NAMESPACE=namespace,
               MS3M_JOURNAL_DIR=str(log.parent))
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--bundle", str(bundle),
                                 "--http-port", "0", "--grpc-port", "0"], stdout=subprocess.PIPE, stderr=err,
                                env=env, text=True)
    line = proc.stdout.readline()
    m = re.search(r"REST http://localhost:(\d+)\s+gRPC localhost:(\d+)", line)
    if not m:
        proc.kill()
        raise RuntimeError(f"xApp did not start: {line!r} {log.read_text()[-1500:]}")
    return proc, int(m.group(1)), int(m.group(2))


def _xapp_phase(proc, http: int, grpc_port: int, rate: int, duration: float, cells: int, start_ms: int) -> dict:
    import psutil

    p = psutil.Process(proc.pid)
    _get(http, "/v1/stats?reset=true")
    before = _get(http, "/v1/stats")["samples"]
    counts0, warm0 = _counts(http), _warmups(http)
    cpu0, t0 = p.cpu_times(), time.perf_counter()
    sim = subprocess.run([sys.executable, "-m", "service.cli", "simulate", "--target", f"127.0.0.1:{grpc_port}",
                          "--cells", str(cells), "--rate", str(rate), "--duration", str(duration), "--json",
                          "--quiet", "--start-ms", str(start_ms)], capture_output=True, text=True,
                         env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=duration + 120)
    sent = json.loads(sim.stdout.strip().splitlines()[-1]) if sim.stdout.strip() else {}
    deadline = time.perf_counter() + 60
    while True:  # let the engine finish: every accepted sample gets its forecast (or a counted drop)
        now = _counts(http)
        if now["accepted"] - counts0["accepted"] == (now["forecast"] + now["dropped"]
                                                   - counts0["forecast"] - counts0["dropped"]):
            break
        if time.perf_counter() > deadline:
            break  # conservation() below says what is missing
        time.sleep(0.02)
    wall = time.perf_counter() - t0
    stats = _get(http, "/v1/stats")
    counts = conservation(counts0, _counts(http), sent)
    cpu1 = p.cpu_times()
    done = stats["samples"] - before
    lat = stats["latency_s"]
    warm = [b - a for a, b in zip(warm0, _warmups(http))]  # group warm-ups in this phase, their seconds
    return {
        "system": "xapp", "offered_per_s": rate or "max", "sustained_per_s": round(done / wall),
        "p50_ms": round(lat["p50"] * 1e3, 2) if lat["p50"] is not None else None,
        "p99_ms": round(lat["p99"] * 1e3, 2) if lat["p99"] is not None else None,
        "cpu_percent": round(100 * ((cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)) / wall),
        "rss_mb": round(p.memory_info().rss / 2**20), "rejected": sent.get("rejected"),
        "step_p50_ms": round(stats["step_s"]["p50"] * 1e3, 3) if stats["step_s"]["p50"] else None,
        "warmups": int(warm[0]), "warmup_mean_ms": round(warm[1] / warm[0] * 1e3, 1) if warm[0] else None,
        **counts,
    }


def _counts(http: int) -> dict[str, float]:
    """The xApp's conservation counters: accepted samples, forecasts (all models), dropped (all reasons)."""
    import httpx

    text = httpx.get(f"http://127.0.0.1:{http}/metrics", timeout=10).text
    total = lambda name: sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))  # noqa: E731
    return {"accepted": total("ms3m_ingest_samples_total"), "forecast": total("ms3m_forecasts_total"),
            "dropped": total("ms3m_engine_dropped_total")}


def _warmups(http: int) -> tuple[float, float]:
    """(count, total seconds) of the xApp's expert warm-ups (ms3m_expert_warmup_seconds: one per expert and
    group of cells: window read, the pass over the windows, install)."""
    import httpx

    text = httpx.get(f"http://127.0.0.1:{http}/metrics", timeout=10).text
    get = lambda name: sum(float(v) for v in re.findall(rf"^{name} (\S+)$", text, re.M))  # noqa: E731
    return get("ms3m_expert_warmup_seconds_count"), get("ms3m_expert_warmup_seconds_sum")


class ConservationError(RuntimeError):
    """An accepted sample neither came out as a forecast nor was counted as dropped."""


def conservation(before: dict[str, float], after: dict[str, float], sent: dict) -> dict[str, int]:
    """accepted / forecast / dropped over a phase; raises ConservationError when a sample vanished (or the
    publisher's acknowledged count disagrees with the xApp's)."""
    d = {k: int(after[k] - before[k]) for k in before}
    if d["accepted"] != d["forecast"] + d["dropped"]:
        raise ConservationError(f"{d['accepted']} samples accepted but {d['forecast']} forecast and {d['dropped']} "
                                f"counted dropped: {d['accepted'] - d['forecast'] - d['dropped']} vanished")
    if sent.get("accepted") is not None and int(sent["accepted"]) != d["accepted"]:
        raise ConservationError(f"the publisher saw {sent['accepted']} samples acknowledged, the xApp counted "
                                f"{d['accepted']} accepted")
    return d


async def _naive_load(port: int, rate: int, duration: float, cells: int, batch: int) -> dict:
    import httpx

    rng = np.random.default_rng(0)
    lat: list[float] = []
    done = 0
    cell_ids = [f"cell-{i:04d}" for i in range(cells)]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30,
                                 limits=httpx.Limits(max_connections=8)) as client:
        t0 = time.perf_counter()
        sent, nxt = 0, 0
        pending: set[asyncio.Task] = set()

        async def one(chunk: list[str]):
            nonlocal done
            body = {"cells": chunk, "values": rng.standard_normal((len(chunk), len(SYNTHETIC_KPIS))).tolist()}
            s = time.perf_counter()
            r = await client.post("/forecast", json=body)
            r.raise_for_status()
            lat.append(time.perf_counter() - s)
            done += len(chunk)

        while time.perf_counter() - t0 < duration:
            if rate:  # pace batches; at most 8 in flight (more would only queue in the server)
                due = t0 + sent / rate
                now = time.perf_counter()
                if now < due:
                    await asyncio.sleep(due - now)
            while len(pending) >= 8:
                _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            chunk = [cell_ids[(nxt + i) % cells] for i in range(batch)]
            nxt = (nxt + batch) % cells
            pending.add(asyncio.create_task(one(chunk)))
            sent += batch
        if pending:
            await asyncio.wait(pending)
        wall = time.perf_counter() - t0
    a = np.array(lat)
    return {"system": "naive", "offered_per_s": rate or "max", "sustained_per_s": round(done / wall),
            "p50_ms": round(float(np.percentile(a, 50)) * 1e3, 2) if len(a) else None,
            "p99_ms": round(float(np.percentile(a, 99)) * 1e3, 2) if len(a) else None}


def default_bundles(root: Path, bundle: str | Path | None, reference: str | None) -> list[Path]:
    """What `run` serves: `bundle`, else the cached trained demo bundle (MS³M, `make demo`) if there is one, else
    the registry-default MS³M; then the registry-default `reference` model (None: no reference row)."""
    from service.demo import cache_dir

    if bundle is not None:
        primary = Path(bundle)
    elif (cache_dir() / "bundle" / "config.json").is_file():
        primary = cache_dir() / "bundle"
    else:
        primary = default_bundle(root, "ms3m")
    return [primary] + ([default_bundle(root, reference)] if reference else [])


def _drop_namespace(namespace: str) -> None:
    """Delete the keys a Redis-buffered run wrote (`{namespace},*`), from the same settings the xApp used."""
    import redis

    from service.config import Settings

    s = Settings(buffer="redis", namespace=namespace)
    password = s.redis_password.get_secret_value() if s.redis_password is not None else None
    client = redis.Redis(host=s.redis_host or "127.0.0.1", port=s.redis_port, password=password, db=s.redis_db)
    try:
        keys = list(client.scan_iter(match=f"{{{namespace}}},*", count=1000))
        for i in range(0, len(keys), 1000):
            client.delete(*keys[i:i + 1000])
    finally:
        client.close()


def _set_objective(http: int, objective: str, budget: float) -> None:
    """One A1 objective policy for every cell (policy type 20300)."""
    import httpx

    r = httpx.put(f"http://127.0.0.1:{http}/A1-P/v2/policytypes/20300/policies/bench",
                  json={"objective": objective, "computeBudget": budget}, timeout=10)
    r.raise_for_status()


def _active_experts(http: int, cells: int) -> float | None:
    """Mean active experts per cell from the ms3m_expert_active_cells gauges (None for a bundle without experts)."""
    import httpx

    text = httpx.get(f"http://127.0.0.1:{http}/metrics", timeout=10).text
    active = [float(v) for v in re.findall(r"^ms3m_expert_active_cells\{[^}]*\} (\S+)$", text, re.M)]
    return round(sum(active) / cells, 2) if active else None


def run(bundle: str | Path | None = None, loads: Sequence[int] = (10_000, 20_000, 50_000), duration: float = 8.0,
        cells: int = 1000, buffer: str = "memory", naive: bool = True, naive_batch: int = 100,
        naive_window: int = 256, reference: str | None = "s4d", objective: str = "balanced", budget: float = 1.0,
        progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Serve the MS³M bundle (see default_bundles) with the router on under `objective` / `budget` at each load and
    then flat out, then the `reference` model's registry-default bundle the same way, then the naive service.
    Raises ConservationError when an accepted sample was neither forecast nor counted as dropped."""
    import psutil

    from service.runtime import load_bundle

    say = progress or (lambda s: None)
    root = Path(tempfile.mkdtemp(prefix="ms3m-bench-service-"))
    bundles = default_bundles(root, bundle, reference)
    rows = []
    # simulated time of each phase in its own slot, all within the xApp's accepted window around the clock
    spacing = int(max(*loads, 300_000) * duration / cells * 1000 * 1.5) + 3_600_000
    base = int(time.time() * 1000) - spacing * (len(loads) + 2)
    for j, path in enumerate(bundles):
        m = load_bundle(path).manifest
        namespace = f"bench-{os.getpid()}-{j}"  # a fresh buffer per bundle (Redis keeps what a run wrote)
        proc, http, grpc_port = _start_xapp(path, buffer, root / "xapp.log", namespace)
        try:
            _set_objective(http, objective, budget)
            for i, rate in enumerate([*loads, 0]):
                say(f"xApp {m.name}: offered {rate or 'max'} samples/s for {duration:.0f} s")
                row = _xapp_phase(proc, http, grpc_port, rate, duration, cells, base + i * spacing)
                time.sleep(1.1)  # the expert gauges are refreshed once a second
                rows.append({"system": "xapp", "model": m.model, "objective": objective if m.experts else None,
                             "active_experts": _active_experts(http, cells), **row})
        finally:
            proc.terminate()
            proc.wait(20)
            if buffer == "redis":
                _drop_namespace(namespace)
    bundle = bundles[0]
    if naive:
        port = _free_port()
        nproc = subprocess.Popen([sys.executable, "-m", "bench.naive_service", str(bundle),
                                  str(port), str(naive_window)], env=dict(os.environ, OMP_NUM_THREADS="1"),
                                 stderr=subprocess.DEVNULL)
        try:
            for _ in range(300):
                try:
                    _get(port, "/docs")
                    break
                except Exception:
                    time.sleep(0.1)
            p = psutil.Process(nproc.pid)
            for rate in [*loads, 0]:
                say(f"naive: offered {rate or 'max'} samples/s for {duration:.0f} s")
                cpu0, t0 = p.cpu_times(), time.perf_counter()
                row = asyncio.run(_naive_load(port, rate, duration, cells, naive_batch))
                cpu1, wall = p.cpu_times(), time.perf_counter() - t0
                row["cpu_percent"] = round(100 * ((cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)) / wall)
                row["rss_mb"] = round(p.memory_info().rss / 2**20)
                rows.append({"system": "naive", "model": load_bundle(bundle).manifest.model, **row})
        finally:
            nproc.terminate()
            nproc.wait(20)
    primary = load_bundle(bundles[0]).manifest.model
    pick = lambda model, load: next((r for r in rows if r["system"] == "xapp" and r["model"] == model  # noqa: E731
                                     and r["offered_per_s"] == load), None)
    x_max = pick(primary, "max")["sustained_per_s"]
    summary: dict[str, Any] = {"xapp_max_samples_per_s": x_max}
    x20 = pick(primary, 20_000)
    if x20:
        summary["xapp_p99_ms_at_20k"] = x20["p99_ms"]
    if reference:
        r_max, r20 = pick(reference, "max")["sustained_per_s"], pick(reference, 20_000)
        summary[f"{reference}_max_samples_per_s"] = r_max
        summary[f"throughput_ratio_{primary}_over_{reference}"] = round(x_max / max(r_max, 1), 3)
        if x20 and r20:
            summary[f"{reference}_p99_ms_at_20k"] = r20["p99_ms"]
            summary[f"p99_ratio_{primary}_over_{reference}_at_20k"] = round(x20["p99_ms"] / max(r20["p99_ms"], 1e-9), 2)
    if naive:
        n_max = next(r for r in rows if r["system"] == "naive" and r["offered_per_s"] == "max")["sustained_per_s"]
        summary["naive_max_samples_per_s"] = n_max
        summary["throughput_ratio_xapp_over_naive"] = round(x_max / max(n_max, 1), 1)

    m = load_bundle(bundle).manifest
    return {"benchmark": "service", "columns": ["system", "model", "objective", "active_experts", "offered_per_s",
                                                "sustained_per_s", "p50_ms", "p99_ms",
                                                "cpu_percent", "rss_mb", "warmups", "warmup_mean_ms", "accepted",
                                                "forecast", "dropped"],
            "rows": rows, "summary": summary,
            "settings": {"bundle": m.name, "model": m.model, "reference": reference, "objective": objective,
                         "compute_budget": budget, "cells": cells, "duration_s": duration,
                         "buffer": buffer, "naive_batch": naive_batch, "naive_window": naive_window,
                         "cpus": os.cpu_count()}}
