"""E2SM-RC (O-RAN.WG3.E2SM-RC v01.xx, v05.00): the control request of a slice PRB quota action.

RAN control style 2 (radio resource allocation control), control action 6 "slice-level PRB quota"
(E2SM-RC 7.6.3.1): control header format 1 (UE id, style, action) and control message format 1 with the RAN
parameters of 8.4.3.6, one RRM policy ratio group per slice:

    RRM Policy Ratio List (LIST)
      RRM Policy Ratio Group (STRUCTURE, the list item)
        RRM Policy (STRUCTURE)
          RRM Policy Member List (LIST)
            RRM Policy Member (STRUCTURE, the list item)
              PLMN Identity (ELEMENT, OCTET STRING: TS 38.413 BCD)
              S-NSSAI (STRUCTURE): SST (ELEMENT, 1 octet), SD (ELEMENT, 3 octets, when the slice has one)
        Min / Max / Dedicated PRB Policy Ratio (ELEMENT, INTEGER, percent)

The RAN parameter ids differ by version: v01.xx numbers the table 1–12 (as FlexRIC / OAI read it); later
versions insert a Resource Type parameter after RRM Policy, so member list … dedicated ratio are 5–13 (as
the srsRAN gNB reads it). The header's UE id (mandatory in format 1) is a gNB-UEID with the configured AMF UE
NGAP id and GUAMI: a slice quota applies to the cell, not to that UE.
"""

from __future__ import annotations

from service.e2sm.ids import gnb_ueid, plmn_bytes, plmn_str, ue_to_str
from service.e2sm.specs import E2smError, asn1_errors, rc_spec

STYLE_RADIO_RESOURCE_ALLOCATION = 2
ACTION_SLICE_PRB_QUOTA = 6
PARAMETER_IDS = {  # E2SM-RC 8.4.3.6 RAN parameter ids, by version
    1: {"ratio_list": 1, "ratio_group": 2, "policy": 3, "member_list": 4, "member": 5, "plmn": 6, "snssai": 7,
        "sst": 8, "sd": 9, "min": 10, "max": 11, "dedicated": 12},
    5: {"ratio_list": 1, "ratio_group": 2, "policy": 3, "member_list": 5, "member": 6, "plmn": 7, "snssai": 8,
        "sst": 9, "sd": 10, "min": 11, "max": 12, "dedicated": 13},
}


def _element(pid: int, kind: str, value) -> dict:
    return {"ranParameter-ID": pid,
            "ranParameter-valueType": ("ranP-Choice-ElementFalse", {"ranParameter-value": (kind, value)})}


def _structure(pid: int, items: list[dict]) -> dict:
    return {"ranParameter-ID": pid, "ranParameter-valueType": (
        "ranP-Choice-Structure", {"ranParameter-Structure": {"sequence-of-ranParameters": items}})}


def _list(pid: int, structures: list[list[dict]]) -> dict:
    return {"ranParameter-ID": pid, "ranParameter-valueType": ("ranP-Choice-List", {"ranParameter-List": {
        "list-of-ranParameter": [{"sequence-of-ranParameters": s} for s in structures]}})}


def _encode(version: int, type_name: str, value: dict) -> bytes:
    try:
        return rc_spec(version).encode(type_name, value, check_constraints=True)
    except asn1_errors() as e:
        raise E2smError(f"cannot encode {type_name} (RC v{version}): {e}") from None


def _decode(version: int, type_name: str, data: bytes) -> dict:
    try:
        return rc_spec(version).decode(type_name, bytes(data), check_constraints=True)
    except asn1_errors() as e:
        raise E2smError(f"not a valid {type_name} (RC v{version}): {e}") from None


def control_header(version: int, plmn: str, ue_amf_id: int = 0) -> bytes:
    """E2SM-RC-ControlHeader format 1 of the slice-level PRB quota action."""
    return _encode(version, "E2SM-RC-ControlHeader", {"ric-controlHeader-formats": ("controlHeader-Format1", {
        "ueID": gnb_ueid(ue_amf_id, plmn), "ric-Style-Type": STYLE_RADIO_RESOURCE_ALLOCATION,
        "ric-ControlAction-ID": ACTION_SLICE_PRB_QUOTA})})


def slice_prb_quota_message(version: int, plmn: str, sst: int, sd: int | None, min_ratio: int, max_ratio: int,
                            dedicated_ratio: int) -> bytes:
    """E2SM-RC-ControlMessage format 1: one RRM policy ratio group for the slice (sst, sd) of `plmn`."""
    if not 0 <= dedicated_ratio <= min_ratio <= max_ratio <= 100:
        raise E2smError(f"PRB ratios need 0 ≤ dedicated ({dedicated_ratio}) ≤ min ({min_ratio}) ≤ max "
                        f"({max_ratio}) ≤ 100")
    p = PARAMETER_IDS[version]
    snssai = [_element(p["sst"], "valueOctS", bytes([sst]))]
    if sd is not None:
        snssai.append(_element(p["sd"], "valueOctS", sd.to_bytes(3, "big")))
    member = [_element(p["plmn"], "valueOctS", plmn_bytes(plmn)), _structure(p["snssai"], snssai)]
    group = [_structure(p["policy"], [_list(p["member_list"], [member])]),
             _element(p["min"], "valueInt", int(min_ratio)), _element(p["max"], "valueInt", int(max_ratio)),
             _element(p["dedicated"], "valueInt", int(dedicated_ratio))]
    return _encode(version, "E2SM-RC-ControlMessage", {"ric-controlMessage-formats": (
        "controlMessage-Format1", {"ranP-List": [_list(p["ratio_list"], [group])]})})


def _items(value_type) -> list[dict]:
    kind, v = value_type
    if kind == "ranP-Choice-Structure":
        return v["ranParameter-Structure"].get("sequence-of-ranParameters", [])
    if kind == "ranP-Choice-List":
        return [x for s in v["ranParameter-List"]["list-of-ranParameter"]
                for x in s.get("sequence-of-ranParameters", [])]
    return []


def decode_slice_prb_quota(version: int, header: bytes, message: bytes) -> dict:
    """What a control request of the slice PRB quota action says (its decoding, as a check and for the API):
    style, action, UE id, and per slice PLMN, sst, sd and the three ratios."""
    h = _decode(version, "E2SM-RC-ControlHeader", header)["ric-controlHeader-formats"][1]
    m = _decode(version, "E2SM-RC-ControlMessage", message)["ric-controlMessage-formats"][1]
    p = {v: k for k, v in PARAMETER_IDS[version].items()}
    slices = []
    for top in m["ranP-List"]:
        if p.get(top["ranParameter-ID"]) != "ratio_list":
            continue
        for group in top["ranParameter-valueType"][1]["ranParameter-List"]["list-of-ranParameter"]:
            out: dict = {}
            stack = list(group.get("sequence-of-ranParameters", []))
            while stack:
                item = stack.pop()
                name = p.get(item["ranParameter-ID"])
                kind, v = item["ranParameter-valueType"]
                if kind in ("ranP-Choice-ElementFalse", "ranP-Choice-ElementTrue"):
                    value = v.get("ranParameter-value", (None, None))[1]
                    if name == "plmn":
                        out["plmn"] = plmn_str(value)
                    elif name in ("sst", "sd"):
                        out[name] = int.from_bytes(value, "big")
                    elif name in ("min", "max", "dedicated"):
                        out[f"{name}_prb_ratio"] = value
                else:
                    stack += _items((kind, v))
            slices.append(out)
    return {"ric_style_type": h["ric-Style-Type"], "control_action_id": h["ric-ControlAction-ID"],
            "ue_id": ue_to_str(h["ueID"]), "slices": slices}

