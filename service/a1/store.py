"""A1 policy instances of the objective policy type, and the objective each series gets from them.

Resolution for a series (cell, optional slice): the most specific matching policy wins — scoped to the
cell and the slice, then to the cell, then to the slice, then unscoped; ties go to the most recently
written. Without any policy: balanced objective, full compute budget, actions recommended.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from contract.objectives import objective_array
from contract.series import parse_series
from ms3m.v1 import common_pb2, policy_pb2
from service.a1.objective import policy_from_json, policy_to_json

POLICY_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")
MAX_POLICIES = 10_000


@dataclass(frozen=True)
class Objective:
    objective: str = "balanced"
    budget: float = 1.0
    mode: str = "recommend"
    coverage: float | None = None
    decision_period_ms: int | None = None
    policy_id: str | None = None

    def vector(self) -> list[float]:
        """one-hot objective ⊕ budget (contract.objectives: the MS³M gate's objective input)."""
        return objective_array(self.objective, self.budget, dtype=np.float64)[0].tolist()


DEFAULT = Objective()


class PolicyStore:
    """Thread-safe store of policy instances; `version` increments on every change."""

    def __init__(self, clock=time.time):
        self._policies: dict[str, tuple[policy_pb2.ObjectivePolicy, float]] = {}
        self._lock = threading.Lock()
        self._clock = clock
        self.version = 0

    def put(self, policy_id: str, doc: Any) -> bool:
        """Create or replace; returns True when created. Raises ValueError (bad id, or PolicyValidationError)."""
        if not POLICY_ID.match(policy_id):
            raise ValueError(f"policy id {policy_id[:140]!r} must be 1–128 of [A-Za-z0-9_.-]")
        policy = policy_from_json(doc)
        with self._lock:
            created = policy_id not in self._policies
            if created and len(self._policies) >= MAX_POLICIES:
                raise ValueError(f"at most {MAX_POLICIES} policy instances")
            self._policies[policy_id] = (policy, self._clock())
            self.version += 1
        return created

    def get(self, policy_id: str) -> dict[str, Any] | None:
        with self._lock:
            hit = self._policies.get(policy_id)
        return policy_to_json(hit[0]) if hit else None

    def delete(self, policy_id: str) -> bool:
        with self._lock:
            gone = self._policies.pop(policy_id, None) is not None
            if gone:
                self.version += 1
        return gone

    def ids(self) -> list[str]:
        with self._lock:
            return sorted(self._policies)

    def objective_for(self, series: str) -> Objective:
        cell, sl = parse_series(series)
        best, best_rank = None, (-1, -1.0)
        with self._lock:
            items = list(self._policies.items())
        for pid, (p, written) in items:
            cells, slices = list(p.scope.cell_ids), [(s.sst, s.sd if s.HasField("sd") else None)
                                                     for s in p.scope.slices]
            if cells and cell not in cells:
                continue
            if slices and (sl is None or not any(sst == sl[0] and (sd is None or sd == sl[1]) for sst, sd in slices)):
                continue
            rank = (2 * bool(cells) + bool(slices), written)
            if rank > best_rank:
                best, best_rank = (pid, p), rank
        if best is None:
            return DEFAULT
        pid, p = best
        name = common_pb2.Objective.Name(p.objective).removeprefix("OBJECTIVE_").lower()
        return Objective(
            objective="balanced" if name == "unspecified" else name,
            budget=p.compute_budget or 1.0,
            mode="enforce" if p.action_mode == common_pb2.ACTION_MODE_ENFORCE else "recommend",
            coverage=p.interval_coverage or None,
            decision_period_ms=p.decision_period_ms or None,
            policy_id=pid,
        )

    def status(self, policy_id: str, cells_in_scope: int) -> dict[str, Any] | None:
        """A1 status of an instance: enforced when it applies to at least one known series."""
        with self._lock:
            if policy_id not in self._policies:
                return None
        return {"enforceStatus": "ENFORCED" if cells_in_scope else "NOT_ENFORCED",
                "enforceReason": f"objective applied to {cells_in_scope} series" if cells_in_scope
                else "no known series matches the policy scope yet"}


__all__ = ["DEFAULT", "Objective", "PolicyStore", "parse_series"]
