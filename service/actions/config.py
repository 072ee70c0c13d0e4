"""The action policy's thresholds and hysteresis (ActionConfig), validated when built: ValueError names the
field and its allowed range."""

from __future__ import annotations

from dataclasses import dataclass, field

from contract.kpis import PRB_USAGE_DL

MODES = ("recommend", "enforce")
RUN_MAX = 10_000  # hysteresis run counters saturate here


@dataclass
class ActionConfig:
    """Thresholds in KPI units (PRB use in percent), hysteresis in decisions, times in ms."""

    prb_kpi: str = PRB_USAGE_DL
    prb_high: float = 85.0  # slice quota up; also the level steering brings a cell back to
    prb_low: float = 20.0  # slice quota down
    sleep_load: float = 10.0  # upper bound of PRB use below which a cell may sleep
    wake_load: float = 30.0  # upper bound of PRB use above which a sleeping cell wakes
    steer_load: float = 90.0  # PRB use above which traffic is steered away
    enter_after: int = 3  # consecutive decisions a condition must hold before its action
    exit_after: int = 3  # consecutive decisions without it before the action may repeat
    cooldown_ms: int = 60_000  # min time between two actions of the same kind for a series
    anomaly_severity: tuple[float, float, float] = (0.0, 0.5, 1.5)  # widths beyond the bound → severity 1, 2, 3
    alarm_immediate_severity: int = 3  # alarms at least this severe skip enter_after (4 = never)
    mode: str = "recommend"  # recommend | enforce (per-series override in decide)
    quota_headroom: float = 5.0  # PRB percentage points added to the forecast upper peak for min_prb_ratio
    slice_max_prb_ratio: int = 100  # max_prb_ratio proposed for every slice
    max_steer_share: float = 0.5  # at most this fraction of a cell's traffic is steered at once
    neighbours: dict[str, list[str]] = field(default_factory=dict)  # cell id → neighbour cell ids
    neighbour_max_age_ms: int = 60_000  # a neighbour's load forecast older than this is ignored
    period_ms: int | None = None  # sampling period for sleep durations; None = measured per series

    def __post_init__(self):
        for name in ("prb_high", "prb_low", "sleep_load", "wake_load", "steer_load"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and 0.0 <= v <= 100.0):
                raise ValueError(f"{name} must be a PRB percentage in 0..100, got {v!r}")
        if not self.prb_low < self.prb_high:
            raise ValueError(f"prb_low ({self.prb_low}) must be < prb_high ({self.prb_high})")
        if not self.sleep_load < self.wake_load:
            raise ValueError(f"sleep_load ({self.sleep_load}) must be < wake_load ({self.wake_load})")
        if not self.prb_high <= self.steer_load:
            raise ValueError(f"steer_load ({self.steer_load}) must be ≥ prb_high ({self.prb_high}): steering "
                             "brings a cell back to prb_high")
        for name in ("enter_after", "exit_after"):
            v = getattr(self, name)
            if not (isinstance(v, int) and 1 <= v < RUN_MAX):
                raise ValueError(f"{name} must be an integer in 1..{RUN_MAX - 1} decisions, got {v!r}")
        for name in ("cooldown_ms", "neighbour_max_age_ms"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 0):
                raise ValueError(f"{name} must be an integer ≥ 0 ms, got {getattr(self, name)!r}")
        sev = tuple(float(x) for x in self.anomaly_severity)
        if len(sev) != 3 or sev[0] < 0 or not sev[0] <= sev[1] <= sev[2]:
            raise ValueError(f"anomaly_severity must be 3 non-decreasing widths ≥ 0, got {self.anomaly_severity!r}")
        self.anomaly_severity = sev
        if self.alarm_immediate_severity not in (1, 2, 3, 4):
            raise ValueError(f"alarm_immediate_severity must be 1..4, got {self.alarm_immediate_severity!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if not self.quota_headroom >= 0:
            raise ValueError(f"quota_headroom must be ≥ 0 percentage points, got {self.quota_headroom!r}")
        if not (isinstance(self.slice_max_prb_ratio, int) and 0 <= self.slice_max_prb_ratio <= 100):
            raise ValueError(f"slice_max_prb_ratio must be an integer in 0..100, got {self.slice_max_prb_ratio!r}")
        if not 0.0 < self.max_steer_share <= 1.0:
            raise ValueError(f"max_steer_share must be in (0, 1], got {self.max_steer_share!r}")
        if not isinstance(self.neighbours, dict) or not all(
                isinstance(k, str) and not isinstance(v, str) and all(isinstance(c, str) for c in v)
                for k, v in self.neighbours.items()):
            raise ValueError("neighbours must map a cell id to a list of cell ids")
        self.neighbours = {k: list(v) for k, v in self.neighbours.items()}
        if self.period_ms is not None and not (isinstance(self.period_ms, int) and self.period_ms > 0):
            raise ValueError(f"period_ms must be None or an integer > 0, got {self.period_ms!r}")
