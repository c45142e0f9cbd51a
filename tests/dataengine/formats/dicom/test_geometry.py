"""dataengine.formats.dicom._geometry: frame positions along the slice normal,
functional-group lookups and spacing, on real and synthetic files."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from dataengine.formats.dicom import decode_series, read_dicom

from .conftest import (
    INTERCEPT,
    SLOPE,
    ct_slice,
    encode,
    image_dataset,
    pydicom_file,
    stored_values,
    to_hu,
)


def test_multiframe_rtdose_frames_become_slices() -> None:
    data = pydicom_file("rtdose.dcm")
    volume = decode_series([data])

    assert volume.hu.shape == (15, 10, 10)
    # GridFrameOffsetVector 0, 5, ..., 70 mm: already in order along the normal.
    assert volume.spacing_mm == pytest.approx((5.0, 10.0, 10.0))
    raw = read_dicom(data).pixel_array
    np.testing.assert_array_equal(volume.hu, raw.astype(np.float32))
    assert volume.hu.max() == 1254000.0


def test_sagittal_series_is_sorted_along_the_slice_normal() -> None:
    # Rows along +y, columns along -z: the normal is (0,1,0) x (0,0,-1) = (-1,0,0),
    # so ascending position along the normal means descending x.
    sagittal = (0, 1, 0, 0, 0, -1)
    x = [0.0, 3.0, 6.0]
    stored = [stored_values(k) for k in range(3)]
    files = [
        ct_slice(stored[k], position=(x[k], 5.0, 5.0), instance=k + 1, orientation=sagittal)
        for k in range(3)
    ]

    volume = decode_series(files)

    for out, k in enumerate([2, 1, 0]):
        np.testing.assert_array_equal(volume.hu[out], to_hu(stored[k]))
    assert volume.spacing_mm[0] == pytest.approx(3.0)


def test_enhanced_multiframe_uses_functional_groups() -> None:
    """Per-frame positions, shared pixel spacing and rescale (enhanced CT layout)."""
    frames = np.stack([stored_values(k) for k in range(3)])
    ds = image_dataset(frames, "1.2.3.9")
    ds.NumberOfFrames = 3
    measures = Dataset()
    measures.PixelSpacing = [0.25, 0.3]
    measures.SliceThickness = 4.0
    orientation = Dataset()
    orientation.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    rescale = Dataset()
    rescale.RescaleSlope = SLOPE
    rescale.RescaleIntercept = INTERCEPT
    shared = Dataset()
    shared.PixelMeasuresSequence = DicomSequence([measures])
    shared.PlaneOrientationSequence = DicomSequence([orientation])
    shared.PixelValueTransformationSequence = DicomSequence([rescale])
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
    per_frame = []
    for z in (8.0, 0.0, 4.0):  # frame 1 is lowest, then frame 2, then frame 0
        position = Dataset()
        position.ImagePositionPatient = [0.0, 0.0, z]
        item = Dataset()
        item.PlanePositionSequence = DicomSequence([position])
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(per_frame)

    volume = decode_series([encode(ds)])

    for out, k in enumerate([1, 2, 0]):
        np.testing.assert_array_equal(volume.hu[out], to_hu(frames[k]))
    assert volume.spacing_mm == pytest.approx((4.0, 0.25, 0.3))


def test_enhanced_multiframe_per_frame_rescale() -> None:
    frames = np.stack([stored_values(k) for k in range(2)])
    ds = image_dataset(frames, "1.2.3.10")
    ds.NumberOfFrames = 2
    per_frame = []
    for z, slope in ((4.0, 1.0), (0.0, 3.0)):
        position = Dataset()
        position.ImagePositionPatient = [0.0, 0.0, z]
        rescale = Dataset()
        rescale.RescaleSlope = slope
        rescale.RescaleIntercept = -10
        item = Dataset()
        item.PlanePositionSequence = DicomSequence([position])
        item.PixelValueTransformationSequence = DicomSequence([rescale])
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(per_frame)

    volume = decode_series([encode(ds)])

    np.testing.assert_array_equal(volume.hu[0], frames[1] * 3.0 - 10)  # z = 0 first
    np.testing.assert_array_equal(volume.hu[1], frames[0] * 1.0 - 10)
    assert volume.spacing_mm[0] == pytest.approx(4.0)
