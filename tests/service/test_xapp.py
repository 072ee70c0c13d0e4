"""The xApp end to end: gRPC publish → forecasts over REST and gRPC Subscribe, A1, bad input."""

from __future__ import annotations

import asyncio
import math
import uuid

import grpc
import httpx
import numpy as np
import pytest

from ms3m.v1 import forecast_pb2, forecast_pb2_grpc, kpm_pb2
from tests.conftest import REDIS_HOST, REDIS_PORT, redis_reachable
from tests.service.helpers import KPIS, indication, make_bundle, publish, running_xapp, wait_for

R = kpm_pb2.RejectReason


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("bundles")
    return {"s4d": make_bundle(root, "s4d"), "ms3m": make_bundle(root, "ms3m")}


def buffer_settings(kind: str) -> dict:
    if kind == "memory":
        return {"buffer": "memory"}
    reason = redis_reachable()
    if reason:
        pytest.skip(reason)
    return {"buffer": "redis", "redis_host": REDIS_HOST, "redis_port": REDIS_PORT,
            "namespace": f"test-{uuid.uuid4().hex[:10]}"}


@pytest.mark.parametrize("buffer", ["memory", "redis"])
@pytest.mark.parametrize("model", ["s4d", "ms3m"])
async def test_publish_then_forecasts_over_rest_and_subscribe(bundles, buffer, model):
    async with running_xapp([bundles[model]], **buffer_settings(buffer)) as xapp:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{xapp.grpc_port}") as ch:
            sub = forecast_pb2_grpc.ForecastingStub(ch).Subscribe(
                forecast_pb2.SubscribeRequest(cell_ids=["cell-002"], kinds=[forecast_pb2.EVENT_KIND_FORECAST]))
            await asyncio.sleep(0.2)  # subscription registered
            acks = await publish(xapp.grpc_port, [indication(5, t, mid=t) for t in range(30)])
            assert [a.accepted for a in acks] == [5] * 30 and all(a.rejected == 0 for a in acks)
            events = []
            async for ev in sub:
                events.append(ev)
                if len(events) == 30:
                    break
            sub.cancel()
        f = events[-1].forecast
        assert f.cell_id == "cell-002" and f.horizon_steps == 4 and list(f.target_names) == ["DRB.UEThpDl",
                                                                                              "RRU.PrbUsedDl"]
        assert len(f.point) == 8 and all(math.isfinite(v) for v in f.point)
        assert [e.forecast.timestamp_ms for e in events] == sorted(e.forecast.timestamp_ms for e in events)
        if model == "ms3m":
            assert [e.name for e in f.experts] == ["s4d@1", "lru@4", "s4d@16"]
            assert abs(sum(e.weight for e in f.experts) - 1) < 1e-5
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{xapp.http_port}") as http:
            await wait_for(lambda: xapp.readiness()[0])
            assert (await http.get("/ric/v1/health/ready")).status_code == 200
            body = (await http.get("/v1/cells/cell-002/forecast")).json()
            assert body["cellId"] == "cell-002" and len(body["point"]["DRB.UEThpDl"]) == 4
            assert body["timestampMs"] == str(f.timestamp_ms) or int(body["timestampMs"]) == f.timestamp_ms
            cells = (await http.get("/v1/cells")).json()
            assert cells["total"] == 5
            metrics = (await http.get("/metrics")).text
            assert "ms3m_ingest_samples_total 150.0" in metrics
            assert (await http.get("/v1/cells/nope/forecast")).status_code == 404


async def test_bad_input_is_rejected_and_counted_never_corrupting_state(bundles):
    async with running_xapp([bundles["s4d"]], grpc_max_message_bytes=64 * 1024) as xapp:
        ok = await publish(xapp.grpc_port, [indication(2, 0, mid=1)])
        assert ok[0].accepted == 2
        await wait_for(lambda: xapp.engine.samples >= 2)
        before = xapp.hosts[0].table.get("cell-000")
        bad_nan = indication(2, 1, mid=2)
        bad_nan.reports[0].values[0] = float("nan")
        unknown = indication(1, 2, mid=3)
        unknown.meas_names[2] = "Made.Up"
        dup = indication(2, 0, mid=4)  # resend of message 1
        old = indication(2, 0, mid=5)
        for r in old.reports:
            r.sequence += 100
        acks = await publish(xapp.grpc_port, [bad_nan, unknown, dup, old])
        reasons = [{rc.reason: rc.count for rc in a.rejections} for a in acks]
        assert reasons == [{R.REJECT_REASON_NON_FINITE: 1}, {R.REJECT_REASON_UNKNOWN_KPI: 1},
                           {R.REJECT_REASON_DUPLICATE: 2}, {R.REJECT_REASON_OUT_OF_ORDER: 2}]
        assert acks[0].accepted == 1 and "NaN" in acks[0].details[0].detail
        await wait_for(lambda: xapp.engine.samples >= 3)
        after = xapp.hosts[0].table.get("cell-000")  # cell-000's NaN report was rejected: state unchanged
        assert all(np.array_equal(a, b) for a, b in zip(before, after))
        # oversized message: refused by gRPC itself
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await publish(xapp.grpc_port, [indication(700, 10, steps=3, mid=9)])  # ~90 KB > 64 KB limit
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # malformed bytes on the wire
        async with grpc.aio.insecure_channel(f"127.0.0.1:{xapp.grpc_port}") as ch:
            raw = ch.stream_stream("/ms3m.v1.E2Ingest/PublishAcked", request_serializer=lambda b: b,
                                   response_deserializer=lambda b: b)
            with pytest.raises(grpc.aio.AioRpcError):
                async for _ in raw(iter([b"\xff\xff\xff garbage"])):
                    pass
        # unknown cell on Predict, and a cold start from samples
        async with grpc.aio.insecure_channel(f"127.0.0.1:{xapp.grpc_port}") as ch:
            stub = forecast_pb2_grpc.ForecastingStub(ch)
            req = forecast_pb2.PredictRequest(cell_ids=["cell-000", "ghost"])
            cs = req.samples.add(cell_id="newcell", granularity_period_ms=1000, meas_names=KPIS)
            for t in range(20):
                cs.reports.add(timestamp_ms=1_000_000 + 1000 * t, values=[20000.0, 40.0, -90.0])
            resp = await stub.Predict(req)
        assert [f.cell_id for f in resp.forecasts] == ["cell-000", "newcell"]
        assert resp.errors[0].cell_id == "ghost" and "unknown cell" in resp.errors[0].error
        assert xapp.hosts[0].table.slot("newcell") is None  # cold start keeps no state
        text = (await httpx.AsyncClient().get(f"http://127.0.0.1:{xapp.http_port}/metrics")).text
        assert 'ms3m_ingest_rejected_total{reason="duplicate"} 2.0' in text
        # S-NSSAI out of its ranges (sst 8 bits, sd 24 bits)
        for sst, sd in ((256, None), (1, 1 << 24)):
            sl = indication(1, 3, mid=11 + sst)
            sl.reports[0].slice.sst = sst
            if sd is not None:
                sl.reports[0].slice.sd = sd
            (ack,) = await publish(xapp.grpc_port, [sl])
            assert {rc.reason: rc.count for rc in ack.rejections} == {R.REJECT_REASON_MALFORMED: 1}
            assert "S-NSSAI" in ack.details[0].detail
        # the service is still healthy
        ok = await publish(xapp.grpc_port, [indication(2, 2, mid=10)])
        assert ok[0].accepted == 2


async def test_rest_predict_indications_and_limits(bundles):
    async with (running_xapp([bundles["s4d"]], http_max_body_bytes=4096) as xapp,
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{xapp.http_port}") as http):
        body = {"cellId": "x1", "measNames": KPIS,
                "samples": [{"timestampMs": 1000 * (t + 1), "values": [20000, 40, None]} for t in range(10)]}
        r = await http.post("/v1/predict", json=body)
        assert r.status_code == 200 and len(r.json()["point"]["RRU.PrbUsedDl"]) == 4
        bad = dict(body, samples=[{"timestampMs": 1, "values": [1, 2]}])
        assert (await http.post("/v1/predict", json=bad)).status_code == 422
        big = dict(body, samples=body["samples"] * 40)
        assert (await http.post("/v1/predict", json=big)).status_code == 413
        ind = {"e2NodeId": "n", "measNames": KPIS, "reports": [
            {"cellId": "r1", "timestampMs": "5000", "sequence": "1", "values": [1, 2, 3]}]}
        assert (await http.post("/v1/indications", json=ind)).json()["accepted"] == "1"
        assert (await http.post("/v1/indications", content=b"{nope")).status_code == 422
        # values past what the wire types hold are 422 with the field named, never a 500
        for field, value in (("timestampMs", 2**63), ("granularityPeriodMs", 2**32)):
            sample = {"timestampMs": 1000, "values": [20000, 40, None]}
            doc = dict(body, samples=[{**sample, field: value}]) if field == "timestampMs" else \
                dict(body, samples=[sample], **{field: value})
            r = await http.post("/v1/predict", json=doc)
            assert r.status_code == 422 and field in r.text, (field, r.status_code, r.text)


async def test_a1_policy_crud_and_status(bundles):
    async with running_xapp([bundles["ms3m"]]) as xapp:
        await publish(xapp.grpc_port, [indication(3, t, mid=t) for t in range(3)])
        base = f"http://127.0.0.1:{xapp.http_port}/A1-P/v2/policytypes"
        async with httpx.AsyncClient() as http:
            assert (await http.get(base)).json() == [20300]
            schema = (await http.get(f"{base}/20300")).json()["create_schema"]
            assert schema["$schema"].startswith("http://json-schema.org/draft-07")
            doc = {"objective": "energy", "computeBudget": 0.3, "scope": {"cellIds": ["cell-001"]}}
            assert (await http.put(f"{base}/20300/policies/p1", json=doc)).status_code == 201
            assert (await http.put(f"{base}/20300/policies/p1", json=doc)).status_code == 200
            assert (await http.get(f"{base}/20300/policies")).json() == ["p1"]
            assert (await http.get(f"{base}/20300/policies/p1")).json() == doc
            r = await http.put(f"{base}/20300/policies/p2", json={"objective": "fast", "computeBudget": 1})
            assert r.status_code == 400 and "objective" in r.json()["detail"]
            assert (await http.put(f"{base}/20999/policies/p1", json=doc)).status_code == 404
            for bad in (b'{"objective": "energy", "computeBudget": NaN}',  # not JSON, though Python parses it
                        b'{"objective": "accuracy", "computeBudget": 0.5, "intervalCoverage": Infinity}'):
                r = await http.put(f"{base}/20300/policies/p3", content=bad)
                assert r.status_code == 400 and "not a JSON number" in r.json()["detail"], r.text
            await publish(xapp.grpc_port, [indication(3, 3, mid=3)])
            await wait_for(lambda: xapp.hosts[0].objective[xapp.hosts[0].table.slot("cell-001")][2] == 1)
            st = (await http.get(f"{base}/20300/policies/p1/status")).json()
            assert st["enforceStatus"] == "ENFORCED"
            assert (await http.delete(f"{base}/20300/policies/p1")).status_code == 204
            assert (await http.get(f"{base}/20300/policies/p1")).status_code == 404


async def test_cold_start_predicts_are_bounded(bundles):
    """At most predict_max_concurrent cold starts at once (429 / RESOURCE_EXHAUSTED beyond, not queued) and at most
    predict_max_cells cells with samples per gRPC call."""
    import threading

    async with running_xapp([bundles["s4d"]], predict_max_concurrent=1, predict_max_cells=2) as xapp:
        host, release = xapp.hosts[0], threading.Event()
        real = host.forecast_from_samples
        host.forecast_from_samples = lambda values: (release.wait(10), real(values))[1]  # a slow cold start
        body = {"cellId": "x1", "measNames": KPIS,
                "samples": [{"timestampMs": 1000 * (t + 1), "values": [20000, 40, -90]} for t in range(10)]}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{xapp.http_port}") as http:
            first = asyncio.create_task(http.post("/v1/predict", json=body))
            await wait_for(lambda: xapp.predict_gate.running == 1)
            busy = await http.post("/v1/predict", json=body)
            assert busy.status_code == 429 and busy.headers["retry-after"] == "1" and "retry" in busy.json()["detail"]
            async with grpc.aio.insecure_channel(f"127.0.0.1:{xapp.grpc_port}") as ch:
                stub = forecast_pb2_grpc.ForecastingStub(ch)
                req = forecast_pb2.PredictRequest()
                cs = req.samples.add(cell_id="c", granularity_period_ms=1000, meas_names=KPIS)
                cs.reports.add(timestamp_ms=1000, values=[20000.0, 40.0, -90.0])
                with pytest.raises(grpc.aio.AioRpcError) as e:
                    await stub.Predict(req)
                assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                release.set()
                assert (await first).status_code == 200 and xapp.predict_gate.running == 0
                assert len((await stub.Predict(req)).forecasts) == 1  # free again
                for _ in range(2):
                    req.samples.add().CopyFrom(cs)
                with pytest.raises(grpc.aio.AioRpcError) as e:
                    await stub.Predict(req)  # 3 cold starts > predict_max_cells
                assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert "MS3M_PREDICT_MAX_CELLS" in e.value.details()
