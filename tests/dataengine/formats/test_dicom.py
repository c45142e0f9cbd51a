"""DICOM decoding: real files shipped with pydicom (written by other software)
and synthetic series with known pixel values."""

from __future__ import annotations

import re
from io import BytesIO
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import convert_color_space, get_decoder
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    JPEG2000,
    CTImageStorage,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from dataengine.errors import DecodeError, NotAnImageError
from dataengine.formats.dicom import decode_series, pick_series, read_dicom, require_image

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


def _encode(ds: Dataset, syntax: str = ExplicitVRLittleEndian) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = syntax
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


def test_non_image_object_is_not_an_image_error_naming_its_sop_class() -> None:
    with pytest.raises(NotAnImageError, match=r"plan\.dcm: RT Plan Storage: not an image") as info:
        decode_series([_testdata("rtplan.dcm")], names=["plan.dcm"])
    assert info.value.kind == "not_image"
    assert isinstance(info.value, DecodeError)


def test_image_class_without_pixel_data_is_decode_error_not_skipped() -> None:
    ds = read_dicom(_ct_slice(_stored(0), position=(0, 0, 0), instance=1))
    del ds.PixelData
    with pytest.raises(DecodeError, match=r"cut\.dcm: CT Image Storage without PixelData") as info:
        decode_series([_encode(ds)], names=["cut.dcm"])
    assert info.value.kind == "decode"


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


# -- pixel formats (synthetic files with known stored words) -----------------


def _file(
    words: np.ndarray,
    *,
    bits_allocated: int = 16,
    bits_stored: int | None = None,
    signed: bool = False,
    photometric: str = "MONOCHROME2",
    syntax: str = ExplicitVRLittleEndian,
    pixel_data: bytes | None = None,
    **attrs: object,
) -> bytes:
    """One image file whose PixelData is ``words`` as written (``[rows, cols]``,
    ``[frames, rows, cols]`` or with a trailing sample axis for colour), or
    ``pixel_data`` verbatim."""
    ds = Dataset()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.77"
    ds.Modality = "OT"
    colour = photometric not in ("MONOCHROME1", "MONOCHROME2", "PALETTE COLOR")
    shape = words.shape[:-1] if colour else words.shape
    if len(shape) == 3:
        ds.NumberOfFrames = shape[0]
    ds.Rows, ds.Columns = shape[-2:]
    ds.SamplesPerPixel = 3 if colour else 1
    if colour:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = bits_stored or bits_allocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = int(signed)
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    ds.PixelData = words.tobytes() if pixel_data is None else pixel_data
    return _encode(ds, syntax)


@pytest.mark.parametrize(
    ("words", "bits_stored", "signed", "expected"),
    [
        (np.array([[0, 1, 127, 128, 255]], np.uint8), 8, False, [0, 1, 127, 128, 255]),
        (np.array([[0x80, 0xFF, 0, 0x7F, 1]], np.uint8), 8, True, [-128, -1, 0, 127, 1]),
        # 12 of 16 bits: the 4 high bits hold garbage (e.g. overlays) and are masked.
        (
            np.array([[0xF000, 0x1001, 0x8800, 0xFFFF, 0x0ABC]], "<u2"),
            12,
            False,
            [0, 1, 2048, 4095, 0xABC],
        ),
        # 12 of 16 bits, two's complement: bit 11 is the sign, high bits ignored.
        (
            np.array([[0x0FFF, 0x0800, 0x07FF, 0xF001, 0x0000]], "<u2"),
            12,
            True,
            [-1, -2048, 2047, 1, 0],
        ),
        (np.array([[0, 65535, 40000, 1, 32768]], "<u2"), 16, False, [0, 65535, 40000, 1, 32768]),
        (np.array([[-32768, 32767, -1, 0, 1000]], "<i2"), 16, True, [-32768, 32767, -1, 0, 1000]),
        (np.array([[0, 1, 1 << 24, 7, 123456]], "<u4"), 32, False, [0, 1, 1 << 24, 7, 123456]),
    ],
    ids=["u8", "s8", "u12of16", "s12of16", "u16", "s16", "u32"],
)
def test_bit_depths_decode_to_exact_values(
    words: np.ndarray, bits_stored: int, signed: bool, expected: list[int]
) -> None:
    bits_allocated = words.dtype.itemsize * 8
    plain = _file(words, bits_allocated=bits_allocated, bits_stored=bits_stored, signed=signed)
    rescaled = _file(
        words,
        bits_allocated=bits_allocated,
        bits_stored=bits_stored,
        signed=signed,
        RescaleSlope=0.5,
        RescaleIntercept=-100,
    )

    values = np.array([expected], dtype=np.float64)
    np.testing.assert_array_equal(decode_series([plain]).hu[0], values)
    np.testing.assert_array_equal(decode_series([rescaled]).hu[0], values * 0.5 - 100)


def test_one_bit_pixels_unpack_lsb_first() -> None:
    bits = np.array([[1, 0, 1, 1, 0], [0, 0, 1, 1, 1]], dtype=np.uint8)
    packed = np.packbits(bits.ravel(), bitorder="little").tobytes()
    data = _file(bits, bits_allocated=1, bits_stored=1, pixel_data=packed)

    np.testing.assert_array_equal(decode_series([data]).hu[0], bits)


def test_big_endian_16_bit_signed_decodes_like_little_endian() -> None:
    words = np.array([[-1024, 0, 3071], [5, -5, 1]], dtype=np.int16)
    little = _file(words.astype("<i2"), signed=True)
    big = _file(words.astype(">i2"), signed=True, syntax=ExplicitVRBigEndian)

    np.testing.assert_array_equal(decode_series([big]).hu[0], words)
    np.testing.assert_array_equal(decode_series([little]).hu[0], words)


def test_monochrome1_unsigned_is_inverted_over_the_bits_stored_range() -> None:
    stored = np.array([[0, 1, 1000, 4095]], dtype="<u2")
    data = _file(
        stored, bits_stored=12, photometric="MONOCHROME1", RescaleSlope=2, RescaleIntercept=5
    )

    # y' = slope * (0 + 4095 - stored) + intercept: stored 0 (white) becomes the largest.
    np.testing.assert_array_equal(decode_series([data]).hu[0], [[8195, 8193, 6195, 5]])


def test_monochrome1_signed_is_inverted_around_minus_one() -> None:
    stored = np.array([[-32768, -1, 0, 32767]], dtype="<i2")
    data = _file(stored, signed=True, photometric="MONOCHROME1")

    # smin + smax = -32768 + 32767 = -1: y' = -1 - stored.
    np.testing.assert_array_equal(decode_series([data]).hu[0], [[32767, 0, -1, -32768]])


def _lut_item(first: int, entries: list[int], bits: int = 16) -> Dataset:
    item = Dataset()
    item.LUTDescriptor = [len(entries), first, bits]
    item.LUTData = entries
    item["LUTData"].VR = "US"
    return item


def test_modality_lut_sequence_maps_stored_values() -> None:
    stored = np.array([[0, 1, 2, 3, 9]], dtype="<u2")
    lut = _lut_item(
        1, [100, 200, 300]
    )  # stored 1, 2, 3; below clamps to the first, above to the last
    mono2 = _file(stored, bits_stored=4, ModalityLUTSequence=DicomSequence([lut]))
    mono1 = _file(
        stored, bits_stored=4, photometric="MONOCHROME1", ModalityLUTSequence=DicomSequence([lut])
    )

    np.testing.assert_array_equal(decode_series([mono2]).hu[0], [[100, 100, 200, 300, 300]])
    # MONOCHROME1 after a LUT: y' = min(LUT) + max(LUT) - y over the representable range.
    np.testing.assert_array_equal(decode_series([mono1]).hu[0], [[300, 300, 200, 100, 100]])


# -- VOI LUT and windows ------------------------------------------------------

_HU = np.array([[-1024, -160, 40, 239, 240, 1000]], dtype="<i2")


def _windowed(**attrs: object) -> bytes:
    return _file(_HU, signed=True, RescaleSlope=1, RescaleIntercept=0, **attrs)


def test_window_is_applied_only_when_asked() -> None:
    data = _windowed(WindowCenter=[40, 500], WindowWidth=[400, 2000])

    np.testing.assert_array_equal(decode_series([data]).hu[0], _HU)
    shown = decode_series([data], voi_lut=True).hu[0]
    # LINEAR, first window: (x - (c - 0.5)) / (w - 1) + 0.5, clipped to [0, 1].
    expected = np.clip((_HU - 39.5) / 399.0 + 0.5, 0, 1)
    np.testing.assert_allclose(shown, expected, atol=1e-6)
    assert shown[0, 0] == 0.0 and shown[0, 5] == 1.0
    assert shown[0, 2] == pytest.approx(0.5 + 0.5 / 399, abs=1e-6)  # 40 HU


@pytest.mark.parametrize(
    ("function", "expected"),
    [
        ("LINEAR_EXACT", np.clip((_HU - 40) / 400 + 0.5, 0, 1)),
        ("SIGMOID", 1 / (1 + np.exp(-4 * (_HU - 40) / 400))),
    ],
)
def test_voi_lut_function(function: str, expected: np.ndarray) -> None:
    data = _windowed(WindowCenter=40, WindowWidth=400, VOILUTFunction=function)
    np.testing.assert_allclose(decode_series([data], voi_lut=True).hu[0], expected, atol=1e-6)


def test_voi_lut_sequence_and_monochrome1_window() -> None:
    stored = np.array([[0, 1, 2, 3]], dtype="<u2")
    lut = _lut_item(0, [0, 1000, 4095], bits=12)
    voi = _file(stored, bits_stored=4, VOILUTSequence=DicomSequence([lut]))
    mono1 = _file(stored, bits_stored=4, photometric="MONOCHROME1", WindowCenter=2, WindowWidth=3)

    np.testing.assert_allclose(
        decode_series([voi], voi_lut=True).hu[0], [[0, 1000 / 4095, 1, 1]], atol=1e-6
    )
    # The window applies to the stored scale, then MONOCHROME1 gives 1 - v.
    window = np.clip((stored - 1.5) / 2 + 0.5, 0, 1)
    np.testing.assert_allclose(decode_series([mono1], voi_lut=True).hu[0], 1 - window, atol=1e-6)


def test_voi_without_window_scales_the_volume_min_max_to_unit() -> None:
    files = [
        _ct_slice(_stored(0), position=(0, 0, 0), instance=1),
        _ct_slice(_stored(1), position=(0, 0, 1), instance=2),
    ]
    hu = decode_series(files).hu
    shown = decode_series(files, voi_lut=True).hu

    np.testing.assert_allclose(shown, (hu - hu.min()) / (hu.max() - hu.min()), atol=1e-6)
    assert shown.min() == 0.0 and shown.max() == 1.0


# -- colour ----------------------------------------------------------------------

_RGB = np.array(
    [[[255, 0, 0], [0, 255, 0], [0, 0, 255]], [[255, 255, 255], [0, 0, 0], [10, 20, 30]]],
    dtype=np.uint8,
)
_LUMA = _RGB.astype(np.float64) @ [0.299, 0.587, 0.114]


@pytest.mark.parametrize("planar", [0, 1])
def test_rgb_becomes_bt601_luminance_in_either_planar_configuration(planar: int) -> None:
    layout = _RGB if planar == 0 else np.moveaxis(_RGB, -1, 0)  # colour-by-plane
    data = _file(
        _RGB,
        bits_allocated=8,
        photometric="RGB",
        pixel_data=layout.tobytes(),
        PlanarConfiguration=planar,
    )

    volume = decode_series([data])

    assert volume.hu.shape == (1, 2, 3)
    np.testing.assert_allclose(volume.hu[0], _LUMA, atol=1e-4)
    assert volume.hu[0, 0, 0] == pytest.approx(76.245, abs=1e-4)


def test_ybr_full_luminance_is_its_y_channel() -> None:
    ybr = convert_color_space(_RGB, "RGB", "YBR_FULL")
    data = _file(ybr, bits_allocated=8, photometric="YBR_FULL")

    volume = decode_series([data])

    # YBR -> RGB -> Y rounds to 8 bits twice: within 1.5 of the exact luminance.
    np.testing.assert_allclose(volume.hu[0], _LUMA, atol=1.5)
    np.testing.assert_allclose(volume.hu[0], ybr[..., 0], atol=1.5)


def test_unsupported_photometric_interpretation_is_decode_error() -> None:
    data = _file(np.zeros((2, 2, 3), np.uint8), bits_allocated=8, photometric="RGB")
    ds = read_dicom(data)
    ds.PhotometricInterpretation = "CMYK"
    with pytest.raises(DecodeError, match=r"cmyk\.dcm: photometric interpretation 'CMYK'"):
        decode_series([_encode_as_is(ds)], names=["cmyk.dcm"])


def _encode_as_is(ds: Dataset) -> bytes:
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


# -- transfer syntaxes and pixel data length -----------------------------------


@pytest.mark.parametrize(
    ("uid", "name"),
    [
        ("1.2.840.10008.1.2.4.110", "JPEG XL Lossless"),
        ("1.2.840.10008.1.2.4.100", "MPEG2 Main Profile / Main Level"),
        ("1.2.826.0.1.3680043.999", "unknown transfer syntax"),
    ],
)
def test_undecodable_transfer_syntax_is_decode_error_naming_it(uid: str, name: str) -> None:
    fragment = b"\xff\x0a\xfa\x7f" + bytes(60)
    # pydicom refuses to write a syntax it does not know: write HTJ2K, then put
    # the UID in its place (both 23 characters, padded to 24).
    placeholder = "1.2.840.10008.1.2.4.201"
    data = _file(
        np.zeros((4, 4), np.uint8),
        bits_allocated=8,
        syntax=placeholder,
        pixel_data=encapsulate([fragment]),
    )
    assert len(uid) in (23, 24) and data.count(placeholder.encode()) == 1
    data = data.replace(placeholder.encode() + b"\0", uid.encode().ljust(24, b"\0"))
    assert read_dicom(data).file_meta.TransferSyntaxUID == uid

    with pytest.raises(DecodeError, match=rf"x\.dcm: {re.escape(name)}.*{re.escape(uid)}"):
        decode_series([data], names=["x.dcm"])


def test_pixel_data_length_rules() -> None:
    frames = np.arange(2 * 3 * 4, dtype="<u2").reshape(2, 3, 4)
    exact = frames.tobytes()  # 48 bytes, 24 a frame

    ok = decode_series([_file(frames, pixel_data=exact + b"\0\0")]).hu  # padding < a frame
    np.testing.assert_array_equal(ok, frames)
    with pytest.raises(DecodeError, match=r"p\.dcm: pixel data is 72 bytes, expected 48 \(2 frame"):
        decode_series([_file(frames, pixel_data=exact + exact[:24])], names=["p.dcm"])
    with pytest.raises(
        DecodeError, match=r"p\.dcm: pixel data is 46 bytes, expected 48.*truncated"
    ):
        decode_series([_file(frames, pixel_data=exact[:-2])], names=["p.dcm"])
    odd = np.arange(9, dtype=np.uint8).reshape(3, 3)  # 9 bytes: written with a padding byte
    assert len(read_dicom(_file(odd, bits_allocated=8)).PixelData) == 10
    np.testing.assert_array_equal(decode_series([_file(odd, bits_allocated=8)]).hu[0], odd)


def test_missing_transfer_syntax_uses_the_encoding_the_file_was_read_in() -> None:
    words = np.array([[1, 2], [300, -4]], dtype="<i2")
    ds = read_dicom(_file(words, signed=True))
    buf = BytesIO()
    del ds.file_meta.TransferSyntaxUID
    pydicom.dcmwrite(buf, ds, implicit_vr=True, little_endian=True)
    data = buf.getvalue()
    assert "TransferSyntaxUID" not in read_dicom(data).file_meta

    np.testing.assert_array_equal(decode_series([data]).hu[0], words)


# -- series rules ---------------------------------------------------------------


def test_missing_slices_are_filled_by_linear_interpolation() -> None:
    z = [0.0, 2.0, 4.0, 12.0, 14.0, 16.0]  # 6, 8 and 10 mm are missing
    stored = [_stored(k) for k in range(len(z))]
    files = [_ct_slice(stored[k], position=(0, 0, z[k]), instance=k + 1) for k in range(len(z))]

    volume = decode_series(files[::-1])

    assert volume.hu.shape == (9, 4, 5)
    assert volume.synthesised_slices == 3 and volume.dropped_slices == 0
    assert volume.spacing_mm[0] == pytest.approx(2.0)
    for out, k in [(0, 0), (1, 1), (2, 2), (6, 3), (7, 4), (8, 5)]:
        np.testing.assert_array_equal(volume.hu[out], _hu(stored[k]))
    for j, t in [(3, 0.25), (4, 0.5), (5, 0.75)]:
        np.testing.assert_allclose(
            volume.hu[j], (1 - t) * _hu(stored[2]) + t * _hu(stored[3]), atol=1e-3
        )


def test_a_gap_too_large_to_fill_keeps_the_longest_run() -> None:
    z = [-200.0, 0.0, 1.0, 2.0, 3.0]  # a stray slice 200 mm from the stack
    files = [_ct_slice(_stored(k), position=(0, 0, z[k]), instance=k + 1) for k in range(5)]

    volume = decode_series(files)

    assert volume.hu.shape == (4, 4, 5)
    assert (volume.synthesised_slices, volume.dropped_slices) == (0, 1)
    for out in range(4):
        np.testing.assert_array_equal(volume.hu[out], _hu(_stored(out + 1)))
    assert volume.spacing_mm[0] == pytest.approx(1.0)


def test_near_duplicate_positions_keep_the_first_file() -> None:
    files = [
        _ct_slice(_stored(0), position=(0, 0, 5.004), instance=1),
        _ct_slice(_stored(1), position=(0, 0, 0.0), instance=2),
        _ct_slice(_stored(2), position=(0, 0, 5.0), instance=3),  # 4 um below file 0
    ]

    volume = decode_series(files)

    assert volume.hu.shape[0] == 2 and volume.dropped_slices == 1
    np.testing.assert_array_equal(volume.hu[1], _hu(_stored(0)))


def test_series_tie_goes_to_the_smallest_uid_whatever_the_file_order() -> None:
    a = [
        _ct_slice(_stored(k), position=(0, 0, k), instance=k, series_uid="1.2.9") for k in range(2)
    ]
    b = [
        _ct_slice(_stored(5 + k), position=(0, 0, k), instance=k, series_uid="1.2.10")
        for k in range(2)
    ]

    for files in (a + b, b + a, [a[0], b[0], a[1], b[1]]):
        volume = decode_series(files)
        assert volume.series_uid == "1.2.10"  # string order: "1.2.10" < "1.2.9"
        np.testing.assert_array_equal(volume.hu[0], _hu(_stored(5)))
    assert pick_series({"1.2.9": 3, "1.2.10": 2}) == "1.2.9"


def test_non_image_files_in_a_series_are_skipped() -> None:
    files = [
        _testdata("reportsi.dcm"),
        _ct_slice(_stored(0), position=(0, 0, 0), instance=1),
        _ct_slice(_stored(1), position=(0, 0, 2), instance=2),
    ]
    volume = decode_series(files)
    assert volume.hu.shape == (2, 4, 5)
    np.testing.assert_array_equal(volume.hu[1], _hu(_stored(1)))


def test_enhanced_multiframe_per_frame_rescale() -> None:
    frames = np.stack([_stored(k) for k in range(2)])
    ds = _image(frames, "1.2.3.10")
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

    volume = decode_series([_encode(ds)])

    np.testing.assert_array_equal(volume.hu[0], frames[1] * 3.0 - 10)  # z = 0 first
    np.testing.assert_array_equal(volume.hu[1], frames[0] * 1.0 - 10)
    assert volume.spacing_mm[0] == pytest.approx(4.0)


# -- nothing but DecodeError from compressed streams ------------------------------


@pytest.mark.filterwarnings("ignore::UserWarning")
@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(
        ["MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm"]
    ),
    st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(0, 255)), min_size=1, max_size=8),
)
def test_corrupt_compressed_pixel_data_gives_a_volume_or_decode_error(
    name: str, edits: list[tuple[float, int]]
) -> None:
    data = bytearray(_testdata(name))
    start = len(data) - len(read_dicom(bytes(data)).PixelData)  # pixel data runs to the end
    for where, value in edits:
        data[start + int(where * (len(data) - start - 1))] = value
    try:
        volume = decode_series([bytes(data)])
    except DecodeError:
        return
    assert volume.hu.shape == (1, 64, 64) and volume.hu.dtype == np.float32


def test_float_pixel_data_as_is_and_monochrome1_over_its_actual_range() -> None:
    values = np.array([[0.5, -1.25, 3e5], [1.0, 2.0, 3.0]], dtype="<f4")
    ds = read_dicom(_file(np.zeros((2, 3), "<u4"), bits_allocated=32))
    del ds.PixelData, ds.BitsStored, ds.HighBit, ds.PixelRepresentation
    ds.FloatPixelData = values.tobytes()

    np.testing.assert_array_equal(decode_series([_encode_as_is(ds)]).hu[0], values)
    ds.PhotometricInterpretation = "MONOCHROME1"
    inverted = decode_series([_encode_as_is(ds)]).hu[0]
    np.testing.assert_allclose(inverted, (3e5 - 1.25) - values, rtol=1e-6)


def test_an_undecodable_series_beside_the_served_one_is_not_decoded() -> None:
    served = [
        _ct_slice(_stored(k), position=(0, 0, k), instance=k, series_uid="1.2.5") for k in range(2)
    ]
    other = _file(
        np.zeros((4, 4), np.uint8),
        bits_allocated=8,
        syntax="1.2.840.10008.1.2.4.100",  # MPEG-2 video: no decoder
        pixel_data=encapsulate([bytes(64)]),
    )
    volume = decode_series([other, *served])
    assert volume.series_uid == "1.2.5" and volume.hu.shape == (2, 4, 5)
    with pytest.raises(DecodeError, match=r"v\.dcm: MPEG2 Main Profile / Main Level"):
        require_image(read_dicom(other), name="v.dcm")
