from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EncodedFile(_message.Message):
    __slots__ = ("format", "name", "data", "companions")
    class CompanionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    COMPANIONS_FIELD_NUMBER: _ClassVar[int]
    format: str
    name: str
    data: bytes
    companions: _containers.ScalarMap[str, bytes]
    def __init__(self, format: _Optional[str] = ..., name: _Optional[str] = ..., data: _Optional[bytes] = ..., companions: _Optional[_Mapping[str, bytes]] = ...) -> None: ...

class StudyRecord(_message.Message):
    __slots__ = ("sample_id", "study_key", "images", "waveforms", "report", "meta")
    class MetaEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SAMPLE_ID_FIELD_NUMBER: _ClassVar[int]
    STUDY_KEY_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    WAVEFORMS_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    sample_id: int
    study_key: str
    images: _containers.RepeatedCompositeFieldContainer[EncodedFile]
    waveforms: _containers.RepeatedCompositeFieldContainer[EncodedFile]
    report: str
    meta: _containers.ScalarMap[str, str]
    def __init__(self, sample_id: _Optional[int] = ..., study_key: _Optional[str] = ..., images: _Optional[_Iterable[_Union[EncodedFile, _Mapping]]] = ..., waveforms: _Optional[_Iterable[_Union[EncodedFile, _Mapping]]] = ..., report: _Optional[str] = ..., meta: _Optional[_Mapping[str, str]] = ...) -> None: ...
