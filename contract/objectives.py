"""The objectives an A1 policy can set, and the vector MS³M's gate and router read.

The objective vector is one-hot over OBJECTIVES followed by the compute budget in (0, 1]: length
len(OBJECTIVES) + 1. The order is part of the bundle format (gate graphs take this vector).
"""

from __future__ import annotations

import numpy as np

OBJECTIVES = ("accuracy", "latency", "energy", "balanced")
OBJECTIVE_DIM = len(OBJECTIVES) + 1


def check_objective(objective: str, budget: float = 1.0) -> None:
    """Raises ValueError for an unknown objective or a budget outside (0, 1]."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    if not 0 < budget <= 1:
        raise ValueError(f"compute budget must be in (0, 1], got {budget}")


def objective_array(objective: str, budget: float = 1.0, batch: int = 1, dtype=np.float32) -> np.ndarray:
    """(batch, OBJECTIVE_DIM): one-hot objective ⊕ budget."""
    check_objective(objective, budget)
    v = np.zeros((batch, OBJECTIVE_DIM), dtype)
    v[:, OBJECTIVES.index(objective)] = 1
    v[:, -1] = budget
    return v


def objective_names(vectors: np.ndarray) -> list[str]:
    """The objective name of each row of (N, OBJECTIVE_DIM) vectors."""
    return [OBJECTIVES[i] for i in np.argmax(np.asarray(vectors)[:, : len(OBJECTIVES)], 1).tolist()]
