"""The job's pipeline parameters, validated.

A ``PipelineSpec`` arrives with every ``SampleRequest`` so jobs with different
shapes share one fleet. Its *prefix* fields (decode, resample) define what the
engine may cache; the remaining fields and the augmentations are applied on
every read.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from dataengine.configs import check, check_int, check_range
from dataengine.errors import ConfigError
from dataengine.formats.text import tokenizer_identity
from dataengine.v1 import dataengine_pb2 as pb

__all__ = [
    "IMAGE_DTYPES",
    "MAX_SAMPLE_BYTES",
    "PREFIX_CODE_VERSION",
    "WAVE_DTYPES",
    "Augmentations",
    "PipelineSpec",
    "prefix_key_of",
]

# Bump when decode/resample output changes for the same inputs (2: per-channel
# anti-aliased waveform resampling, colour/MONOCHROME1 DICOM handling; 3: the
# stored form is rounded to compact dtypes, ``pipeline/stored.py``).
PREFIX_CODE_VERSION = 3

# One sample, or its cached prefix, must fit comfortably in a gRPC message and
# in a worker's memory: 64 MiB is a 64-slice 512x512 float32 volume.
MAX_SAMPLE_BYTES = 64 << 20
_LEADS = 12

# Wire dtypes a job may ask for (``pipeline/wire.py`` converts to them):
# image ``uint8`` is the [0, 1] window times 255, rounded half to even.
IMAGE_DTYPES = ("float32", "bfloat16", "float16", "uint8")
WAVE_DTYPES = ("float32", "bfloat16", "float16")
_DTYPE_SIZE = {"float32": 4, "bfloat16": 2, "float16": 2, "uint8": 1}
_DTYPE_TO_PROTO = {
    "float32": pb.FLOAT32,
    "bfloat16": pb.BFLOAT16,
    "float16": pb.FLOAT16,
    "uint8": pb.UINT8,
}
_DTYPE_FROM_PROTO: dict[int, str] = {code: name for name, code in _DTYPE_TO_PROTO.items()}
_DTYPE_FROM_PROTO[pb.DTYPE_UNSPECIFIED] = "float32"


def _dtype_from_proto(code: int, name: str, allowed: tuple[str, ...]) -> str:
    """The dtype name of a wire ``DType`` code; ``ConfigError`` naming
    ``name`` for a code outside ``allowed``."""
    dtype = _DTYPE_FROM_PROTO.get(code)
    if dtype is None or dtype not in allowed:
        label = pb.DType.Name(code) if code in pb.DType.values() else str(code)
        raise ConfigError(name, f"must be one of {', '.join(allowed)}, got {label}")
    return dtype


def prefix_key_of(prefix_fields: dict[str, object]) -> str:
    """The prefix key of ``PipelineSpec.prefix_fields()`` output (16 hex
    digits of the SHA-256 of its canonical JSON); prepared views recompute
    it from the fields their manifest records."""
    text = json.dumps(prefix_fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _checked_keys(body: object, where: str, kind: type) -> dict[str, Any]:
    """``body`` as a dict whose keys are all fields of dataclass ``kind``."""
    if not isinstance(body, Mapping):
        raise ConfigError(where, f"must be a JSON object, got {type(body).__name__}")
    known = {f.name for f in fields(kind)}
    unknown = sorted(str(k) for k in body if k not in known)
    if unknown:
        names = ", ".join(f"{where}.{k}" for k in unknown)
        raise ConfigError(
            names,
            f"unknown key{'s' if len(unknown) > 1 else ''} (known: {', '.join(sorted(known))})",
        )
    return {str(k): v for k, v in body.items()}


@dataclass(frozen=True)
class Augmentations:
    """Random augmentations, all driven by ``(seed, epoch, sample_id)``."""

    flip: bool = False
    random_crop: bool = False
    hu_jitter: float = 0.0  # HU
    wave_random_window: bool = False
    wave_scale: float = 0.0  # fraction
    wave_noise: float = 0.0  # fraction of each lead's std

    def __post_init__(self) -> None:
        check_range(self.hu_jitter, "pipeline.augment.hu_jitter", 0, 1000, unit="HU")
        check_range(self.wave_scale, "pipeline.augment.wave_scale", 0, 1, hi_open=True)
        check_range(self.wave_noise, "pipeline.augment.wave_noise", 0, 1)

    @classmethod
    def all_on(cls) -> Augmentations:
        return cls(True, True, 40.0, True, 0.1, 0.02)


@dataclass(frozen=True)
class PipelineSpec:
    """Shapes of the tensors a job wants.

    Image: the series is resampled to ``image_slices`` x ``image_resize`` x
    ``image_resize`` voxels, then cropped to ``image_crop`` square and mapped
    from HU to [0, 1] through the window ``hu_center`` +- ``hu_width``/2.
    Waveform: every lead resampled to ``wave_rate_hz`` Hz, then a window of
    ``wave_samples`` samples. Text: ``text_tokens`` token ids per sample.
    ``image_voi_lut``: decode DICOM through its VOI LUT or first window to
    display values in [0, 1] instead of HU (``formats.dicom``); the window
    ``hu_center``/``hu_width`` then applies to those values (0.5 and 1.0
    pass them through).
    Wire dtypes: ``image_dtype`` (float32, bfloat16, float16, or uint8 of the
    [0, 1] window times 255) and ``wave_dtype`` (float32, bfloat16, float16)
    choose how ``image`` and ``waveform`` travel; the maths runs in float32
    and converts once at the end (``pipeline/wire.py``). They are not part of
    the prefix.
    """

    image_slices: int = 8
    image_resize: int = 72
    image_crop: int = 64
    hu_center: float = 40.0
    hu_width: float = 400.0
    wave_rate_hz: float = 100.0
    wave_samples: int = 800
    text_tokens: int = 128
    tokenizer: str = "byte"
    augment: Augmentations = field(default_factory=Augmentations)
    image_voi_lut: bool = False
    image_dtype: str = "float32"
    wave_dtype: str = "float32"

    def __post_init__(self) -> None:
        # Numbers in one type whatever the source (JSON ``500`` or proto
        # ``500.0``): equal specs must give equal prefix keys.
        for name in ("hu_center", "hu_width", "wave_rate_hz"):
            value = getattr(self, name)
            check_range(value, f"pipeline.{name}")
            object.__setattr__(self, name, float(value))
        for name, lo, hi in (
            ("image_slices", 1, 512),
            ("image_resize", 8, 4096),
            ("image_crop", 8, 4096),
            ("wave_samples", 16, 1 << 22),
            ("text_tokens", 4, 1 << 16),
        ):
            check_int(getattr(self, name), f"pipeline.{name}", lo, hi)
        check(
            self.image_crop <= self.image_resize,
            "pipeline.image_crop",
            f"({self.image_crop}) must not exceed pipeline.image_resize ({self.image_resize})",
        )
        check_range(self.hu_width, "pipeline.hu_width", 0, lo_open=True, finite=True, unit="HU")
        check_range(self.hu_center, "pipeline.hu_center", finite=True, unit="HU")
        check_range(self.wave_rate_hz, "pipeline.wave_rate_hz", 1, 100_000, unit="Hz")
        check(bool(self.tokenizer), "pipeline.tokenizer", "must not be empty")
        check(
            isinstance(self.image_voi_lut, bool),
            "pipeline.image_voi_lut",
            f"must be a bool, got {self.image_voi_lut!r}",
        )
        for name, allowed in (("image_dtype", IMAGE_DTYPES), ("wave_dtype", WAVE_DTYPES)):
            value = getattr(self, name)
            check(
                isinstance(value, str) and value in allowed,
                f"pipeline.{name}",
                f"must be one of {', '.join(allowed)}, got {value!r}",
            )
        largest = max(self.sample_bytes, self.prefix_bytes)
        check(
            largest <= MAX_SAMPLE_BYTES,
            "pipeline",
            f"one sample would need {largest} bytes, over the {MAX_SAMPLE_BYTES}-byte limit: "
            "reduce image_slices, image_resize, image_crop or wave_samples",
        )

    @property
    def sample_bytes(self) -> int:
        """Tensor bytes of one served sample (image, waveform, tokens, masks)
        in its wire dtypes."""
        image = _DTYPE_SIZE[self.image_dtype] * self.image_slices * self.image_crop**2
        wave = _DTYPE_SIZE[self.wave_dtype] * _LEADS * self.wave_samples
        return image + wave + 9 * self.text_tokens + 2

    @property
    def prefix_bytes(self) -> int:
        """Bytes of one cached prefix, without the variable-length waveform
        and report (a 10 s ECG at ``wave_rate_hz`` is assumed)."""
        wave = 4 * _LEADS * int(10 * self.wave_rate_hz)
        return 4 * self.image_slices * self.image_resize**2 + wave

    def prefix_fields(self) -> dict[str, object]:
        """The fields that define the deterministic prefix (decode, resample,
        rounding, tokenize), with the tokenizer as its content identity
        (``formats.text.tokenizer_identity``) rather than its path."""
        return {
            "prefix_code_version": PREFIX_CODE_VERSION,
            "image_slices": self.image_slices,
            "image_resize": self.image_resize,
            "wave_rate_hz": self.wave_rate_hz,
            "tokenizer": tokenizer_identity(self.tokenizer),
            "image_voi_lut": self.image_voi_lut,
        }

    def prefix_key(self) -> str:
        """Identity of the deterministic, cacheable prefix of this pipeline
        (16 hex digits of a SHA-256 over ``prefix_fields``). Two specs with
        equal keys share cached and prepared samples; ``PREFIX_CODE_VERSION``
        changes whenever the prefix code's output does, so caches that outlive
        a process (prepared views, the decode cache) never serve stale arrays."""
        return prefix_key_of(self.prefix_fields())

    # -- JSON form (``--pipeline JOB.json``) -------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: every field by name, ``augment`` a nested object."""
        return asdict(self)

    @classmethod
    def from_dict(cls, body: Mapping[str, Any], *, where: str = "pipeline") -> PipelineSpec:
        """Build from the JSON form (``to_dict``; the trainer config's
        ``pipeline`` section uses the same keys); absent fields take the
        defaults. Raises ``ConfigError`` naming unknown keys (``where``.KEY)
        or the first bad field."""
        kwargs = dict(_checked_keys(body, where, cls))
        if "augment" in kwargs:
            augment = _checked_keys(kwargs["augment"], f"{where}.augment", Augmentations)
            kwargs["augment"] = Augmentations(**augment)
        try:
            return cls(**kwargs)
        except TypeError as exc:  # a value of a type no field check anticipated
            raise ConfigError(where, str(exc)) from None

    @classmethod
    def from_json_file(cls, path: str | Path) -> PipelineSpec:
        """Read the JSON form from ``path``; ``ConfigError`` naming the file
        when it cannot be read or parsed, or names unknown keys."""
        try:
            body = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise ConfigError(str(path), f"not a readable pipeline JSON file: {exc}") from None
        return cls.from_dict(body, where=f"{path}: pipeline")

    # -- wire conversion -------------------------------------------------

    @classmethod
    def from_proto(cls, msg: pb.PipelineSpec) -> PipelineSpec:
        """Build from a request; zero/empty fields take the defaults.

        Raises ``ConfigError`` naming the first bad field.
        """
        default = cls()
        kwargs: dict[str, object] = {
            "image_dtype": _dtype_from_proto(msg.image_dtype, "pipeline.image_dtype", IMAGE_DTYPES),
            "wave_dtype": _dtype_from_proto(msg.wave_dtype, "pipeline.wave_dtype", WAVE_DTYPES),
        }
        for f in fields(cls):
            if f.name in kwargs or f.name == "augment":
                continue
            value = getattr(msg, f.name)
            kwargs[f.name] = value if value else getattr(default, f.name)
        a = msg.augment
        augment = Augmentations(
            flip=a.flip,
            random_crop=a.random_crop,
            hu_jitter=a.hu_jitter,
            wave_random_window=a.wave_random_window,
            wave_scale=a.wave_scale,
            wave_noise=a.wave_noise,
        )
        return cls(augment=augment, **kwargs)  # type: ignore[arg-type]

    def to_proto(self) -> pb.PipelineSpec:
        body = asdict(self)
        augment = body.pop("augment")
        body["image_dtype"] = _DTYPE_TO_PROTO[self.image_dtype]
        body["wave_dtype"] = _DTYPE_TO_PROTO[self.wave_dtype]
        return pb.PipelineSpec(augment=pb.Augmentations(**augment), **body)
