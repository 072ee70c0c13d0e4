"""DiskJournal: records read back intact, a torn tail dropped, a journal of other KPIs refused."""

from __future__ import annotations

import numpy as np
import pytest

from service.buffer.base import SampleBatch
from service.ingest.journal import DiskJournal, JournalError

KPIS = ["DRB.UEThpDl", "RRU.PrbUsedDl"]


def test_journal_survives_a_torn_record_and_refuses_other_kpis(tmp_path):
    path = tmp_path / "j.journal"
    j = DiskJournal(path, KPIS)
    b = SampleBatch(["a", "b|ue=1"], np.array([5, 6]), np.array([1, 2], np.uint64), np.array([[1.0, 2.0], [3, np.nan]]))
    j.append(b)
    j.append(b.take([0]))
    j.close()
    with open(path, "ab") as fh:  # a crash in the middle of a third append
        fh.write(b"MS3R\x02\x00\x00\x00garbage")
    again = DiskJournal(path, KPIS)
    assert again.samples == 3 and [x.series for x in again.batches] == [["a", "b|ue=1"], ["a"]]
    np.testing.assert_array_equal(again.batches[0].values, b.values.astype(np.float32))
    assert again.batches[0].sequence.dtype == np.uint64 and again.batches[0].timestamp_ms.tolist() == [5, 6]
    again.drop(2)
    again.close()
    assert DiskJournal(path, KPIS).samples == 0
    j = DiskJournal(path, KPIS)
    j.append(b)
    j.close()
    with pytest.raises(JournalError, match="move it away"):
        DiskJournal(path, ["other", "kpis"])
