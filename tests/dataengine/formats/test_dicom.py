"""DICOM decoding: real files shipped with pydicom (written by other software)
and synthetic series with known pixel values."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import get_decoder
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import JPEG2000, CTImageStorage, ExplicitVRLittleEndian, generate_uid

from dataengine.errors import DecodeError
from dataengine.formats.dicom import decode_series, read_dicom

SLOPE = 2.0
INTERCEPT = -1024.0


def _testdata(name: str) -> bytes:
    """Bytes of a file in pydicom's bundled test data (on disk, no download)."""
    path = get_testdata_file(name)
    if path is None:
        raise FileNotFoundError(f"pydicom test file {name} is not installed")
    return Path(path).read_bytes()


def _stored(seed: int, rows: int = 4, cols: int = 5) -> np.ndarray:
    """Known stored values (int16) for one synthetic slice."""
    return (np.arange(rows * cols, dtype=np.int16).reshape(rows, cols) * 7 + seed * 100).astype(
        np.int16
    )


def _encode(ds: Dataset) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _image(stored: np.ndarray, series_uid: str) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "CT"
    ds.SeriesInstanceUID = series_uid
    ds.Rows, ds.Columns = stored.shape[-2:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.PixelData = stored.astype("<i2").tobytes()
    return ds


def _ct_slice(
    stored: np.ndarray,
    *,
    position: tuple[float, float, float] | None,
    instance: int | None,
    series_uid: str = "1.2.826.0.1.3680043.8.498.1",
    orientation: tuple[float, ...] = (1, 0, 0, 0, 1, 0),
) -> bytes:
    """One CT slice file, stored values ``stored``, HU = 2 * stored - 1024."""
    ds = _image(stored, series_uid)
    if position is not None:
        ds.ImagePositionPatient = list(position)
    ds.ImageOrientationPatient = list(orientation)
    if instance is not None:
        ds.InstanceNumber = instance
    ds.PixelSpacing = [0.5, 0.7]
    ds.SliceThickness = 2.5
    ds.RescaleSlope = SLOPE
    ds.RescaleIntercept = INTERCEPT
    return _encode(ds)


def _hu(stored: np.ndarray) -> np.ndarray:
    return stored.astype(np.float32) * SLOPE + INTERCEPT


# -- real files -------------------------------------------------------------


def test_ct_small_comes_out_in_hounsfield_units() -> None:
    data = _testdata("CT_small.dcm")
    volume = decode_series([data])

    assert volume.hu.shape == (1, 128, 128)
    assert volume.hu.dtype == np.float32
    # Slope 1, intercept -1024 on the little-endian int16 stored values.
    stored = np.frombuffer(read_dicom(data).PixelData, dtype="<i2").reshape(128, 128)
    np.testing.assert_array_equal(volume.hu[0], stored.astype(np.float32) - 1024.0)
    assert volume.hu.min() == -896.0
    assert volume.hu.max() == 1167.0
    assert float(volume.hu.mean()) == pytest.approx(-119.07, abs=0.01)
    np.testing.assert_array_equal(volume.hu[0, 0, :4], [-849.0, -844.0, -858.0, -881.0])
    # One slice: SliceThickness (5 mm); PixelSpacing 0.661468 mm.
    assert volume.spacing_mm == pytest.approx((5.0, 0.661468, 0.661468))
    assert volume.series_uid == "1.3.6.1.4.1.5962.1.3.1.1.20040119072730.12322"


@pytest.mark.parametrize(
    "name", ["MR_small_RLE.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm"]
)
def test_mr_small_in_other_transfer_syntaxes_decodes_identically(name: str) -> None:
    reference = decode_series([_testdata("MR_small.dcm")])
    other = decode_series([_testdata(name)])

    np.testing.assert_array_equal(other.hu, reference.hu)
    assert other.hu.shape == (1, 64, 64)
    assert (other.hu.min(), other.hu.max()) == (127.0, 2145.0)
    assert other.spacing_mm == pytest.approx((0.8, 0.3125, 0.3125))


def test_multiframe_rtdose_frames_become_slices() -> None:
    data = _testdata("rtdose.dcm")
    volume = decode_series([data])

    assert volume.hu.shape == (15, 10, 10)
    # GridFrameOffsetVector 0, 5, ..., 70 mm: already in order along the normal.
    assert volume.spacing_mm == pytest.approx((5.0, 10.0, 10.0))
    raw = read_dicom(data).pixel_array
    np.testing.assert_array_equal(volume.hu, raw.astype(np.float32))
    assert volume.hu.max() == 1254000.0


def test_compressed_syntax_without_plugin_names_file_and_syntax() -> None:
    data = _testdata("693_J2KI.dcm")
    if get_decoder(JPEG2000).is_available:
        volume = decode_series([data])
        assert volume.hu.shape == (1, 512, 512)
        return
    with pytest.raises(DecodeError, match=r"693_J2KI\.dcm.*JPEG 2000 Image Compression"):
        decode_series([data], names=["693_J2KI.dcm"])


def test_pixel_data_shorter_than_header_is_decode_error() -> None:
    with pytest.raises(DecodeError, match=r"MR_truncated\.dcm.*Explicit VR Little Endian"):
        decode_series([_testdata("MR_truncated.dcm")], names=["MR_truncated.dcm"])


def test_dataset_without_pixel_data_is_decode_error() -> None:
    with pytest.raises(DecodeError, match=r"plan\.dcm: no PixelData"):
        decode_series([_testdata("rtplan.dcm")], names=["plan.dcm"])


def test_colour_image_is_decode_error() -> None:
    with pytest.raises(DecodeError, match="SamplesPerPixel is 3"):
        decode_series([_testdata("SC_rgb_small_odd.dcm")])


def test_file_without_preamble_is_read_through_its_file_meta() -> None:
    data = _testdata("CT_small.dcm")
    assert data[128:132] == b"DICM"
    bare = data[132:]  # starts directly with the (0002,xxxx) File Meta elements

    ds = read_dicom(bare, name="bare.dcm")
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    np.testing.assert_array_equal(decode_series([bare]).hu, decode_series([data]).hu)


def test_dataset_without_file_meta_is_refused() -> None:
    with pytest.raises(DecodeError, match=r"nometa\.dcm: not DICOM"):
        read_dicom(_testdata("ExplVR_LitEndNoMeta.dcm"), name="nometa.dcm")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello, not a DICOM file",
        np.random.default_rng(0).bytes(4096),
        b"\0" * 128 + b"DICM",
    ],
    ids=["empty", "text", "random", "preamble-only"],
)
def test_garbage_is_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError, match=r"junk\.dcm"):
        decode_series([data], names=["junk.dcm"])


@pytest.mark.parametrize("keep", [200, 1000, 20000, 39000])
def test_truncated_file_is_decode_error(keep: int) -> None:
    data = _testdata("CT_small.dcm")
    with pytest.raises(DecodeError, match=r"cut\.dcm"):
        decode_series([data[:keep]], names=["cut.dcm"])


# -- synthetic series -------------------------------------------------------


def test_series_is_sorted_by_position_not_file_order_or_instance_number() -> None:
    z = [-10.0, -7.5, -5.0, -2.5, 0.0, 2.5]
    stored = [_stored(k) for k in range(len(z))]
    # InstanceNumber runs against the positions, so only positions give this order.
    files = [
        _ct_slice(stored[k], position=(1.0, 2.0, z[k]), instance=len(z) - k) for k in range(len(z))
    ]
    shuffle = [3, 0, 5, 1, 4, 2]

    volume = decode_series([files[k] for k in shuffle])

    assert volume.hu.shape == (6, 4, 5)
    for k in range(len(z)):
        np.testing.assert_array_equal(volume.hu[k], _hu(stored[k]))
    assert volume.hu[0, 0, 0] == -1024.0  # stored 0
    assert volume.hu[5, 3, 4] == 2 * (19 * 7 + 500) - 1024
    assert volume.spacing_mm == pytest.approx((2.5, 0.5, 0.7))
    assert volume.series_uid == "1.2.826.0.1.3680043.8.498.1"


def test_sagittal_series_is_sorted_along_the_slice_normal() -> None:
    # Rows along +y, columns along -z: the normal is (0,1,0) x (0,0,-1) = (-1,0,0),
    # so ascending position along the normal means descending x.
    sagittal = (0, 1, 0, 0, 0, -1)
    x = [0.0, 3.0, 6.0]
    stored = [_stored(k) for k in range(3)]
    files = [
        _ct_slice(stored[k], position=(x[k], 5.0, 5.0), instance=k + 1, orientation=sagittal)
        for k in range(3)
    ]

    volume = decode_series(files)

    for out, k in enumerate([2, 1, 0]):
        np.testing.assert_array_equal(volume.hu[out], _hu(stored[k]))
    assert volume.spacing_mm[0] == pytest.approx(3.0)


def test_without_positions_instance_number_orders_the_series() -> None:
    stored = [_stored(k) for k in range(4)]
    instance = [3, 1, 4, 2]
    files = [_ct_slice(stored[k], position=None, instance=instance[k]) for k in range(4)]

    volume = decode_series(files)

    for out, k in enumerate([1, 3, 0, 2]):
        np.testing.assert_array_equal(volume.hu[out], _hu(stored[k]))
    assert volume.spacing_mm == pytest.approx((2.5, 0.5, 0.7))  # SliceThickness


def test_without_positions_or_instance_numbers_file_order_is_kept() -> None:
    stored = [_stored(k) for k in range(3)]
    files = [_ct_slice(s, position=None, instance=None) for s in stored]

    volume = decode_series(files)

    for k in range(3):
        np.testing.assert_array_equal(volume.hu[k], _hu(stored[k]))


def test_duplicate_positions_keep_the_first_file() -> None:
    stored = [_stored(k) for k in range(4)]
    files = [
        _ct_slice(stored[0], position=(0.0, 0.0, 0.0), instance=1),
        _ct_slice(stored[1], position=(0.0, 0.0, 5.0), instance=2),
        _ct_slice(stored[2], position=(0.0, 0.0, 0.0), instance=3),  # duplicate of file 0
        _ct_slice(stored[3], position=(0.0, 0.0, 10.0), instance=4),
    ]

    volume = decode_series(files)

    assert volume.hu.shape[0] == 3
    for out, k in enumerate([0, 1, 3]):
        np.testing.assert_array_equal(volume.hu[out], _hu(stored[k]))
    assert volume.spacing_mm[0] == pytest.approx(5.0)


def test_mixed_series_keep_the_largest() -> None:
    big, small = "1.2.3.1", "1.2.3.2"
    files = [
        _ct_slice(_stored(9), position=(0, 0, 0), instance=1, series_uid=small),
        _ct_slice(_stored(0), position=(0, 0, 0), instance=1, series_uid=big),
        _ct_slice(_stored(1), position=(0, 0, 1), instance=2, series_uid=big),
        _ct_slice(_stored(8), position=(0, 0, 1), instance=2, series_uid=small),
        _ct_slice(_stored(2), position=(0, 0, 2), instance=3, series_uid=big),
    ]

    volume = decode_series(files)

    assert volume.series_uid == big
    assert volume.hu.shape == (3, 4, 5)
    for k in range(3):
        np.testing.assert_array_equal(volume.hu[k], _hu(_stored(k)))


def test_slices_of_different_sizes_are_decode_error() -> None:
    files = [
        _ct_slice(_stored(0), position=(0, 0, 0), instance=1),
        _ct_slice(_stored(1, rows=6), position=(0, 0, 1), instance=2),
    ]
    with pytest.raises(DecodeError, match=r"b\.dcm: 6x5 pixels.*a\.dcm.*4x5"):
        decode_series(files, names=["a.dcm", "b.dcm"])


def test_empty_series_is_decode_error() -> None:
    with pytest.raises(DecodeError, match="no files"):
        decode_series([])


def test_enhanced_multiframe_uses_functional_groups() -> None:
    """Per-frame positions, shared pixel spacing and rescale (enhanced CT layout)."""
    frames = np.stack([_stored(k) for k in range(3)])
    ds = _image(frames, "1.2.3.9")
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

    volume = decode_series([_encode(ds)])

    for out, k in enumerate([1, 2, 0]):
        np.testing.assert_array_equal(volume.hu[out], _hu(frames[k]))
    assert volume.spacing_mm == pytest.approx((4.0, 0.25, 0.3))


def test_read_dicom_returns_the_dataset() -> None:
    ds = read_dicom(_ct_slice(_stored(0), position=(1, 2, 3), instance=7))
    assert isinstance(ds, pydicom.Dataset)
    assert ds.InstanceNumber == 7
    assert [float(v) for v in ds.ImagePositionPatient] == [1.0, 2.0, 3.0]


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about each bad value
@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(132, 1400), st.integers(0, 255)), min_size=1, max_size=6))
def test_corrupt_header_bytes_give_a_volume_or_decode_error(edits: list[tuple[int, int]]) -> None:
    """Whatever a bit rot does to the header, nothing but DecodeError escapes."""
    data = bytearray(_testdata("CT_small.dcm"))
    for offset, value in edits:
        data[offset] = value
    try:
        volume = decode_series([bytes(data)])
    except DecodeError:
        return
    assert volume.hu.ndim == 3 and volume.hu.dtype == np.float32
