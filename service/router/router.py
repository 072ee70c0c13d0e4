"""ExpertRouter: per cell and decision period, the active MS³M experts.

Inputs per cell: its objective and compute budget (A1 policy), the gate's objective-conditioned
preferences over the period (mean softmax of its logits — available for inactive experts too), and each
expert's recent realized 1-step error (EMA of |forecast − actual| / target std, for experts that ran).

    score_e = preference_e / (error_e / min_error)^γ / cost_e^β(objective)
    keep the best-scoring expert, then add experts in score order while the summed relative cost stays
    within the budget and score_e ≥ τ(objective) · max score

β = 0 / 0.5 / 1 / 0.5 and τ = 0 / 0.1 / 0.3 / 0.1 for accuracy / latency / energy / balanced: accuracy
spends the budget, energy keeps only experts worth their cost. Deactivation is immediate (the expert's
state is frozen) unless no expert of the current set stays, then the current set keeps running until a
new expert is warm; activation returns (slot, expert) pairs the service warms from the cell's window
before the expert runs again. Decisions are logged (bounded) for the REST API.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass

import numpy as np

from contract.objectives import OBJECTIVES
from service.engine.host import ModelHost, StepResult

COST_EXPONENT = {"accuracy": 0.0, "latency": 0.5, "energy": 1.0, "balanced": 0.5}
MIN_RELATIVE_SCORE = {"accuracy": 0.0, "latency": 0.1, "energy": 0.3, "balanced": 0.1}
ERROR_EXPONENT = 1.0


@dataclass
class Decision:
    time_ms: int
    series: str
    objective: str
    budget: float
    active: list[str]
    activated: list[str]
    deactivated: list[str]
    scores: list[float]


class ExpertRouter:
    def __init__(self, host: ModelHost, decision_period: int = 60, error_halflife: float = 32.0,
                 log_size: int = 1000, clock=time.time):
        if not host.is_ms3m:
            raise ValueError(f"bundle {host.name} has no experts to route")
        self.host = host
        self.names = host.expert_names
        E = len(self.names)
        costs = np.asarray(host.bundle.manifest.gate.get("relative_costs") or [1.0 / E] * E, np.float64)
        self.costs = costs / costs.sum()
        self.decision_period = max(1, int(decision_period))
        self.alpha = 1 - 0.5 ** (1 / error_halflife)
        self.log: collections.deque[Decision] = collections.deque(maxlen=log_size)
        self.clock = clock
        self._cap = 0
        self.sync_capacity()

    def sync_capacity(self) -> None:
        cap, old, E, K = self.host.table.capacity, self._cap, len(self.names), self.host.n_targets
        if cap == old:
            return

        def grow(a, fill, shape, dtype):
            new = np.full((cap, *shape), fill, dtype)
            if old:
                new[:old] = a
            return new

        self.pref_sum = grow(getattr(self, "pref_sum", None), 0.0, (E,), np.float64)
        self.n_since = grow(getattr(self, "n_since", None), 0, (), np.int64)
        self.error = grow(getattr(self, "error", None), np.nan, (E,), np.float64)
        self.prev_fc = grow(getattr(self, "prev_fc", None), np.nan, (E, K), np.float32)
        self.period = grow(getattr(self, "period", None), self.decision_period, (), np.int64)
        self._cap = cap

    def reset(self, slots: np.ndarray) -> None:
        self.sync_capacity()
        self.pref_sum[slots] = 0
        self.n_since[slots] = 0
        self.error[slots] = np.nan
        self.prev_fc[slots] = np.nan
        self.period[slots] = self.decision_period

    def set_period(self, slots: np.ndarray, samples: int) -> None:
        self.period[slots] = max(1, int(samples))

    def observe(self, r: StepResult) -> np.ndarray:
        """Account one step; returns the slots whose decision period is over."""
        self.sync_capacity()
        s = r.slots
        # realized error of the 1-step forecasts made at the previous sample
        err = np.abs(self.prev_fc[s] - r.actual[:, None, :]) / self.host.t_std  # (N, E, K)
        seen_k = np.isfinite(err)
        with np.errstate(invalid="ignore"):  # all-missing rows give NaN: no error observed this step
            e = np.where(seen_k, err, 0).sum(2) / seen_k.sum(2)
        seen = np.isfinite(e)
        old = self.error[s]
        self.error[s] = np.where(seen, np.where(np.isfinite(old), old + self.alpha * (e - old), e), old)
        self.prev_fc[s] = r.expert_forecasts
        z = r.logits - r.logits.max(1, keepdims=True)
        p = np.exp(z)
        self.pref_sum[s] += p / p.sum(1, keepdims=True)
        self.n_since[s] += 1
        return s[self.n_since[s] >= self.period[s]]

    def decide(self, slots: np.ndarray) -> list[tuple[int, int]]:
        """New active sets for `slots`; applies deactivations, returns (slot, expert) pairs to warm."""
        if len(slots) == 0:
            return []
        host = self.host
        pref = self.pref_sum[slots] / np.maximum(self.n_since[slots], 1)[:, None]  # (N, E)
        err = self.error[slots]
        best = np.nanmin(np.where(np.isfinite(err), err, np.inf), axis=1, keepdims=True)
        ratio = np.where(np.isfinite(err) & np.isfinite(best) & (best > 0), err / np.maximum(best, 1e-12), 1.0)
        obj = host.objective[slots]
        kinds = np.argmax(obj[:, : len(OBJECTIVES)], 1)
        budget = obj[:, -1].astype(np.float64)
        beta = np.array([COST_EXPONENT[o] for o in OBJECTIVES])[kinds]
        tau = np.array([MIN_RELATIVE_SCORE[o] for o in OBJECTIVES])[kinds]
        score = pref / ratio**ERROR_EXPONENT / self.costs[None, :] ** beta[:, None]
        order = np.argsort(-score, axis=1)  # (N, E) experts by score, best first
        desired = np.zeros_like(host.active[slots])
        rows = np.arange(len(slots))
        top = score[rows, order[:, 0]]
        total = np.zeros(len(slots))
        for rank in range(order.shape[1]):  # greedy in score order: a loop over the E ranks, vector over cells
            e = order[:, rank]
            take = (total + self.costs[e] <= budget + 1e-9) & (score[rows, e] >= tau * top) if rank else \
                np.ones(len(slots), bool)
            desired[rows[take], e[take]] = True
            total += np.where(take, self.costs[e], 0.0)
        current = host.active[slots]
        off = current & ~desired
        on = desired & ~current
        # Deactivate now, activate after warm-up; a cell whose new set shares no expert with the current
        # one keeps the current set running until the first new expert is warm (ModelHost.warm), so it
        # always has a steppable expert.
        kept = current & desired
        waiting = ~kept.any(1)[:, None]
        host.active[slots] = np.where(waiting, current, kept)
        host.pending_off[slots] = waiting & off
        self.pref_sum[slots] = 0
        self.n_since[slots] = 0
        now = int(self.clock() * 1000)
        changed = np.flatnonzero(off.any(1) | on.any(1))
        for i in changed.tolist():
            slot = int(slots[i])
            self.log.append(Decision(
                now, host.table.cell_of(slot) or "", OBJECTIVES[kinds[i]], float(budget[i]),
                [n for n, d in zip(self.names, desired[i]) if d], [n for n, d in zip(self.names, on[i]) if d],
                [n for n, d in zip(self.names, off[i]) if d], [round(float(x), 4) for x in score[i]]))
        rows, cols = np.nonzero(on)
        return [(int(slots[r]), int(c)) for r, c in zip(rows, cols)]

    def compute_fraction(self) -> float:
        """Mean relative compute of the active expert sets over all cells (1 = every expert everywhere)."""
        used = self.host.table.cells()
        if not used:
            return 0.0
        slots = np.array([self.host.table.slot(c) for c in used])
        return float((self.host.active[slots] * self.costs).sum(1).mean())
