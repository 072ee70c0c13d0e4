"""Fakes for unit tests of the engine and the router: a host that needs no bundle and no runtime."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from contract.objectives import objective_array
from service.engine.host import StepResult


class FakeTable:
    """Slots handed out in order of first sight; capacity fixed (a full table refuses new series)."""

    def __init__(self, capacity: int = 64):
        self.capacity = capacity
        self._slot: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._slot)

    def slot(self, key: str) -> int | None:
        return self._slot.get(key)

    def cells(self) -> list[str]:
        return list(self._slot)

    def cell_of(self, slot: int) -> str | None:
        return next((k for k, s in self._slot.items() if s == slot), None)

    def take(self, key: str) -> int | None:
        if key not in self._slot and len(self._slot) < self.capacity:
            self._slot[key] = len(self._slot)
        return self._slot.get(key)


class FakeHost:
    """A ModelHost stand-in: forecast = the sample's first value; records every step call.

    `fail_series` make a batched step containing them raise (each alone raises too); `non_finite_series`
    come back with applied=False, as the real host's non-finite guard answers.
    """

    def __init__(self, name: str = "fake", experts: int = 0, capacity: int = 64, costs=None, horizon: int = 2):
        self.name = name
        self.table = FakeTable(capacity)
        self.horizon, self.n_targets = horizon, 1
        self.calls: list[tuple[list[int], list[int]]] = []  # (slots, timestamps) per step call
        self.fail_series: set[str] = set()
        self.non_finite_series: set[str] = set()
        self.is_ms3m = experts > 0
        self.expert_names = [f"e{i}" for i in range(experts)]
        gate = {"relative_costs": list(costs)} if costs is not None else {}
        self.bundle = SimpleNamespace(manifest=SimpleNamespace(gate=gate))
        self.t_std = np.ones(1, np.float32)
        self.objective = np.repeat(objective_array("balanced", 1.0), capacity, 0)
        self.active = np.ones((capacity, max(experts, 1)), bool)
        self.pending_off = np.zeros_like(self.active)

    def slots(self, series: list[str], now_ms: int) -> tuple[np.ndarray, np.ndarray]:
        got = [self.table.take(k) for k in series]
        ok = np.array([s is not None for s in got], bool)
        return np.array([-1 if s is None else s for s in got], np.int64), ok

    def step(self, slots: np.ndarray, values: np.ndarray, timestamp_ms: np.ndarray) -> StepResult:
        keys = [self.table.cell_of(int(s)) for s in slots]
        if any(k in self.fail_series for k in keys):
            raise RuntimeError("runtime failed")
        applied = np.array([k not in self.non_finite_series for k in keys], bool)
        self.calls.append((slots.tolist(), timestamp_ms.tolist()))
        rows = np.flatnonzero(applied)
        n = len(rows)
        point = np.repeat(values[rows, :1, None], self.horizon, 1)  # (n, H, 1)
        return StepResult(slots[rows], timestamp_ms[rows], point, point - 1, point + 1, values[rows, :1],
                          np.zeros((n, 1), bool), applied=None if applied.all() else applied)


def step_result(slots, actual, expert_forecasts, logits) -> StepResult:
    """A StepResult carrying only what the router reads (actual (N, K), expert forecasts (N, E, K), logits)."""
    slots = np.asarray(slots, np.int64)
    n = len(slots)
    z = np.zeros((n, 1, 1), np.float32)
    return StepResult(slots, np.zeros(n, np.int64), z, z, z, np.asarray(actual, np.float32), np.zeros((n, 1), bool),
                      logits=np.asarray(logits, np.float32), expert_forecasts=np.asarray(expert_forecasts, np.float32))
