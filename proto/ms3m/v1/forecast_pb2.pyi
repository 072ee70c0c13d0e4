from ms3m.v1 import common_pb2 as _common_pb2
from ms3m.v1 import kpm_pb2 as _kpm_pb2
from ms3m.v1 import policy_pb2 as _policy_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ActionKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTION_KIND_UNSPECIFIED: _ClassVar[ActionKind]
    ACTION_KIND_SLICE_PRB_QUOTA: _ClassVar[ActionKind]
    ACTION_KIND_TRAFFIC_STEERING: _ClassVar[ActionKind]
    ACTION_KIND_CELL_SLEEP: _ClassVar[ActionKind]
    ACTION_KIND_ANOMALY_ALARM: _ClassVar[ActionKind]

class EventKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_KIND_UNSPECIFIED: _ClassVar[EventKind]
    EVENT_KIND_FORECAST: _ClassVar[EventKind]
    EVENT_KIND_ACTION: _ClassVar[EventKind]
ACTION_KIND_UNSPECIFIED: ActionKind
ACTION_KIND_SLICE_PRB_QUOTA: ActionKind
ACTION_KIND_TRAFFIC_STEERING: ActionKind
ACTION_KIND_CELL_SLEEP: ActionKind
ACTION_KIND_ANOMALY_ALARM: ActionKind
EVENT_KIND_UNSPECIFIED: EventKind
EVENT_KIND_FORECAST: EventKind
EVENT_KIND_ACTION: EventKind

class ExpertUse(_message.Message):
    __slots__ = ("name", "scale", "weight", "active")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    name: str
    scale: int
    weight: float
    active: bool
    def __init__(self, name: _Optional[str] = ..., scale: _Optional[int] = ..., weight: _Optional[float] = ..., active: _Optional[bool] = ...) -> None: ...

class Forecast(_message.Message):
    __slots__ = ("cell_id", "ue_id", "slice", "timestamp_ms", "sequence", "period_ms", "horizon_steps", "target_names", "point", "lower", "upper", "interval_coverage", "model", "experts")
    CELL_ID_FIELD_NUMBER: _ClassVar[int]
    UE_ID_FIELD_NUMBER: _ClassVar[int]
    SLICE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    PERIOD_MS_FIELD_NUMBER: _ClassVar[int]
    HORIZON_STEPS_FIELD_NUMBER: _ClassVar[int]
    TARGET_NAMES_FIELD_NUMBER: _ClassVar[int]
    POINT_FIELD_NUMBER: _ClassVar[int]
    LOWER_FIELD_NUMBER: _ClassVar[int]
    UPPER_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_COVERAGE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    EXPERTS_FIELD_NUMBER: _ClassVar[int]
    cell_id: str
    ue_id: str
    slice: _common_pb2.Snssai
    timestamp_ms: int
    sequence: int
    period_ms: int
    horizon_steps: int
    target_names: _containers.RepeatedScalarFieldContainer[str]
    point: _containers.RepeatedScalarFieldContainer[float]
    lower: _containers.RepeatedScalarFieldContainer[float]
    upper: _containers.RepeatedScalarFieldContainer[float]
    interval_coverage: float
    model: str
    experts: _containers.RepeatedCompositeFieldContainer[ExpertUse]
    def __init__(self, cell_id: _Optional[str] = ..., ue_id: _Optional[str] = ..., slice: _Optional[_Union[_common_pb2.Snssai, _Mapping]] = ..., timestamp_ms: _Optional[int] = ..., sequence: _Optional[int] = ..., period_ms: _Optional[int] = ..., horizon_steps: _Optional[int] = ..., target_names: _Optional[_Iterable[str]] = ..., point: _Optional[_Iterable[float]] = ..., lower: _Optional[_Iterable[float]] = ..., upper: _Optional[_Iterable[float]] = ..., interval_coverage: _Optional[float] = ..., model: _Optional[str] = ..., experts: _Optional[_Iterable[_Union[ExpertUse, _Mapping]]] = ...) -> None: ...

class SlicePrbQuota(_message.Message):
    __slots__ = ("slice", "min_prb_ratio", "max_prb_ratio", "dedicated_prb_ratio")
    SLICE_FIELD_NUMBER: _ClassVar[int]
    MIN_PRB_RATIO_FIELD_NUMBER: _ClassVar[int]
    MAX_PRB_RATIO_FIELD_NUMBER: _ClassVar[int]
    DEDICATED_PRB_RATIO_FIELD_NUMBER: _ClassVar[int]
    slice: _common_pb2.Snssai
    min_prb_ratio: int
    max_prb_ratio: int
    dedicated_prb_ratio: int
    def __init__(self, slice: _Optional[_Union[_common_pb2.Snssai, _Mapping]] = ..., min_prb_ratio: _Optional[int] = ..., max_prb_ratio: _Optional[int] = ..., dedicated_prb_ratio: _Optional[int] = ...) -> None: ...

class TrafficSteering(_message.Message):
    __slots__ = ("target_cell_id", "ue_id", "traffic_share")
    TARGET_CELL_ID_FIELD_NUMBER: _ClassVar[int]
    UE_ID_FIELD_NUMBER: _ClassVar[int]
    TRAFFIC_SHARE_FIELD_NUMBER: _ClassVar[int]
    target_cell_id: str
    ue_id: str
    traffic_share: float
    def __init__(self, target_cell_id: _Optional[str] = ..., ue_id: _Optional[str] = ..., traffic_share: _Optional[float] = ...) -> None: ...

class CellSleep(_message.Message):
    __slots__ = ("sleep", "duration_s")
    SLEEP_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    sleep: bool
    duration_s: int
    def __init__(self, sleep: _Optional[bool] = ..., duration_s: _Optional[int] = ...) -> None: ...

class AnomalyAlarm(_message.Message):
    __slots__ = ("kpi", "observed", "expected", "lower", "upper", "severity")
    KPI_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_FIELD_NUMBER: _ClassVar[int]
    LOWER_FIELD_NUMBER: _ClassVar[int]
    UPPER_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    kpi: str
    observed: float
    expected: float
    lower: float
    upper: float
    severity: int
    def __init__(self, kpi: _Optional[str] = ..., observed: _Optional[float] = ..., expected: _Optional[float] = ..., lower: _Optional[float] = ..., upper: _Optional[float] = ..., severity: _Optional[int] = ...) -> None: ...

class ControlAction(_message.Message):
    __slots__ = ("action_id", "cell_id", "timestamp_ms", "kind", "mode", "reason", "confidence", "forecast", "prb_quota", "steering", "sleep", "alarm")
    ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    CELL_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    FORECAST_FIELD_NUMBER: _ClassVar[int]
    PRB_QUOTA_FIELD_NUMBER: _ClassVar[int]
    STEERING_FIELD_NUMBER: _ClassVar[int]
    SLEEP_FIELD_NUMBER: _ClassVar[int]
    ALARM_FIELD_NUMBER: _ClassVar[int]
    action_id: str
    cell_id: str
    timestamp_ms: int
    kind: ActionKind
    mode: _common_pb2.ActionMode
    reason: str
    confidence: float
    forecast: Forecast
    prb_quota: SlicePrbQuota
    steering: TrafficSteering
    sleep: CellSleep
    alarm: AnomalyAlarm
    def __init__(self, action_id: _Optional[str] = ..., cell_id: _Optional[str] = ..., timestamp_ms: _Optional[int] = ..., kind: _Optional[_Union[ActionKind, str]] = ..., mode: _Optional[_Union[_common_pb2.ActionMode, str]] = ..., reason: _Optional[str] = ..., confidence: _Optional[float] = ..., forecast: _Optional[_Union[Forecast, _Mapping]] = ..., prb_quota: _Optional[_Union[SlicePrbQuota, _Mapping]] = ..., steering: _Optional[_Union[TrafficSteering, _Mapping]] = ..., sleep: _Optional[_Union[CellSleep, _Mapping]] = ..., alarm: _Optional[_Union[AnomalyAlarm, _Mapping]] = ...) -> None: ...

class CellSamples(_message.Message):
    __slots__ = ("cell_id", "granularity_period_ms", "meas_names", "reports")
    CELL_ID_FIELD_NUMBER: _ClassVar[int]
    GRANULARITY_PERIOD_MS_FIELD_NUMBER: _ClassVar[int]
    MEAS_NAMES_FIELD_NUMBER: _ClassVar[int]
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    cell_id: str
    granularity_period_ms: int
    meas_names: _containers.RepeatedScalarFieldContainer[str]
    reports: _containers.RepeatedCompositeFieldContainer[_kpm_pb2.KpiReport]
    def __init__(self, cell_id: _Optional[str] = ..., granularity_period_ms: _Optional[int] = ..., meas_names: _Optional[_Iterable[str]] = ..., reports: _Optional[_Iterable[_Union[_kpm_pb2.KpiReport, _Mapping]]] = ...) -> None: ...

class PredictRequest(_message.Message):
    __slots__ = ("cell_ids", "samples", "objective")
    CELL_IDS_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    cell_ids: _containers.RepeatedScalarFieldContainer[str]
    samples: _containers.RepeatedCompositeFieldContainer[CellSamples]
    objective: _policy_pb2.ObjectivePolicy
    def __init__(self, cell_ids: _Optional[_Iterable[str]] = ..., samples: _Optional[_Iterable[_Union[CellSamples, _Mapping]]] = ..., objective: _Optional[_Union[_policy_pb2.ObjectivePolicy, _Mapping]] = ...) -> None: ...

class PredictError(_message.Message):
    __slots__ = ("cell_id", "error")
    CELL_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    cell_id: str
    error: str
    def __init__(self, cell_id: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class PredictResponse(_message.Message):
    __slots__ = ("forecasts", "errors")
    FORECASTS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    forecasts: _containers.RepeatedCompositeFieldContainer[Forecast]
    errors: _containers.RepeatedCompositeFieldContainer[PredictError]
    def __init__(self, forecasts: _Optional[_Iterable[_Union[Forecast, _Mapping]]] = ..., errors: _Optional[_Iterable[_Union[PredictError, _Mapping]]] = ...) -> None: ...

class SubscribeRequest(_message.Message):
    __slots__ = ("cell_ids", "kinds", "action_kinds")
    CELL_IDS_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    ACTION_KINDS_FIELD_NUMBER: _ClassVar[int]
    cell_ids: _containers.RepeatedScalarFieldContainer[str]
    kinds: _containers.RepeatedScalarFieldContainer[EventKind]
    action_kinds: _containers.RepeatedScalarFieldContainer[ActionKind]
    def __init__(self, cell_ids: _Optional[_Iterable[str]] = ..., kinds: _Optional[_Iterable[_Union[EventKind, str]]] = ..., action_kinds: _Optional[_Iterable[_Union[ActionKind, str]]] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("forecast", "action")
    FORECAST_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    forecast: Forecast
    action: ControlAction
    def __init__(self, forecast: _Optional[_Union[Forecast, _Mapping]] = ..., action: _Optional[_Union[ControlAction, _Mapping]] = ...) -> None: ...
