"""E2SM-KPM ingest through the running xApp: E2smIngest over gRPC (acks, rejections, metrics), the binding of
indications to cells, per-UE (format 3) series, and `ms3m simulate --encoding e2sm-kpm` end to end, whose
forecasts equal the protobuf path's."""

from __future__ import annotations

import random

import grpc
import httpx
import pytest

from ms3m.v1 import e2sm_pb2, e2sm_pb2_grpc, kpm_pb2
from service.e2sm.ids import gnb_ueid
from service.e2sm.kpm import KpmCodec, header_value, meas_info_list, record_item
from service.e2sm.subscription import action_definition
from tests.service.helpers import KPIS, T0_MS, make_bundle, running_xapp, wait_for

R = kpm_pb2.RejectReason


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("e2sm-bundle"))


def _format1(values, names=KPIS, slices=(), with_infos=True, period=1000) -> dict:
    f = {"measData": [{"measRecord": [record_item(v) for v in values]}], "granulPeriod": period}
    if with_infos:
        f["measInfoList"] = meas_info_list(list(names), list(slices))
    return {"indicationMessage-formats": ("indicationMessage-Format1", f)}


def indication(t: int, message: dict, version: int = 3, instance: int = 0, node: str = "gnb-e2", **kw):
    codec = KpmCodec(version)
    return e2sm_pb2.RicIndication(
        e2_node_id=node, ran_function_id=2, ric_requestor_id=1, ric_instance_id=instance, ric_action_id=1,
        indication_header=codec.encode_header(header_value(T0_MS + 1000 * t - 1000, version)),
        indication_message=codec.encode_message(message), kpm_version=version, **kw)


async def publish(port: int, batches: list[e2sm_pb2.RicIndicationBatch]) -> list[kpm_pb2.IngestAck]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = e2sm_pb2_grpc.E2smIngestStub(ch)
        return [ack async for ack in stub.PublishE2smAcked(iter(batches))]


def _values(t: int) -> list[float]:
    return [20000.0 + 10 * t, 40.0 + (t % 7), -95.0 - (t % 3) * 0.5]


async def test_indications_are_bound_to_cells_and_forecast(bundle):
    async with running_xapp([bundle]) as x:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{x.grpc_port}") as ch:
            stub = e2sm_pb2_grpc.E2smIngestStub(ch)
            codec = KpmCodec(3)
            # 1: a subscription registered with an explicit cell; its action definition gives measInfoList
            ack = await stub.SetSubscription(e2sm_pb2.E2Subscription(
                e2_node_id="gnb-e2", ran_function_id=2, ric_requestor_id=1, ric_instance_id=0, ric_action_id=1,
                kpm_version=3, cell_id="cell-a", action_definition=action_definition(codec, KPIS, 1000)))
            assert (ack.cell_id, ack.action_definition_format, ack.measurements) == ("cell-a", 1, 3)
            # 2: the cell from the action definition's cellGlobalID
            ack = await stub.SetSubscription(e2sm_pb2.E2Subscription(
                e2_node_id="gnb-e2", ran_function_id=2, ric_requestor_id=1, ric_instance_id=1, ric_action_id=1,
                action_definition=action_definition(codec, KPIS, 1000, cell_id="nr-00101-00066c000")))
            assert ack.cell_id == "nr-00101-00066c000" and ack.kpm_version == 3
            bad = stub.SetSubscription(e2sm_pb2.E2Subscription(e2_node_id="gnb-e2", action_definition=b"\xff\x01"))
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await bad
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        batches = []
        for t in range(1, 9):
            batches.append(e2sm_pb2.RicIndicationBatch(message_id=t, indications=[
                indication(t, _format1(_values(t), with_infos=False), instance=0),  # measInfoList from the subscription
                indication(t, _format1(_values(t)), instance=1),
                indication(t, _format1(_values(t)), instance=9, cell_id="cell-c"),  # 3: the indication's own cell
                indication(t, _format1(_values(t)), instance=7, node="node-only"),  # 4: the E2 node itself
            ]))
        acks = await publish(x.grpc_port, batches)
        assert [(a.message_id, a.accepted, a.rejected) for a in acks] == [(t, 4, 0) for t in range(1, 9)]
        cells = ["cell-a", "nr-00101-00066c000", "cell-c", "node-only"]
        await wait_for(lambda: all((f := x.latest_forecast(c)) is not None and f.timestamp_ms == T0_MS + 8000
                                   for c in cells))
        # a re-sent indication is a duplicate (sequence = its timestamp), counted like Publish's
        again = await publish(x.grpc_port, [batches[-1]])
        assert again[0].accepted == 0 and again[0].rejections[0].reason == R.REJECT_REASON_DUPLICATE
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{x.http_port}") as c:
            subs = (await c.get("/v1/e2/subscriptions")).json()
            metrics = (await c.get("/metrics")).text
        assert subs["total"] == 2 and {s["cellId"] for s in subs["subscriptions"]} == set(cells[:2])
        assert 'ms3m_e2sm_indications_total{format="1"} 36.0' in metrics


async def test_malformed_payloads_are_counted_rejections_with_a_detail(bundle):
    rng = random.Random(3)
    async with running_xapp([bundle]) as x:
        good = indication(1, _format1(_values(1)), cell_id="cell-ok")
        bad = [e2sm_pb2.RicIndication(e2_node_id="gnb-e2", cell_id="cell-bad", indication_header=good.indication_header,
                                      indication_message=rng.randbytes(rng.randint(0, 40))) for _ in range(20)]
        bad.append(e2sm_pb2.RicIndication(e2_node_id="gnb-e2", indication_header=b"\x00",
                                          indication_message=good.indication_message))
        bad.append(e2sm_pb2.RicIndication(e2_node_id="gnb-e2", kpm_version=9, indication_header=b"",
                                          indication_message=b""))
        flipped = bytearray(good.indication_message)
        flipped[len(flipped) // 2] ^= 0x10
        bad.append(e2sm_pb2.RicIndication(e2_node_id="gnb-e2", cell_id="cell-flip", indication_header=
                                          good.indication_header, indication_message=bytes(flipped)))
        (ack,) = await publish(x.grpc_port, [e2sm_pb2.RicIndicationBatch(message_id=5, indications=[good, *bad])])
        malformed = next(r.count for r in ack.rejections if r.reason == R.REJECT_REASON_MALFORMED)
        assert ack.accepted >= 1 and ack.accepted + ack.rejected >= 1 + len(bad) - 1
        assert malformed >= len(bad) - 2  # a flip may still decode: then it is a (plausible or refused) report
        detail = next(d for d in ack.details if d.index == 22)
        assert detail.reason == R.REJECT_REASON_MALFORMED and "version 9" in detail.detail
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{x.http_port}") as c:
            text = (await c.get("/metrics")).text
        assert f'ms3m_ingest_rejected_total{{reason="malformed"}} {float(malformed)}' in text
        assert x.engine.alive


async def test_format3_reports_are_per_ue_series(bundle):
    async with running_xapp([bundle]) as x:
        batches = []
        for t in range(1, 4):
            msg = {"indicationMessage-formats": ("indicationMessage-Format3", {"ueMeasReportList": [
                {"ueID": gnb_ueid(u, "00101"), "measReport": _format1(_values(t + u))["indicationMessage-formats"][1]}
                for u in range(32)]})}
            batches.append(e2sm_pb2.RicIndicationBatch(message_id=t, indications=[
                indication(t, msg, version=4, cell_id="cell-u")]))
        acks = await publish(x.grpc_port, batches)
        assert [a.accepted for a in acks] == [32, 32, 32]
        await wait_for(lambda: x.latest_forecast("cell-u|ue=amf-31") is not None)
        f = x.latest_forecast("cell-u|ue=amf-5")
        assert f.cell_id == "cell-u" and f.ue_id == "amf-5"


async def test_simulate_with_e2sm_kpm_gives_the_forecasts_of_the_protobuf_path(bundle):
    from service.sim.simulator import simulate

    forecasts = {}
    for encoding in ("protobuf", "e2sm-kpm"):
        async with running_xapp([bundle]) as x:
            st = await simulate(f"127.0.0.1:{x.grpc_port}", n_cells=3, rate=0, n_samples=3 * 3 * 12, seed=4,
                                slices=True, kpis=KPIS, batch_size=20, start_ms=T0_MS, encoding=encoding,
                                kpm_version=4, missing_rate=0.1)
            assert st["accepted"] == st["samples"] == 108 and st["rejected"] == 0, st["rejection_details"]
            await wait_for(lambda: x.engine.stats()["samples"] >= 108)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{x.http_port}") as c:
                forecasts[encoding] = {cell: (await c.get(f"/v1/cells/{cell}/forecast")).json()
                                       for cell in ("gnb-001-cell-00", "gnb-001-cell-02", "gnb-001-cell-01|s=1")}
    # the point forecasts are the models' (per series, deterministic); the intervals of cells with fewer than
    # min_residuals residuals borrow a pooled reservoir, whose content depends on how the engine batched steps
    for cell, f in forecasts["protobuf"].items():
        e = forecasts["e2sm-kpm"][cell]
        assert int(f["timestampMs"]) == int(e["timestampMs"]) == T0_MS + 11_000
        assert f["point"] == e["point"] and f.get("slice") == e.get("slice")


async def test_replay_with_e2sm_kpm_per_ue(bundle, shared_data):
    """`ms3m replay --as ue --encoding e2sm-kpm`: format-3 indications, one UE series per trace and cell."""
    pytest.importorskip("pandas", reason="the replayer reads CSVs with pandas")
    from service.sim.replayer import replay

    async with running_xapp([bundle], ignore_unknown_kpis=True) as x:
        st = await replay(f"127.0.0.1:{x.grpc_port}", shared_data / "irish-5g", speed=0, max_traces=2, entity="ue",
                          batch_size=500, start_ms=T0_MS, encoding="e2sm-kpm", kpm_version=3, duration_s=20)
        assert st["replayed"] == st["samples"] > 0 and st["accepted"] + st["rejected"] == st["samples"]
        assert st["accepted"] > 0.9 * st["samples"], st["rejection_details"]
        await wait_for(lambda: any("|" in k for k in x.hosts[0].table.cells()))
        series = x.hosts[0].table.cells()
        assert all(k.rsplit("=", 1)[1].startswith("amf-") for k in series)
