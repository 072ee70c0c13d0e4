"""KPM subscriptions: the event trigger and action definitions the xApp asks an E2 node for, and the table that
binds the indications of a subscription to their cell.

A RIC indication names its subscription by (E2 node, RAN function, RIC request id (requestor, instance),
action id) but a format-1 message does not name its cell. The cell of an indication is, in order:
1. the indication's own `cell_id` (set by an E2 termination adapter that knows it);
2. the cell of its subscription, registered with `E2smIngest.SetSubscription`: the explicit `cell_id`, else
   the cellGlobalID of the action definition (as ids.cgi_to_cell names it);
3. the E2 node id: a subscription without a cell measures the whole E2 node (E2SM-KPM 7.4.1).
A cellGlobalID label on a measurement (v04.00) overrides all three for that measurement. The registered
action definition also supplies what a message may leave out: measInfoList, granulPeriod, measID names.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass

from service.e2sm.ids import cell_to_cgi, cgi_to_cell
from service.e2sm.kpm import Binding, KpmCodec, meas_info_list
from service.e2sm.specs import KPM_VERSIONS, E2smError

MAX_SUBSCRIPTIONS = 100_000
ALL_UES = ({"testCondInfo": {"testType": ("rSRP", "true"), "testExpr": "present"}},)  # every UE reporting RSRP
REPORT_STYLES = {1: 1, 4: 4}  # action definition format → RIC style type (E2SM-KPM 7.4.1: E2 node / UE level)


def event_trigger(codec: KpmCodec, reporting_period_ms: int) -> bytes:
    """E2SM-KPM-EventTriggerDefinition format 1: report every reporting_period_ms."""
    return codec.encode("E2SM-KPM-EventTriggerDefinition", {
        "eventDefinition-formats": ("eventDefinition-Format1", {"reportingPeriod": int(reporting_period_ms)})})


def _format1(names: Sequence[str], granul_ms: int, cell_id: str | None, slices) -> dict:
    f = {"measInfoList": meas_info_list(list(names), list(slices)), "granulPeriod": int(granul_ms)}
    cgi = cell_to_cgi(cell_id) if cell_id else None
    if cgi is not None:
        f["cellGlobalID"] = cgi
    return f


def action_definition(codec: KpmCodec, names: Sequence[str], granul_ms: int, *, fmt: int = 1,
                      cell_id: str | None = None, slices: Sequence[tuple[int, int | None]] = (),
                      ue_conditions: Sequence[dict] = ALL_UES) -> bytes:
    """E2SM-KPM-ActionDefinition: format 1 (style 1, E2 node / cell measurements) or format 4 (style 4,
    per-UE reports of the UEs matching ue_conditions, answered with indication format 3). The cell goes in
    cellGlobalID when its id is a CGI id (ids.py); slices add sliceID labels to every measurement."""
    f1 = _format1(names, granul_ms, cell_id, slices)
    if fmt == 1:
        body = ("actionDefinition-Format1", f1)
    elif fmt == 4:
        conds = [dict(c) for c in ue_conditions]
        if codec.version == 2:
            conds = [{"testCondInfo": c["testCondInfo"]} for c in conds]  # no logicalOR in v02.00
        body = ("actionDefinition-Format4", {"matchingUeCondList": conds, "subscriptionInfo": f1})
    else:
        raise E2smError(f"action definition format {fmt}: this xApp writes formats 1 and 4")
    return codec.encode("E2SM-KPM-ActionDefinition", {"ric-Style-Type": REPORT_STYLES[fmt],
                                                      "actionDefinition-formats": body})


def binding_of(codec: KpmCodec, action_def: bytes, cell_id: str | None, e2_node_id: str,
               meas_ids: dict[int, str] | None = None) -> tuple[Binding, int]:
    """The Binding of a registered subscription and its action definition format."""
    kind, f = codec.decode("E2SM-KPM-ActionDefinition", action_def)["actionDefinition-formats"]
    fmt = int(kind.rsplit("Format", 1)[1])
    f1 = f.get("subscriptInfo") or f.get("subscriptionInfo") or f
    cell = cell_id or (cgi_to_cell(f1["cellGlobalID"]) if "cellGlobalID" in f1 else e2_node_id)
    return Binding(cell, f1.get("granulPeriod"), f1.get("measInfoList"), dict(meas_ids or {})), fmt


@dataclass
class Subscription:
    key: tuple[str, int, int, int, int]  # (E2 node, RAN function, requestor, instance, action)
    kpm_version: int
    binding: Binding
    action_format: int | None

    def public(self) -> dict:
        node, fn, req, inst, act = self.key
        b = self.binding
        return {"e2NodeId": node, "ranFunctionId": fn, "ricRequestorId": req, "ricInstanceId": inst,
                "ricActionId": act, "kpmVersion": self.kpm_version, "cellId": b.cell_id,
                "granularityPeriodMs": b.granul_ms, "actionDefinitionFormat": self.action_format,
                "measurements": len(b.meas_infos or [])}


class SubscriptionTable:
    """Registered subscriptions by (E2 node, RAN function, RIC request id, action id)."""

    def __init__(self, default_version: int = 3):
        if default_version not in KPM_VERSIONS:
            raise E2smError(f"default KPM version {default_version} not in {list(KPM_VERSIONS)}")
        self.default_version = default_version
        self._subs: dict[tuple, Subscription] = {}
        self._codecs: dict[int, KpmCodec] = {}

    def codec(self, version: int) -> KpmCodec:
        c = self._codecs.get(version)
        if c is None:
            c = self._codecs[version] = KpmCodec(version)
        return c

    def __len__(self) -> int:
        return len(self._subs)

    def set(self, key: tuple[str, int, int, int, int], *, kpm_version: int = 0, action_definition: bytes = b"",
            cell_id: str | None = None, meas_ids: dict[int, str] | None = None) -> Subscription:
        """Register (or replace) a subscription; E2smError for a bad action definition or a full table."""
        version = kpm_version or self.default_version
        codec = self.codec(version)
        if action_definition:
            binding, fmt = binding_of(codec, action_definition, cell_id, key[0], meas_ids)
        else:
            binding, fmt = Binding(cell_id or key[0], None, None, dict(meas_ids or {})), None
        if key not in self._subs and len(self._subs) >= MAX_SUBSCRIPTIONS:
            raise E2smError(f"at most {MAX_SUBSCRIPTIONS} subscriptions")
        sub = self._subs[key] = Subscription(key, version, binding, fmt)
        return sub

    def delete(self, key: tuple) -> bool:
        return self._subs.pop(key, None) is not None

    def get(self, key: tuple) -> Subscription | None:
        return self._subs.get(key)

    def all(self) -> list[Subscription]:
        return list(self._subs.values())


def bundle_subscription(bundle_dir: str, cell_id: str, *, kpm_version: int = 3, fmt: int = 1,
                        granul_ms: int | None = None, reporting_period_ms: int | None = None,
                        slices: Sequence[tuple[int, int | None]] = ()) -> dict:
    """The event trigger and action definition that ask an E2 node for the KPIs a bundle needs (its inputs),
    per cell; hex and base64 of each, and what they say."""
    from service.runtime.bundle import read_manifest

    m = read_manifest(bundle_dir)
    granul = int(granul_ms or m.period_ms)
    codec = KpmCodec(kpm_version)
    trigger = event_trigger(codec, reporting_period_ms or granul)
    action = action_definition(codec, m.inputs, granul, fmt=fmt, cell_id=cell_id, slices=slices)
    in_action = cell_to_cgi(cell_id) is not None
    return {"bundle": m.name, "cell": cell_id, "kpmVersion": kpm_version, "measurements": list(m.inputs),
            "granularityPeriodMs": granul, "reportingPeriodMs": reporting_period_ms or granul,
            "ricStyleType": REPORT_STYLES[fmt], "actionDefinitionFormat": fmt,
            "cellGlobalIdInActionDefinition": in_action,
            "binding": "cellGlobalID of the action definition" if in_action else
            "register the subscription with E2smIngest.SetSubscription(cell_id=...) (the cell id is not a CGI)",
            "eventTrigger": {"hex": trigger.hex(), "base64": base64.b64encode(trigger).decode()},
            "actionDefinition": {"hex": action.hex(), "base64": base64.b64encode(action).decode()}}
