"""The objective policy type (A1, JSON Schema draft-07) and its mapping onto the proto message.

JSON field names are the proto3 JSON names of `ms3m.v1.ObjectivePolicy`; enum values are the
lower-case suffixes of the proto enums (`OBJECTIVE_ENERGY` ↔ "energy").
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import jsonschema
from google.protobuf import json_format

from ms3m.v1 import common_pb2, policy_pb2

OBJECTIVE_POLICY_TYPE: dict[str, Any] = json.loads(
    resources.files(__package__).joinpath("objective_policy_type.json").read_text()
)
OBJECTIVE_POLICY_TYPE_ID: int = OBJECTIVE_POLICY_TYPE["policy_type_id"]
_VALIDATOR = jsonschema.Draft7Validator(OBJECTIVE_POLICY_TYPE["create_schema"])


class PolicyValidationError(ValueError):
    """A policy document that does not satisfy the policy type's schema."""


def _enum_value(enum: Any, prefix: str, name: str) -> int:
    return enum.Value(f"{prefix}_{name.upper()}")


def _enum_name(enum: Any, prefix: str, value: int) -> str:
    return enum.Name(value).removeprefix(prefix + "_").lower()


def policy_from_json(doc: Any) -> policy_pb2.ObjectivePolicy:
    """Validate an A1 policy document and convert it; raises PolicyValidationError naming the field."""
    errors = sorted(_VALIDATOR.iter_errors(doc), key=lambda e: list(e.path))
    if errors:
        e = errors[0]
        where = "/".join(str(p) for p in e.path) or "(root)"
        raise PolicyValidationError(f"{where}: {e.message}")
    msg = dict(doc)
    msg["objective"] = _enum_value(common_pb2.Objective, "OBJECTIVE", doc["objective"])
    if "actionMode" in doc:
        msg["actionMode"] = _enum_value(common_pb2.ActionMode, "ACTION_MODE", doc["actionMode"])
    try:
        return json_format.ParseDict(msg, policy_pb2.ObjectivePolicy())
    except json_format.ParseError as e:  # what the schema cannot say (a number out of the field's range)
        raise PolicyValidationError(str(e)) from None


def policy_to_json(policy: policy_pb2.ObjectivePolicy) -> dict[str, Any]:
    """The A1 JSON form of a policy message (inverse of policy_from_json)."""
    doc = json_format.MessageToDict(policy, use_integers_for_enums=True)
    doc["objective"] = _enum_name(common_pb2.Objective, "OBJECTIVE", policy.objective)
    doc["computeBudget"] = policy.compute_budget
    if "actionMode" in doc:
        doc["actionMode"] = _enum_name(common_pb2.ActionMode, "ACTION_MODE", policy.action_mode)
    return doc
