"""The A1 objective policy type and the ObjectivePolicy proto message describe the same thing."""

from __future__ import annotations

import re

import jsonschema
import pytest

from ms3m.v1 import common_pb2, policy_pb2
from service.a1 import (
    OBJECTIVE_POLICY_TYPE,
    OBJECTIVE_POLICY_TYPE_ID,
    PolicyValidationError,
    policy_from_json,
    policy_to_json,
)


def test_policy_type_is_valid_draft07_with_a1_id():
    jsonschema.Draft7Validator.check_schema(OBJECTIVE_POLICY_TYPE["create_schema"])
    assert 20000 <= OBJECTIVE_POLICY_TYPE_ID < 30000


def test_schema_properties_match_proto_fields():
    schema = OBJECTIVE_POLICY_TYPE["create_schema"]
    proto_json_names = {f.json_name for f in policy_pb2.ObjectivePolicy.DESCRIPTOR.fields}
    assert set(schema["properties"]) == proto_json_names
    scope_names = {f.json_name for f in policy_pb2.PolicyScope.DESCRIPTOR.fields}
    assert set(schema["properties"]["scope"]["properties"]) == scope_names
    objectives = {n.removeprefix("OBJECTIVE_").lower() for n in common_pb2.Objective.keys()} - {"unspecified"}  # noqa: SIM118
    assert set(schema["properties"]["objective"]["enum"]) == objectives


@pytest.mark.parametrize("doc", [
    {"objective": "accuracy", "computeBudget": 1.0},
    {"objective": "energy", "computeBudget": 0.25, "actionMode": "enforce",
     "scope": {"cellIds": ["c1", "c2"], "slices": [{"sst": 1, "sd": 42}]},
     "intervalCoverage": 0.9, "decisionPeriodMs": 1000},
])
def test_round_trip(doc):
    assert policy_to_json(policy_from_json(doc)) == doc


@pytest.mark.parametrize("doc, where", [
    ({"objective": "fastest", "computeBudget": 0.5}, "objective"),
    ({"objective": "energy", "computeBudget": 0}, "computeBudget"),
    ({"objective": "energy", "computeBudget": 1.5}, "computeBudget"),
    ({"objective": "energy"}, "(root)"),
    ({"objective": "energy", "computeBudget": 0.5, "surprise": 1}, "(root)"),
    ({"objective": "energy", "computeBudget": 0.5, "scope": {"slices": [{"sst": 300}]}}, "scope/slices/0/sst"),
    ("not an object", "(root)"),
])
def test_bad_policies_name_the_field(doc, where):
    with pytest.raises(PolicyValidationError, match="^" + re.escape(where)):
        policy_from_json(doc)
