"""E2SM-KPM (O-RAN.WG3.E2SM-KPM v02.00–v04.00): the codec, and what an indication means to the xApp.

`KpmCodec(version)` decodes and encodes indication headers and messages with the specialised codec of
kpm_fast.py (formats 1 and 3), falling back to asn1tools (specs.py) for everything else (format 2, extension
additions, rare UE identities); either way the values are asn1tools' forms. `indication_rows` turns a decoded
header and message into rows: one per series (cell, UE, slice) and granularity period, keyed by KPI name.

Measurements and labels → series and KPI names:
- a measurement is named by measName, or by measID through the subscription's id → name map
  (unknown ids become "measID:<id>");
- label noLabel: the cell's own value; sliceID: the series of that slice (the cell narrowed to it);
  cellGlobalID (v04.00): the value is that cell's, not the subscription's;
- every other label (and, in format 2, every test condition) is kept in the KPI name, in brackets:
  "DRB.UEThpDl[fiveQI=9]", "RRU.PrbUsedDl[plmnID=00101,avg]", "DRB.UEThpDl[rSRP<-110]";
- format 3 reports are the series of their UE (the cell narrowed to the UE id of ids.py);
- a record's values follow the (measurement, label) pairs of measInfoList, or of the subscription's action
  definition when the message omits it; record k ends at colletStartTime + (k + 1) × granulPeriod, the
  report timestamp; integer and real are values, noValue and notSatisfied are absent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from service.e2sm import kpm_fast
from service.e2sm.aper import Malformed, Unsupported
from service.e2sm.ids import (
    IdError,
    cgi_to_cell,
    ntp_to_unix_ms,
    plmn_bytes,
    plmn_str,
    snssai_tuple,
    snssai_value,
    ue_to_str,
    unix_ms_to_ntp,
)
from service.e2sm.specs import E2smError, asn1_errors, kpm_spec

U32 = 4294967295
_OPS = {"equal": "=", "greaterthan": ">", "lessthan": "<", "contains": "~", "present": "?"}
_SUFFIX = re.compile(r"^(.+)\[([^\[\]]+)\]$")
_INT_LABELS = {f[0] for f in kpm_fast.LABEL_FIELDS if f[1] in ("x", "c")} | {
    "ssbIndex", "nonGoB-BFmode-Index", "mIMO-mode-Index"}
_TRUE_LABELS = {f[0] for f in kpm_fast.LABEL_FIELDS if f[1] == "e"} - {"noLabel"}


class KpmCodec:
    """Encoder and decoder of one KPM version; errors are E2smError with the reason."""

    def __init__(self, version: int):
        self.version = version
        self.spec = kpm_spec(version)
        self._memo: dict = {}  # kpm_fast's cache of decoded measInfoLists
        self.fallbacks = 0  # messages asn1tools had to decode

    def decode(self, type_name: str, data: bytes) -> dict:
        """Any type of the module, with asn1tools."""
        try:
            return self.spec.decode(type_name, bytes(data), check_constraints=True)
        except asn1_errors() as e:
            raise E2smError(f"not a valid {type_name} (KPM v{self.version}.00): {e}") from None

    def encode(self, type_name: str, value: dict) -> bytes:
        try:
            return self.spec.encode(type_name, value, check_constraints=True)
        except asn1_errors() as e:
            raise E2smError(f"cannot encode {type_name} (KPM v{self.version}.00): {e}") from None

    def decode_header(self, data: bytes) -> dict:
        try:
            return kpm_fast.decode_header(data, self.version)
        except Malformed as e:
            raise E2smError(f"not a valid E2SM-KPM-IndicationHeader (KPM v{self.version}.00): {e}") from None
        except Exception:  # Unsupported, or a case the fast path gets wrong: asn1tools decides
            self.fallbacks += 1
            return self.decode("E2SM-KPM-IndicationHeader", data)

    def decode_message(self, data: bytes) -> dict:
        """Decoded E2SM-KPM-IndicationMessage; shares cached parts between calls (read-only)."""
        try:
            return kpm_fast.decode_message(data, self.version, self._memo)
        except Malformed as e:
            raise E2smError(f"not a valid E2SM-KPM-IndicationMessage (KPM v{self.version}.00): {e}") from None
        except Exception:  # Unsupported, or a case the fast path gets wrong: asn1tools decides
            self.fallbacks += 1
            return self.decode("E2SM-KPM-IndicationMessage", data)

    def encode_header(self, value: dict) -> bytes:
        try:
            return kpm_fast.encode_header(value, self.version)
        except Unsupported:
            return self.encode("E2SM-KPM-IndicationHeader", value)
        except (ValueError, KeyError, TypeError, IndexError, UnicodeEncodeError) as e:
            raise E2smError(f"cannot encode E2SM-KPM-IndicationHeader (KPM v{self.version}.00): {e}") from None

    def encode_message(self, value: dict) -> bytes:
        try:
            return kpm_fast.encode_message(value, self.version)
        except Unsupported:
            return self.encode("E2SM-KPM-IndicationMessage", value)
        except (ValueError, KeyError, TypeError, IndexError, UnicodeEncodeError) as e:
            raise E2smError(f"cannot encode E2SM-KPM-IndicationMessage (KPM v{self.version}.00): {e}") from None


# -- values the publishers build -------------------------------------------------------------------------
def header_value(collect_start_ms: int, version: int, **strings: str) -> dict:
    """An indication header (format 1) starting at collect_start_ms; strings: fileFormatversion, senderName,
    senderType, vendorName."""
    h = {"colletStartTime": unix_ms_to_ntp(collect_start_ms, 4 if version == 2 else 8), **strings}
    return {"indicationHeader-formats": ("indicationHeader-Format1", h)}


def record_item(v: float | None):
    """noValue for None / NaN, integer for whole numbers in 0..2^32-1, else real (exact for a float64)."""
    if v is None or v != v:
        return "noValue", None
    v = float(v)
    if v.is_integer() and 0 <= v <= U32:
        return "integer", int(v)
    return "real", float(v)


def split_name(name: str) -> tuple[str, dict]:
    """("DRB.UEThpDl", {"fiveQI": 9}) of "DRB.UEThpDl[fiveQI=9]": the label written by `column_name`."""
    m = _SUFFIX.match(name)
    if not m:
        return name, {}
    label: dict = {}
    for part in m.group(2).split(","):
        k, sep, v = part.partition("=")
        if k in _TRUE_LABELS and not sep:
            label[k] = "true"
        elif k in _INT_LABELS and sep and v.lstrip("-").isdigit():
            label[k] = int(v)
        elif k == "startEndInd" and v in ("start", "end"):
            label[k] = v
        elif k == "plmnID" and sep:
            label[k] = plmn_bytes(v)
        else:
            return name, {}  # not a label suffix: the whole string is the name
    return m.group(1), label


def meas_info_list(names: list[str], slices: list[tuple[int, int | None]] = ()) -> list:
    """measInfoList of a subscription: each name with its label (noLabel unless the name carries one) and a
    sliceID label per slice; record columns follow this order."""
    out = []
    for name in names:
        base, label = split_name(name)
        labels = [{"measLabel": label or {"noLabel": "true"}}]
        labels += [{"measLabel": {**label, "sliceID": snssai_value(*s)}} for s in slices]
        out.append({"measType": ("measName", base), "labelInfoList": labels})
    return out


# -- what an indication means ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Column:
    """One (measurement, label) pair of a record: the KPI name and the series it belongs to."""

    name: str
    cell: str | None  # a cellGlobalID label's cell, else None (the subscription's cell)
    slice: tuple[int, int | None] | None


@dataclass
class Binding:
    """What the subscription says about indications that the message leaves out."""

    cell_id: str
    granul_ms: int | None = None
    meas_infos: list | None = None  # the action definition's measInfoList
    meas_ids: dict[int, str] = field(default_factory=dict)


@dataclass
class Row:
    """The values of one series over one granularity period (None = absent)."""

    cell: str
    ue: str | None
    slice: tuple[int, int | None] | None
    timestamp_ms: int
    values: dict[str, float | None]


def _fmt(v) -> str:
    if isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], bytes):  # BIT STRING
        return v[0].hex()
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, tuple):
        return _fmt(v[1])
    return str(v).lower() if isinstance(v, bool) else str(v)


def _label_parts(label: dict) -> tuple[list[str], str | None, tuple | None]:
    parts, cell, sl = [], None, None
    for k, v in label.items():
        if k == "noLabel":
            continue
        if k == "sliceID":
            sl = snssai_tuple(v)
        elif k == "cellGlobalID":
            cell = cgi_to_cell(v)
        elif k == "plmnID":
            parts.append(f"plmnID={plmn_str(v)}")
        elif v == "true":
            parts.append(k)
        else:
            parts.append(f"{k}={_fmt(v)}")
    return parts, cell, sl


def _column(base: str, parts: list[str], cell, sl) -> Column:
    return Column(base + (f"[{','.join(parts)}]" if parts else ""), cell, sl)


def _meas_name(meas_type, meas_ids: dict[int, str]) -> str:
    kind, v = meas_type
    return v if kind == "measName" else meas_ids.get(v, f"measID:{v}")


def columns_of(meas_infos: list, meas_ids: dict[int, str]) -> list[Column]:
    """The record columns of a measInfoList (format 1)."""
    cols = []
    for info in meas_infos:
        base = _meas_name(info["measType"], meas_ids)
        for item in info["labelInfoList"]:
            cols.append(_column(base, *_label_parts(item["measLabel"])))
    return cols


def _condition(cond: dict) -> str:
    t = cond["testType"][0]
    if "testExpr" not in cond:
        return t
    return t + _OPS.get(cond["testExpr"], cond["testExpr"]) + (_fmt(cond["testValue"]) if "testValue" in cond
                                                              else "")


def columns_of_conditions(items: list, meas_ids: dict[int, str], version: int) -> list[Column]:
    """The record columns of a format-2 measCondUEidList: one per item, its conditions in the name."""
    cols = []
    for item in items:
        base = _meas_name(item["measType"], meas_ids)
        parts, cell, sl = [], None, None
        for cond in item["matchingCond"]:
            kind, v = cond if version == 2 else cond["matchingCondChoice"]
            if kind == "measLabel":
                p, c, s = _label_parts(v)
                parts += p
                cell, sl = c or cell, s or sl
            else:
                parts.append(_condition(v))
        cols.append(_column(base, parts, cell, sl))
    return cols


def _records(f: dict, cols: list[Column], start_ms: int, granul_ms: int, cell: str, ue: str | None,
             out: list[Row]) -> None:
    for k, item in enumerate(f["measData"]):
        rec = item["measRecord"]
        if len(rec) != len(cols):
            raise E2smError(f"measRecord {k} has {len(rec)} values for {len(cols)} (measurement, label) pairs")
        t = start_ms + (k + 1) * granul_ms
        series: dict[tuple, dict] = {}
        for col, (kind, v) in zip(cols, rec):
            values = series.setdefault((col.cell or cell, col.slice), {})
            if col.name in values:
                raise E2smError(f"measurement {col.name!r} appears twice for one series in a record")
            if kind == "integer":
                values[col.name] = float(v)
            elif kind == "real":
                values[col.name] = v  # ±inf, NaN: present, so the validator refuses them as NON_FINITE
            else:
                values[col.name] = None
        out += [Row(c, ue, s, t, vals) for (c, s), vals in series.items()]


def indication_rows(header: dict, message: dict, binding: Binding, version: int,
                    column_cache: dict | None = None) -> list[Row]:
    """The rows of a decoded indication; E2smError when the message and the subscription leave a value's
    meaning open (no measInfoList anywhere, no granularity period, a record of the wrong width)."""
    try:
        start_ms = ntp_to_unix_ms(header["indicationHeader-formats"][1]["colletStartTime"])
    except IdError as e:
        raise E2smError(str(e)) from None
    kind, f = message["indicationMessage-formats"]
    out: list[Row] = []
    try:
        if kind == "indicationMessage-Format3":
            for rep in f["ueMeasReportList"]:
                _format1_rows(rep["measReport"], binding, start_ms, ue_to_str(rep["ueID"]), out, column_cache)
        elif kind == "indicationMessage-Format1":
            _format1_rows(f, binding, start_ms, None, out, column_cache)
        else:
            cols = columns_of_conditions(f["measCondUEidList"], binding.meas_ids, version)
            _records(f, cols, start_ms, _granularity(f, binding), binding.cell_id, None, out)
    except IdError as e:
        raise E2smError(f"bad identity in the indication: {e}") from None
    return out


def _granularity(f: dict, binding: Binding) -> int:
    g = f.get("granulPeriod", binding.granul_ms)
    if g is None:
        raise E2smError("granulPeriod is absent and the subscription does not give it")
    return int(g)


def _format1_rows(f: dict, binding: Binding, start_ms: int, ue: str | None, out: list[Row],
                  cache: dict | None) -> None:
    infos = f.get("measInfoList", binding.meas_infos)
    if infos is None:
        raise E2smError("measInfoList is absent and the subscription's action definition does not give it")
    key = (id(infos), id(binding.meas_ids))  # kpm_fast shares the lists of repeated encodings
    hit = cache.get(key) if cache is not None else None
    if hit is None or hit[0] is not infos or hit[1] is not binding.meas_ids:
        hit = (infos, binding.meas_ids, columns_of(infos, binding.meas_ids))
        if cache is not None:
            if len(cache) > 4096:
                cache.clear()
            cache[key] = hit  # holds infos and meas_ids, so their ids stay theirs
    _records(f, hit[2], start_ms, _granularity(f, binding), binding.cell_id, ue, out)
