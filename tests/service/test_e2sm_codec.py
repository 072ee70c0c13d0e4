"""The E2SM-KPM codec: byte vectors derived by hand from X.691, round trips of every format and version, the
specialised decoder against asn1tools on random messages, and fuzzed payloads (only E2smError, never a crash)."""

from __future__ import annotations

import contextlib
import math
import random

import pytest

from service.e2sm import kpm_fast
from service.e2sm.aper import Malformed, Unsupported
from service.e2sm.ids import (
    cell_to_cgi,
    cgi_to_cell,
    gnb_ueid,
    ntp_to_unix_ms,
    plmn_bytes,
    plmn_str,
    ue_to_str,
    unix_ms_to_ntp,
)
from service.e2sm.kpm import Binding, KpmCodec, header_value, indication_rows, meas_info_list, record_item
from service.e2sm.specs import E2smError, kpm_spec
from service.e2sm.subscription import action_definition, binding_of, event_trigger

MSG = "E2SM-KPM-IndicationMessage"

# -- hand-derived vectors (X.691 aligned PER; clause numbers of X.691) ------------------------------------
# Format 1, KPM v03.00: measData = [[integer 5, real 0.5, noValue]], measInfoList = ["A" with labels noLabel
# and sliceID(sST 01); measID 2 with noLabel], granulPeriod 1000.
#   IndicationMessage: extension bit 0; formats CHOICE: extension bit 0, index 0 of 2 (1 bit): 0;
#   Format1: extension bit 0, presence bits measInfoList 1, granulPeriod 1  → 000011, then
#   measData SIZE(1..65535): length 1 as a constrained whole number of range 65535 → two octets, octet-aligned
#   (10.9.3.3, 10.5.7.3): pad 00 → 0C | 00 00
#   MeasurementDataItem: extension 0, incompleteFlag absent 0; measRecord SIZE(1..2^31-1): ub ≥ 64K →
#   unconstrained length, aligned (10.9.3.5): pad → 00 | 03
#   item 1: CHOICE extension 0, index 0 of 3 (2 bits) → 000; INTEGER (0..2^32-1): range > 64K → length in
#   1..4 octets as 2 bits (10.5.7.4): 1 octet → 00; pad → 00 | value 05
#   item 2: 0 01 (real), pad → 20; REAL: length 03, contents (X.690 8.5.7, CER/DER): 80 (binary, +, base 2,
#   F 0, 1-octet exponent) FF (exponent -1) 01 (mantissa 1): 0.5 = 1 × 2^-1 → 03 80 FF 01
#   item 3: 0 10 (noValue, NULL: no bits), then measInfoList SIZE(1..65535) length 2 → pad → 40 | 00 01
#   "A": item extension 0, MeasurementType extension 0 index 0, PrintableString SIZE(1..150, ...) extension 0,
#   length 1 as 8 bits (range 150) 00000000, characters octet-aligned (ub × 8 > 16, 30.5.7) → 00 00 | 41
#   labelInfoList (ub 2^31-1: unconstrained length) → 02
#   label 1: item extension 0, MeasurementLabel extension 0, 21 presence bits 1 0…0 (noLabel),
#   ENUMERATED {true, ...}: extension 0, no index bits → 001 + 21 zeros → 20 00 00
#   label 2: 0, 0, presence 001 0…0 (sliceID); S-NSSAI extension 0, sD absent 0, sST SIZE(1) not aligned
#   (17.6: fixed ≤ 2 octets) 00000001 → 08 00 00 00 | 1…
#   measID 2: item extension 0, CHOICE extension 0 index 1, INTEGER (1..65536, ...) extension 0 → 1 0010 pad
#   → 90; range 65536 → two aligned octets, 2 - 1 → 00 01; labelInfoList length → 01; noLabel → 20 00 00
#   granulPeriod INTEGER (1..2^32-1): 2 octets → length bits 01, pad → 40 | 03 E7
F1_VALUE = {"indicationMessage-formats": ("indicationMessage-Format1", {
    "measData": [{"measRecord": [("integer", 5), ("real", 0.5), ("noValue", None)]}],
    "measInfoList": [{"measType": ("measName", "A"), "labelInfoList": [
        {"measLabel": {"noLabel": "true"}}, {"measLabel": {"sliceID": {"sST": b"\x01"}}}]},
        {"measType": ("measID", 2), "labelInfoList": [{"measLabel": {"noLabel": "true"}}]}],
    "granulPeriod": 1000})}
F1_BYTES = bytes.fromhex("0C 0000 00 03 00 05 20 03 80FF01 40 0001 0000 41 02 200000 08000000 90 0001 01 200000 40 "
                         "03E7")

# Format 3, KPM v03.00: one UE, gNB-DU-UEID (F1AP id 7), its report measData = [[integer 1]], no measInfoList.
#   IndicationMessage extension 0; formats CHOICE extension 1 (format 3 is an extension alternative, 23.8):
#   index as a normally small number (10.6) 0 + 000000 → 0 1 0000000, pad → 40 00; the alternative as an open
#   type (11.2): length 0D, then its complete encoding:
#     Format3 extension 0, pad → 00; ueMeasReportList SIZE(1..65535) length 1 → 00 00
#     item extension 0; UEID CHOICE extension 0, index 1 of 7 (3 bits) 001; UEID-GNB-DU extension 0,
#     ran-UEID absent 0; F1AP id INTEGER (0..2^32-1): length bits 00 → 000010000, pad → 08 00 | 07
#     Format1 extension 0, presence 00, pad → 00; measData length 1 → 00 00; data item 00, pad → 00;
#     measRecord length → 01; integer: 000 + length bits 00, pad → 00 | 01
F3_VALUE = {"indicationMessage-formats": ("indicationMessage-Format3", {"ueMeasReportList": [
    {"ueID": ("gNB-DU-UEID", {"gNB-CU-UE-F1AP-ID": 7}), "measReport": {"measData": [
        {"measRecord": [("integer", 1)]}]}}]})}
F3_BYTES = bytes.fromhex("40 00 0D 00 0000 0800 07 00 0000 00 01 00 01")

# Header format 1: extension bits of the header, its CHOICE (one root alternative: no index) and format 1,
# then 4 presence bits (senderName only: 0100) → 000 0100 + pad → 08; colletStartTime (fixed size: no length,
# aligned, 16.7) 8 octets in v03.00; senderName PrintableString (SIZE(0..400, ...)): extension 0, then the
# length 2 as a constrained whole number of range 401: more than 255 → two octets, octet-aligned (10.5.7.3)
# → 0 + pad → 00 | 00 02; the characters octet-aligned, 8 bits each (30.5.3) → 64 75
HEADER_TIME = bytes.fromhex("EA2C7000 80000000")  # NTP 2024-07-01T00:00:00.5Z: 3,928,780,800 s + 2^31 / 2^32 s
HEADER_BYTES = bytes.fromhex("08 EA2C700080000000 00 0002 6475")


def test_format1_bytes_derived_by_hand():
    codec = KpmCodec(3)
    assert codec.encode_message(F1_VALUE) == F1_BYTES
    assert kpm_spec(3).encode(MSG, F1_VALUE) == F1_BYTES  # asn1tools agrees with the derivation
    assert codec.decode_message(F1_BYTES) == F1_VALUE == kpm_spec(3).decode(MSG, F1_BYTES)


def test_format3_bytes_derived_by_hand():
    codec = KpmCodec(3)
    assert codec.encode_message(F3_VALUE) == F3_BYTES
    assert codec.decode_message(F3_BYTES) == F3_VALUE == kpm_spec(3).decode(MSG, F3_BYTES)


def test_header_bytes_derived_by_hand_and_its_time():
    value = {"indicationHeader-formats": ("indicationHeader-Format1", {"colletStartTime": HEADER_TIME,
                                                                        "senderName": "du"})}
    codec = KpmCodec(3)
    assert codec.encode_header(value) == HEADER_BYTES == kpm_spec(3).encode("E2SM-KPM-IndicationHeader", value)
    assert codec.decode_header(HEADER_BYTES) == value
    assert ntp_to_unix_ms(HEADER_TIME) == 1_719_792_000_500


def test_header_timestamps_per_version():
    ms = 1_700_000_123_456
    assert ntp_to_unix_ms(unix_ms_to_ntp(ms)) == ms
    assert ntp_to_unix_ms(unix_ms_to_ntp(ms, 4)) == ms // 1000 * 1000  # v02.00: seconds only
    assert ntp_to_unix_ms((1_700_000_000).to_bytes(4, "big")) == 1_700_000_000_000  # Unix seconds some nodes send
    assert ntp_to_unix_ms(bytes.fromhex("00000010 00000000")) == (2**32 + 16 - 2_208_988_800) * 1000  # era 1
    for v, size in ((2, 5), (3, 9), (4, 9)):
        b = KpmCodec(v).encode_header(header_value(ms, v))
        assert len(b) == size and KpmCodec(v).decode_header(b)["indicationHeader-formats"][1]["colletStartTime"] \
            == unix_ms_to_ntp(ms, 4 if v == 2 else 8)


def test_version_differences_are_encoded_per_version():
    not_satisfied = {"indicationMessage-formats": ("indicationMessage-Format1", {
        "measData": [{"measRecord": [("notSatisfied", None)]}]})}
    assert KpmCodec(4).decode_message(KpmCodec(4).encode_message(not_satisfied)) == not_satisfied
    with pytest.raises(E2smError):
        KpmCodec(3).encode_message(not_satisfied)  # v04.00 addition
    cell_label = {"indicationMessage-formats": ("indicationMessage-Format1", {
        "measData": [{"measRecord": [("integer", 1)]}],
        "measInfoList": [{"measType": ("measName", "X"), "labelInfoList": [
            {"measLabel": {"cellGlobalID": cell_to_cgi("nr-00101-000000001")}}]}]})}
    b = KpmCodec(4).encode_message(cell_label)  # an extension addition: asn1tools writes it
    assert KpmCodec(4).decode_message(b) == cell_label
    with pytest.raises(E2smError):
        KpmCodec(3).encode_message(cell_label)
    rows = indication_rows(KpmCodec(4).decode_header(KpmCodec(4).encode_header(header_value(1000, 4))),
                           KpmCodec(4).decode_message(b), Binding("node-cell", 1000), 4)
    assert [(r.cell, r.values) for r in rows] == [("nr-00101-000000001", {"X": 1.0})]
    # format 2 conditions: a CHOICE in v02.00, a SEQUENCE with logicalOR from v03.00
    cond2 = {"measLabel": {"fiveQI": 9}}
    cond3 = {"matchingCondChoice": ("testCondInfo", {"testType": ("rSRP", "true"), "testExpr": "lessthan",
                                                      "testValue": ("valueInt", -110)}), "logicalOR": "true"}
    for v, cond in ((2, ("measLabel", cond2["measLabel"])), (3, cond3), (4, cond3)):
        f2 = {"indicationMessage-formats": ("indicationMessage-Format2", {
            "measData": [{"measRecord": [("real", 2.5)]}], "granulPeriod": 500,
            "measCondUEidList": [{"measType": ("measName", "DRB.UEThpDl"), "matchingCond": [cond]}]})}
        codec = KpmCodec(v)
        assert codec.decode_message(codec.encode_message(f2)) == f2
        rows = indication_rows(codec.decode_header(codec.encode_header(header_value(0, v))),
                               codec.decode_message(codec.encode_message(f2)), Binding("c1"), v)
        name = "DRB.UEThpDl[fiveQI=9]" if v == 2 else "DRB.UEThpDl[rSRP<-110]"
        assert [(r.timestamp_ms, r.values) for r in rows] == [(500, {name: 2.5})]


@pytest.mark.parametrize("version", [2, 3, 4])
def test_round_trips_of_every_format(version):
    codec = KpmCodec(version)
    infos = meas_info_list(["DRB.UEThpDl", "RRU.PrbUsedDl[fiveQI=9]"], [(1, None), (2, 0xABCDEF)])
    f1 = {"measData": [{"measRecord": [record_item(v) for v in (1.5, None, 3.0, 4.0, -95.25, 6e9)]},
                       {"measRecord": [record_item(v) for v in range(6)], "incompleteFlag": "true"}],
          "measInfoList": infos, "granulPeriod": 1000}
    for value in ({"indicationMessage-formats": ("indicationMessage-Format1", f1)},
                  {"indicationMessage-formats": ("indicationMessage-Format3", {"ueMeasReportList": [
                      {"ueID": gnb_ueid(u, "00101"), "measReport": f1} for u in range(3)]})}):
        b = codec.encode_message(value)
        assert codec.decode_message(b) == value == kpm_spec(version).decode(MSG, b)
    rows = indication_rows(codec.decode_header(codec.encode_header(header_value(10_000, version))),
                           codec.decode_message(codec.encode_message(
                               {"indicationMessage-formats": ("indicationMessage-Format1", f1)})),
                           Binding("cell-7"), version)
    by = {(r.cell, r.slice, r.timestamp_ms): r.values for r in rows}
    assert by[("cell-7", None, 11_000)] == {"DRB.UEThpDl": 1.5, "RRU.PrbUsedDl[fiveQI=9]": 4.0}
    assert by[("cell-7", (1, None), 11_000)] == {"DRB.UEThpDl": None, "RRU.PrbUsedDl[fiveQI=9]": -95.25}
    assert by[("cell-7", (2, 0xABCDEF), 12_000)] == {"DRB.UEThpDl": 2.0, "RRU.PrbUsedDl[fiveQI=9]": 5.0}
    # the subscription side
    trig = event_trigger(codec, 5000)
    assert codec.decode("E2SM-KPM-EventTriggerDefinition", trig)["eventDefinition-formats"][1] == \
        {"reportingPeriod": 5000}
    for fmt in (1, 4):
        adef = action_definition(codec, ["DRB.UEThpDl"], 1000, fmt=fmt, cell_id="nr-00101-00066c000",
                                 slices=[(1, None)])
        binding, got = binding_of(codec, adef, None, "node-1")
        assert got == fmt and binding.cell_id == "nr-00101-00066c000" and binding.granul_ms == 1000
        assert len(binding.meas_infos[0]["labelInfoList"]) == 2


def test_identities():
    assert plmn_str(plmn_bytes("00101")) == "00101" and plmn_bytes("00101") == bytes.fromhex("00F110")
    assert plmn_str(plmn_bytes("310260")) == "310260" and plmn_bytes("310260") == bytes.fromhex("130062")
    for cell in ("nr-00101-00066c000", "eutra-310260-1234567"):
        assert cgi_to_cell(cell_to_cgi(cell)) == cell
    assert cell_to_cgi("gnb-001-cell-00") is None
    assert ue_to_str(gnb_ueid(17, "00101")) == "amf-17"


# -- the specialised codec against asn1tools on random messages -------------------------------------------
NAME_CHARS = "ABCXYZabc.09 '()+,-./:=?"


def rand_label(rng: random.Random) -> dict:
    lab = {}
    for name, kind, lb, ub in kpm_fast.LABEL_FIELDS:
        if rng.random() < 0.15:
            if kind == "e":
                lab[name] = "true"
            elif kind == "x":
                lab[name] = rng.randint(lb, ub) if rng.random() < 0.9 else ub + rng.randint(1, 1000)
            elif kind == "c":
                lab[name] = rng.randint(lb, ub)
            elif kind == "o":
                lab[name] = rng.randbytes(3)
            elif kind == "s":
                lab[name] = {"sST": rng.randbytes(1), **({"sD": rng.randbytes(3)} if rng.random() < 0.5 else {})}
            else:
                lab[name] = rng.choice(["start", "end"])
    return lab


def rand_value(rng: random.Random, version: int):
    k = rng.random()
    if k < 0.3:
        return "integer", rng.choice([0, 1, 127, 128, 255, 256, 65535, 65536, 2**24, 2**32 - 1, rng.getrandbits(32)])
    if k < 0.8:
        return "real", rng.choice([0.0, 1.0, -1.0, 0.5, 255.0, 256.0, 1e300, -1e-300, 5e-324, math.inf, -math.inf,
                                   rng.uniform(-1e6, 1e6), float(rng.getrandbits(53))])
    return ("noValue", None) if k < 0.95 or version < 4 else ("notSatisfied", None)


def rand_format1(rng: random.Random, version: int, n_meas: int | None = None, n_rec: int | None = None) -> dict:
    labels = [rng.randint(1, 3) for _ in range(n_meas or rng.randint(1, 12))]
    f = {"measData": []}
    for _ in range(n_rec or rng.randint(1, 3)):
        item = {"measRecord": [rand_value(rng, version) for _ in range(sum(labels))]}
        if rng.random() < 0.2:
            item["incompleteFlag"] = "true"
        f["measData"].append(item)
    if rng.random() < 0.9:
        f["measInfoList"] = [{
            "measType": ("measName", "".join(rng.choice(NAME_CHARS) for _ in range(rng.randint(1, 40))))
            if rng.random() < 0.8 else ("measID", rng.randint(1, 65536)),
            "labelInfoList": [{"measLabel": rand_label(rng)} for _ in range(k)]} for k in labels]
    if rng.random() < 0.9:
        f["granulPeriod"] = rng.choice([1, 1000, 2**32 - 1, rng.randint(1, 2**32 - 1)])
    return f


def rand_ueid(rng: random.Random):
    k = rng.randint(0, 2)
    if k == 0:
        ue = gnb_ueid(rng.getrandbits(40), "00101", rng.getrandbits(8), rng.getrandbits(10), rng.getrandbits(6))
        v = ue[1]
        if rng.random() < 0.3:
            v["gNB-CU-UE-F1AP-ID-List"] = [{"gNB-CU-UE-F1AP-ID": rng.getrandbits(32)} for _ in range(rng.randint(1, 4))]
        if rng.random() < 0.3:
            v["gNB-CU-CP-UE-E1AP-ID-List"] = [{"gNB-CU-CP-UE-E1AP-ID": rng.getrandbits(32)} for _ in range(2)]
        if rng.random() < 0.3:
            v["ran-UEID"] = rng.randbytes(8)
        if rng.random() < 0.3:
            v["m-NG-RAN-UE-XnAP-ID"] = rng.getrandbits(32)
        return ue
    v = {("gNB-CU-UE-F1AP-ID" if k == 1 else "gNB-CU-CP-UE-E1AP-ID"): rng.getrandbits(32)}
    if rng.random() < 0.5:
        v["ran-UEID"] = rng.randbytes(8)
    return ("gNB-DU-UEID" if k == 1 else "gNB-CU-UP-UEID"), v


def rand_message(rng: random.Random, version: int) -> dict:
    if rng.random() < 0.6:
        return {"indicationMessage-formats": ("indicationMessage-Format1", rand_format1(rng, version))}
    return {"indicationMessage-formats": ("indicationMessage-Format3", {"ueMeasReportList": [
        {"ueID": rand_ueid(rng), "measReport": rand_format1(rng, version, rng.randint(1, 4), 1)}
        for _ in range(rng.randint(1, 5))]})}


def same(a, b) -> bool:
    """Equality with NaN equal to NaN."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (a != a and b != b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def _against_asn1tools(version: int, n: int, seed: int) -> None:
    spec, rng, memo = kpm_spec(version), random.Random(seed), {}
    for i in range(n):
        m = rand_message(rng, version)
        ref = spec.encode(MSG, m)
        expected = spec.decode(MSG, ref)
        assert same(kpm_fast.decode_message(ref, version), expected), i
        assert same(kpm_fast.decode_message(ref, version, memo), expected), i  # memo filled …
        assert same(kpm_fast.decode_message(ref, version, memo), expected), i  # … and hit
        assert same(spec.decode(MSG, kpm_fast.encode_message(m, version)), expected), i


@pytest.mark.parametrize("version", [2, 3, 4])
def test_fast_codec_equals_asn1tools_on_random_messages(version):
    _against_asn1tools(version, 40, version)


@pytest.mark.slow
@pytest.mark.parametrize("version", [2, 3, 4])
def test_fast_codec_equals_asn1tools_on_many_random_messages(version):
    _against_asn1tools(version, 2000, 100 + version)


# -- fuzzed payloads -----------------------------------------------------------------------------------------
def _fuzz(version: int, n: int, seed: int) -> int:
    """Random, truncated and bit-flipped payloads: each decodes to a value or raises E2smError."""
    rng, codec, errors = random.Random(seed), KpmCodec(version), 0
    good = [codec.encode_message(rand_message(rng, version)) for _ in range(8)] + [F1_BYTES]
    hdr = codec.encode_header(header_value(1_700_000_000_000, version, senderName="x"))
    for i in range(n):
        base = rng.choice(good)
        kind = i % 4
        if kind == 0:
            data = rng.randbytes(rng.randint(0, 64))
        elif kind == 1:
            data = base[: rng.randrange(len(base))]
        else:
            b = bytearray(base)
            for _ in range(1 + kind):
                b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
            data = bytes(b)
        for decode, payload in ((codec.decode_message, data), (codec.decode_header, data[: len(hdr)])):
            try:
                decode(payload)
            except E2smError:
                errors += 1
        for fast in (kpm_fast.decode_message, kpm_fast.decode_header):  # the fast path itself fails cleanly
            with contextlib.suppress(Malformed, Unsupported):
                fast(data, version)
    return errors


@pytest.mark.parametrize("version", [2, 3, 4])
def test_fuzzed_payloads_raise_only_e2sm_errors(version):
    assert _fuzz(version, 120, version) > 60  # most are refused; none raises anything else


@pytest.mark.slow
@pytest.mark.parametrize("version", [2, 3, 4])
def test_fuzzed_payloads_many(version):
    _fuzz(version, 5000, 50 + version)


def test_records_must_match_their_measurements():
    codec = KpmCodec(3)
    bad = {"indicationMessage-formats": ("indicationMessage-Format1", {
        "measData": [{"measRecord": [("integer", 1), ("integer", 2)]}],
        "measInfoList": meas_info_list(["A"]), "granulPeriod": 1000})}
    header = codec.decode_header(codec.encode_header(header_value(0, 3)))
    with pytest.raises(E2smError, match="2 values for 1"):
        indication_rows(header, codec.decode_message(codec.encode_message(bad)), Binding("c"), 3)
    no_period = {"indicationMessage-formats": ("indicationMessage-Format1", {
        "measData": [{"measRecord": [("integer", 1)]}], "measInfoList": meas_info_list(["A"])})}
    with pytest.raises(E2smError, match="granulPeriod"):
        indication_rows(header, codec.decode_message(codec.encode_message(no_period)), Binding("c"), 3)
    no_infos = {"indicationMessage-formats": ("indicationMessage-Format1", {
        "measData": [{"measRecord": [("integer", 1)]}], "granulPeriod": 10})}
    msg = codec.decode_message(codec.encode_message(no_infos))
    with pytest.raises(E2smError, match="measInfoList"):
        indication_rows(header, msg, Binding("c"), 3)
    rows = indication_rows(header, msg, Binding("c", meas_infos=meas_info_list(["B"])), 3)
    assert [(r.timestamp_ms, r.values) for r in rows] == [(10, {"B": 1.0})]
