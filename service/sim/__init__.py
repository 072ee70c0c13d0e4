"""KPI sources for the xApp: a synthetic multi-cell simulator and a replayer of real LTE/5G traces.

Both publish over gRPC (ms3m.v1.E2Ingest/PublishAcked) through `service.sim.publisher.Publisher`. This
module only registers the CLI subcommands (`add_simulate_parser`, `add_replay_parser`); the heavy imports
(grpc, numpy, pandas) happen when a command runs, and nothing here imports the `models` package (torch).
Modules: `encoding` (the KpiIndication wire format), `delivery` (the acked and unacked streams), `publisher`,
`e2sm_publisher` (E2SM-KPM RIC indications instead, `--encoding e2sm-kpm`),
`generator` (the simulator's physics), `simulator` (`simulate`), `replayer` (`replay`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import textwrap
from collections.abc import Callable

from contract.kpis import SYNTHETIC_KPIS

DEFAULT_TARGET = "localhost:50051"
SIMULATED_KPIS = list(SYNTHETIC_KPIS)  # what `simulate` sends (service.sim.simulator.KPIS), in the dataset's order


def _paragraphs(*texts: str) -> str:
    """Help text wrapped to the terminal's conventional width (the parsers keep the examples' line breaks)."""
    return "\n\n".join(textwrap.fill(t, 79) for t in texts)


def _positive_int(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def _non_negative(text: str) -> float:
    v = float(text)
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return v


def _add_delivery_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("delivery")
    g.add_argument("--target", default=DEFAULT_TARGET, help=f"xApp gRPC address host:port (default {DEFAULT_TARGET})")
    g.add_argument("--batch-size", type=_positive_int, default=1000,
                   help="reports per KpiIndication message (default 1000; the xApp accepts up to 20000)")
    g.add_argument("--max-in-flight", type=_positive_int, default=8,
                   help="unacknowledged messages on the stream (default 8)")
    g.add_argument("--encoding", choices=["protobuf", "e2sm-kpm"], default="protobuf",
                   help="protobuf: KpiIndication messages to E2Ingest (default); e2sm-kpm: E2SM-KPM RIC indications "
                   "(aligned PER, as an E2 node sends them) to E2smIngest, cells bound by registered subscriptions")
    g.add_argument("--kpm-version", type=int, choices=[2, 3, 4], default=3,
                   help="E2SM-KPM version of --encoding e2sm-kpm (default 3)")
    g.add_argument("--no-ack", action="store_true",
                   help="use the client-streaming Publish (one ack at the end; a broken stream's messages are not "
                   "re-sent) instead of PublishAcked (an ack per message, re-send after reconnect: at-least-once)")
    o = p.add_argument_group("output")
    o.add_argument("--json", action="store_true", help="print the final statistics as one JSON document on stdout")
    o.add_argument("--quiet", action="store_true", help="no live throughput line")


def add_simulate_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `simulate`: synthetic multi-cell KPIs to the xApp over gRPC."""
    KPIS = SIMULATED_KPIS
    p = subparsers.add_parser(
        "simulate",
        help="stream synthetic multi-cell KPIs to the xApp (gRPC E2Ingest)",
        description=_paragraphs(
            "Generate a seeded, endless stream of correlated RAN KPIs (E2SM-KPM names; diurnal load, "
            "regimes, bursts, radio drift, anomalies: the physics of the offline synthetic dataset) for --cells cells "
            "named gnb-001-cell-00 ..., and publish it to the xApp with per-message acks, reconnecting and "
            "re-sending unacked messages if the stream breaks.",
            "Every cell reports once per --period-ms of simulated time; "
        "timestamps are simulated time, strictly increasing per series. --rate sets samples/s (one sample = one "
        "report, all series together), --speedup sets the same as a multiple of real time (default 1.0: "
        "cells × 1000/period samples/s); accelerated runs have timestamps ahead of the wall clock.",
            "Prints the live throughput once a second and final statistics (samples, accepted, rejected by reason, "
            "ack latency p50/p99, throughput). Stops after --duration or --samples, or on Ctrl-C (after flushing).",
        ),
        epilog="examples:\n  ms3m simulate --cells 1000 --rate 100000 --duration 60\n"
        "  ms3m simulate --cells 20 --slices --duration 30 --json > stats.json\n"
        "  ms3m simulate --cells 100 --speedup 10 --kpi DRB.UEThpDl --kpi RRU.PrbUsedDl",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s = p.add_argument_group("stream")
    s.add_argument("--cells", type=_positive_int, default=100, help="number of cells (default 100)")
    s.add_argument("--nodes", type=_positive_int, default=1,
                   help="E2 nodes the cells are spread over, one gRPC stream each (default 1: gnb-001)")
    s.add_argument("--period-ms", type=_positive_int, default=1000,
                   help="KPM granularity period: simulated time between a cell's reports (default 1000)")
    pace = s.add_mutually_exclusive_group()
    pace.add_argument("--rate", type=_non_negative, help="samples/s over all series (0 = as fast as possible)")
    pace.add_argument("--speedup", type=float, help="rate as a multiple of real time (default 1.0)")
    s.add_argument("--duration", type=float, help="seconds to run (default: until --samples or Ctrl-C)")
    s.add_argument("--samples", type=_positive_int, help="stop after this many samples")
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    s.add_argument("--kpi", action="append", choices=KPIS, metavar="NAME",
                   help=f"KPI to send (repeatable; default all: {', '.join(KPIS)})")
    s.add_argument("--slices", action="store_true",
                   help="also send per-slice reports (S-NSSAI sst 1 eMBB, sst 2 URLLC) for each cell")
    s.add_argument("--missing-rate", type=float, default=0.0, help="fraction of values sent as absent (default 0)")
    s.add_argument("--cycle-steps", type=_positive_int, default=1440,
                   help="reports per simulated day (default 1440: a day at 1-minute steps)")
    s.add_argument("--no-anomalies", action="store_true", help="no injected surges, outages or interference")
    s.add_argument("--start-ms", type=int,
                   help="first simulated timestamp, Unix ms (default: so that a paced run with --duration ends "
                        "now; else now). The xApp refuses timestamps over a day ahead of its clock "
                        "(MS3M_MAX_FUTURE_MS) or a week behind (MS3M_MAX_SAMPLE_AGE_MS)")
    _add_delivery_args(p)
    p.set_defaults(handler=_cmd_simulate)
    return p


def add_replay_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `replay`: the Irish LTE/5G traces to the xApp over gRPC."""
    p = subparsers.add_parser(
        "replay",
        help="replay real LTE/5G KPI traces (Irish 5G dataset) to the xApp (gRPC E2Ingest)",
        description=_paragraphs(
            "Replay the per-second traces of uccmisl/5Gdataset (Raca et al., MMSys 2020) from --root "
            "as a live KPM stream: DL/UL throughput, RSRP, RSRQ, SINR, CQI, RSSI, speed and NR mode under the names "
            "the offline trainer uses. Rows sharing a second are averaged; missing values are sent as absent.",
            "--as cell (default): one trace = one cell 'trace-<file>' (continuous series, as in training); "
        "--as ue: one trace = one UE on its serving cell 'eci-<id>' (KPM format 3 style; handovers split the "
        "series).",
            "Timestamps keep the traces' spacing, shifted to now (--align start: every trace starts now, "
            "side by side; absolute: one shift for all), merged in time order and paced at --speed × real time. "
            "Needs pandas.",
        ),
        epilog="examples:\n  ms3m replay --speed 60\n  ms3m replay --speed 0 --max-traces 4 --json\n"
        "  ms3m replay --app Netflix --mobility Driving --as ue --speed 10",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s = p.add_argument_group("traces")
    s.add_argument("--root", help="dataset folder (default $MS3M_DATA_DIR/irish-5g, else ../shared/data/irish-5g)")
    s.add_argument("--speed", type=_non_negative, default=1.0,
                   help="replay speed: 1 = real time, 60 = a minute of trace per second, 0 = as fast as possible")
    s.add_argument("--app", action="append", choices=["Download", "Netflix"],
                   help="application group (repeatable; default both)")
    s.add_argument("--mobility", action="append", choices=["Driving", "Static"],
                   help="mobility group (repeatable; default both)")
    s.add_argument("--max-traces", type=_positive_int, help="at most this many traces, mixed across groups")
    s.add_argument("--duration", type=float, help="stop after this many seconds (default: at the end of the traces)")
    s.add_argument("--as", dest="entity", choices=["cell", "ue"], default="cell",
                   help="a trace is a cell (default) or a UE on its serving cell")
    s.add_argument("--align", choices=["start", "absolute"], default="start",
                   help="start: all traces start now (default); absolute: keep their relative start times")
    s.add_argument("--node-id", default="irish5g-replay", help="E2 node id of the stream (default irish5g-replay)")
    _add_delivery_args(p)
    p.set_defaults(handler=_cmd_replay)
    return p


def _cmd_simulate(args: argparse.Namespace) -> int:
    from service.sim.simulator import simulate

    def run(stop, on_progress):
        return simulate(args.target, n_cells=args.cells, rate=args.rate, speedup=args.speedup,
                        period_ms=args.period_ms, duration_s=args.duration, n_samples=args.samples, seed=args.seed,
                        kpis=args.kpi, slices=args.slices, missing_rate=args.missing_rate, nodes=args.nodes,
                        batch_size=args.batch_size, acked=not args.no_ack, max_in_flight=args.max_in_flight,
                        cycle_steps=args.cycle_steps, anomalies=not args.no_anomalies, start_ms=args.start_ms,
                        on_progress=on_progress, stop=stop, encoding=args.encoding, kpm_version=args.kpm_version)

    return _run_command("simulate", run, args)


def _cmd_replay(args: argparse.Namespace) -> int:
    from service.sim.replayer import APPS, MOBILITY, replay

    def run(stop, on_progress):
        return replay(args.target, args.root, speed=args.speed, apps=tuple(args.app or APPS),
                      mobility=tuple(args.mobility or MOBILITY), max_traces=args.max_traces,
                      duration_s=args.duration, entity=args.entity,
                      align=args.align, batch_size=args.batch_size, acked=not args.no_ack,
                      max_in_flight=args.max_in_flight, e2_node_id=args.node_id, on_progress=on_progress, stop=stop,
                      encoding=args.encoding, kpm_version=args.kpm_version)

    return _run_command("replay", run, args)


def _progress_line(st: dict) -> str:
    lat = st.get("latency_ms") or {}
    rej = st.get("rejected", 0)
    parts = [f"{st.get('wall_s', 0):6.1f} s", f"sent {st['samples']:,}", f"{st.get('rate_now', 0):,.0f}/s",
             f"accepted {st['accepted']:,}", f"rejected {rej:,}", f"in flight {st['in_flight']}"]
    if lat.get("p99") is not None:
        parts.append(f"ack p50/p99 {lat['p50']:.1f}/{lat['p99']:.1f} ms")
    if st.get("reconnects"):
        parts.append(f"reconnects {st['reconnects']} (re-sent {st['resent_messages']})")
    return "  ".join(parts)


def _summary(console, result: dict) -> None:
    lat = result.get("latency_ms") or {}
    console.print(f"[bold]{result['command']}[/bold] → {result['config']['target']}: "
                  f"{result['samples']:,} samples in {result['messages']:,} messages, {result['wall_s']:.2f} s "
                  f"({result['samples_per_s']:,.0f} samples/s sent, {result['accepted_per_s']:,.0f}/s accepted)",
                  highlight=False, soft_wrap=True)
    console.print(f"  accepted {result['accepted']:,}  rejected {result['rejected']:,} "
                  f"{json.dumps(result['rejected_by_reason']) if result['rejected_by_reason'] else ''}  "
                  f"re-sent messages {result['resent_messages']}  reconnects {result['reconnects']}"
                  + (f"  ack latency p50 {lat['p50']} ms, p99 {lat['p99']} ms" if lat.get("p50") is not None else "")
                  + f"  encode {result['encode_us_per_sample']} µs/sample", highlight=False, soft_wrap=True)
    for d in result.get("rejection_details", [])[:5]:
        console.print(f"  [dim]{d}[/dim]", highlight=False, soft_wrap=True)


def _run_command(name: str, run: Callable, args: argparse.Namespace) -> int:
    """Run a publishing coroutine with a live status line, Ctrl-C as a graceful stop, and a final summary."""
    from rich.console import Console

    from service.sim.publisher import PublishError

    console = Console(stderr=True)

    async def main() -> dict:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        main_task = asyncio.current_task()

        def interrupt() -> None:  # first Ctrl-C: stop and flush; second: give up at once
            if stop.is_set():
                console.print(f"{name}: interrupted again, not waiting for acks", highlight=False, soft_wrap=True)
                main_task.cancel()
            else:
                console.print(f"{name}: stopping (waiting for outstanding acks; Ctrl-C again to quit now)",
                              highlight=False, soft_wrap=True)
                stop.set()

        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread, or no signal support
            loop.add_signal_handler(signal.SIGINT, interrupt)
        if args.quiet:
            return await run(stop, None)
        if console.is_terminal:
            with console.status(f"{name}: connecting to {args.target} ...") as status:
                return await run(stop, lambda st: status.update(_progress_line(st)))
        return await run(stop, lambda st: console.print(_progress_line(st), highlight=False, soft_wrap=True))

    try:
        result = asyncio.run(main())
    except (asyncio.CancelledError, KeyboardInterrupt):
        print(f"ms3m {name}: interrupted", file=sys.stderr)
        return 130
    except PublishError as e:
        print(f"ms3m {name}: {e}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, FileNotFoundError, ImportError) as e:
        print(f"ms3m {name}: {e}", file=sys.stderr)
        return 2
    _summary(console, result)
    if args.json:
        print(json.dumps(result, default=str))
    return 0 if not result.get("error") else 1


__all__ = ["DEFAULT_TARGET", "SIMULATED_KPIS", "add_replay_parser", "add_simulate_parser"]
