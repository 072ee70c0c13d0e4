"""`ms3m bench e2sm`: the E2SM-KPM codec on one core, and the service end to end with KPM ingest beside the
protobuf ingest, in one run.

Codec rows (this process, one thread): indications/s of
- decode format 1 (10 measurements, noLabel, integer and real values): header + message + the rows the
  ingest hands to the validator (kpm.indication_rows), as an E2 node sends them (the measInfoList repeats,
  so the specialised decoder's memo hits), and with every message distinct (memo off);
- the same decode with asn1tools alone (what bounds a generic codec);
- encode format 1, and decode / encode format 3 with 32 UEs (10 measurements each).
Service rows: `ms3m serve` (memory buffer, the registry-default S4D bundle over the simulator's KPIs, or
--bundle), a fresh one per encoding, fed the simulator's samples of `cells` cells (one message per round of
every cell) pre-encoded — KpiIndications to E2Ingest, or RicIndicationBatches of E2SM-KPM format-1
indications (one per cell, registered subscriptions) to E2smIngest — on one acked stream, 8 messages in
flight: accepted samples/s from the first send to the last ack, ack latency, and the cost of the encoding.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

KPIS = ["DRB.UEThpDl", "DRB.UEThpUl", "RRU.PrbUsedDl", "RRC.ConnMean", "DRB.RlcSduDelayDl", "RF.serving.RSRP",
        "RF.serving.RSRQ", "RF.serving.RSSINR", "DRB.UECqiDl", "PEE.AvgPower"]
T0_MS = 1_700_000_000_000


def _rate(fn: Callable[[int], None], n: int, min_seconds: float) -> float:
    """Calls of fn(i) per second of process CPU time (at least n calls and min_seconds)."""
    fn(0)
    done, t0 = 0, time.process_time()
    while True:
        for i in range(n):
            fn(done + i)
        done += n
        elapsed = time.process_time() - t0
        if elapsed >= min_seconds:
            return done / elapsed


def _format1(i: int) -> dict:
    from service.e2sm.kpm import meas_info_list, record_item

    values = [float((i * 7 + j) % 1000) if j % 2 else (i + j) * 0.37 - 95.0 for j in range(len(KPIS))]
    return {"measData": [{"measRecord": [record_item(v) for v in values]}], "measInfoList": meas_info_list(KPIS),
            "granulPeriod": 1000}


def codec_rows(version: int = 3, min_seconds: float = 1.0, ues: int = 32) -> list[dict]:
    from service.e2sm import kpm_fast
    from service.e2sm.ids import gnb_ueid
    from service.e2sm.kpm import Binding, KpmCodec, header_value, indication_rows

    codec = KpmCodec(version)
    binding = Binding("cell-1", 1000)
    hdr = codec.encode_header(header_value(T0_MS, version))
    f1 = [codec.encode_message({"indicationMessage-formats": ("indicationMessage-Format1", _format1(i))})
          for i in range(256)]
    cache: dict = {}

    def decode(i: int, memo: bool = True) -> None:
        m = kpm_fast.decode_message(f1[i % 256], version, codec._memo if memo else None)
        indication_rows(codec.decode_header(hdr), m, binding, version, cache)

    def generic(i: int) -> None:
        m = codec.decode("E2SM-KPM-IndicationMessage", f1[i % 256])
        indication_rows(codec.decode("E2SM-KPM-IndicationHeader", hdr), m, binding, version)

    values = [{"indicationMessage-formats": ("indicationMessage-Format1", _format1(i))} for i in range(256)]
    f3_values = [{"indicationMessage-formats": ("indicationMessage-Format3", {"ueMeasReportList": [
        {"ueID": gnb_ueid(u, "00101"), "measReport": _format1(i + u)} for u in range(ues)]})} for i in range(8)]
    f3 = [codec.encode_message(v) for v in f3_values]

    def decode3(i: int) -> None:
        indication_rows(codec.decode_header(hdr), codec.decode_message(f3[i % 8]), binding, version, cache)

    rows = [
        ("decode", 1, "measInfoList repeated (memo)", lambda i: decode(i), 2000),
        ("decode", 1, "every message distinct", lambda i: decode(i, False), 1000),
        ("decode", 1, "asn1tools only", generic, 50),
        ("encode", 1, "header + message", lambda i: (codec.encode_header(header_value(T0_MS + i, version)),
                                                      codec.encode_message(values[i % 256])), 500),
        ("decode", 3, f"{ues} UEs", decode3, 20),
        ("encode", 3, f"{ues} UEs", lambda i: codec.encode_message(f3_values[i % 8]), 20),
    ]
    out = []
    for op, fmt, case, fn, n in rows:
        r = _rate(fn, n, min_seconds if "asn1tools" not in case else min_seconds / 2)
        out.append({"kind": "codec", "case": f"{op} format {fmt}: {case}", "kpm_version": version,
                    "indications_per_s": round(r), "us_per_indication": round(1e6 / r, 1)})
    return out


def _messages(encoding: str, cells: int, rounds: int, start_ms: int):
    """The pre-encoded messages (one per round: every cell's sample) and the E2 subscriptions they need."""
    import numpy as np

    from service.sim.e2sm_publisher import E2smEncoder
    from service.sim.encoding import IndicationEncoder
    from service.sim.generator import KPIS as SIM_KPIS
    from service.sim.generator import MAX_BLOCK, CellKpiStream
    from service.sim.simulator import cell_ids

    enc = E2smEncoder() if encoding == "e2sm-kpm" else IndicationEncoder()
    idx = enc.register(cell_ids(cells)[0])
    stream, out, subs = CellKpiStream(cells, 0), [], []
    header = enc.header("gnb-bench", 1000, SIM_KPIS)
    if encoding == "e2sm-kpm":
        subs = enc.subscriptions("gnb-bench", 1000, SIM_KPIS, idx)
    r = 0
    while r < rounds:
        block = stream.next_block(min(MAX_BLOCK, rounds - r)).astype(np.float64)
        for vals in block:
            ts = np.full(cells, start_ms + 1000 * r, np.int64)
            out.append(enc.encode(header, r + 1, idx, ts, np.full(cells, r + 1, np.uint64), vals))
            r += 1
    return out, subs


async def _drive(port: int, encoding: str, messages: list[bytes], subs: list, max_in_flight: int = 8) -> dict:
    """Send the messages on one acked stream (at most max_in_flight unacked); accepted/s from first send to last
    ack, and the ack latencies."""
    import asyncio

    import grpc
    import numpy as np

    from ms3m.v1 import e2sm_pb2, kpm_pb2
    from service.sim.delivery import PUBLISH_ACKED
    from service.sim.e2sm_publisher import PUBLISH_E2SM_ACKED, SET_SUBSCRIPTION

    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        set_sub = ch.unary_unary(SET_SUBSCRIPTION, request_serializer=lambda m: m.SerializeToString(),
                                 response_deserializer=e2sm_pb2.E2SubscriptionAck.FromString)
        for sub in subs:
            await set_sub(sub, timeout=30, wait_for_ready=True)
        call = ch.stream_stream(PUBLISH_E2SM_ACKED if encoding == "e2sm-kpm" else PUBLISH_ACKED,
                                request_serializer=lambda b: b,
                                response_deserializer=kpm_pb2.IngestAck.FromString)(wait_for_ready=True)
        space, sent, lat = asyncio.Semaphore(max_in_flight), [], []

        async def write() -> None:
            for m in messages:
                await space.acquire()
                sent.append(time.perf_counter())
                await call.write(m)
            await call.done_writing()

        writer = asyncio.ensure_future(write())
        accepted = rejected = 0
        async for ack in call:
            lat.append(time.perf_counter() - sent[len(lat)])
            accepted, rejected = accepted + ack.accepted, rejected + ack.rejected
            space.release()
        await writer
        wall = time.perf_counter() - sent[0]
    p50, p99 = (np.percentile(lat, [50, 99]) * 1e3).tolist()
    return {"accepted": accepted, "rejected": rejected, "wall_s": wall, "p50": p50, "p99": p99}


def _service_row(bundle: Path, encoding: str, cells: int, samples: int, log: Path) -> dict:
    import asyncio

    from bench.service import _start_xapp

    rounds = max(1, samples // cells)
    start_ms = (time.time_ns() // 1_000_000 - 1000 * rounds - 60_000) // 1000 * 1000  # within the accepted window
    t0 = time.process_time()
    messages, subs = _messages(encoding, cells, rounds, start_ms)
    encode_us = 1e6 * (time.process_time() - t0) / (rounds * cells)
    proc, _http, grpc_port = _start_xapp(bundle, "memory", log, f"bench-e2sm-{encoding}")
    try:
        got = asyncio.run(_drive(grpc_port, encoding, messages, subs))
    finally:
        proc.terminate()
        proc.wait(30)
    return {"kind": "service", "case": f"ingest {encoding}", "cells": cells, "samples": rounds * cells,
            "accepted": got["accepted"], "rejected": got["rejected"],
            "samples_per_s": round(got["accepted"] / got["wall_s"]), "ack_p50_ms": round(got["p50"], 2),
            "ack_p99_ms": round(got["p99"], 2), "encode_us_per_sample": round(encode_us, 2)}


def run(version: int = 3, min_seconds: float = 1.0, service: bool = True, bundle: str | None = None,
        cells: int = 1000, samples: int = 100_000, progress: Callable[[str], None] | None = None) -> dict:
    say = progress or (lambda msg: None)
    say(f"codec: KPM v{version}.00, one core")
    rows = codec_rows(version, min_seconds)
    if service:
        with tempfile.TemporaryDirectory(prefix="ms3m-bench-e2sm-") as tmp:
            if bundle is None:
                from bench.service import default_bundle

                path = default_bundle(Path(tmp))
            else:
                path = Path(bundle)
            for encoding in ("protobuf", "e2sm-kpm"):
                say(f"service: {samples:,} samples from {cells} cells, {encoding} ingest")
                rows.append(_service_row(path, encoding, cells, samples, Path(tmp) / f"xapp-{encoding}.log"))
    f1 = next(r for r in rows if r["case"].startswith("decode format 1: measInfoList"))
    summary = {"decode_format1_per_s": f1["indications_per_s"], "target_per_s": 5000,
               "meets_target": f1["indications_per_s"] >= 5000}
    svc = {r["case"].rsplit(" ", 1)[1]: r.get("samples_per_s") for r in rows if r["kind"] == "service"}
    if svc.get("protobuf") and svc.get("e2sm-kpm"):
        summary["service_e2sm_over_protobuf"] = round(svc["e2sm-kpm"] / svc["protobuf"], 3)
    return {"benchmark": "e2sm", "title": "ms3m bench e2sm: E2SM-KPM codec (one core) and KPM ingest end to end",
            "columns": ["kind", "case", "indications_per_s", "us_per_indication", "samples_per_s", "ack_p50_ms",
                        "ack_p99_ms", "rejected", "encode_us_per_sample"],
            "rows": rows, "summary": summary,
            "settings": {"kpm_version": version, "measurements": len(KPIS), "cells": cells, "samples": samples,
                         "cpu": os.cpu_count()}}
