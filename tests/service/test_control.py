"""Pieces of service/control.py that stand alone."""

from __future__ import annotations

import pytest

from service.control import Rows


def test_rows_compute_only_what_is_read():
    read = []
    rows = Rows(4, lambda i: read.append(i) or i * 10)
    assert len(rows) == 4 and rows[2] == 20 and rows[-1] == 30 and read == [2, 3]
    assert rows[1:3] == [10, 20]
    with pytest.raises(IndexError):
        rows[4]
    assert list(rows) == [0, 10, 20, 30]
