"""Lazily gathered state rows: what a step reads of a state table."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class LazyRows(Sequence):
    """Rows `slots` of each of `arrays`, gathered on first access and kept: a step reads only the state tensors
    it needs (an MS³M expert that is not due this step never has its network state gathered)."""

    def __init__(self, arrays: Sequence[np.ndarray], slots: np.ndarray):
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
            got = self._got[i] = np.take(self._arrays[i], self._slots, axis=0)
        return got
