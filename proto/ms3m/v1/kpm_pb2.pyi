from ms3m.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RejectReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REJECT_REASON_UNSPECIFIED: _ClassVar[RejectReason]
    REJECT_REASON_MALFORMED: _ClassVar[RejectReason]
    REJECT_REASON_UNKNOWN_KPI: _ClassVar[RejectReason]
    REJECT_REASON_NON_FINITE: _ClassVar[RejectReason]
    REJECT_REASON_OUT_OF_ORDER: _ClassVar[RejectReason]
    REJECT_REASON_DUPLICATE: _ClassVar[RejectReason]
    REJECT_REASON_OVERSIZED: _ClassVar[RejectReason]
    REJECT_REASON_OVERLOADED: _ClassVar[RejectReason]
    REJECT_REASON_UNAVAILABLE: _ClassVar[RejectReason]
    REJECT_REASON_TIMESTAMP_OUT_OF_RANGE: _ClassVar[RejectReason]
    REJECT_REASON_SEQUENCE_GAP: _ClassVar[RejectReason]
    REJECT_REASON_VALUE_OUT_OF_RANGE: _ClassVar[RejectReason]
    REJECT_REASON_CAPACITY: _ClassVar[RejectReason]
REJECT_REASON_UNSPECIFIED: RejectReason
REJECT_REASON_MALFORMED: RejectReason
REJECT_REASON_UNKNOWN_KPI: RejectReason
REJECT_REASON_NON_FINITE: RejectReason
REJECT_REASON_OUT_OF_ORDER: RejectReason
REJECT_REASON_DUPLICATE: RejectReason
REJECT_REASON_OVERSIZED: RejectReason
REJECT_REASON_OVERLOADED: RejectReason
REJECT_REASON_UNAVAILABLE: RejectReason
REJECT_REASON_TIMESTAMP_OUT_OF_RANGE: RejectReason
REJECT_REASON_SEQUENCE_GAP: RejectReason
REJECT_REASON_VALUE_OUT_OF_RANGE: RejectReason
REJECT_REASON_CAPACITY: RejectReason

class KpiReport(_message.Message):
    __slots__ = ("cell_id", "ue_id", "slice", "timestamp_ms", "sequence", "values", "absent")
    CELL_ID_FIELD_NUMBER: _ClassVar[int]
    UE_ID_FIELD_NUMBER: _ClassVar[int]
    SLICE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    ABSENT_FIELD_NUMBER: _ClassVar[int]
    cell_id: str
    ue_id: str
    slice: _common_pb2.Snssai
    timestamp_ms: int
    sequence: int
    values: _containers.RepeatedScalarFieldContainer[float]
    absent: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, cell_id: _Optional[str] = ..., ue_id: _Optional[str] = ..., slice: _Optional[_Union[_common_pb2.Snssai, _Mapping]] = ..., timestamp_ms: _Optional[int] = ..., sequence: _Optional[int] = ..., values: _Optional[_Iterable[float]] = ..., absent: _Optional[_Iterable[int]] = ...) -> None: ...

class KpiIndication(_message.Message):
    __slots__ = ("e2_node_id", "granularity_period_ms", "meas_names", "reports", "message_id")
    E2_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    GRANULARITY_PERIOD_MS_FIELD_NUMBER: _ClassVar[int]
    MEAS_NAMES_FIELD_NUMBER: _ClassVar[int]
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    e2_node_id: str
    granularity_period_ms: int
    meas_names: _containers.RepeatedScalarFieldContainer[str]
    reports: _containers.RepeatedCompositeFieldContainer[KpiReport]
    message_id: int
    def __init__(self, e2_node_id: _Optional[str] = ..., granularity_period_ms: _Optional[int] = ..., meas_names: _Optional[_Iterable[str]] = ..., reports: _Optional[_Iterable[_Union[KpiReport, _Mapping]]] = ..., message_id: _Optional[int] = ...) -> None: ...

class RejectionCount(_message.Message):
    __slots__ = ("reason", "count")
    REASON_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    reason: RejectReason
    count: int
    def __init__(self, reason: _Optional[_Union[RejectReason, str]] = ..., count: _Optional[int] = ...) -> None: ...

class RejectedReport(_message.Message):
    __slots__ = ("message_id", "index", "reason", "detail")
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    message_id: int
    index: int
    reason: RejectReason
    detail: str
    def __init__(self, message_id: _Optional[int] = ..., index: _Optional[int] = ..., reason: _Optional[_Union[RejectReason, str]] = ..., detail: _Optional[str] = ...) -> None: ...

class IngestAck(_message.Message):
    __slots__ = ("message_id", "messages", "accepted", "rejected", "rejections", "details")
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    REJECTIONS_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    message_id: int
    messages: int
    accepted: int
    rejected: int
    rejections: _containers.RepeatedCompositeFieldContainer[RejectionCount]
    details: _containers.RepeatedCompositeFieldContainer[RejectedReport]
    def __init__(self, message_id: _Optional[int] = ..., messages: _Optional[int] = ..., accepted: _Optional[int] = ..., rejected: _Optional[int] = ..., rejections: _Optional[_Iterable[_Union[RejectionCount, _Mapping]]] = ..., details: _Optional[_Iterable[_Union[RejectedReport, _Mapping]]] = ...) -> None: ...
