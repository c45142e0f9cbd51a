from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DTYPE_UNSPECIFIED: _ClassVar[DType]
    FLOAT32: _ClassVar[DType]
    FLOAT16: _ClassVar[DType]
    BFLOAT16: _ClassVar[DType]
    INT64: _ClassVar[DType]
    INT32: _ClassVar[DType]
    INT16: _ClassVar[DType]
    UINT8: _ClassVar[DType]
    BOOL: _ClassVar[DType]
    FLOAT64: _ClassVar[DType]
DTYPE_UNSPECIFIED: DType
FLOAT32: DType
FLOAT16: DType
BFLOAT16: DType
INT64: DType
INT32: DType
INT16: DType
UINT8: DType
BOOL: DType
FLOAT64: DType

class PipelineSpec(_message.Message):
    __slots__ = ("image_slices", "image_resize", "image_crop", "hu_center", "hu_width", "wave_rate_hz", "wave_samples", "text_tokens", "tokenizer", "augment", "image_voi_lut", "image_dtype", "wave_dtype")
    IMAGE_SLICES_FIELD_NUMBER: _ClassVar[int]
    IMAGE_RESIZE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_CROP_FIELD_NUMBER: _ClassVar[int]
    HU_CENTER_FIELD_NUMBER: _ClassVar[int]
    HU_WIDTH_FIELD_NUMBER: _ClassVar[int]
    WAVE_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    WAVE_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    TEXT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TOKENIZER_FIELD_NUMBER: _ClassVar[int]
    AUGMENT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_VOI_LUT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_DTYPE_FIELD_NUMBER: _ClassVar[int]
    WAVE_DTYPE_FIELD_NUMBER: _ClassVar[int]
    image_slices: int
    image_resize: int
    image_crop: int
    hu_center: float
    hu_width: float
    wave_rate_hz: float
    wave_samples: int
    text_tokens: int
    tokenizer: str
    augment: Augmentations
    image_voi_lut: bool
    image_dtype: DType
    wave_dtype: DType
    def __init__(self, image_slices: _Optional[int] = ..., image_resize: _Optional[int] = ..., image_crop: _Optional[int] = ..., hu_center: _Optional[float] = ..., hu_width: _Optional[float] = ..., wave_rate_hz: _Optional[float] = ..., wave_samples: _Optional[int] = ..., text_tokens: _Optional[int] = ..., tokenizer: _Optional[str] = ..., augment: _Optional[_Union[Augmentations, _Mapping]] = ..., image_voi_lut: _Optional[bool] = ..., image_dtype: _Optional[_Union[DType, str]] = ..., wave_dtype: _Optional[_Union[DType, str]] = ...) -> None: ...

class Augmentations(_message.Message):
    __slots__ = ("flip", "random_crop", "hu_jitter", "wave_random_window", "wave_scale", "wave_noise")
    FLIP_FIELD_NUMBER: _ClassVar[int]
    RANDOM_CROP_FIELD_NUMBER: _ClassVar[int]
    HU_JITTER_FIELD_NUMBER: _ClassVar[int]
    WAVE_RANDOM_WINDOW_FIELD_NUMBER: _ClassVar[int]
    WAVE_SCALE_FIELD_NUMBER: _ClassVar[int]
    WAVE_NOISE_FIELD_NUMBER: _ClassVar[int]
    flip: bool
    random_crop: bool
    hu_jitter: float
    wave_random_window: bool
    wave_scale: float
    wave_noise: float
    def __init__(self, flip: _Optional[bool] = ..., random_crop: _Optional[bool] = ..., hu_jitter: _Optional[float] = ..., wave_random_window: _Optional[bool] = ..., wave_scale: _Optional[float] = ..., wave_noise: _Optional[float] = ...) -> None: ...

class SampleRequest(_message.Message):
    __slots__ = ("dataset", "pipeline", "seed", "epoch", "sample_ids", "shared")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_IDS_FIELD_NUMBER: _ClassVar[int]
    SHARED_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    pipeline: PipelineSpec
    seed: int
    epoch: int
    sample_ids: _containers.RepeatedScalarFieldContainer[int]
    shared: SharedSlots
    def __init__(self, dataset: _Optional[str] = ..., pipeline: _Optional[_Union[PipelineSpec, _Mapping]] = ..., seed: _Optional[int] = ..., epoch: _Optional[int] = ..., sample_ids: _Optional[_Iterable[int]] = ..., shared: _Optional[_Union[SharedSlots, _Mapping]] = ...) -> None: ...

class SharedSlots(_message.Message):
    __slots__ = ("segment", "ticket", "slots", "channel")
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    TICKET_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    segment: str
    ticket: int
    slots: _containers.RepeatedScalarFieldContainer[int]
    channel: bytes
    def __init__(self, segment: _Optional[str] = ..., ticket: _Optional[int] = ..., slots: _Optional[_Iterable[int]] = ..., channel: _Optional[bytes] = ...) -> None: ...

class SharedRef(_message.Message):
    __slots__ = ("slot", "size")
    SLOT_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    slot: int
    size: int
    def __init__(self, slot: _Optional[int] = ..., size: _Optional[int] = ...) -> None: ...

class AttachRequest(_message.Message):
    __slots__ = ("segment", "nonce")
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    segment: str
    nonce: bytes
    def __init__(self, segment: _Optional[str] = ..., nonce: _Optional[bytes] = ...) -> None: ...

class DataChannelRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DataChannelReply(_message.Message):
    __slots__ = ("port", "token")
    PORT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    port: int
    token: bytes
    def __init__(self, port: _Optional[int] = ..., token: _Optional[bytes] = ...) -> None: ...

class AttachReply(_message.Message):
    __slots__ = ("engine_pid", "engine_id")
    ENGINE_PID_FIELD_NUMBER: _ClassVar[int]
    ENGINE_ID_FIELD_NUMBER: _ClassVar[int]
    engine_pid: int
    engine_id: str
    def __init__(self, engine_pid: _Optional[int] = ..., engine_id: _Optional[str] = ...) -> None: ...

class Tensor(_message.Message):
    __slots__ = ("name", "dtype", "shape", "data")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    dtype: DType
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    def __init__(self, name: _Optional[str] = ..., dtype: _Optional[_Union[DType, str]] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ...) -> None: ...

class SampleError(_message.Message):
    __slots__ = ("kind", "message")
    KIND_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    kind: str
    message: str
    def __init__(self, kind: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class Sample(_message.Message):
    __slots__ = ("sample_id", "tensors", "error", "shared")
    SAMPLE_ID_FIELD_NUMBER: _ClassVar[int]
    TENSORS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    SHARED_FIELD_NUMBER: _ClassVar[int]
    sample_id: int
    tensors: _containers.RepeatedCompositeFieldContainer[Tensor]
    error: SampleError
    shared: SharedRef
    def __init__(self, sample_id: _Optional[int] = ..., tensors: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ..., error: _Optional[_Union[SampleError, _Mapping]] = ..., shared: _Optional[_Union[SharedRef, _Mapping]] = ...) -> None: ...

class GetStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StageStats(_message.Message):
    __slots__ = ("stage", "count", "total_seconds", "mean_ms")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MEAN_MS_FIELD_NUMBER: _ClassVar[int]
    stage: str
    count: int
    total_seconds: float
    mean_ms: float
    def __init__(self, stage: _Optional[str] = ..., count: _Optional[int] = ..., total_seconds: _Optional[float] = ..., mean_ms: _Optional[float] = ...) -> None: ...

class CacheStats(_message.Message):
    __slots__ = ("tier", "hits", "misses", "bytes_held", "budget_bytes", "entries", "evictions", "bytes_read", "fills", "fill_seconds_total", "fill_mean_ms", "prefetch_fills", "prefetch_lead_mean_ms", "waits", "wait_seconds_total")
    TIER_FIELD_NUMBER: _ClassVar[int]
    HITS_FIELD_NUMBER: _ClassVar[int]
    MISSES_FIELD_NUMBER: _ClassVar[int]
    BYTES_HELD_FIELD_NUMBER: _ClassVar[int]
    BUDGET_BYTES_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    EVICTIONS_FIELD_NUMBER: _ClassVar[int]
    BYTES_READ_FIELD_NUMBER: _ClassVar[int]
    FILLS_FIELD_NUMBER: _ClassVar[int]
    FILL_SECONDS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    FILL_MEAN_MS_FIELD_NUMBER: _ClassVar[int]
    PREFETCH_FILLS_FIELD_NUMBER: _ClassVar[int]
    PREFETCH_LEAD_MEAN_MS_FIELD_NUMBER: _ClassVar[int]
    WAITS_FIELD_NUMBER: _ClassVar[int]
    WAIT_SECONDS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    tier: str
    hits: int
    misses: int
    bytes_held: int
    budget_bytes: int
    entries: int
    evictions: int
    bytes_read: int
    fills: int
    fill_seconds_total: float
    fill_mean_ms: float
    prefetch_fills: int
    prefetch_lead_mean_ms: float
    waits: int
    wait_seconds_total: float
    def __init__(self, tier: _Optional[str] = ..., hits: _Optional[int] = ..., misses: _Optional[int] = ..., bytes_held: _Optional[int] = ..., budget_bytes: _Optional[int] = ..., entries: _Optional[int] = ..., evictions: _Optional[int] = ..., bytes_read: _Optional[int] = ..., fills: _Optional[int] = ..., fill_seconds_total: _Optional[float] = ..., fill_mean_ms: _Optional[float] = ..., prefetch_fills: _Optional[int] = ..., prefetch_lead_mean_ms: _Optional[float] = ..., waits: _Optional[int] = ..., wait_seconds_total: _Optional[float] = ...) -> None: ...

class EngineStats(_message.Message):
    __slots__ = ("engine_id", "version", "uptime_seconds", "samples_served", "bytes_served", "samples_per_second", "stages", "queue_depths", "caches", "errors", "workers", "bottleneck_stage", "streams_total", "datasets", "sources", "transports", "shared_segments", "data_channels", "insecure", "capacity")
    class QueueDepthsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class ErrorsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class TransportsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ENGINE_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    UPTIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_SERVED_FIELD_NUMBER: _ClassVar[int]
    BYTES_SERVED_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    QUEUE_DEPTHS_FIELD_NUMBER: _ClassVar[int]
    CACHES_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    BOTTLENECK_STAGE_FIELD_NUMBER: _ClassVar[int]
    STREAMS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    TRANSPORTS_FIELD_NUMBER: _ClassVar[int]
    SHARED_SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    DATA_CHANNELS_FIELD_NUMBER: _ClassVar[int]
    INSECURE_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    engine_id: str
    version: str
    uptime_seconds: float
    samples_served: int
    bytes_served: int
    samples_per_second: float
    stages: _containers.RepeatedCompositeFieldContainer[StageStats]
    queue_depths: _containers.ScalarMap[str, int]
    caches: _containers.RepeatedCompositeFieldContainer[CacheStats]
    errors: _containers.ScalarMap[str, int]
    workers: int
    bottleneck_stage: str
    streams_total: int
    datasets: _containers.RepeatedScalarFieldContainer[str]
    sources: _containers.RepeatedCompositeFieldContainer[SourceStats]
    transports: _containers.ScalarMap[str, int]
    shared_segments: int
    data_channels: int
    insecure: bool
    capacity: CapacityStats
    def __init__(self, engine_id: _Optional[str] = ..., version: _Optional[str] = ..., uptime_seconds: _Optional[float] = ..., samples_served: _Optional[int] = ..., bytes_served: _Optional[int] = ..., samples_per_second: _Optional[float] = ..., stages: _Optional[_Iterable[_Union[StageStats, _Mapping]]] = ..., queue_depths: _Optional[_Mapping[str, int]] = ..., caches: _Optional[_Iterable[_Union[CacheStats, _Mapping]]] = ..., errors: _Optional[_Mapping[str, int]] = ..., workers: _Optional[int] = ..., bottleneck_stage: _Optional[str] = ..., streams_total: _Optional[int] = ..., datasets: _Optional[_Iterable[str]] = ..., sources: _Optional[_Iterable[_Union[SourceStats, _Mapping]]] = ..., transports: _Optional[_Mapping[str, int]] = ..., shared_segments: _Optional[int] = ..., data_channels: _Optional[int] = ..., insecure: _Optional[bool] = ..., capacity: _Optional[_Union[CapacityStats, _Mapping]] = ...) -> None: ...

class CapacityStats(_message.Message):
    __slots__ = ("window_seconds", "workers", "cores", "worker_busy_fraction", "samples_per_second", "capacity_samples_per_second", "worker_seconds_per_sample", "cpu_seconds_per_sample", "tasks", "queue_wait_mean_seconds", "queue_wait_p95_seconds", "sources", "clients")
    WINDOW_SECONDS_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    CORES_FIELD_NUMBER: _ClassVar[int]
    WORKER_BUSY_FRACTION_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_SAMPLES_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    WORKER_SECONDS_PER_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    CPU_SECONDS_PER_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_WAIT_MEAN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_WAIT_P95_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    CLIENTS_FIELD_NUMBER: _ClassVar[int]
    window_seconds: float
    workers: int
    cores: float
    worker_busy_fraction: float
    samples_per_second: float
    capacity_samples_per_second: float
    worker_seconds_per_sample: float
    cpu_seconds_per_sample: float
    tasks: int
    queue_wait_mean_seconds: float
    queue_wait_p95_seconds: float
    sources: _containers.RepeatedCompositeFieldContainer[SourceCost]
    clients: _containers.RepeatedCompositeFieldContainer[ClientDemand]
    def __init__(self, window_seconds: _Optional[float] = ..., workers: _Optional[int] = ..., cores: _Optional[float] = ..., worker_busy_fraction: _Optional[float] = ..., samples_per_second: _Optional[float] = ..., capacity_samples_per_second: _Optional[float] = ..., worker_seconds_per_sample: _Optional[float] = ..., cpu_seconds_per_sample: _Optional[float] = ..., tasks: _Optional[int] = ..., queue_wait_mean_seconds: _Optional[float] = ..., queue_wait_p95_seconds: _Optional[float] = ..., sources: _Optional[_Iterable[_Union[SourceCost, _Mapping]]] = ..., clients: _Optional[_Iterable[_Union[ClientDemand, _Mapping]]] = ...) -> None: ...

class SourceCost(_message.Message):
    __slots__ = ("source", "samples", "cpu_seconds")
    class CpuSecondsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    CPU_SECONDS_FIELD_NUMBER: _ClassVar[int]
    source: str
    samples: int
    cpu_seconds: _containers.ScalarMap[str, float]
    def __init__(self, source: _Optional[str] = ..., samples: _Optional[int] = ..., cpu_seconds: _Optional[_Mapping[str, float]] = ...) -> None: ...

class ClientDemand(_message.Message):
    __slots__ = ("client", "peer", "samples_per_second", "data_wait_fraction", "age_seconds")
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    PEER_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    DATA_WAIT_FRACTION_FIELD_NUMBER: _ClassVar[int]
    AGE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    client: str
    peer: str
    samples_per_second: float
    data_wait_fraction: float
    age_seconds: float
    def __init__(self, client: _Optional[str] = ..., peer: _Optional[str] = ..., samples_per_second: _Optional[float] = ..., data_wait_fraction: _Optional[float] = ..., age_seconds: _Optional[float] = ...) -> None: ...

class SourceStats(_message.Message):
    __slots__ = ("dataset", "prepared", "decode_cache", "decoded", "ram")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    PREPARED_FIELD_NUMBER: _ClassVar[int]
    DECODE_CACHE_FIELD_NUMBER: _ClassVar[int]
    DECODED_FIELD_NUMBER: _ClassVar[int]
    RAM_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    prepared: int
    decode_cache: int
    decoded: int
    ram: int
    def __init__(self, dataset: _Optional[str] = ..., prepared: _Optional[int] = ..., decode_cache: _Optional[int] = ..., decoded: _Optional[int] = ..., ram: _Optional[int] = ...) -> None: ...

class DescribeDatasetRequest(_message.Message):
    __slots__ = ("dataset",)
    DATASET_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    def __init__(self, dataset: _Optional[str] = ...) -> None: ...

class ShardInfo(_message.Message):
    __slots__ = ("shard_id", "file", "first_sample_id", "num_samples", "size_bytes", "sha256")
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    FILE_FIELD_NUMBER: _ClassVar[int]
    FIRST_SAMPLE_ID_FIELD_NUMBER: _ClassVar[int]
    NUM_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    shard_id: int
    file: str
    first_sample_id: int
    num_samples: int
    size_bytes: int
    sha256: str
    def __init__(self, shard_id: _Optional[int] = ..., file: _Optional[str] = ..., first_sample_id: _Optional[int] = ..., num_samples: _Optional[int] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class DatasetInfo(_message.Message):
    __slots__ = ("name", "num_samples", "schema_version", "shards", "created_utc", "manifest_json", "fingerprint")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NUM_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    CREATED_UTC_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_JSON_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    name: str
    num_samples: int
    schema_version: int
    shards: _containers.RepeatedCompositeFieldContainer[ShardInfo]
    created_utc: str
    manifest_json: str
    fingerprint: str
    def __init__(self, name: _Optional[str] = ..., num_samples: _Optional[int] = ..., schema_version: _Optional[int] = ..., shards: _Optional[_Iterable[_Union[ShardInfo, _Mapping]]] = ..., created_utc: _Optional[str] = ..., manifest_json: _Optional[str] = ..., fingerprint: _Optional[str] = ...) -> None: ...
