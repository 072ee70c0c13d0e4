from ms3m.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PolicyScope(_message.Message):
    __slots__ = ("cell_ids", "slices")
    CELL_IDS_FIELD_NUMBER: _ClassVar[int]
    SLICES_FIELD_NUMBER: _ClassVar[int]
    cell_ids: _containers.RepeatedScalarFieldContainer[str]
    slices: _containers.RepeatedCompositeFieldContainer[_common_pb2.Snssai]
    def __init__(self, cell_ids: _Optional[_Iterable[str]] = ..., slices: _Optional[_Iterable[_Union[_common_pb2.Snssai, _Mapping]]] = ...) -> None: ...

class ObjectivePolicy(_message.Message):
    __slots__ = ("objective", "compute_budget", "scope", "action_mode", "interval_coverage", "decision_period_ms")
    OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_BUDGET_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    ACTION_MODE_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_COVERAGE_FIELD_NUMBER: _ClassVar[int]
    DECISION_PERIOD_MS_FIELD_NUMBER: _ClassVar[int]
    objective: _common_pb2.Objective
    compute_budget: float
    scope: PolicyScope
    action_mode: _common_pb2.ActionMode
    interval_coverage: float
    decision_period_ms: int
    def __init__(self, objective: _Optional[_Union[_common_pb2.Objective, str]] = ..., compute_budget: _Optional[float] = ..., scope: _Optional[_Union[PolicyScope, _Mapping]] = ..., action_mode: _Optional[_Union[_common_pb2.ActionMode, str]] = ..., interval_coverage: _Optional[float] = ..., decision_period_ms: _Optional[int] = ...) -> None: ...
