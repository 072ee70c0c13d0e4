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
MAX_SCOPED_CELLS = 200_000  # cell ids over all policies together (one policy: ≤ 10,000, the type's schema)


class PolicyLimitError(ValueError):
    """A policy the store refuses for its size (HTTP 413), not for its content."""


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


@dataclass(frozen=True)
class _Candidate:
    """A policy as the resolution index holds it: rank = (specificity, written time), higher wins."""

    rank: tuple[int, float]
    policy_id: str
    policy: policy_pb2.ObjectivePolicy
    slices: tuple[tuple[int, int | None], ...]


class PolicyStore:
    """Thread-safe store of policy instances; `version` increments on every change."""

    def __init__(self, clock=time.time):
        self._policies: dict[str, tuple[policy_pb2.ObjectivePolicy, float]] = {}
        self._lock = threading.Lock()
        self._clock = clock
        self.version = 0
        self._scoped_cells = 0
        # resolution index, rebuilt on the first lookup after a change: policies by scoped cell, the policies
        # scoped to no cell, and the resolved objective of each series looked up since (O(1) per cell per step)
        self._index_version = -1
        self._by_cell: dict[str, list[_Candidate]] = {}
        self._cell_free: list[_Candidate] = []
        self._resolved: dict[str, Objective] = {}

    def put(self, policy_id: str, doc: Any) -> bool:
        """Create or replace; returns True when created. Raises ValueError (bad id, or PolicyValidationError)."""
        if not POLICY_ID.match(policy_id):
            raise ValueError(f"policy id {policy_id[:140]!r} must be 1–128 of [A-Za-z0-9_.-]")
        policy = policy_from_json(doc)
        with self._lock:
            created = policy_id not in self._policies
            if created and len(self._policies) >= MAX_POLICIES:
                raise PolicyLimitError(f"at most {MAX_POLICIES} policy instances; delete some first")
            old = 0 if created else len(self._policies[policy_id][0].scope.cell_ids)
            cells = self._scoped_cells - old + len(policy.scope.cell_ids)
            if cells > MAX_SCOPED_CELLS:
                raise PolicyLimitError(f"the policies would scope {cells} cell ids together, at most "
                                       f"{MAX_SCOPED_CELLS}: scope by slice, or leave the scope out for every cell")
            self._policies[policy_id] = (policy, self._clock())
            self._scoped_cells = cells
            self.version += 1
        return created

    def get(self, policy_id: str) -> dict[str, Any] | None:
        with self._lock:
            hit = self._policies.get(policy_id)
        return policy_to_json(hit[0]) if hit else None

    def delete(self, policy_id: str) -> bool:
        with self._lock:
            hit = self._policies.pop(policy_id, None)
            if hit is not None:
                self._scoped_cells -= len(hit[0].scope.cell_ids)
                self.version += 1
        return hit is not None

    def ids(self) -> list[str]:
        with self._lock:
            return sorted(self._policies)

    def objective_for(self, series: str) -> Objective:
        """The objective of a series (module docstring: the most specific matching policy wins). Amortized O(1):
        resolved once per series after each change of the policies."""
        with self._lock:
            if self._index_version != self.version:
                self._rebuild_index()
            hit = self._resolved.get(series)
            if hit is None:
                hit = self._resolved[series] = self._resolve(series)
            return hit

    def _rebuild_index(self) -> None:
        """Under the lock: index the policies by scoped cell; forget resolved series."""
        self._by_cell, self._cell_free, self._resolved = {}, [], {}
        for pid, (p, written) in self._policies.items():
            slices = tuple((s.sst, s.sd if s.HasField("sd") else None) for s in p.scope.slices)
            cand = _Candidate((2 * bool(p.scope.cell_ids) + bool(slices), written), pid, p, slices)
            if p.scope.cell_ids:
                for cell in set(p.scope.cell_ids):
                    self._by_cell.setdefault(cell, []).append(cand)
            else:
                self._cell_free.append(cand)
        self._index_version = self.version

    def _resolve(self, series: str) -> Objective:
        cell, sl = parse_series(series)
        best: _Candidate | None = None
        for c in (*self._by_cell.get(cell, ()), *self._cell_free):
            if c.slices and (sl is None or not any(sst == sl[0] and (sd is None or sd == sl[1])
                                                   for sst, sd in c.slices)):
                continue
            if best is None or c.rank > best.rank:
                best = c
        if best is None:
            return DEFAULT
        p = best.policy
        name = common_pb2.Objective.Name(p.objective).removeprefix("OBJECTIVE_").lower()
        return Objective(
            objective="balanced" if name == "unspecified" else name,
            budget=p.compute_budget or 1.0,
            mode="enforce" if p.action_mode == common_pb2.ACTION_MODE_ENFORCE else "recommend",
            coverage=p.interval_coverage or None,
            decision_period_ms=p.decision_period_ms or None,
            policy_id=best.policy_id,
        )

    def status(self, policy_id: str, cells_in_scope: int) -> dict[str, Any] | None:
        """A1 status of an instance: enforced when it applies to at least one known series."""
        with self._lock:
            if policy_id not in self._policies:
                return None
        return {"enforceStatus": "ENFORCED" if cells_in_scope else "NOT_ENFORCED",
                "enforceReason": f"objective applied to {cells_in_scope} series" if cells_in_scope
                else "no known series matches the policy scope yet"}


__all__ = ["DEFAULT", "Objective", "PolicyLimitError", "PolicyStore", "parse_series"]
