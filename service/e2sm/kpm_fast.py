"""A specialised aligned-PER codec for the hot E2SM-KPM messages: indication header format 1 and indication
message formats 1 and 3, in KPM v02.00, v03.00 and v04.00.

asn1tools decodes a 10-measurement format-1 message in ≈0.8 ms (its generic, per-type Python dispatch), too
slow for 5,000 indications/s on a core; this module walks the same X.691 rules with straight-line code and
returns exactly what asn1tools returns (dicts, (alternative, value) tuples, (bytes, bits) bit strings), so a
test compares the two on random messages. What it does not handle (extension additions present in the
message, UE identities other than gNB / gNB-DU / gNB-CU-UP, fragmented lengths) raises `Unsupported` and the
caller uses asn1tools. Field order and widths follow the ASN.1 in asn/e2sm_kpm_v*.asn.
"""

from __future__ import annotations

from service.e2sm.aper import Malformed, Reader, Unsupported, Writer

TRUE = "true"
U32 = 4294967295
# MeasurementLabel root components in order: (name, kind, lb, ub); kinds: e = ENUMERATED {true, ...},
# o = OCTET STRING (SIZE(3)), s = S-NSSAI, x = INTEGER (lb..ub, ...), c = INTEGER (lb..ub), se = {start, end, ...}
LABEL_FIELDS = (
    ("noLabel", "e", 0, 0), ("plmnID", "o", 0, 0), ("sliceID", "s", 0, 0), ("fiveQI", "x", 0, 255),
    ("qFI", "x", 0, 63), ("qCI", "c", 0, 255), ("qCImax", "c", 0, 255), ("qCImin", "c", 0, 255),
    ("aRPmax", "x", 1, 15), ("aRPmin", "x", 1, 15), ("bitrateRange", "x", 1, 65535),
    ("layerMU-MIMO", "x", 1, 65535), ("sUM", "e", 0, 0), ("distBinX", "x", 1, 65535),
    ("distBinY", "x", 1, 65535), ("distBinZ", "x", 1, 65535), ("preLabelOverride", "e", 0, 0),
    ("startEndInd", "se", 0, 0), ("min", "e", 0, 0), ("max", "e", 0, 0), ("avg", "e", 0, 0),
)
N_LABEL = len(LABEL_FIELDS)
UEID_ALTERNATIVES = ("gNB-UEID", "gNB-DU-UEID", "gNB-CU-UP-UEID", "ng-eNB-UEID", "ng-eNB-DU-UEID",
                     "en-gNB-UEID", "eNB-UEID")


def _no_ext(r: Reader, what: str) -> None:
    if r.bit():
        raise Unsupported(f"{what}: extension additions present")


def _enum_true(r: Reader) -> str:
    _no_ext(r, "ENUMERATED")
    return TRUE


# -- decoding -------------------------------------------------------------------------------------------
def decode_header(data: bytes, version: int) -> dict:
    """E2SM-KPM-IndicationHeader (format 1)."""
    r = Reader(data)
    _no_ext(r, "IndicationHeader")
    _no_ext(r, "indicationHeader-formats")  # a single root alternative: no index bits
    _no_ext(r, "IndicationHeader-Format1")
    present = r.bits(4)
    out = {"colletStartTime": r.octets(4 if version == 2 else 8)}
    for i, (name, ub) in enumerate((("fileFormatversion", 15), ("senderName", 400), ("senderType", 8),
                                    ("vendorName", 32))):
        if present & (8 >> i):
            out[name] = r.printable(0, ub, True)
    return {"indicationHeader-formats": ("indicationHeader-Format1", out)}


def _meas_type(r: Reader):
    _no_ext(r, "MeasurementType")
    if r.bit():
        return "measID", r.ext_int(1, 65536)
    return "measName", r.printable(1, 150, True)


NO_LABEL_ONLY = 1 << (N_LABEL - 1)
LABEL_ADDITIONS = {2: (), 3: ("ssbIndex", "nonGoB-BFmode-Index", "mIMO-mode-Index"),
                   4: ("ssbIndex", "nonGoB-BFmode-Index", "mIMO-mode-Index", "cellGlobalID", "beamID")}
_ROOT_LABELS = frozenset(f[0] for f in LABEL_FIELDS)


def _label(r: Reader) -> dict:
    head = r.bits(1 + N_LABEL)  # extension bit and the presence bitmap
    if head >> N_LABEL:
        raise Unsupported("MeasurementLabel: extension additions present")
    if head == NO_LABEL_ONLY:  # the common case
        return {"noLabel": _enum_true(r)}
    out = {}
    for i, (name, kind, lb, ub) in enumerate(LABEL_FIELDS):
        if not head >> (N_LABEL - 1 - i) & 1:
            continue
        if kind == "e":
            out[name] = _enum_true(r)
        elif kind == "x":
            out[name] = r.ext_int(lb, ub)
        elif kind == "c":
            out[name] = r.constrained(lb, ub)
        elif kind == "o":
            out[name] = r.octets(3)
        elif kind == "s":
            _no_ext(r, "S-NSSAI")
            has_sd = r.bit()
            s = {"sST": bytes([r.bits(8)])}  # SIZE(1): at most two octets, not aligned (17.6)
            if has_sd:
                s["sD"] = r.octets(3)
            out[name] = s
        else:
            _no_ext(r, "startEndInd")
            out[name] = ("start", "end")[r.bit()]
    return out


def _meas_info_list(r: Reader) -> list:
    items = []
    for _ in range(r.size(1, 65535)):
        head = r.bits(3)  # extension bits of MeasurementInfoItem and MeasurementType, the type's index
        if head & 6:
            raise Unsupported("MeasurementInfoItem: extension additions present")
        mt = ("measID", r.ext_int(1, 65536)) if head else ("measName", r.printable(1, 150, True))
        labels = []
        for _ in range(r.size(1, None)):  # maxnoofLabelInfo 2^31 - 1: unconstrained length
            _no_ext(r, "LabelInfoItem")
            labels.append({"measLabel": _label(r)})
        items.append({"measType": mt, "labelInfoList": labels})
    return items


def _record_item(r: Reader, version: int):
    choice = r.bits(3)  # extension bit and the root index
    if choice == 0:
        return "integer", r.constrained(0, U32)
    if choice == 1:
        return "real", r.real()
    if choice == 2:
        return "noValue", None
    if choice == 3:
        raise Malformed("MeasurementRecordItem index 3 is not a root alternative")
    r.pos -= 2  # an extension alternative (v04.00 notSatisfied): the index is a normally small number
    index = r.small()
    body = r.open_type()
    if version >= 4 and index == 0:
        if body not in (b"\x00", b""):
            raise Malformed("notSatisfied is NULL")
        return "notSatisfied", None
    raise Unsupported(f"MeasurementRecordItem extension alternative {index}")


MEMO_SIZE = 4096


def _format1(r: Reader, version: int, memo: dict | None = None) -> dict:
    _no_ext(r, "IndicationMessage-Format1")
    present = r.bits(2)
    data = []
    for _ in range(r.size(1, 65535)):
        _no_ext(r, "MeasurementDataItem")
        incomplete = r.bit()
        rec = [_record_item(r, version) for _ in range(r.size(1, None))]
        item = {"measRecord": rec}
        if incomplete:
            item["incompleteFlag"] = _enum_true(r)
        data.append(item)
    if memo is not None and present:
        return {"measData": data, **_memo_tail(r, present, memo)}
    return {"measData": data, **_format1_tail(r, present)}


def _bits_at(data: bytes, p: int, n: int) -> int:
    e = p + n
    j = (e + 7) >> 3
    return (int.from_bytes(data[p >> 3:j], "big") >> ((j << 3) - e)) & ((1 << n) - 1)


def _memo_tail(r: Reader, present: int, memo: dict) -> dict:
    """measInfoList and granulPeriod repeat from one indication of a subscription (and one UE report) to the
    next: decoded once per distinct encoding. Candidates are found by the bit offset and the next 16 octets,
    and taken only when every bit of their encoding is equal (the decode of the same bits at the same offset
    is the same)."""
    p = r.pos
    i = p >> 3
    probe = (p & 7, present, r.data[i:i + 16])
    cands = memo.get(probe)
    if cands:
        for nbits, bits, tail in cands:
            if p + nbits <= r.end and _bits_at(r.data, p, nbits) == bits:
                r.pos = p + nbits
                return tail
    tail = _format1_tail(r, present)
    if len(memo) >= MEMO_SIZE:
        memo.clear()
    entries = memo.setdefault(probe, [])
    if len(entries) < 4:
        entries.append((r.pos - p, _bits_at(r.data, p, r.pos - p), tail))
    return tail


def _format1_tail(r: Reader, present: int) -> dict:
    out = {}
    if present & 2:
        out["measInfoList"] = _meas_info_list(r)
    if present & 1:
        out["granulPeriod"] = r.constrained(1, U32)
    return out


def _guami(r: Reader) -> dict:
    _no_ext(r, "GUAMI")
    return {"pLMNIdentity": r.octets(3), "aMFRegionID": (bytes([r.bits(8)]), 8),
            "aMFSetID": ((r.bits(10) << 6).to_bytes(2, "big"), 10), "aMFPointer": (bytes([r.bits(6) << 2]), 6)}


def _ueid(r: Reader):
    _no_ext(r, "UEID")
    alt = r.bits(3)
    if alt >= len(UEID_ALTERNATIVES):
        raise Malformed("UEID index outside the root")
    name = UEID_ALTERNATIVES[alt]
    if alt == 0:  # UEID-GNB
        _no_ext(r, "UEID-GNB")
        present = r.bits(5)
        out = {"amf-UE-NGAP-ID": r.constrained(0, 1099511627775), "guami": _guami(r)}
        if present & 16:
            items = []
            for _ in range(r.size(1, 4)):
                _no_ext(r, "F1AP-ID-Item")
                items.append({"gNB-CU-UE-F1AP-ID": r.constrained(0, U32)})
            out["gNB-CU-UE-F1AP-ID-List"] = items
        if present & 8:
            items = []
            for _ in range(r.size(1, 65535)):
                _no_ext(r, "E1AP-ID-Item")
                items.append({"gNB-CU-CP-UE-E1AP-ID": r.constrained(0, U32)})
            out["gNB-CU-CP-UE-E1AP-ID-List"] = items
        if present & 4:
            out["ran-UEID"] = r.octets(8)
        if present & 2:
            out["m-NG-RAN-UE-XnAP-ID"] = r.constrained(0, U32)
        if present & 1:
            raise Unsupported("UEID-GNB globalGNB-ID")
        return name, out
    if alt in (1, 2):  # UEID-GNB-DU / UEID-GNB-CU-UP: one id and an optional RAN UE id
        _no_ext(r, name)
        has_ran = r.bit()
        out = {("gNB-CU-UE-F1AP-ID" if alt == 1 else "gNB-CU-CP-UE-E1AP-ID"): r.constrained(0, U32)}
        if has_ran:
            out["ran-UEID"] = r.octets(8)
        return name, out
    raise Unsupported(f"UEID alternative {name}")


def decode_message(data: bytes, version: int, memo: dict | None = None) -> dict:
    """E2SM-KPM-IndicationMessage of format 1 or 3 (format 2: Unsupported). `memo` (a dict kept by the
    caller) caches decoded measInfoLists (see _memo_tail); the values returned are then shared between
    calls: treat them as read-only."""
    r = Reader(data)
    _no_ext(r, "IndicationMessage")
    if r.bit():  # extension alternative: index 0 is format 3
        if r.small() != 0:
            raise Unsupported("indication message format beyond 3")
        body = Reader(r.open_type())
        _no_ext(body, "IndicationMessage-Format3")
        reports = []
        for _ in range(body.size(1, 65535)):
            _no_ext(body, "UEMeasurementReportItem")
            ue = _ueid(body)
            reports.append({"ueID": ue, "measReport": _format1(body, version, memo)})
        _check_end(body)
        fmt = "indicationMessage-Format3", {"ueMeasReportList": reports}
    else:
        if r.bit():
            raise Unsupported("indication message format 2")
        fmt = "indicationMessage-Format1", _format1(r, version, memo)
    _check_end(r)
    return {"indicationMessage-formats": fmt}


def _check_end(r: Reader) -> None:
    """Only zero padding may follow the last field (10.1.3: the encoding ends in the same octet)."""
    r.align()
    if r.pos != r.end:
        raise Malformed(f"{(r.end - r.pos) // 8} octets after the end of the message")


# -- encoding -------------------------------------------------------------------------------------------
def encode_header(value: dict, version: int) -> bytes:
    fmt = value["indicationHeader-formats"][1]
    w = Writer()
    w.bits(0, 3)  # extension bits of the header, its CHOICE and format 1
    names = ("fileFormatversion", "senderName", "senderType", "vendorName")
    w.bits(sum(8 >> i for i, n in enumerate(names) if n in fmt), 4)
    ts = fmt["colletStartTime"]
    if len(ts) != (4 if version == 2 else 8):
        raise ValueError("colletStartTime has the wrong size for this KPM version")
    w.octets(ts)
    for n, ub in zip(names, (15, 400, 8, 32)):
        if n in fmt:
            w.printable(fmt[n], 0, ub, True)
    return w.tobytes()


def _w_label(w: Writer, label: dict, version: int) -> None:
    w.bits(0, 1)
    unknown = set(label) - _ROOT_LABELS
    if unknown:  # extension additions of this version: asn1tools writes them; others do not exist in it
        if unknown - set(LABEL_ADDITIONS[version]):
            raise ValueError(f"MeasurementLabel {sorted(unknown - set(LABEL_ADDITIONS[version]))} is not in KPM "
                             f"v{version}.00")
        raise Unsupported(f"MeasurementLabel {sorted(unknown)}")
    w.bits(sum(1 << (N_LABEL - 1 - i) for i, f in enumerate(LABEL_FIELDS) if f[0] in label), N_LABEL)
    for name, kind, lb, ub in LABEL_FIELDS:
        if name not in label:
            continue
        v = label[name]
        if kind == "e":
            w.bits(0, 1)
        elif kind == "x":
            w.ext_int(v, lb, ub)
        elif kind == "c":
            w.constrained(v, lb, ub)
        elif kind == "o":
            w.octets(v)
        elif kind == "s":
            w.bits(0, 1)
            w.bits(1 if "sD" in v else 0, 1)
            w.bits(v["sST"][0], 8)
            if "sD" in v:
                w.octets(v["sD"])
        else:
            w.bits(0, 1)
            w.bits(("start", "end").index(v), 1)


def _w_format1(w: Writer, f: dict, version: int) -> None:
    w.bits(0, 1)
    w.bits((2 if "measInfoList" in f else 0) | (1 if "granulPeriod" in f else 0), 2)
    w.size(len(f["measData"]), 1, 65535)
    for item in f["measData"]:
        w.bits(0, 1)
        w.bits(1 if "incompleteFlag" in item else 0, 1)
        rec = item["measRecord"]
        w.length(len(rec))
        for kind, v in rec:
            if kind == "integer":
                w.bits(0, 3)
                w.constrained(v, 0, U32)
            elif kind == "real":
                w.bits(1, 3)
                w.real(v)
            elif kind == "noValue":
                w.bits(2, 3)
            elif kind == "notSatisfied" and version >= 4:
                w.bits(1, 1)
                w.small(0)
                w.open_type(b"\x00")
            else:
                raise ValueError(f"{kind} is not a MeasurementRecordItem of KPM v{version}")
        if "incompleteFlag" in item:
            w.bits(0, 1)
    if "measInfoList" in f:
        w.size(len(f["measInfoList"]), 1, 65535)
        for info in f["measInfoList"]:
            if len(info) > 2:
                if version >= 4 and set(info) == {"measType", "labelInfoList", "matchCondReportList"}:
                    raise Unsupported("matchCondReportList")
                raise ValueError(f"MeasurementInfoItem {sorted(info)} is not a KPM v{version}.00 item")
            w.bits(0, 2)  # extension bits of the item and of MeasurementType
            kind, v = info["measType"]
            if kind == "measName":
                w.bits(0, 1)
                w.printable(v, 1, 150, True)
            else:
                w.bits(1, 1)
                w.ext_int(v, 1, 65536)
            w.length(len(info["labelInfoList"]))
            for item in info["labelInfoList"]:
                w.bits(0, 1)
                _w_label(w, item["measLabel"], version)
    if "granulPeriod" in f:
        w.constrained(f["granulPeriod"], 1, U32)


def _w_ueid(w: Writer, ue) -> None:
    name, v = ue
    alt = UEID_ALTERNATIVES.index(name)
    w.bits(0, 1)
    w.bits(alt, 3)
    if alt == 0:
        opt = ("gNB-CU-UE-F1AP-ID-List", "gNB-CU-CP-UE-E1AP-ID-List", "ran-UEID", "m-NG-RAN-UE-XnAP-ID",
               "globalGNB-ID")
        if "globalGNB-ID" in v or set(v) - {"amf-UE-NGAP-ID", "guami", *opt}:
            raise Unsupported("UEID-GNB fields")
        w.bits(0, 1)
        w.bits(sum(16 >> i for i, n in enumerate(opt) if n in v), 5)
        w.constrained(v["amf-UE-NGAP-ID"], 0, 1099511627775)
        g = v["guami"]
        w.bits(0, 1)
        w.octets(g["pLMNIdentity"])
        w.bits(g["aMFRegionID"][0][0], 8)
        w.bits(int.from_bytes(g["aMFSetID"][0], "big") >> 6, 10)
        w.bits(g["aMFPointer"][0][0] >> 2, 6)
        if "gNB-CU-UE-F1AP-ID-List" in v:
            w.size(len(v["gNB-CU-UE-F1AP-ID-List"]), 1, 4)
            for it in v["gNB-CU-UE-F1AP-ID-List"]:
                w.bits(0, 1)
                w.constrained(it["gNB-CU-UE-F1AP-ID"], 0, U32)
        if "gNB-CU-CP-UE-E1AP-ID-List" in v:
            w.size(len(v["gNB-CU-CP-UE-E1AP-ID-List"]), 1, 65535)
            for it in v["gNB-CU-CP-UE-E1AP-ID-List"]:
                w.bits(0, 1)
                w.constrained(it["gNB-CU-CP-UE-E1AP-ID"], 0, U32)
        if "ran-UEID" in v:
            w.octets(v["ran-UEID"])
        if "m-NG-RAN-UE-XnAP-ID" in v:
            w.constrained(v["m-NG-RAN-UE-XnAP-ID"], 0, U32)
    elif alt in (1, 2):
        key = "gNB-CU-UE-F1AP-ID" if alt == 1 else "gNB-CU-CP-UE-E1AP-ID"
        if set(v) - {key, "ran-UEID"}:
            raise Unsupported(f"{name} fields")
        w.bits(0, 1)
        w.bits(1 if "ran-UEID" in v else 0, 1)
        w.constrained(v[key], 0, U32)
        if "ran-UEID" in v:
            w.octets(v["ran-UEID"])
    else:
        raise Unsupported(f"UEID alternative {name}")


def encode_message(value: dict, version: int) -> bytes:
    """E2SM-KPM-IndicationMessage of format 1 or 3."""
    kind, f = value["indicationMessage-formats"]
    w = Writer()
    w.bits(0, 1)
    if kind == "indicationMessage-Format1":
        w.bits(0, 2)  # CHOICE: root, index 0 of 2
        _w_format1(w, f, version)
    elif kind == "indicationMessage-Format3":
        body = Writer()
        body.bits(0, 1)
        reports = f["ueMeasReportList"]
        body.size(len(reports), 1, 65535)
        for rep in reports:
            body.bits(0, 1)
            _w_ueid(body, rep["ueID"])
            _w_format1(body, rep["measReport"], version)
        w.bits(1, 1)  # CHOICE: extension alternative 0, as an open type (23.8)
        w.small(0)
        w.open_type(body.tobytes() or b"\x00")
    else:
        raise Unsupported(kind)
    return w.tobytes()
