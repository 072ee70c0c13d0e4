"""Publishing as an E2 node would: E2SM-KPM RIC indications (aligned PER) to E2smIngest (`--encoding e2sm-kpm`).

Same delivery as `Publisher` (acked stream, re-send after reconnect), other payload: every (cell, timestamp)
of a message's samples becomes one RIC indication, batched into one RicIndicationBatch per message:
- cell and slice series → indication message format 1: one record, a column per (KPI, label) with noLabel
  for the cell's value and sliceID for each slice's; colletStartTime = timestamp − granularity period (so the
  record ends at the report's timestamp); NaN → noValue;
- UE series → format 3: one report per UE (UEID gNB-UEID, AMF UE NGAP id numbered by first appearance: the
  xApp names the UE "amf-<n>", ids.py).
Before a cell's first indication, and whenever its slices or KPIs change, its subscription is registered with
E2smIngest.SetSubscription: requestor `requestor_id`, instance = the cell's number, action 1 (format 1 action
definition, style 1) and action 2 (format 4, style 4, for UE reports), bound to the cell by cell_id.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import grpc
import numpy as np

from ms3m.v1 import e2sm_pb2
from service.e2sm.ids import gnb_ueid, snssai_value
from service.e2sm.kpm import KpmCodec, header_value, record_item, split_name
from service.e2sm.subscription import action_definition
from service.sim.delivery import PublishError
from service.sim.encoding import IndicationEncoder, SeriesKey
from service.sim.publisher import Publisher

PUBLISH_E2SM_ACKED = "/ms3m.v1.E2smIngest/PublishE2smAcked"
PUBLISH_E2SM = "/ms3m.v1.E2smIngest/PublishE2sm"
SET_SUBSCRIPTION = "/ms3m.v1.E2smIngest/SetSubscription"
CELL_ACTION, UE_ACTION = 1, 2


class E2smEncoder(IndicationEncoder):
    """IndicationEncoder's interface (register / header / encode), writing RicIndicationBatch messages."""

    def __init__(self, kpm_version: int = 3, ran_function_id: int = 2, requestor_id: int = 1, plmn: str = "00101"):
        super().__init__()
        self.codec = KpmCodec(kpm_version)
        self.ran_function_id, self.requestor_id, self.plmn = ran_function_id, requestor_id, plmn
        self.instance: dict[str, int] = {}  # cell → RIC instance id
        self.slices: dict[str, list[tuple[int, int | None]]] = {}  # cell → its slices, in registration order
        self.ue_number: dict[str, int] = {}
        self.registered: dict[tuple[str, int], tuple] = {}  # (cell, action) → what its subscription says
        self._sn = 0

    def register(self, items: Iterable[SeriesKey | str | tuple]) -> np.ndarray:
        idx = super().register(items)
        for i in dict.fromkeys(idx.tolist()):
            k = self.keys[i]
            if k.cell_id not in self.instance:
                if len(self.instance) >= 65536:
                    raise ValueError("at most 65,536 cells per E2SM publisher (RIC instance ids)")
                self.instance[k.cell_id] = len(self.instance)
                self.slices[k.cell_id] = []
            if k.ue_id is not None:
                self.ue_number.setdefault(k.ue_id, len(self.ue_number))
            elif k.sst is not None and (k.sst, k.sd) not in self.slices[k.cell_id]:
                self.slices[k.cell_id].append((k.sst, k.sd))
        return idx

    def subscriptions(self, e2_node_id: str, period_ms: int, names: Sequence[str], idx: np.ndarray) -> list:
        """E2Subscription messages the cells of `idx` need before these samples (new or changed)."""
        out = []
        for i in dict.fromkeys(idx.tolist()):
            k = self.keys[i]
            action = UE_ACTION if k.ue_id is not None else CELL_ACTION
            want = (tuple(names), tuple(self.slices[k.cell_id]), int(period_ms))
            if self.registered.get((k.cell_id, action)) == want:
                continue
            self.registered[(k.cell_id, action)] = want
            definition = action_definition(self.codec, names, period_ms, fmt=4 if action == UE_ACTION else 1,
                                           slices=() if action == UE_ACTION else want[1])
            out.append(e2sm_pb2.E2Subscription(
                e2_node_id=e2_node_id, ran_function_id=self.ran_function_id, ric_requestor_id=self.requestor_id,
                ric_instance_id=self.instance[k.cell_id], ric_action_id=action, kpm_version=self.codec.version,
                action_definition=definition, cell_id=k.cell_id))
        return out

    def header(self, e2_node_id: str, period_ms: int, meas_names: Sequence[str]):
        if len(meas_names) == 0 or len(set(meas_names)) != len(meas_names):
            raise ValueError(f"meas_names must be non-empty and unique, got {list(meas_names)}")
        return e2_node_id, int(period_ms), tuple(meas_names)

    def _infos(self, names, labels: tuple) -> list:
        """measInfoList for the names and the label of each series present (None = the cell's own)."""
        out = []
        for name in names:
            base, extra = split_name(name)
            items = [{"measLabel": {**extra, **({"sliceID": snssai_value(*lb)} if lb is not None else
                                                ({} if extra else {"noLabel": "true"}))}} for lb in labels]
            out.append({"measType": ("measName", base), "labelInfoList": items})
        return out

    def _format1(self, names, period_ms: int, rows: list[tuple[tuple | None, np.ndarray]]) -> dict:
        labels = tuple(lb for lb, _ in rows)
        record = [record_item(float(v)) for j in range(len(names)) for _, vals in rows for v in (vals[j],)]
        return {"measData": [{"measRecord": record}], "measInfoList": self._infos(names, labels),
                "granulPeriod": period_ms}

    def encode(self, header, message_id: int, series: np.ndarray, timestamps_ms: np.ndarray,
               sequences: np.ndarray, values: np.ndarray) -> bytes:
        """One RicIndicationBatch: an indication per (cell, timestamp) and level (cell/slice, UE)."""
        node, period, names = header
        groups: dict[tuple[str, int, bool], list[int]] = {}
        for r, (i, t) in enumerate(zip(series.tolist(), timestamps_ms.tolist())):
            k = self.keys[i]
            groups.setdefault((k.cell_id, t, k.ue_id is not None), []).append(r)
        batch = e2sm_pb2.RicIndicationBatch(message_id=message_id)
        headers: dict[int, bytes] = {}
        for (cell, t, per_ue), rows in groups.items():
            hdr = headers.get(t)
            if hdr is None:
                hdr = headers[t] = self.codec.encode_header(header_value(t - period, self.codec.version))
            keys = [self.keys[int(series[r])] for r in rows]
            if per_ue:
                reports = [{"ueID": gnb_ueid(self.ue_number[k.ue_id], self.plmn), "measReport": self._format1(
                    names, period, [((k.sst, k.sd) if k.sst is not None else None, values[r])])}
                    for k, r in zip(keys, rows)]
                msg = {"indicationMessage-formats": ("indicationMessage-Format3", {"ueMeasReportList": reports})}
            else:
                f = self._format1(names, period, [((k.sst, k.sd) if k.sst is not None else None, values[r])
                                                  for k, r in zip(keys, rows)])
                msg = {"indicationMessage-formats": ("indicationMessage-Format1", f)}
            self._sn = (self._sn + 1) % 65536
            batch.indications.add(
                e2_node_id=node, ran_function_id=self.ran_function_id, ric_requestor_id=self.requestor_id,
                ric_instance_id=self.instance[cell], ric_action_id=UE_ACTION if per_ue else CELL_ACTION,
                indication_sn=self._sn, indication_header=hdr, indication_message=self.codec.encode_message(msg))
        return batch.SerializeToString()


class E2smPublisher(Publisher):
    """A Publisher whose messages are E2SM-KPM RicIndicationBatches (kpm_version 2, 3 or 4)."""

    acked_method = PUBLISH_E2SM_ACKED
    unacked_method = PUBLISH_E2SM

    def __init__(self, target: str, *, kpm_version: int = 3, ran_function_id: int = 2, **kw):
        super().__init__(target, **kw)
        self.encoder = E2smEncoder(kpm_version, ran_function_id)

    async def send(self, series, timestamps_ms, sequences, values, meas_names: Sequence[str]) -> int:
        self._raise_if_failed()
        if self._channel is None:
            await self.start()
        idx = np.asarray(series) if isinstance(series, np.ndarray) and series.dtype.kind in "iu" else \
            self.register(series)
        subs = self.encoder.subscriptions(self.e2_node_id, self.granularity_period_ms, meas_names, idx)
        if subs:
            method = self._channel.unary_unary(SET_SUBSCRIPTION, request_serializer=lambda m: m.SerializeToString(),
                                               response_deserializer=e2sm_pb2.E2SubscriptionAck.FromString)
            for sub in subs:
                try:
                    await method(sub, timeout=self.connect_timeout, wait_for_ready=True)
                except grpc.aio.AioRpcError as e:
                    raise PublishError(f"{self.target}: SetSubscription failed: {e.code().name}: {e.details()}") \
                        from e
        return await super().send(idx, timestamps_ms, sequences, values, meas_names)
