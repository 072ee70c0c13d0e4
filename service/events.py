"""Events out of the step: the bounded action log and the Forecasting.Subscribe streams (fan-out).

Runs on the event loop; a slow subscriber loses events (counted), never blocks the others.
"""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass

from ms3m.v1 import forecast_pb2
from service.actions.policy import Action
from service.api.convert import ACTION_KINDS, action_dict, action_proto, forecast_proto
from service.engine.host import ModelHost
from service.metrics import Metrics


@dataclass(eq=False)  # identity: each stream is its own subscriber
class Subscriber:
    queue: asyncio.Queue
    cells: set[str] | None
    forecasts: bool
    actions: bool
    action_kinds: set[int] | None
    dropped: int = 0


class EventHub:
    """The action log and the subscribers of one xApp; forecasts are those of `host` (the primary bundle)."""

    def __init__(self, host: ModelHost | None, metrics: Metrics, action_log_size: int):
        self.host = host
        self.metrics = metrics
        self.actions: collections.deque[dict] = collections.deque(maxlen=action_log_size)
        self.subscribers: set[Subscriber] = set()

    def publish(self, series: list[str], res, acts: list[Action]) -> None:
        """One step's forecasts (rows aligned with `series`) and actions to the log and the subscribers."""
        for a in acts:
            self.actions.append(action_dict(a))
        if not self.subscribers:
            return
        host = self.host
        index = {k: i for i, k in enumerate(series)}
        for sub in list(self.subscribers):
            rows = range(len(series)) if sub.cells is None else [index[c] for c in sub.cells if c in index]
            events = []
            if sub.forecasts:
                events += [forecast_pb2.Event(forecast=forecast_proto(host, series[i], res, i)) for i in rows]
            if sub.actions:
                for a in acts:
                    wanted = not sub.action_kinds or ACTION_KINDS[a.kind] in sub.action_kinds
                    if (sub.cells is None or a.cell in sub.cells) and wanted:
                        events.append(forecast_pb2.Event(action=action_proto(a, host, res, index.get(a.cell))))
            for ev in events:
                try:
                    sub.queue.put_nowait(ev)
                except asyncio.QueueFull:
                    sub.dropped += 1
                    self.metrics.subscriber_drops.inc()
