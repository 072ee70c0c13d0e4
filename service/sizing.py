"""What one xApp instance holds, derived from its settings and bundles: the sample columns, the buffer,
the ingest bounds and how many series fit in memory (README, "Memory per cell")."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import numpy as np

from service.buffer.base import WindowBuffer
from service.buffer.memory import PAGE_ROWS, MemoryWindowBuffer
from service.config import Settings
from service.ingest.journal import DiskJournal
from service.ingest.validate import IngestLimits, plausible_range

log = logging.getLogger("ms3m.xapp")

MIN_AUTO_CELLS = 1000
MAX_AUTO_CELLS = 1_000_000


def service_kpis(bundles) -> list[str]:
    """The column order of samples: every input and target KPI of the bundles, first bundle first."""
    out: list[str] = []
    for b in bundles:
        for k in b.manifest.inputs + b.manifest.targets:
            if k not in out:
                out.append(k)
    return out


def make_buffer(settings: Settings, kpis: list[str]) -> WindowBuffer:
    """The window buffer the settings name: Redis (MS3M_BUFFER=redis) or the embedded memory buffer."""
    if settings.buffer_kind == "redis":
        from service.buffer.redis_buffer import RedisWindowBuffer

        return RedisWindowBuffer.from_settings(
            host=settings.redis_host or "127.0.0.1", port=settings.redis_port, password=settings.redis_password,
            db=settings.redis_db, namespace=settings.namespace, kpis=kpis, window_length=settings.window_length,
            tls=settings.redis_tls, tls_ca_file=str(settings.redis_tls_ca_file) if settings.redis_tls_ca_file else None)
    return MemoryWindowBuffer(kpis, settings.window_length)


def ingest_limits(settings: Settings, kpis: list[str], bundles) -> IngestLimits:
    """Ingest bounds from the settings, plausible KPI ranges from the bundles' training statistics."""
    low = high = None
    if settings.value_range_sigmas is not None:
        stats = []
        for b in bundles:
            n = b.manifest.normalization
            if not any(n.input_mean) and all(sd == 1 for sd in n.input_std):
                continue  # identity normalization (an untrained bundle): no training statistics to bound by
            stats += [(b.manifest.inputs, n.input_mean, n.input_std), (b.manifest.targets, n.target_mean, n.target_std)]
        low, high = plausible_range(kpis, stats, settings.value_range_sigmas)
    return IngestLimits(settings.max_future_ms or None, settings.max_sample_age_ms or None, settings.max_sequence_gap,
                        low, high)


def memory_per_cell(settings: Settings, kpis: list[str], bundles) -> int:
    """Bytes one series costs: its window in the memory buffer (if embedded) and every bundle's state and
    per-cell bookkeeping (forecasts, intervals), rounded up."""
    w = settings.window_length
    rows = (-(-(w - 1) // min(PAGE_ROWS, w)) + 1) * min(PAGE_ROWS, w)
    total = rows * (16 + 4 * len(kpis)) if settings.buffer_kind == "memory" else 0
    for b in bundles:
        m = b.manifest
        state = sum(4 * int(np.prod(f.shape)) for f in m.state)
        hk = m.horizon * len(m.targets)
        total += state + 4 * (len(m.inputs) + 1) + 3 * 4 * hk + 4 * hk * 2 + 256  # + intervals, arrays
    return int(total)


def auto_max_cells(settings: Settings, kpis: list[str], bundles) -> int:
    """How many series half of the memory available now holds (cgroup limit respected), clamped to
    [MIN_AUTO_CELLS, MAX_AUTO_CELLS]."""
    import psutil

    avail = psutil.virtual_memory().available
    with contextlib.suppress(OSError, ValueError):
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            avail = min(avail, int(limit) - psutil.Process().memory_info().rss)
    per_cell = max(1, memory_per_cell(settings, kpis, bundles))
    return int(max(MIN_AUTO_CELLS, min(MAX_AUTO_CELLS, 0.5 * avail // per_cell)))


def open_journal(settings: Settings, buffer: WindowBuffer | None, kpis: list[str]) -> DiskJournal | None:
    """The disk journal for an external buffer (None for the embedded one, or when it cannot be opened)."""
    if buffer is None or isinstance(buffer, MemoryWindowBuffer) or not settings.journal:
        return None
    try:
        journal = DiskJournal(settings.journal_path, kpis, settings.journal_max_samples)
    except OSError as e:  # JournalError (acknowledged samples of other KPIs) stops the start instead
        log.error("journal %s not usable (%s): while the buffer is unreachable, reports are refused as "
                  "UNAVAILABLE; set MS3M_JOURNAL_DIR to a writable directory", settings.journal_path, e)
        return None
    if journal.samples:
        log.warning("journal %s holds %d acknowledged samples from an earlier run; they go to the buffer "
                    "before state is restored", journal.path, journal.samples)
    return journal
