"""Lazily gathered state rows: what a step reads of a state table."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def row_index(slots: np.ndarray) -> np.ndarray | slice:
    """`slots` (distinct) as a slice when they are one ascending run, the usual case of a sub-step over every
    cell: reads and writes are then block copies instead of gathers. Else `slots` itself."""
    n = len(slots)
    if n and int(slots[-1]) - int(slots[0]) == n - 1 and (n < 2 or bool((slots[1:] > slots[:-1]).all())):
        return slice(int(slots[0]), int(slots[0]) + n)
    return slots


def take_rows(a: np.ndarray, index: np.ndarray | slice) -> np.ndarray:
    """A copy of rows `index` (row_index) of `a`."""
    return a[index].copy() if isinstance(index, slice) else np.take(a, index, axis=0)


@dataclass
class RowUpdate:
    """New values of some rows of a state tensor, the rest unchanged: rows (m,) positions in the step's batch,
    values (m, *shape). A step hands these back for an expert that ran on a few cells, so neither its whole
    state column is gathered nor written back."""

    rows: np.ndarray
    values: np.ndarray


class LazyRows(Sequence):
    """Rows `slots` (an index array or row_index's slice) of each of `arrays`, gathered on first access and
    kept: a step reads only the state tensors it needs (an MS³M expert that is not due this step never has its
    network state gathered)."""

    def __init__(self, arrays: Sequence[np.ndarray], slots: np.ndarray | slice):
        self._arrays, self._slots = arrays, slots
        self._got: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self._arrays)

    def __getitem__(self, i):  # int → (n, *shape) copy; slice → list of them
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = i + len(self) if i < 0 else i
        got = self._got.get(i)
        if got is None:
            got = self._got[i] = take_rows(self._arrays[i], self._slots)
        return got

    def subset(self, i: int, positions: np.ndarray) -> np.ndarray:
        """A copy of tensor i at batch positions `positions` (m,), without gathering the other rows."""
        got = self._got.get(i)
        if got is not None:
            return got[positions]
        s = self._slots
        return np.take(self._arrays[i], positions + s.start if isinstance(s, slice) else s[positions], axis=0)
