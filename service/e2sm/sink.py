"""The E2SM-RC control sink: slice PRB quota actions → RIC control requests (E2SM-RC), delivered in `enforce`
mode to the E2Control.StreamControl streams (an E2 termination adapter sends them on as E2AP RIC Control
Requests) and listed at GET /v1/e2/control; in `recommend` mode encoded and listed, not sent.

Every slice PRB quota action's log entry (GET /v1/actions, detail.e2sm_rc) carries the encoded header and
message in hex, in either mode. Runs on the event loop (RcEventHub.publish); a slow stream loses requests,
counted, never blocks the others.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter

from contract.series import cell_of
from ms3m.v1 import e2sm_pb2
from service.actions.policy import Action
from service.e2sm.config import E2smSettings
from service.e2sm.rc import (
    ACTION_SLICE_PRB_QUOTA,
    STYLE_RADIO_RESOURCE_ALLOCATION,
    control_header,
    slice_prb_quota_message,
)
from service.e2sm.specs import E2smError
from service.engine.host import ModelHost
from service.events import EventHub
from service.metrics import Metrics

log = logging.getLogger("ms3m.e2sm.control")


@dataclass(eq=False)
class ControlStream:
    queue: asyncio.Queue
    nodes: set[str] | None
    dropped: int = 0


class ControlSink:
    """Encodes slice PRB quota actions as E2SM-RC control requests and hands the enforced ones to streams."""

    def __init__(self, settings: E2smSettings, registry: CollectorRegistry,
                 node_of: Callable[[str], str | None] = lambda cell: None):
        self.settings = settings
        self.node_of = node_of  # cell id → E2 node id (from the E2SM ingest)
        self.log: collections.deque[dict] = collections.deque(maxlen=settings.control_log_size)
        self.streams: set[ControlStream] = set()
        self._instance = 0
        self._header: bytes | None = None
        self.m_requests = Counter("ms3m_e2sm_control_requests_total", "E2SM-RC control requests, by mode "
                                  "(enforce: sent to the control streams; recommend: encoded only)", ["mode"],
                                  registry=registry)
        self.m_dropped = Counter("ms3m_e2sm_control_dropped_total", "control requests a slow stream lost",
                                 registry=registry)
        for mode in ("enforce", "recommend"):
            self.m_requests.labels(mode)

    def request(self, a: Action) -> e2sm_pb2.RicControlRequest:
        """The control request of a slice PRB quota action; E2smError if it cannot be encoded."""
        s = self.settings
        if self._header is None:  # the same for every request: the style, the action and the configured UE
            self._header = control_header(s.rc_version, s.plmn, s.rc_ue_amf_id)
        d = a.detail
        sst, sd = d["slice"]
        msg = slice_prb_quota_message(s.rc_version, s.plmn, sst, sd, d["min_prb_ratio"], d["max_prb_ratio"],
                                      d["dedicated_prb_ratio"])
        cell = cell_of(a.cell)
        self._instance = (self._instance + 1) % 65536
        req = e2sm_pb2.RicControlRequest(
            action_id=a.action_id, e2_node_id=self.node_of(cell) or "", cell_id=cell,
            ran_function_id=s.rc_ran_function_id, ric_requestor_id=s.rc_requestor_id,
            ric_instance_id=self._instance, control_header=self._header, control_message=msg,
            ack_requested=s.rc_ack_requested, timestamp_ms=a.time_ms, rc_version=s.rc_version,
            ric_style_type=STYLE_RADIO_RESOURCE_ALLOCATION, control_action_id=ACTION_SLICE_PRB_QUOTA)
        req.prb_quota.slice.sst = sst
        if sd is not None:
            req.prb_quota.slice.sd = sd
        req.prb_quota.min_prb_ratio = d["min_prb_ratio"]
        req.prb_quota.max_prb_ratio = d["max_prb_ratio"]
        req.prb_quota.dedicated_prb_ratio = d["dedicated_prb_ratio"]
        return req

    def handle(self, actions: list[Action]) -> None:
        """Encode every slice PRB quota action (its detail gains e2sm_rc); send the enforced ones."""
        for a in actions:
            if a.kind != "slice_prb_quota":
                continue
            try:
                req = self.request(a)
            except (E2smError, KeyError, TypeError, ValueError) as e:
                log.warning("action %s: no E2SM-RC control request: %s", a.action_id, e)
                a.detail["e2sm_rc"] = {"error": str(e)}
                continue
            sent = a.mode == "enforce"
            entry = {"action_id": a.action_id, "cell_id": req.cell_id, "e2_node_id": req.e2_node_id,
                     "mode": a.mode, "sent": sent, "timestamp_ms": a.time_ms, "rc_version": req.rc_version,
                     "ran_function_id": req.ran_function_id, "ric_style_type": req.ric_style_type,
                     "control_action_id": req.control_action_id, "control_header": req.control_header.hex(),
                     "control_message": req.control_message.hex(),
                     "prb_quota": {k: d for k, d in a.detail.items() if k != "e2sm_rc"}}
            a.detail["e2sm_rc"] = {"control_header": entry["control_header"],
                                   "control_message": entry["control_message"], "sent": sent}
            self.log.append(entry)
            self.m_requests.labels(a.mode).inc()
            if sent:
                self._deliver(req)

    def _deliver(self, req: e2sm_pb2.RicControlRequest) -> None:
        for st in list(self.streams):
            if st.nodes is not None and req.e2_node_id not in st.nodes:
                continue
            try:
                st.queue.put_nowait(req)
            except asyncio.QueueFull:
                st.dropped += 1
                self.m_dropped.inc()

    def open_stream(self, nodes: set[str] | None) -> ControlStream:
        st = ControlStream(asyncio.Queue(self.settings.control_queue), nodes or None)
        self.streams.add(st)
        return st

    def close_stream(self, st: ControlStream) -> None:
        self.streams.discard(st)

    def recent(self, limit: int = 100, mode: str | None = None) -> list[dict]:
        out = [e for e in reversed(self.log) if mode is None or e["mode"] == mode]
        return out[:limit]


class RcEventHub(EventHub):
    """The xApp's EventHub with the control sink in front: actions are encoded (and enforced ones sent)
    before they reach the action log and the Forecasting.Subscribe streams."""

    def __init__(self, host: ModelHost | None, metrics: Metrics, action_log_size: int, sink: ControlSink):
        super().__init__(host, metrics, action_log_size)
        self.sink = sink

    def publish(self, series: list[str], res, acts: list[Action]) -> None:
        if acts:
            self.sink.handle(acts)
        super().publish(series, res, acts)
