"""Prometheus metrics of the xApp: `ms3m_` prefix, base units, counters end in _total, no per-cell labels,
latency buckets from 100 µs to 1 s (docs/architecture.md, "O-RAN conventions"). One `Metrics` per xApp,
on its own registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0)
WARMUP_BUCKETS = (*LATENCY_BUCKETS, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 8, 32, 128, 512, 1024, 2048, 4096, 8192, 16384)


# Label values known in advance: their series exist (at 0) from the start, so a dashboard panel on a failure
# counter shows 0 rather than "No data" until the first failure.
REDIS_OPS = ("append", "flush", "snapshot", "window")
DROP_REASONS = ("step_error", "non_finite", "table_full")


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        r = self.registry = registry or CollectorRegistry()
        self.ingest_messages = Counter("ms3m_ingest_messages_total", "KPI indication messages received", registry=r)
        self.ingest_samples = Counter("ms3m_ingest_samples_total", "KPI reports accepted", registry=r)
        self.ingest_rejected = Counter("ms3m_ingest_rejected_total", "KPI reports rejected, by reason", ["reason"],
                                       registry=r)
        self.step_batch = Histogram("ms3m_step_batch_size", "cells per batched model step", buckets=BATCH_BUCKETS,
                                    registry=r)
        self.step_latency = Histogram("ms3m_step_latency_seconds", "duration of one batched model step",
                                      ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.ingest_to_forecast = Histogram("ms3m_ingest_to_forecast_seconds",
                                            "time from receiving a KPI report to its forecast",
                                            buckets=LATENCY_BUCKETS, registry=r)
        self.forecasts = Counter("ms3m_forecasts_total", "forecasts produced", ["model"], registry=r)
        self.active_cells = Gauge("ms3m_active_cells", "series with model state", ["model"], registry=r)
        self.queue_depth = Gauge("ms3m_engine_queue_samples", "samples waiting for the step engine", registry=r)
        self.dropped = Counter("ms3m_engine_dropped_total", "accepted samples not stepped, by reason", ["reason"],
                               registry=r)
        self.callback_errors = Counter("ms3m_engine_callback_errors_total",
                                       "steps whose routing / action / publishing callback failed", registry=r)
        self.forecast_mae = Gauge("ms3m_forecast_mae", "recent mean absolute forecast error, KPI units",
                                  ["model", "kpi", "horizon"], registry=r)
        self.interval_coverage = Gauge("ms3m_forecast_interval_coverage",
                                       "recent fraction of realized values inside their 1-step interval",
                                       ["model", "kpi"], registry=r)
        self.actions = Counter("ms3m_actions_total", "control actions emitted", ["kind", "mode"], registry=r)
        self.expert_active = Gauge("ms3m_expert_active_cells", "cells where an MS³M expert is active", ["expert"],
                                   registry=r)
        self.expert_share = Gauge("ms3m_expert_routing_share", "mean gate weight of an MS³M expert", ["expert"],
                                  registry=r)
        self.expert_activations = Counter("ms3m_expert_activations_total", "experts switched on by the router",
                                          ["expert"], registry=r)
        self.expert_warmups = Counter("ms3m_expert_warmups_total", "expert states warmed from the window buffer",
                                      registry=r)
        self.warmup_seconds = Histogram("ms3m_expert_warmup_seconds", "one expert's warm-up for a group of cells: "
                                        "window read, pass over the windows, install", buckets=WARMUP_BUCKETS,
                                        registry=r)
        self.router_decisions = Counter("ms3m_router_decisions_total", "expert-set decisions taken", registry=r)
        self.redis_errors = Counter("ms3m_redis_errors_total", "failed window-buffer operations", ["op"], registry=r)
        self.redis_latency = Histogram("ms3m_redis_latency_seconds", "window-buffer round trips", ["op"],
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.journal = Gauge("ms3m_buffer_journal_samples", "accepted samples waiting for the buffer to return",
                             registry=r)
        self.snapshots = Counter("ms3m_state_snapshots_total", "cell states written to the buffer", registry=r)
        self.ready = Gauge("ms3m_ready", "1 when the xApp is ready", registry=r)
        self.subscribers = Gauge("ms3m_subscribers", "open Forecasting.Subscribe streams", registry=r)
        self.subscriber_drops = Counter("ms3m_subscriber_dropped_total", "events dropped for slow subscribers",
                                        registry=r)
        self.buffer_durability = Gauge("ms3m_buffer_durability", "1 for how the window buffer keeps acknowledged "
                                       "samples across its own restart (mode: aof-always, aof-everysec, aof-no, "
                                       "rdb-only, none, memory, unknown)", ["mode"], registry=r)
        for op in REDIS_OPS:
            self.redis_errors.labels(op)
        for reason in DROP_REASONS:
            self.dropped.labels(reason)
