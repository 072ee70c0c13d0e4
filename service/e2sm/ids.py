"""Identities and times of E2SM messages as the xApp names them: NTP timestamps, PLMNs, cell global ids,
slices and UE identities (the asn1tools value forms of E2SM-COMMON-IEs), to and from series-key strings.

Cell ids from a CGI: "nr-<MCC><MNC>-<NR cell identity, 9 hex digits>" and "eutra-<MCC><MNC>-<E-UTRA cell
identity, 7 hex digits>", e.g. "nr-00101-00066c000" (ids are 1–64 of [A-Za-z0-9_.:-], contract/series.py).
UE ids from a UEID: the alternative's identifier, e.g. "amf-17" (gNB-UEID: AMF UE NGAP id), "f1ap-5"
(gNB-DU-UEID), "e1ap-5" (gNB-CU-UP-UEID), "ngenb-amf-17", "w1ap-5", "x2ap-5", "s1ap-5".
"""

from __future__ import annotations

import re

NTP_UNIX_OFFSET_S = 2_208_988_800  # 1900-01-01 to 1970-01-01
ERA = 1 << 32
PLMN_PATTERN = re.compile(r"^(\d{3})(\d{2,3})$")
CGI_PATTERN = re.compile(r"^(nr|eutra)-(\d{5,6})-([0-9a-fA-F]{1,9})$")


class IdError(ValueError):
    """An identity that cannot be encoded (malformed PLMN, cell id, slice)."""


# -- time ----------------------------------------------------------------------------------------------
def ntp_to_unix_ms(ts: bytes) -> int:
    """Unix ms of an NTP timestamp: 8 octets (seconds, fraction: KPM v03.00+) or 4 octets (seconds: KPM
    v02.00). Seconds with the top bit clear are in NTP era 1 (from 2036; RFC 4330 §3). A 4-octet value
    below the NTP seconds of 1970 is taken as Unix seconds, which some E2 nodes send in v02.00."""
    if len(ts) == 8:
        sec, frac = int.from_bytes(ts[:4], "big"), int.from_bytes(ts[4:], "big")
    elif len(ts) == 4:
        sec, frac = int.from_bytes(ts, "big"), 0
        if sec < NTP_UNIX_OFFSET_S:
            return sec * 1000
    else:
        raise IdError(f"a TimeStamp has 4 or 8 octets, got {len(ts)}")
    if not sec & 0x8000_0000:
        sec += ERA
    return (sec - NTP_UNIX_OFFSET_S) * 1000 + (frac * 1000 + (1 << 31)) // ERA


def unix_ms_to_ntp(ms: int, octets: int = 8) -> bytes:
    """The NTP timestamp of Unix ms: 8 octets with the fraction (rounded to the nearest 2^-32 s), or the 4
    octets of its seconds (KPM v02.00; ms below a second are lost)."""
    sec, rem = divmod(int(ms), 1000)
    sec = (sec + NTP_UNIX_OFFSET_S) % ERA
    if octets == 4:
        return sec.to_bytes(4, "big")
    frac = (rem * ERA + 500) // 1000
    return sec.to_bytes(4, "big") + frac.to_bytes(4, "big")


# -- PLMN, cells, slices -------------------------------------------------------------------------------
def plmn_bytes(plmn: str) -> bytes:
    """TS 38.413 PLMN Identity (3 octets, BCD digits, filler F for a 2-digit MNC) of "MCCMNC"."""
    m = PLMN_PATTERN.match(plmn)
    if not m:
        raise IdError(f"PLMN {plmn!r} is not MCC (3 digits) + MNC (2 or 3 digits)")
    mcc, mnc = m.groups()
    d = [int(c) for c in mcc + mnc] + ([0xF] if len(mnc) == 2 else [])
    # octet 1: MCC2 MCC1, octet 2: MNC3 (or F) MCC3, octet 3: MNC2 MNC1
    mnc3 = d[5] if len(mnc) == 3 else 0xF
    return bytes([d[1] << 4 | d[0], mnc3 << 4 | d[2], d[4] << 4 | d[3]])


def plmn_str(b: bytes) -> str:
    """"MCCMNC" of a PLMN Identity; IdError for digits outside 0-9."""
    if len(b) != 3:
        raise IdError("a PLMN Identity has 3 octets")
    d1, d2, d3, mnc3, m1, m2 = b[0] & 15, b[0] >> 4, b[1] & 15, b[1] >> 4, b[2] & 15, b[2] >> 4
    digits = [d1, d2, d3, m1, m2] + ([] if mnc3 == 0xF else [mnc3])
    if any(x > 9 for x in digits):
        raise IdError(f"PLMN Identity {b.hex()} has non-BCD digits")
    return "".join(map(str, digits))


def cgi_to_cell(cgi) -> str:
    """The cell id of a CGI value ("nR-CGI" or "eUTRA-CGI")."""
    kind, v = cgi
    if kind == "nR-CGI":
        bits, n = v["nRCellIdentity"]
        return f"nr-{plmn_str(v['pLMNIdentity'])}-{int.from_bytes(bits, 'big') >> (8 * len(bits) - n):09x}"
    if kind == "eUTRA-CGI":
        bits, n = v["eUTRACellIdentity"]
        return f"eutra-{plmn_str(v['pLMNIdentity'])}-{int.from_bytes(bits, 'big') >> (8 * len(bits) - n):07x}"
    raise IdError(f"unknown CGI alternative {kind}")


def cell_to_cgi(cell: str):
    """The CGI value of a cell id written as cgi_to_cell writes it, or None for other cell ids."""
    m = CGI_PATTERN.match(cell)
    if not m:
        return None
    kind, plmn, ident = m.groups()
    n = 36 if kind == "nr" else 28
    value = int(ident, 16)
    if value >> n:
        raise IdError(f"cell identity {ident} does not fit {n} bits")
    bits = (value << (40 - n if n == 36 else 32 - n)).to_bytes(5 if n == 36 else 4, "big")
    if kind == "nr":
        return "nR-CGI", {"pLMNIdentity": plmn_bytes(plmn), "nRCellIdentity": (bits, 36)}
    return "eUTRA-CGI", {"pLMNIdentity": plmn_bytes(plmn), "eUTRACellIdentity": (bits, 28)}


def snssai_value(sst: int, sd: int | None) -> dict:
    if not 0 <= sst <= 255 or (sd is not None and not 0 <= sd < 1 << 24):
        raise IdError(f"slice sst={sst} sd={sd}: sst is 0..255, sd 24 bits")
    v = {"sST": bytes([sst])}
    if sd is not None:
        v["sD"] = sd.to_bytes(3, "big")
    return v


def snssai_tuple(v: dict) -> tuple[int, int | None]:
    sd = v.get("sD")
    return v["sST"][0], int.from_bytes(sd, "big") if sd is not None else None


# -- UEs -----------------------------------------------------------------------------------------------
_UE_KEYS = {"gNB-UEID": ("amf", "amf-UE-NGAP-ID"), "gNB-DU-UEID": ("f1ap", "gNB-CU-UE-F1AP-ID"),
            "gNB-CU-UP-UEID": ("e1ap", "gNB-CU-CP-UE-E1AP-ID"), "ng-eNB-UEID": ("ngenb-amf", "amf-UE-NGAP-ID"),
            "ng-eNB-DU-UEID": ("w1ap", "ng-eNB-CU-UE-W1AP-ID"), "en-gNB-UEID": ("x2ap", "m-eNB-UE-X2AP-ID"),
            "eNB-UEID": ("s1ap", "mME-UE-S1AP-ID")}


def ue_to_str(ue) -> str:
    """The UE id of a UEID value (see the module docstring)."""
    kind, v = ue
    prefix, key = _UE_KEYS[kind]
    return f"{prefix}-{v[key]}"


def gnb_ueid(amf_ue_ngap_id: int, plmn: str, amf_region: int = 1, amf_set: int = 1, amf_pointer: int = 1):
    """A gNB-UEID (the minimal UEID-GNB: AMF UE NGAP id and GUAMI)."""
    return "gNB-UEID", {"amf-UE-NGAP-ID": int(amf_ue_ngap_id), "guami": {
        "pLMNIdentity": plmn_bytes(plmn), "aMFRegionID": (bytes([amf_region & 0xFF]), 8),
        "aMFSetID": (((amf_set & 0x3FF) << 6).to_bytes(2, "big"), 10),
        "aMFPointer": (bytes([(amf_pointer & 0x3F) << 2]), 6)}}
