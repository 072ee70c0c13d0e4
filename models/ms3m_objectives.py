"""MS³M objective vectors as torch tensors: one-hot over contract.objectives.OBJECTIVES ⊕ compute budget."""

from __future__ import annotations

import torch
from torch import Tensor

from contract.objectives import OBJECTIVE_DIM, OBJECTIVES, check_objective


def objective_vector(objective: str = "balanced", budget: float = 1.0, batch: int = 1,
                     dtype: torch.dtype = torch.float32) -> Tensor:
    """(batch, 5): one-hot objective ⊕ compute budget in (0, 1] (contract.objectives)."""
    check_objective(objective, budget)
    v = torch.zeros(batch, OBJECTIVE_DIM, dtype=dtype)  # torch ops: traced with a symbolic batch on export
    v[:, OBJECTIVES.index(objective)] = 1
    v[:, -1] = budget
    return v


def sample_objectives(batch: int, generator: torch.Generator | None = None,
                      budgets: tuple[float, ...] = (0.34, 0.5, 0.67, 1.0)) -> Tensor:
    """Random objective vectors for training: uniform objective, budget from `budgets`."""
    obj = torch.randint(0, len(OBJECTIVES), (batch,), generator=generator)
    bud = torch.tensor(budgets)[torch.randint(0, len(budgets), (batch,), generator=generator)]
    v = torch.zeros(batch, len(OBJECTIVES) + 1)
    v[torch.arange(batch), obj] = 1
    v[:, -1] = bud
    return v
