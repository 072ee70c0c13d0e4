import random
import time

import pytest

from contract.series import parse_series
from service.a1 import store as store_module
from service.a1.store import DEFAULT, PolicyLimitError, PolicyStore


def test_most_specific_policy_wins():
    clock = iter(range(100))
    st = PolicyStore(clock=lambda: next(clock))
    st.put("global", {"objective": "accuracy", "computeBudget": 1.0})
    st.put("slice1", {"objective": "latency", "computeBudget": 0.5, "scope": {"slices": [{"sst": 1}]}})
    st.put("cellA", {"objective": "energy", "computeBudget": 0.3, "actionMode": "enforce",
                     "scope": {"cellIds": ["A"]}})
    assert st.objective_for("B").objective == "accuracy"
    assert st.objective_for("B|s=1.7").objective == "latency"
    a = st.objective_for("A|s=1.7")
    assert (a.objective, a.budget, a.mode, a.policy_id) == ("energy", 0.3, "enforce", "cellA")
    assert a.vector() == [0, 0, 1, 0, 0.3]
    v = st.version
    assert st.delete("cellA") and st.version == v + 1
    assert st.objective_for("A").objective == "accuracy"
    st.delete("global")
    st.delete("slice1")
    assert st.objective_for("A") == DEFAULT


def test_bad_input():
    st = PolicyStore()
    with pytest.raises(ValueError, match="policy id"):
        st.put("bad id", {"objective": "energy", "computeBudget": 0.5})
    with pytest.raises(ValueError, match="computeBudget"):
        st.put("p", {"objective": "energy", "computeBudget": 5})
    assert st.get("nope") is None and not st.delete("nope")


def test_parse_series():
    assert parse_series("c1") == ("c1", None)
    assert parse_series("c1|ue=9|s=2.5") == ("c1", (2, 5))
    assert parse_series("c1|s=1") == ("c1", (1, None))


def test_index_resolves_like_a_scan_of_every_policy():
    """The resolution index agrees with the definition (most specific, then latest) on random policies."""
    rng = random.Random(0)
    clock = iter(range(10_000))
    st = PolicyStore(clock=lambda: next(clock))
    cells = [f"c{i}" for i in range(30)]
    written = {}
    for step in range(200):
        pid = f"p{rng.randrange(40)}"
        if rng.random() < 0.2:
            st.delete(pid)
            written.pop(pid, None)
        else:
            scope = {}
            if rng.random() < 0.6:
                scope["cellIds"] = rng.sample(cells, rng.randint(1, 5))
            if rng.random() < 0.4:
                scope["slices"] = [{"sst": rng.randint(1, 2), **({"sd": 7} if rng.random() < 0.5 else {})}]
            doc = {"objective": rng.choice(["accuracy", "energy", "latency"]), "computeBudget": 0.5, "scope": scope}
            st.put(pid, doc)
            written[pid] = (doc, step)
        for series in ("c3", "c3|s=1.7", "c5|s=2", "c7|ue=1|s=1.9", "zz"):
            cell, sl = parse_series(series)
            best, rank = None, None
            for pid, (doc, when) in written.items():
                sc = doc["scope"]
                if "cellIds" in sc and cell not in sc["cellIds"]:
                    continue
                if "slices" in sc and (sl is None or not any(x["sst"] == sl[0] and x.get("sd") in (None, sl[1])
                                                              for x in sc["slices"])):
                    continue
                r = (2 * ("cellIds" in sc) + ("slices" in sc), when)
                if rank is None or r > rank:
                    best, rank = pid, r
            assert st.objective_for(series).policy_id == best, (step, series)


def test_many_large_policies_resolve_fast_and_the_scope_is_bounded(monkeypatch):
    """The A1 abuse case (policies of 10,000 cell ids against 1,000 cells stalled the engine for 30 s before the
    index): every cell's objective after each change costs one dict lookup per cell, not a scan of the lists."""
    st = PolicyStore()
    cells = [f"cell-{i:04d}" for i in range(1000)]
    lookups = 0.0
    for p in range(5):
        ids = [f"other-{p}-{i}" for i in range(9_990)] + cells[p * 10 : p * 10 + 10]
        st.put(f"big{p}", {"objective": "energy", "computeBudget": 0.5, "scope": {"cellIds": ids}})
        t0 = time.perf_counter()
        assert sum(st.objective_for(c).policy_id is not None for c in cells) == 10 * (p + 1)
        lookups += time.perf_counter() - t0
    assert lookups < 2.0  # 5 × (index of 50k ids + 1,000 lookups), ~0.1 s; the scan took seconds per change
    monkeypatch.setattr(store_module, "MAX_SCOPED_CELLS", 55_000)
    with pytest.raises(PolicyLimitError, match="at most 55000"):
        st.put("big5", {"objective": "energy", "computeBudget": 0.5,
                        "scope": {"cellIds": [f"x-{i}" for i in range(10_001 - 1)]}})
    st.put("big4", {"objective": "energy", "computeBudget": 0.5, "scope": {"cellIds": ["a"]}})  # a smaller scope
    st.put("big5", {"objective": "energy", "computeBudget": 0.5, "scope": {"cellIds": ["b"] * 10}})
