"""A1 policies: the objective policy type the xApp accepts and its conversion to ms3m.v1.ObjectivePolicy."""

from service.a1.objective import (
    OBJECTIVE_POLICY_TYPE,
    OBJECTIVE_POLICY_TYPE_ID,
    PolicyValidationError,
    policy_from_json,
    policy_to_json,
)

__all__ = [
    "OBJECTIVE_POLICY_TYPE",
    "OBJECTIVE_POLICY_TYPE_ID",
    "PolicyValidationError",
    "policy_from_json",
    "policy_to_json",
]
