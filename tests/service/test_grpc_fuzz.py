"""A bytes fuzzer for both gRPC services: random, truncated and bit-flipped payloads end as INVALID_ARGUMENT or
as counted rejections in the acks, never as UNKNOWN / INTERNAL, and the xApp keeps serving."""

from __future__ import annotations

import random

import grpc
import pytest

from ms3m.v1 import forecast_pb2
from tests.service.helpers import KPIS, indication, make_bundle, publish, running_xapp

ALLOWED = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED}


def _valid_payloads() -> dict[str, bytes]:
    predict = forecast_pb2.PredictRequest(cell_ids=["cell-000"])
    cs = predict.samples.add(cell_id="cold", granularity_period_ms=1000, meas_names=KPIS)
    for t in range(8):
        cs.reports.add(timestamp_ms=1000 * (t + 1), values=[20000.0, 40.0, -90.0])
    return {"ingest": indication(3, 5, steps=2, mid=7).SerializeToString(), "predict": predict.SerializeToString(),
            "subscribe": forecast_pb2.SubscribeRequest(cell_ids=["cell-000"]).SerializeToString()}


def mutations(valid: bytes, rng: random.Random, n: int):
    """n payloads: random bytes, truncations and bit flips of `valid`, and spliced pieces."""
    for i in range(n):
        kind = i % 4
        if kind == 0:
            yield bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 200)))
        elif kind == 1:
            yield valid[: rng.randint(0, len(valid) - 1)]
        elif kind == 2:
            b = bytearray(valid)
            for _ in range(rng.randint(1, 8)):
                b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
            yield bytes(b)
        else:
            cut = rng.randrange(len(valid))
            yield valid[cut:] + valid[:cut]


async def _fuzz(n: int, tmp_path) -> None:
    rng = random.Random(0)
    valid = _valid_payloads()
    async with running_xapp([make_bundle(tmp_path, "s4d")]) as xapp:
        await publish(xapp.grpc_port, [indication(3, t, mid=t + 1) for t in range(3)])
        async with grpc.aio.insecure_channel(f"127.0.0.1:{xapp.grpc_port}") as ch:
            raw = {m: ch.stream_stream(m, request_serializer=lambda b: b, response_deserializer=lambda b: b)
                   for m in ("/ms3m.v1.E2Ingest/PublishAcked",)}
            publish_one = ch.stream_unary("/ms3m.v1.E2Ingest/Publish", request_serializer=lambda b: b,
                                          response_deserializer=lambda b: b)
            predict = ch.unary_unary("/ms3m.v1.Forecasting/Predict", request_serializer=lambda b: b,
                                     response_deserializer=lambda b: b)
            subscribe = ch.unary_stream("/ms3m.v1.Forecasting/Subscribe", request_serializer=lambda b: b,
                                        response_deserializer=lambda b: b)
            codes: dict[str, int] = {}

            async def call(coro_fn):
                try:
                    await coro_fn()
                    codes["OK"] = codes.get("OK", 0) + 1
                except grpc.aio.AioRpcError as e:
                    assert e.code() in ALLOWED, (e.code(), e.details())
                    codes[e.code().name] = codes.get(e.code().name, 0) + 1

            for payload in mutations(valid["ingest"], rng, n):
                async def acked(p=payload):
                    async for _ in raw["/ms3m.v1.E2Ingest/PublishAcked"](iter([p])):
                        pass
                await call(acked)
                await call(lambda p=payload: publish_one(iter([p])))
            for payload in mutations(valid["predict"], rng, n):
                await call(lambda p=payload: predict(p))
            for payload in mutations(valid["subscribe"], rng, n // 4):
                async def sub(p=payload):
                    stream = subscribe(p, timeout=0.2)
                    try:
                        async for _ in stream:
                            break
                    except grpc.aio.AioRpcError as e:
                        if e.code() != grpc.StatusCode.DEADLINE_EXCEEDED:  # a valid subscription just waits
                            raise
                await call(sub)
        assert codes.get("INVALID_ARGUMENT", 0) > 0 and codes.get("OK", 0) > 0, codes
        (ack,) = await publish(xapp.grpc_port, [indication(3, 100, mid=1000)])  # still serving
        assert ack.accepted == 3


async def test_grpc_services_survive_fuzzed_payloads(tmp_path):
    await _fuzz(60, tmp_path)


@pytest.mark.slow
async def test_grpc_services_survive_many_fuzzed_payloads(tmp_path):
    await _fuzz(2000, tmp_path)
