"""What an engine streams equals the pipeline applied to the raw hospital
files: packing, de-identification, shards, worker decode, the RAM cache and
the wire change no pixel, sample or token that matters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dataengine.client import EngineClient
from dataengine.deid.keys import DeidKey, pseudonym
from dataengine.formats.dicom import decode_series
from dataengine.formats.edf import read_edf_file, to_standard_12_lead
from dataengine.formats.text import load_tokenizer
from dataengine.pipeline.augment import augment
from dataengine.pipeline.prefix import resample_volume, resample_waveform
from dataengine.pipeline.spec import Augmentations, PipelineSpec
from dataengine.pipeline.stored import to_stored
from dataengine.shards import Dataset

pytestmark = pytest.mark.slow

SPEC = PipelineSpec(augment=Augmentations(flip=True, random_crop=True, hu_jitter=30.0))


def _expected_from_raw(folder: Path, sample_id: int, epoch: int) -> dict[str, np.ndarray]:
    volume = decode_series([p.read_bytes() for p in sorted(folder.glob("*.dcm"))])
    waveform = read_edf_file(next(folder.glob("*.edf")))
    leads, found = to_standard_12_lead(waveform)
    assert all(found)
    prefix = {
        "hu": resample_volume(volume.hu, SPEC.image_slices, SPEC.image_resize),
        "wave": resample_waveform(leads, waveform.rate_hz, SPEC.wave_rate_hz),
        "tokens": np.zeros(1, np.int32),
        "present": np.ones(2, np.uint8),
    }
    # The prefix's stored form (HU int16, mV float16) is part of its definition.
    stored = to_stored(prefix, voi_lut=False, vocab_size=load_tokenizer("byte").vocab_size)
    return augment(stored, SPEC, 11, epoch, sample_id)


def test_served_tensors_equal_the_pipeline_on_the_raw_files(
    raw_corpus: Path, packed_dataset: Path, engine: str, deid_key: DeidKey
) -> None:
    folders = {pseudonym(deid_key, "study", p.name): p for p in raw_corpus.iterdir() if p.is_dir()}
    with Dataset(packed_dataset) as ds:
        folder_of = {i: folders[ds.read(i).study_key] for i in range(len(ds))}
    with EngineClient(engine, pipeline=SPEC, seed=11, batch_size=6) as client:
        for epoch, batch in enumerate(list(client.batches(epochs=2))[::2]):
            for row, sid in enumerate(batch["sample_id"].tolist()):
                want = _expected_from_raw(folder_of[sid], sid, epoch)
                np.testing.assert_array_equal(batch["image"][row].numpy(), want["image"])
                # EDF stores 16-bit integers: de-identification rewrites only the
                # header, so the physical values are identical, not merely close.
                np.testing.assert_array_equal(batch["waveform"][row].numpy(), want["waveform"])
                assert batch["modality_mask"][row].tolist() == [1, 1]
