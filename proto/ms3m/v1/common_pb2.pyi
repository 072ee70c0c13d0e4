from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class Objective(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OBJECTIVE_UNSPECIFIED: _ClassVar[Objective]
    OBJECTIVE_ACCURACY: _ClassVar[Objective]
    OBJECTIVE_LATENCY: _ClassVar[Objective]
    OBJECTIVE_ENERGY: _ClassVar[Objective]
    OBJECTIVE_BALANCED: _ClassVar[Objective]

class ActionMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTION_MODE_UNSPECIFIED: _ClassVar[ActionMode]
    ACTION_MODE_RECOMMEND: _ClassVar[ActionMode]
    ACTION_MODE_ENFORCE: _ClassVar[ActionMode]
OBJECTIVE_UNSPECIFIED: Objective
OBJECTIVE_ACCURACY: Objective
OBJECTIVE_LATENCY: Objective
OBJECTIVE_ENERGY: Objective
OBJECTIVE_BALANCED: Objective
ACTION_MODE_UNSPECIFIED: ActionMode
ACTION_MODE_RECOMMEND: ActionMode
ACTION_MODE_ENFORCE: ActionMode

class Snssai(_message.Message):
    __slots__ = ("sst", "sd")
    SST_FIELD_NUMBER: _ClassVar[int]
    SD_FIELD_NUMBER: _ClassVar[int]
    sst: int
    sd: int
    def __init__(self, sst: _Optional[int] = ..., sd: _Optional[int] = ...) -> None: ...
