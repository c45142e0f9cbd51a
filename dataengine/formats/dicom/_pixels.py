"""DICOM pixel data: transfer syntax and decoder choice, length check, and
stored values to one float32 channel (modality LUT / rescale, MONOCHROME1,
colour to luminance, VOI LUT / window); rules: ``README.md``."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import (
    apply_color_lut,
    apply_modality_lut,
    apply_voi,
    convert_color_space,
    get_decoder,
)
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from dataengine.errors import DecodeError
from dataengine.formats.dicom._geometry import _first, _in_group, _lookup

_LOG = logging.getLogger(__name__)

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_BT601 = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT", "YBR_PARTIAL_420")
_GREY = ("MONOCHROME1", "MONOCHROME2")
# Transfer syntaxes newer than pydicom's dictionary, named in errors.
_SYNTAX_NAMES = {
    "1.2.840.10008.1.2.4.110": "JPEG XL Lossless",
    "1.2.840.10008.1.2.4.111": "JPEG XL JPEG Recompression",
    "1.2.840.10008.1.2.4.112": "JPEG XL",
}


def _transfer_syntax(ds: Dataset, label: str) -> UID:
    """The file's transfer syntax; for a File Meta without one, the encoding
    the dataset was read in (native pixel data only)."""
    meta = getattr(ds, "file_meta", None)
    uid = meta.get("TransferSyntaxUID") if meta is not None else None
    if uid:
        return UID(str(uid))
    implicit, little = getattr(ds, "original_encoding", (None, None))
    pixels = next(ds[k] for k in _PIXEL_KEYWORDS if k in ds)
    if little is None or pixels.is_undefined_length:
        raise DecodeError(f"{label}: no TransferSyntaxUID in the File Meta")
    uid = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    uid = uid if little else ExplicitVRBigEndian
    if meta is None:
        raise DecodeError(f"{label}: no File Meta")
    meta.TransferSyntaxUID = uid
    return uid


def _syntax_name(uid: UID) -> str:
    name = _SYNTAX_NAMES.get(str(uid)) or (str(uid.name) if uid.name != str(uid) else "")
    return f"{name} ({uid})" if name else f"unknown transfer syntax {uid}"


def _check_length(
    ds: Dataset, label: str, n_frames: int, rows: int, cols: int, syntax: UID
) -> None:
    """Native pixel data must hold exactly one value per sample; trailing
    padding shorter than a frame is cut off (``README.md``)."""
    keyword = next(k for k in _PIXEL_KEYWORDS if k in ds)
    actual = len(ds[keyword].value)
    bits = ds.get("BitsAllocated")
    if bits not in (1, 8, 16, 32, 64):
        raise DecodeError(f"{label}: invalid BitsAllocated {bits!r}")
    samples = int(ds.get("SamplesPerPixel", 1))
    if ds.get("PhotometricInterpretation") == "YBR_FULL_422":
        samples = 2  # Cb and Cr shared by two pixels
    values = rows * cols * samples * n_frames
    expected = (values * bits + 7) // 8
    if actual == expected:
        return
    frame = (rows * cols * samples * bits + 7) // 8
    detail = (
        f"pixel data is {actual} bytes, expected {expected} ({n_frames} frame(s) of "
        f"{rows}x{cols}, {samples} sample(s) of {bits} bits; {_syntax_name(syntax)})"
    )
    if actual < expected:
        raise DecodeError(f"{label}: {detail}: truncated or wrong header")
    if actual - expected > 1 and actual - expected >= frame:
        raise DecodeError(f"{label}: {detail}: a frame or more in excess (NumberOfFrames wrong?)")
    _LOG.debug("%s: %s: ignoring %d padding byte(s)", label, detail, actual - expected)
    ds[keyword].value = ds[keyword].value[:expected]


def _decoder(ds: Dataset, label: str) -> tuple[UID, Any]:
    """The file's transfer syntax and pydicom's decoder for it;
    ``DecodeError`` naming the syntax when there is none."""
    syntax = _transfer_syntax(ds, label)
    try:
        decoder = get_decoder(syntax)
    except Exception as exc:  # NotImplementedError for a syntax with no decoder
        raise DecodeError(f"{label}: {_syntax_name(syntax)} is not supported") from exc
    if not decoder.is_available:
        raise DecodeError(f"{label}: no decoder plugin installed for {_syntax_name(syntax)}")
    return syntax, decoder


def _decode_pixels(
    ds: Dataset, label: str, n_frames: int, rows: int, cols: int, voi_lut: bool
) -> tuple[np.ndarray, bool]:
    """float32 ``[frames, rows, cols]`` (``README.md``), and whether a VOI
    LUT or window was applied."""
    syntax, decoder = _decoder(ds, label)
    if not syntax.is_encapsulated:
        _check_length(ds, label, n_frames, rows, cols, syntax)
    try:
        pixels, meta = decoder.as_array(ds)  # YBR becomes RGB (pydicom's as_rgb default)
        values, windowed = _to_values(pixels, str(meta["photometric_interpretation"]), ds, voi_lut)
    except DecodeError:
        raise
    except BaseException as exc:  # pydicom's decoders raise many types
        # Plugins written in Rust (pylibjpeg-rle) panic with a BaseException.
        if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit):
            raise
        raise DecodeError(
            f"{label}: cannot decode pixel data ({_syntax_name(syntax)}): "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if values.shape != (n_frames, rows, cols) and values.shape != (rows, cols):
        raise DecodeError(
            f"{label}: pixel data decodes to shape {values.shape}, header says "
            f"{n_frames} frame(s) of {rows}x{cols}"
        )
    return values.reshape(n_frames, rows, cols), windowed


def _to_values(
    pixels: np.ndarray, photometric: str, ds: Dataset, voi_lut: bool
) -> tuple[np.ndarray, bool]:
    declared = str(ds.PhotometricInterpretation).strip().upper()
    if declared == "PALETTE COLOR":
        pixels, photometric = apply_color_lut(pixels, ds), "RGB"
    if declared in _COLOUR or declared == "PALETTE COLOR":
        if photometric != "RGB":
            pixels = convert_color_space(pixels, photometric, "RGB")
        return pixels.astype(np.float32) @ _BT601, False
    values = _modality(pixels, ds)
    windowed = False
    if voi_lut:
        voi = _voi(values, ds)
        if voi is not None:
            values, windowed = voi, True
    if declared == "MONOCHROME1":
        if windowed:
            values = np.subtract(np.float32(1.0), values, out=values)
        else:
            values = np.subtract(_mono1_total(values, ds), values, out=values)
    return values, windowed


def _rescale(ds: Dataset, n_frames: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(slope, intercept), float32, shape ``[frames, 1, 1]`` or ``[]``: per
    frame from the per-frame functional groups, else one from the top level
    or shared groups; None when the file has none."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if "RescaleSlope" not in ds and per_frame is not None and len(per_frame) == n_frames > 1:
        pairs = [
            (
                _first(_in_group(per_frame, "RescaleSlope", f)),
                _first(_in_group(per_frame, "RescaleIntercept", f)),
            )
            for f in range(n_frames)
        ]
        if all(s is not None and b is not None for s, b in pairs):
            arr = np.array(pairs, dtype=np.float32).reshape(n_frames, 2, 1, 1)
            return arr[:, 0], arr[:, 1]
    slope, intercept = _first(_lookup(ds, "RescaleSlope")), _first(_lookup(ds, "RescaleIntercept"))
    if slope is None and intercept is None:
        return None
    return (
        np.array(1.0 if slope is None else slope, dtype=np.float32),
        np.array(0.0 if intercept is None else intercept, dtype=np.float32),
    )


def _modality(pixels: np.ndarray, ds: Dataset) -> np.ndarray:
    """Stored values to modality values (float32, same shape)."""
    if ds.get("ModalityLUTSequence"):
        return np.asarray(apply_modality_lut(pixels, ds), dtype=np.float32)
    n_frames = pixels.shape[0] if pixels.ndim == 3 else 1
    rescale = _rescale(ds, n_frames)
    if rescale is None:
        return pixels.astype(np.float32)
    slope, intercept = rescale
    if pixels.ndim == 2:
        slope, intercept = slope.reshape(-1)[0], intercept.reshape(-1)[0]
    out = np.multiply(pixels, slope, dtype=np.float32)
    out += intercept
    return out


def _mono1_total(values: np.ndarray, ds: Dataset) -> np.float32:
    """``lo + hi``: the modality transform of the representable stored range
    (float pixel data: the actual range)."""
    bits = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 0)
    if "PixelData" not in ds or not 0 < bits <= 32:
        return np.float32(values.min() + values.max())
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if ds.get("ModalityLUTSequence"):
        if bits > 16:  # a LUT cannot cover that range: use the actual one
            return np.float32(values.min() + values.max())
        mapped = apply_modality_lut(np.arange(lo, hi + 1, dtype=np.int64), ds)
        return np.float32(float(mapped.min()) + float(mapped.max()))
    rescale = _rescale(ds, 1)
    slope, intercept = (1.0, 0.0) if rescale is None else map(float, rescale)
    return np.float32(slope * (lo + hi) + 2 * intercept)


def _voi(values: np.ndarray, ds: Dataset) -> np.ndarray | None:
    """Modality values to display values in [0, 1] through the VOI LUT or
    the first window; None when the file has neither."""
    if ds.get("VOILUTSequence"):
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        mapped = apply_voi(np.rint(values).astype(np.int64), ds, index=0)
        return (mapped.astype(np.float32) / np.float32((1 << bits) - 1)).astype(np.float32)
    centre = _first(_lookup(ds, "WindowCenter"))
    width = _first(_lookup(ds, "WindowWidth"))
    if centre is None or width is None or width <= 0:
        return None
    function = str(_lookup(ds, "VOILUTFunction") or "LINEAR").strip().upper()
    return _window(values, centre, width, function)


def _window(
    values: np.ndarray, centre: float, width: float, function: str = "LINEAR"
) -> np.ndarray:
    """PS3.3 C.11.2.1.2 windowing onto [0, 1] (float32): LINEAR (the
    standard's ``c - 0.5``, ``w - 1`` form; a step when ``width <= 1``),
    LINEAR_EXACT, or SIGMOID."""
    x = values.astype(np.float32, copy=False)
    if function == "SIGMOID":
        return (1.0 / (1.0 + np.exp(-4.0 * (x - centre) / width))).astype(np.float32)
    if function == "LINEAR_EXACT":
        out = (x - np.float32(centre)) / np.float32(width) + np.float32(0.5)
    elif width <= 1:
        out = (x > centre - 0.5).astype(np.float32)
    else:
        out = (x - np.float32(centre - 0.5)) / np.float32(width - 1) + np.float32(0.5)
    return np.clip(out, 0.0, 1.0, out=out)


def _scale_to_unit(hu: np.ndarray, rows: np.ndarray) -> None:
    """Map slices ``hu[rows]`` linearly from their joint min..max to [0, 1]
    in place (all zero when constant)."""
    part = hu[rows]
    lo, hi = float(part.min()), float(part.max())
    hu[rows] = (part - lo) / (hi - lo) if hi > lo else 0.0
