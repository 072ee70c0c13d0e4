import pytest

from contract.series import parse_series
from service.a1.store import DEFAULT, PolicyStore


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
