"""gRPC services of the xApp: E2Ingest (KPI indications in), Forecasting (forecasts and actions out), and the
E2SM path: E2smIngest (E2SM-KPM RIC indications in) and E2Control (E2SM-RC control requests out)."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import grpc

from ms3m.v1 import e2sm_pb2, e2sm_pb2_grpc, forecast_pb2, forecast_pb2_grpc, kpm_pb2, kpm_pb2_grpc
from service.api.grpc_server import Registrar
from service.events import Subscriber

if TYPE_CHECKING:
    from service.api.port import XAppPort
    from service.e2sm.ingest import E2smIngest
    from service.e2sm.sink import ControlSink

MAX_SUBSCRIBER_QUEUE = 10_000
MAX_PREDICT_CELLS = 10_000


class E2IngestService(kpm_pb2_grpc.E2IngestServicer):
    def __init__(self, xapp: XAppPort):
        self.xapp = xapp

    async def _check_capacity(self, msg: kpm_pb2.KpiIndication, context) -> None:
        if (why := self.xapp.pipeline.queue_full(len(msg.reports))) is not None:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"{why} (message {msg.message_id})")

    async def Publish(self, request_iterator, context):
        return await _summary_ack(request_iterator, context, self._check_capacity, self.xapp.ingest)

    async def PublishAcked(self, request_iterator, context):
        async for ack in _acks(request_iterator, context, self._check_capacity, self.xapp.ingest):
            yield ack


async def _acks(requests, context, check, ingest):
    """Each message of an ingest stream: capacity checked (aborts when full), ingested, its ack yielded."""
    async for msg in requests:
        received = time.perf_counter()
        await check(msg, context)
        yield await ingest(msg, received)


async def _summary_ack(requests, context, check, ingest) -> kpm_pb2.IngestAck:
    """One ack summing every message's ack of an ingest stream (Publish)."""
    total, counts = kpm_pb2.IngestAck(), {}
    async for ack in _acks(requests, context, check, ingest):
        _add_ack(total, counts, ack)
    total.rejections.extend(kpm_pb2.RejectionCount(reason=r, count=c) for r, c in sorted(counts.items()))
    return total


def _add_ack(total: kpm_pb2.IngestAck, counts: dict[int, int], ack: kpm_pb2.IngestAck) -> None:
    """Fold one message's ack into a stream's summary ack (rejection counts kept in `counts`)."""
    total.message_id = ack.message_id
    total.messages += 1
    total.accepted += ack.accepted
    total.rejected += ack.rejected
    for rc in ack.rejections:
        counts[rc.reason] = counts.get(rc.reason, 0) + rc.count
    if len(total.details) < 64:
        total.details.extend(ack.details[: 64 - len(total.details)])


class E2smIngestService(e2sm_pb2_grpc.E2smIngestServicer):
    """E2SM-KPM RIC indications (service/e2sm/ingest.py): the acks, limits and statuses of E2Ingest."""

    def __init__(self, e2sm: E2smIngest):
        self.e2sm = e2sm

    async def _check_capacity(self, batch: e2sm_pb2.RicIndicationBatch, context) -> None:
        if (why := self.e2sm.pipeline.queue_full(self.e2sm.reports(batch))) is not None:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"{why} (message {batch.message_id})")

    async def PublishE2sm(self, request_iterator, context):
        return await _summary_ack(request_iterator, context, self._check_capacity, self.e2sm.ingest)

    async def PublishE2smAcked(self, request_iterator, context):
        async for ack in _acks(request_iterator, context, self._check_capacity, self.e2sm.ingest):
            yield ack

    async def SetSubscription(self, request: e2sm_pb2.E2Subscription, context):
        from service.e2sm.specs import E2smError

        try:
            return self.e2sm.set_subscription(request)
        except E2smError as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))


class E2ControlService(e2sm_pb2_grpc.E2ControlServicer):
    """The E2SM-RC control requests of enforced actions (service/e2sm/sink.py), as a server stream."""

    def __init__(self, sink: ControlSink):
        self.sink = sink

    async def StreamControl(self, request: e2sm_pb2.ControlStreamRequest, context):
        st = self.sink.open_stream(set(request.e2_node_ids))
        try:
            while True:
                yield await st.queue.get()
        finally:
            self.sink.close_stream(st)


class ForecastingService(forecast_pb2_grpc.ForecastingServicer):
    def __init__(self, xapp: XAppPort):
        self.xapp = xapp

    async def Predict(self, request: forecast_pb2.PredictRequest, context):
        xapp = self.xapp
        if not xapp.hosts:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "no model bundle loaded")
        if len(request.cell_ids) > MAX_PREDICT_CELLS:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"at most {MAX_PREDICT_CELLS} cell_ids per request")
        cold = xapp.settings.predict_max_cells
        if len(request.samples) > cold:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"at most {cold} cells with samples (cold starts) "
                                "per request (MS3M_PREDICT_MAX_CELLS)")
        if request.samples and not xapp.predict_gate.try_enter():
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, xapp.predict_gate.busy_message())
        try:
            return await self._predict(request)
        finally:
            if request.samples:
                xapp.predict_gate.leave()

    async def _predict(self, request: forecast_pb2.PredictRequest) -> forecast_pb2.PredictResponse:
        xapp = self.xapp
        resp = forecast_pb2.PredictResponse()
        for cell in request.cell_ids:
            f = xapp.latest_forecast(cell)
            if f is None:
                resp.errors.add(cell_id=cell, error="unknown cell: no samples received yet; send its recent "
                                "samples in `samples` for a cold-start forecast")
            else:
                resp.forecasts.append(f)
        for cs in request.samples:
            f, err = await xapp.predict_samples(cs.cell_id, cs.granularity_period_ms, list(cs.meas_names),
                                                list(cs.reports))
            if f is None:
                resp.errors.add(cell_id=cs.cell_id, error=err)
            else:
                resp.forecasts.append(f)
        return resp

    async def Subscribe(self, request: forecast_pb2.SubscribeRequest, context):

        kinds = set(request.kinds)
        sub = Subscriber(asyncio.Queue(MAX_SUBSCRIBER_QUEUE), set(request.cell_ids) or None,
                         forecasts=not kinds or forecast_pb2.EVENT_KIND_FORECAST in kinds,
                         actions=not kinds or forecast_pb2.EVENT_KIND_ACTION in kinds,
                         action_kinds=set(request.action_kinds) or None)
        self.xapp.subscribers.add(sub)
        self.xapp.metrics.subscribers.set(len(self.xapp.subscribers))
        try:
            while True:
                yield await sub.queue.get()
        finally:
            self.xapp.subscribers.discard(sub)
            self.xapp.metrics.subscribers.set(len(self.xapp.subscribers))


def register_services(xapp: XAppPort, e2sm: E2smIngest | None = None,
                      control: ControlSink | None = None) -> list[Registrar]:
    """The registrars of every service; the E2SM ones when their ingest / control sink is given."""
    def ingest(server: grpc.aio.Server) -> str:
        kpm_pb2_grpc.add_E2IngestServicer_to_server(E2IngestService(xapp), server)
        return kpm_pb2.DESCRIPTOR.services_by_name["E2Ingest"].full_name

    def forecasting(server: grpc.aio.Server) -> str:
        forecast_pb2_grpc.add_ForecastingServicer_to_server(ForecastingService(xapp), server)
        return forecast_pb2.DESCRIPTOR.services_by_name["Forecasting"].full_name

    def e2sm_ingest(server: grpc.aio.Server) -> str:
        e2sm_pb2_grpc.add_E2smIngestServicer_to_server(E2smIngestService(e2sm), server)
        return e2sm_pb2.DESCRIPTOR.services_by_name["E2smIngest"].full_name

    def e2_control(server: grpc.aio.Server) -> str:
        e2sm_pb2_grpc.add_E2ControlServicer_to_server(E2ControlService(control), server)
        return e2sm_pb2.DESCRIPTOR.services_by_name["E2Control"].full_name

    return [ingest, forecasting, *([e2sm_ingest] if e2sm is not None else []),
            *([e2_control] if control is not None else [])]
