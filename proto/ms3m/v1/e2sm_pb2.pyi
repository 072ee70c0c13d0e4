from ms3m.v1 import forecast_pb2 as _forecast_pb2
from ms3m.v1 import kpm_pb2 as _kpm_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RicIndication(_message.Message):
    __slots__ = ("e2_node_id", "ran_function_id", "ric_requestor_id", "ric_instance_id", "ric_action_id", "indication_sn", "indication_header", "indication_message", "cell_id", "kpm_version")
    E2_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    RAN_FUNCTION_ID_FIELD_NUMBER: _ClassVar[int]
    RIC_REQUESTOR_ID_FIELD_NUMBER: _ClassVar[int]
    RIC_INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    RIC_ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    INDICATION_SN_FIELD_NUMBER: _ClassVar[int]
    INDICATION_HEADER_FIELD_NUMBER: _ClassVar[int]
    INDICATION_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CELL_ID_FIELD_NUMBER: _ClassVar[int]
    KPM_VERSION_FIELD_NUMBER: _ClassVar[int]
    e2_node_id: str
    ran_function_id: int
    ric_requestor_id: int
    ric_instance_id: int
    ric_action_id: int
    indication_sn: int
    indication_header: bytes
    indication_message: bytes
    cell_id: str
    kpm_version: int
    def __init__(self, e2_node_id: _Optional[str] = ..., ran_function_id: _Optional[int] = ..., ric_requestor_id: _Optional[int] = ..., ric_instance_id: _Optional[int] = ..., ric_action_id: _Optional[int] = ..., indication_sn: _Optional[int] = ..., indication_header: _Optional[bytes] = ..., indication_message: _Optional[bytes] = ..., cell_id: _Optional[str] = ..., kpm_version: _Optional[int] = ...) -> None: ...

class RicIndicationBatch(_message.Message):
    __slots__ = ("indications", "message_id")
    INDICATIONS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    indications: _containers.RepeatedCompositeFieldContainer[RicIndication]
    message_id: int
    def __init__(self, indications: _Optional[_Iterable[_Union[RicIndication, _Mapping]]] = ..., message_id: _Optional[int] = ...) -> None: ...

class E2Subscription(_message.Message):
    __slots__ = ("e2_node_id", "ran_function_id", "ric_requestor_id", "ric_instance_id", "ric_action_id", "kpm_version", "action_definition", "cell_id", "meas_ids")
    class MeasIdsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: str
        def __init__(self, key: _Optional[int] = ..., value: _Optional[str] = ...) -> None: ...
    E2_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    RAN_FUNCTION_ID_FIELD_NUMBER: _ClassVar[int]
    RIC_REQUESTOR_ID_FIELD_NUMBER: _ClassVar[int]
    RIC_INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    RIC_ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    KPM_VERSION_FIELD_NUMBER: _ClassVar[int]
    ACTION_DEFINITION_FIELD_NUMBER: _ClassVar[int]
    CELL_ID_FIELD_NUMBER: _ClassVar[int]
    MEAS_IDS_FIELD_NUMBER: _ClassVar[int]
    e2_node_id: str
    ran_function_id: int
    ric_requestor_id: int
    ric_instance_id: int
    ric_action_id: int
    kpm_version: int
    action_definition: bytes
    cell_id: str
    meas_ids: _containers.ScalarMap[int, str]
    def __init__(self, e2_node_id: _Optional[str] = ..., ran_function_id: _Optional[int] = ..., ric_requestor_id: _Optional[int] = ..., ric_instance_id: _Optional[int] = ..., ric_action_id: _Optional[int] = ..., kpm_version: _Optional[int] = ..., action_definition: _Optional[bytes] = ..., cell_id: _Optional[str] = ..., meas_ids: _Optional[_Mapping[int, str]] = ...) -> None: ...

class E2SubscriptionAck(_message.Message):
    __slots__ = ("cell_id", "kpm_version", "action_definition_format", "measurements")
    CELL_ID_FIELD_NUMBER: _ClassVar[int]
    KPM_VERSION_FIELD_NUMBER: _ClassVar[int]
    ACTION_DEFINITION_FORMAT_FIELD_NUMBER: _ClassVar[int]
    MEASUREMENTS_FIELD_NUMBER: _ClassVar[int]
    cell_id: str
    kpm_version: int
    action_definition_format: int
    measurements: int
    def __init__(self, cell_id: _Optional[str] = ..., kpm_version: _Optional[int] = ..., action_definition_format: _Optional[int] = ..., measurements: _Optional[int] = ...) -> None: ...

class RicControlRequest(_message.Message):
    __slots__ = ("action_id", "e2_node_id", "cell_id", "ran_function_id", "ric_requestor_id", "ric_instance_id", "control_header", "control_message", "ack_requested", "timestamp_ms", "rc_version", "ric_style_type", "control_action_id", "prb_quota")
    ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    E2_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    CELL_ID_FIELD_NUMBER: _ClassVar[int]
    RAN_FUNCTION_ID_FIELD_NUMBER: _ClassVar[int]
    RIC_REQUESTOR_ID_FIELD_NUMBER: _ClassVar[int]
    RIC_INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    CONTROL_HEADER_FIELD_NUMBER: _ClassVar[int]
    CONTROL_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ACK_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    RC_VERSION_FIELD_NUMBER: _ClassVar[int]
    RIC_STYLE_TYPE_FIELD_NUMBER: _ClassVar[int]
    CONTROL_ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    PRB_QUOTA_FIELD_NUMBER: _ClassVar[int]
    action_id: str
    e2_node_id: str
    cell_id: str
    ran_function_id: int
    ric_requestor_id: int
    ric_instance_id: int
    control_header: bytes
    control_message: bytes
    ack_requested: bool
    timestamp_ms: int
    rc_version: int
    ric_style_type: int
    control_action_id: int
    prb_quota: _forecast_pb2.SlicePrbQuota
    def __init__(self, action_id: _Optional[str] = ..., e2_node_id: _Optional[str] = ..., cell_id: _Optional[str] = ..., ran_function_id: _Optional[int] = ..., ric_requestor_id: _Optional[int] = ..., ric_instance_id: _Optional[int] = ..., control_header: _Optional[bytes] = ..., control_message: _Optional[bytes] = ..., ack_requested: _Optional[bool] = ..., timestamp_ms: _Optional[int] = ..., rc_version: _Optional[int] = ..., ric_style_type: _Optional[int] = ..., control_action_id: _Optional[int] = ..., prb_quota: _Optional[_Union[_forecast_pb2.SlicePrbQuota, _Mapping]] = ...) -> None: ...

class ControlStreamRequest(_message.Message):
    __slots__ = ("e2_node_ids",)
    E2_NODE_IDS_FIELD_NUMBER: _ClassVar[int]
    e2_node_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, e2_node_ids: _Optional[_Iterable[str]] = ...) -> None: ...
