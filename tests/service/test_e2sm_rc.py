"""E2SM-RC control of slice PRB quota actions: the encoding per version (a header vector derived by hand), the
control sink in enforce mode (the E2Control stream, GET /v1/e2/control, the action log's bytes) and in recommend
mode (encoded and listed, not sent), and the `ms3m e2 subscription` command."""

from __future__ import annotations

import asyncio
import json

import grpc
import httpx
import pytest

from ms3m.v1 import e2sm_pb2, e2sm_pb2_grpc
from service.actions.policy import Action
from service.e2sm import rc
from service.e2sm.kpm import KpmCodec
from service.e2sm.subscription import binding_of
from tests.service.helpers import make_bundle, running_xapp, wait_for

# E2SM-RC-ControlHeader, format 1, UE gNB-UEID (AMF UE NGAP id 7, GUAMI PLMN 00101, region 1, set 1, pointer 1):
#   header SEQUENCE extension 0; formats CHOICE extension 0 (one root alternative: no index); format 1 extension 0,
#   ric-ControlDecision absent 0 → 0000; UEID CHOICE extension 0, index 0 of 7: 000; UEID-GNB extension 0,
#   5 presence bits 00000; AMF-UE-NGAP-ID (0..2^40-1): 5 octets at most → length in 3 bits, 1 octet → 000
#   (17 bits so far) pad → 00 00 00 | 07
#   GUAMI extension 0, pad → 00; PLMN 3 aligned octets 00 F1 10; AMFRegionID BIT STRING (SIZE(8)) and the
#   others ≤ 16 bits: not aligned (16.9): 00000001 0000000001 000001 → 01 00 41
#   RIC-Style-Type (unconstrained INTEGER, 10.8): aligned length 01, value 02 → 01 02 (after the 24 bits: aligned)
#   RIC-ControlAction-ID INTEGER (1..65535, ...): extension 0, two aligned octets 6 - 1 → 0 pad | 00 05
HEADER = bytes.fromhex("000000 07 00 00F110 010041 0102 00 0005")


def quota_action(mode: str = "enforce", cell: str = "cell-q|s=1.5") -> Action:
    return Action("slice_prb_quota", cell, 0, mode, "test", 0.9,
                  {"slice": (1, 5), "min_prb_ratio": 40, "max_prb_ratio": 100, "dedicated_prb_ratio": 10}, 1,
                  1_700_000_000_000)


@pytest.mark.parametrize("version", [1, 5])
def test_slice_prb_quota_encoding_per_version(version):
    h = rc.control_header(version, "00101", 7)
    assert h == HEADER  # the header is the same in v01.xx and v05.00
    m = rc.slice_prb_quota_message(version, "00101", 1, 0x123456, 40, 100, 10)
    got = rc.decode_slice_prb_quota(version, h, m)
    assert got == {"ric_style_type": 2, "control_action_id": 6, "ue_id": "amf-7", "slices": [
        {"plmn": "00101", "sst": 1, "sd": 0x123456, "min_prb_ratio": 40, "max_prb_ratio": 100,
         "dedicated_prb_ratio": 10}]}
    ids = rc.PARAMETER_IDS[version]
    assert (ids["min"], ids["dedicated"]) == ((10, 12) if version == 1 else (11, 13))
    with pytest.raises(rc.E2smError):
        rc.slice_prb_quota_message(version, "00101", 1, None, 50, 40, 0)  # min > max


def test_versions_differ_in_the_structure_encoding():
    v1 = rc.slice_prb_quota_message(1, "00101", 1, None, 40, 100, 10)
    v5 = rc.slice_prb_quota_message(5, "00101", 1, None, 40, 100, 10)
    assert v1 != v5  # parameter ids, and v05.00's presence bit of sequence-of-ranParameters
    h = rc.control_header(1, "00101")
    assert rc.decode_slice_prb_quota(1, h, v1) == rc.decode_slice_prb_quota(5, h, v5)
    with pytest.raises(rc.E2smError):
        rc.decode_slice_prb_quota(1, h, v1[:-2])


async def test_enforce_sends_and_recommend_only_lists(tmp_path):
    async with running_xapp([make_bundle(tmp_path)]) as x:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{x.grpc_port}") as ch:
            stream = e2sm_pb2_grpc.E2ControlStub(ch).StreamControl(e2sm_pb2.ControlStreamRequest())
            await wait_for(lambda: len(x.control_sink.streams) == 1)
            x.e2sm.node_of_cell["cell-q"] = "gnb-q"
            sent, shown = quota_action("enforce"), quota_action("recommend")
            x.events.publish([], None, [shown, sent])
            req = await asyncio.wait_for(stream.read(), 10)
            stream.cancel()
        assert (req.action_id, req.e2_node_id, req.cell_id, req.rc_version) == (sent.action_id, "gnb-q", "cell-q", 5)
        assert (req.ric_style_type, req.control_action_id, req.ran_function_id) == (2, 6, 3)
        assert req.prb_quota.slice.sst == 1 and req.prb_quota.slice.sd == 5 and req.prb_quota.min_prb_ratio == 40
        assert rc.decode_slice_prb_quota(5, req.control_header, req.control_message)["slices"][0]["sd"] == 5
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{x.http_port}") as c:
            listed = (await c.get("/v1/e2/control")).json()
            actions = (await c.get("/v1/actions")).json()
            metrics = (await c.get("/metrics")).text
        assert [(e["action_id"], e["mode"], e["sent"]) for e in listed] == [
            (sent.action_id, "enforce", True), (shown.action_id, "recommend", False)]
        assert listed[1]["control_message"] == req.control_message.hex()  # same quota, same bytes
        by_id = {a["action_id"]: a for a in actions}
        assert by_id[shown.action_id]["detail"]["e2sm_rc"]["sent"] is False
        assert by_id[sent.action_id]["detail"]["e2sm_rc"]["control_header"] == req.control_header.hex()
        assert 'ms3m_e2sm_control_requests_total{mode="enforce"} 1.0' in metrics


def test_e2_subscription_command_prints_decodable_payloads(tmp_path, capsys):
    import base64

    from service.cli import main

    bundle = make_bundle(tmp_path)
    assert main(["e2", "subscription", "--bundle", str(bundle), "--cell", "nr-00101-00066c000", "--cell", "gnb-7",
                 "--slice", "1", "--format", "4", "--kpm-version", "2", "--json"]) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out.strip().splitlines()[-1])
    assert "actionDefinition hex" in err
    codec = KpmCodec(2)
    first, second = doc["subscriptions"]
    assert first["cellGlobalIdInActionDefinition"] and not second["cellGlobalIdInActionDefinition"]
    binding, fmt = binding_of(codec, bytes.fromhex(first["actionDefinition"]["hex"]), None, "node")
    assert fmt == 4 and binding.cell_id == "nr-00101-00066c000" and binding.granul_ms == 1000
    assert [i["measType"][1] for i in binding.meas_infos] == first["measurements"]
    assert base64.b64decode(second["eventTrigger"]["base64"]).hex() == second["eventTrigger"]["hex"]
    assert main(["e2", "subscription", "--bundle", str(tmp_path / "missing"), "--cell", "c"]) == 2


def test_bench_e2sm_codec_rows():
    from bench import e2sm

    rows = e2sm.codec_rows(3, min_seconds=0.01, ues=4)
    assert [r["case"] for r in rows][:3] == ["decode format 1: measInfoList repeated (memo)",
                                             "decode format 1: every message distinct",
                                             "decode format 1: asn1tools only"]
    assert all(r["indications_per_s"] > 0 for r in rows)
