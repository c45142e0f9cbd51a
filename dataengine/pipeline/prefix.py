"""The deterministic, cacheable prefix of the pipeline: decode + resample.

``run_prefix`` turns a stored ``StudyRecord`` into arrays on the job's target
grid. Its output depends only on the record and ``PipelineSpec.prefix_key()``,
so the engine caches it and applies the random suffix (``augment.py``) on
every read.

Prefix arrays, in their stored (rounded) form, ``pipeline/stored.py``:
- ``hu``: int16 [image_slices, image_resize, image_resize], Hounsfield units
  (a study with no image gives -1024 HU everywhere, i.e. air); with
  ``spec.image_voi_lut`` float16 display values in [0, 1] from the DICOM VOI
  LUT / window instead (``formats.dicom``);
- ``wave``: float16 [12, T] at ``wave_rate_hz``, standard 12-lead order, mV,
  from the first EDF/BDF/WFDB waveform (each lead resampled from its own
  rate; channels that name no standard lead are left out);
- ``tokens``: int16 (int32 for vocabularies over 32767 ids) [n]: BOS, the
  report's tokens, EOS (not yet truncated);
- ``present``: uint8 [2]: 1 where the study had an image / a waveform with
  at least one standard ECG lead (an EEG-only waveform counts as absent).
"""

from __future__ import annotations

import time
from collections.abc import MutableMapping

import numpy as np
import torch
import torch.nn.functional as F

from dataengine.formats.dicom import decode_series
from dataengine.formats.dispatch import WAVEFORM_FORMATS, decode_waveform
from dataengine.formats.text import load_tokenizer
from dataengine.formats.waveform import STANDARD_12_LEAD, resample_rows, to_standard_12_lead
from dataengine.pipeline.spec import PipelineSpec
from dataengine.pipeline.stored import to_stored
from dataengine.v1 import record_pb2

__all__ = ["AIR_HU", "resample_volume", "resample_waveform", "run_prefix"]

AIR_HU = -1024.0
_DEFAULT_WAVE_SECONDS = 10.0


def resample_volume(hu: np.ndarray, slices: int, size: int) -> np.ndarray:
    """Trilinear resample of a [S, R, C] volume to [slices, size, size] (float32)."""
    vol = torch.from_numpy(np.ascontiguousarray(hu, dtype=np.float32))[None, None]
    out = F.interpolate(vol, size=(slices, size, size), mode="trilinear", align_corners=False)
    return out[0, 0].numpy()


def resample_waveform(signals: np.ndarray, rate_hz: float, target_hz: float) -> np.ndarray:
    """Resample [C, T] from ``rate_hz`` to ``target_hz``: band-limited
    (Kaiser-windowed sinc, anti-aliased when downsampling), each row on its
    own; see ``dataengine.formats.waveform``. Returns float32 [C, T']."""
    return resample_rows(signals, rate_hz, target_hz)


def run_prefix(
    record: record_pb2.StudyRecord,
    spec: PipelineSpec,
    timings: MutableMapping[str, float] | None = None,
) -> dict[str, np.ndarray]:
    """Decode, resample and round one study to its stored form.
    ``timings['decode']`` accumulates the seconds spent. Raises
    ``DecodeError`` when a stored payload does not decode."""
    t0 = time.perf_counter()
    present = np.zeros(2, dtype=np.uint8)

    dicoms = [f.data for f in record.images if f.format == "dicom"]
    if dicoms:
        volume = decode_series(dicoms, voi_lut=spec.image_voi_lut)
        hu = resample_volume(volume.hu, spec.image_slices, spec.image_resize)
        present[0] = 1
    else:
        hu = np.full((spec.image_slices, spec.image_resize, spec.image_resize), AIR_HU, np.float32)

    waves = [f for f in record.waveforms if f.format in WAVEFORM_FORMATS]
    found: tuple[bool, ...] = ()
    if waves:
        # The first waveform; each lead resampled once, from its own rate.
        f = waves[0]
        waveform = decode_waveform(f.format, f.data, f.companions, label=f.name)
        wave, found = to_standard_12_lead(waveform, spec.wave_rate_hz)
    if any(found):
        present[1] = 1
    else:  # no waveform, or none of its channels is a standard ECG lead
        samples = round(_DEFAULT_WAVE_SECONDS * spec.wave_rate_hz)
        wave = np.zeros((len(STANDARD_12_LEAD), samples), np.float32)

    tokenizer = load_tokenizer(spec.tokenizer)
    ids = [tokenizer.bos_id, *tokenizer.encode(record.report), tokenizer.eos_id]
    tokens = np.asarray(ids, dtype=np.int32)

    prefix = {"hu": hu, "wave": wave, "tokens": tokens, "present": present}
    stored = to_stored(prefix, voi_lut=spec.image_voi_lut, vocab_size=tokenizer.vocab_size)
    _add(timings, "decode", time.perf_counter() - t0)
    return stored


def _add(timings: MutableMapping[str, float] | None, stage: str, seconds: float) -> None:
    if timings is not None:
        timings[stage] = timings.get(stage, 0.0) + seconds
