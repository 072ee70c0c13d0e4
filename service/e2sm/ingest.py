"""E2SM-KPM ingest: RIC indication batches → KpiIndications → the ingest pipeline (validate, store, ack).

Each indication is decoded (header, message), bound to its cell (subscription.py) and turned into rows
(kpm.indication_rows); rows with the same KPI names go to the pipeline as one KpiIndication (reports:
series, timestamp = end of the granularity period, sequence = that timestamp in ms, so a re-sent indication
is a DUPLICATE; values with noValue absent). So E2SM reports pass the same validation, rejection counting,
acks and metrics as `E2Ingest.Publish`; an indication that does not decode is one MALFORMED rejection whose
detail names it (by its index in the batch) and says why. Nothing here raises for bad input.
"""

from __future__ import annotations

import dataclasses
import logging
import time

from prometheus_client import Counter

from ms3m.v1 import e2sm_pb2, kpm_pb2
from service.e2sm.kpm import Binding, Row, indication_rows
from service.e2sm.specs import E2smError
from service.e2sm.subscription import SubscriptionTable
from service.ingest.pipeline import IngestPipeline
from service.ingest.validate import Rejections
from service.metrics import Metrics

log = logging.getLogger("ms3m.e2sm")
R = kpm_pb2.RejectReason
MAX_INDICATIONS = 20_000  # per batch, like max_reports_per_message
MAX_CELLS_KNOWN = 1_000_000  # cell → E2 node map for control requests


class E2smIngest:
    """Decodes and ingests RicIndicationBatch messages for one xApp."""

    def __init__(self, pipeline: IngestPipeline, metrics: Metrics, subscriptions: SubscriptionTable):
        self.pipeline = pipeline
        self.metrics = metrics
        self.subscriptions = subscriptions
        self.node_of_cell: dict[str, str] = {}  # the E2 node each cell's indications came from
        self._columns: dict = {}
        r = metrics.registry
        self.m_indications = Counter("ms3m_e2sm_indications_total", "E2SM-KPM indications received, by message "
                                     "format", ["format"], registry=r)
        self.m_malformed = Counter("ms3m_e2sm_malformed_total", "E2SM-KPM indications that did not decode",
                                   registry=r)
        for fmt in ("1", "2", "3"):
            self.m_indications.labels(fmt)

    # -- decoding ------------------------------------------------------------------------------------------
    def rows(self, ind: e2sm_pb2.RicIndication) -> list[Row]:
        """The rows of one indication; E2smError (with the reason) when it does not decode or bind."""
        key = (ind.e2_node_id, ind.ran_function_id, ind.ric_requestor_id, ind.ric_instance_id, ind.ric_action_id)
        sub = self.subscriptions.get(key)
        version = ind.kpm_version or (sub.kpm_version if sub is not None else self.subscriptions.default_version)
        codec = self.subscriptions.codec(version)
        if sub is not None:
            binding = sub.binding
            if ind.HasField("cell_id") and ind.cell_id != binding.cell_id:
                binding = dataclasses.replace(binding, cell_id=ind.cell_id)
        else:
            binding = Binding(ind.cell_id if ind.HasField("cell_id") else ind.e2_node_id)
        header = codec.decode_header(ind.indication_header)
        message = codec.decode_message(ind.indication_message)
        self.m_indications.labels(message["indicationMessage-formats"][0][-1]).inc()
        return indication_rows(header, message, binding, version, self._columns)

    def convert(self, batch: e2sm_pb2.RicIndicationBatch, rej: Rejections) -> list[tuple[kpm_pb2.KpiIndication,
                                                                                       list[int]]]:
        """KpiIndications (one per distinct KPI name list) and, per report, the index of its indication."""
        mid = batch.message_id
        inds = batch.indications
        if len(inds) > MAX_INDICATIONS:
            rej.add(mid, 0, R.REJECT_REASON_OVERSIZED, f"{len(inds)} indications in one batch, at most "
                    f"{MAX_INDICATIONS}", len(inds))
            return []
        groups: dict[tuple[str, ...], tuple[kpm_pb2.KpiIndication, list[int]]] = {}
        for i, ind in enumerate(inds):
            try:
                rows = self.rows(ind)
            except E2smError as e:
                self._malformed(rej, mid, i, ind, str(e))
                continue
            except Exception as e:  # a decoder bug must not take the stream down: counted, logged once per kind
                log.warning("E2SM indication %d of message %d: %s: %s", i, mid, type(e).__name__, e)
                self._malformed(rej, mid, i, ind, f"undecodable ({type(e).__name__})")
                continue
            for row in rows:
                names = tuple(row.values)
                g = groups.get(names)
                if g is None:
                    g = groups[names] = (kpm_pb2.KpiIndication(e2_node_id=ind.e2_node_id, meas_names=names,
                                                               message_id=mid), [])
                r = g[0].reports.add(cell_id=row.cell, timestamp_ms=row.timestamp_ms, sequence=row.timestamp_ms,
                                     values=[0.0 if v is None else v for v in row.values.values()])
                absent = [j for j, v in enumerate(row.values.values()) if v is None]
                if absent:
                    r.absent.extend(absent)
                if row.ue is not None:
                    r.ue_id = row.ue
                if row.slice is not None:
                    r.slice.sst = row.slice[0]
                    if row.slice[1] is not None:
                        r.slice.sd = row.slice[1]
                g[1].append(i)
                if row.cell not in self.node_of_cell and len(self.node_of_cell) < MAX_CELLS_KNOWN:
                    self.node_of_cell[row.cell] = ind.e2_node_id
        return list(groups.values())

    def _malformed(self, rej: Rejections, mid: int, i: int, ind, why: str) -> None:
        self.m_malformed.inc()
        rej.add(mid, i, R.REJECT_REASON_MALFORMED, f"indication {i} (E2 node {ind.e2_node_id[:64]!r}, request "
                f"{ind.ric_requestor_id}/{ind.ric_instance_id}, action {ind.ric_action_id}): {why[:300]}")

    def reports(self, batch: e2sm_pb2.RicIndicationBatch) -> int:
        """The reports a batch holds at least (one per indication), for the capacity check before decoding;
        the pipeline checks the exact number again before it stores anything (OVERLOADED)."""
        return len(batch.indications)

    # -- ingest --------------------------------------------------------------------------------------------
    async def ingest(self, batch: e2sm_pb2.RicIndicationBatch, received: float | None = None) -> kpm_pb2.IngestAck:
        """Decode, validate, make durable and queue the batch's reports; one ack for the batch."""
        received = received if received is not None else time.perf_counter()
        rej = Rejections()
        groups = self.convert(batch, rej)
        for reason, count in rej.counts.items():  # the pipeline counts the rejections of what it is given
            self.metrics.ingest_rejected.labels(R.Name(reason).removeprefix("REJECT_REASON_").lower()).inc(count)
        if not groups:
            self.metrics.ingest_messages.inc()
        accepted = 0
        for msg, index in groups:
            ack = await self.pipeline.ingest(msg, received)
            accepted += ack.accepted
            for rc in ack.rejections:
                rej.counts[rc.reason] = rej.counts.get(rc.reason, 0) + rc.count
            for d in ack.details:
                if len(rej.details) < 32:
                    rej.details.append(kpm_pb2.RejectedReport(
                        message_id=d.message_id, index=index[d.index] if d.index < len(index) else d.index,
                        reason=d.reason, detail=d.detail))
        return kpm_pb2.IngestAck(
            message_id=batch.message_id, messages=1, accepted=accepted, rejected=rej.total,
            rejections=[kpm_pb2.RejectionCount(reason=r, count=c) for r, c in sorted(rej.counts.items())],
            details=rej.details)

    def set_subscription(self, req: e2sm_pb2.E2Subscription) -> e2sm_pb2.E2SubscriptionAck:
        """Register a subscription; E2smError for a bad action definition or version."""
        key = (req.e2_node_id, req.ran_function_id, req.ric_requestor_id, req.ric_instance_id, req.ric_action_id)
        sub = self.subscriptions.set(key, kpm_version=req.kpm_version, action_definition=req.action_definition,
                                     cell_id=req.cell_id if req.HasField("cell_id") else None,
                                     meas_ids=dict(req.meas_ids))
        if sub.binding.cell_id not in self.node_of_cell and len(self.node_of_cell) < MAX_CELLS_KNOWN:
            self.node_of_cell[sub.binding.cell_id] = req.e2_node_id
        return e2sm_pb2.E2SubscriptionAck(cell_id=sub.binding.cell_id, kpm_version=sub.kpm_version,
                                          action_definition_format=sub.action_format or 0,
                                          measurements=len(sub.binding.meas_infos or []))
