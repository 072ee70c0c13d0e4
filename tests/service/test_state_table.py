import numpy as np
import pytest

from service.engine.state_table import StateTable, TableFullError

SPEC = [("layer0.ssm", (4, 2, 2)), ("layer0.conv", (3,))]


def test_gather_scatter_round_trip_and_growth():
    t = StateTable(SPEC, capacity=2)
    cells = [f"c{i}" for i in range(5)]
    slots = t.slots_for(cells, now_ms=0)
    assert len(set(slots.tolist())) == 5 and t.capacity >= 5
    states = t.gather(slots)
    assert [s.shape for s in states] == [(5, 4, 2, 2), (5, 3)] and all((s == 0).all() for s in states)
    new = [np.random.default_rng(0).standard_normal(s.shape).astype(np.float32) for s in states]
    t.scatter(slots, new)
    again = t.gather(t.slots_for(cells[::-1], now_ms=1))
    np.testing.assert_array_equal(again[0], new[0][::-1])
    assert t.bytes_per_cell == 4 * (16 + 3)


def test_eviction_only_after_three_idle_periods_least_recent_first():
    t = StateTable(SPEC, capacity=2, max_cells=2)
    t.slots_for(["a"], now_ms=0)
    t.slots_for(["b"], now_ms=1000)
    with pytest.raises(TableFullError):
        t.slots_for(["c"], now_ms=2500, period_ms=1000)  # a idle 2.5 periods: kept
    t.slots_for(["c"], now_ms=3000, period_ms=1000)  # a idle 3 periods: evicted
    assert "a" not in t and "b" in t and "c" in t
    assert t.evict_idle(now_ms=3500, period_ms=1000) == []  # b idle 2.5 periods, c 0.5
    assert t.evict_idle(now_ms=6000, period_ms=1000) == ["b", "c"]  # both ≥ 3 periods, oldest first


def test_evict_idle_orders_by_last_seen():
    t = StateTable(SPEC, capacity=4)
    for i, c in enumerate(["x", "y", "z"]):
        t.slots_for([c], now_ms=i * 100)
    assert t.evict_idle(now_ms=10_000, period_ms=100, limit=2) == ["x", "y"]
    assert t.cells() == ["z"]


def test_new_cell_starts_from_zero_state_even_in_reused_slot():
    t = StateTable(SPEC, capacity=1, max_cells=1)
    s = t.slots_for(["a"], 0)
    t.scatter(s, [np.ones((1, 4, 2, 2), np.float32), np.ones((1, 3), np.float32)])
    t.slots_for(["b"], 10_000, period_ms=1000)
    assert all((a == 0).all() for a in t.get("b"))


def test_pack_unpack_and_bad_records():
    t = StateTable(SPEC)
    t.set("a", [np.arange(16, dtype=np.float32).reshape(4, 2, 2), np.array([1, 2, 3], np.float32)])
    rec = t.pack("a")
    t2 = StateTable(SPEC)
    t2.restore({"a": rec})
    for x, y in zip(t.get("a"), t2.get("a")):
        np.testing.assert_array_equal(x, y)
    with pytest.raises(ValueError, match="holds"):
        StateTable([("s", (5,))]).unpack(rec)
    with pytest.raises(ValueError, match="format"):
        t.unpack(b"XXXX" + rec[4:])
    with pytest.raises(ValueError, match="short"):
        t.unpack(b"MS")


def test_records_of_another_model_identity_are_refused():
    a = StateTable(SPEC, identity=b"model v1")
    a.slots_for(["x"], 0)
    rec = a.pack("x")
    assert StateTable(SPEC, identity=b"model v1").unpack(rec)[0].shape == a.arrays[0][0].shape
    with pytest.raises(ValueError, match="another model"):
        StateTable(SPEC, identity=b"model v2").unpack(rec)  # same layout, other version: not loaded
    StateTable(SPEC).unpack(rec)  # a reader without an identity accepts any
    assert a.pack_slots(np.array([0]))[0] == rec


def test_a_run_of_slots_reads_and_writes_as_a_block_and_equals_the_gather():
    from service.runtime.rows import row_index

    assert row_index(np.array([3, 4, 5, 6])) == slice(3, 7)
    for scattered in ([3, 5, 6], [4, 3, 5], [2]):  # a gap, a permuted run, one slot
        idx = row_index(np.array(scattered))
        assert isinstance(idx, slice) == (len(scattered) == 1)
    t = StateTable(SPEC, capacity=8)
    slots = t.slots_for([f"c{i}" for i in range(6)], now_ms=0)
    rng = np.random.default_rng(1)
    t.scatter(slots, [rng.standard_normal((6, *shape)).astype(np.float32) for _, shape in SPEC])
    run = slots[1:5]
    block, fancy = t.gather(row_index(run)), t.gather(run)
    for a, b in zip(block, fancy):
        np.testing.assert_array_equal(a, b)
    block[0][:] = 7.0  # a copy, not a view of the table
    assert not (t.gather(run)[0] == 7.0).any()
    t.scatter(row_index(run), block)
    np.testing.assert_array_equal(t.gather(run)[0], block[0])


def test_finite_rows_finds_nan_and_both_infinities():
    from service.engine.host import finite_rows

    a = np.zeros((5, 3, 4), np.float32)
    a[1, 2, 3], a[2, 0, 0], a[3, 1, 1] = np.nan, np.inf, -np.inf
    a[4] = 1e30  # large but finite
    assert finite_rows(a).tolist() == [True, False, False, False, True]
    assert finite_rows(a[:, :, 1:]).tolist() == [True, False, True, False, True]  # non-contiguous view
