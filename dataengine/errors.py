"""The project's documented error types.

Every failure the engine reports on purpose is one of these. Each carries a
machine-readable ``kind`` that stats count and that travels in
``Sample.error.kind``; decoders and de-identification raise nothing else on
bad input.
"""

from __future__ import annotations

__all__ = [
    "BurnedInAnnotationError",
    "ConfigError",
    "DataEngineError",
    "DataLossError",
    "DecodeError",
    "DeidError",
    "NotAnImageError",
    "NotFoundError",
    "PackError",
]


class DataEngineError(Exception):
    """Base class. ``kind`` names the failure class in stats and on the wire."""

    kind = "internal"

    def __init__(self, message: str, *, sample_id: int | None = None) -> None:
        super().__init__(message)
        self.sample_id = sample_id

    def __str__(self) -> str:
        base = super().__str__()
        return base if self.sample_id is None else f"sample {self.sample_id}: {base}"


class ConfigError(DataEngineError, ValueError):
    """A configuration or request field is invalid. ``field`` names it."""

    kind = "invalid_argument"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class NotFoundError(DataEngineError, LookupError):
    """A dataset, shard or sample id does not exist."""

    kind = "not_found"


class DecodeError(DataEngineError):
    """An input file or record payload cannot be decoded (corrupt, truncated,
    unsupported encoding)."""

    kind = "decode"


class NotAnImageError(DecodeError):
    """A DICOM object holds no image (structured report, presentation state,
    RT plan, DICOMDIR, waveform, ...): skipped, not corrupt. The message names
    its SOP class."""

    kind = "not_image"


class DeidError(DataEngineError):
    """De-identification refused an input (it cannot be made safe)."""

    kind = "deid"


class BurnedInAnnotationError(DeidError):
    """An image says it shows identifying text or features in its pixels
    (``BurnedInAnnotation`` or ``RecognizableVisualFeatures`` is ``YES``),
    which header de-identification cannot remove."""

    kind = "burned_in_annotation"


class DataLossError(DataEngineError):
    """Stored bytes fail their checksum: the record or shard is corrupt."""

    kind = "data_loss"


class PackError(DataEngineError):
    """Packing cannot proceed (bad destination, inconsistent existing output)."""

    kind = "pack"
