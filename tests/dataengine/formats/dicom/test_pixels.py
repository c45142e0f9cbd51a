"""dataengine.formats.dicom._pixels: transfer syntaxes, pixel data length, and
stored words to one float32 channel (rescale, modality LUT, MONOCHROME1,
colour, VOI LUT / window), on real files and synthetic ones with known words."""

from __future__ import annotations

import re
from io import BytesIO

import numpy as np
import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.pixels import convert_color_space, get_decoder
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    JPEG2000,
    ExplicitVRBigEndian,
)

from dataengine.errors import DecodeError
from dataengine.formats.dicom import decode_series, read_dicom

from .conftest import (
    ct_slice,
    encode_as_is,
    image_file,
    pydicom_file,
    stored_values,
)


def test_ct_small_comes_out_in_hounsfield_units() -> None:
    data = pydicom_file("CT_small.dcm")
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
    reference = decode_series([pydicom_file("MR_small.dcm")])
    other = decode_series([pydicom_file(name)])

    np.testing.assert_array_equal(other.hu, reference.hu)
    assert other.hu.shape == (1, 64, 64)
    assert (other.hu.min(), other.hu.max()) == (127.0, 2145.0)
    assert other.spacing_mm == pytest.approx((0.8, 0.3125, 0.3125))


def test_compressed_syntax_without_plugin_names_file_and_syntax() -> None:
    data = pydicom_file("693_J2KI.dcm")
    if get_decoder(JPEG2000).is_available:
        volume = decode_series([data])
        assert volume.hu.shape == (1, 512, 512)
        return
    with pytest.raises(DecodeError, match=r"693_J2KI\.dcm.*JPEG 2000 Image Compression"):
        decode_series([data], names=["693_J2KI.dcm"])


def test_pixel_data_shorter_than_header_is_decode_error() -> None:
    with pytest.raises(DecodeError, match=r"MR_truncated\.dcm.*Explicit VR Little Endian"):
        decode_series([pydicom_file("MR_truncated.dcm")], names=["MR_truncated.dcm"])


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
    plain = image_file(words, bits_allocated=bits_allocated, bits_stored=bits_stored, signed=signed)
    rescaled = image_file(
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
    data = image_file(bits, bits_allocated=1, bits_stored=1, pixel_data=packed)

    np.testing.assert_array_equal(decode_series([data]).hu[0], bits)


def test_big_endian_16_bit_signed_decodes_like_little_endian() -> None:
    words = np.array([[-1024, 0, 3071], [5, -5, 1]], dtype=np.int16)
    little = image_file(words.astype("<i2"), signed=True)
    big = image_file(words.astype(">i2"), signed=True, syntax=ExplicitVRBigEndian)

    np.testing.assert_array_equal(decode_series([big]).hu[0], words)
    np.testing.assert_array_equal(decode_series([little]).hu[0], words)


def test_monochrome1_unsigned_is_inverted_over_the_bits_stored_range() -> None:
    stored = np.array([[0, 1, 1000, 4095]], dtype="<u2")
    data = image_file(
        stored, bits_stored=12, photometric="MONOCHROME1", RescaleSlope=2, RescaleIntercept=5
    )

    # y' = slope * (0 + 4095 - stored) + intercept: stored 0 (white) becomes the largest.
    np.testing.assert_array_equal(decode_series([data]).hu[0], [[8195, 8193, 6195, 5]])


def test_monochrome1_signed_is_inverted_around_minus_one() -> None:
    stored = np.array([[-32768, -1, 0, 32767]], dtype="<i2")
    data = image_file(stored, signed=True, photometric="MONOCHROME1")

    # smin + smax = -32768 + 32767 = -1: y' = -1 - stored.
    np.testing.assert_array_equal(decode_series([data]).hu[0], [[32767, 0, -1, -32768]])


def lut_item(first: int, entries: list[int], bits: int = 16) -> Dataset:
    item = Dataset()
    item.LUTDescriptor = [len(entries), first, bits]
    item.LUTData = entries
    item["LUTData"].VR = "US"
    return item


def test_modality_lut_sequence_maps_stored_values() -> None:
    stored = np.array([[0, 1, 2, 3, 9]], dtype="<u2")
    lut = lut_item(
        1, [100, 200, 300]
    )  # stored 1, 2, 3; below clamps to the first, above to the last
    mono2 = image_file(stored, bits_stored=4, ModalityLUTSequence=DicomSequence([lut]))
    mono1 = image_file(
        stored, bits_stored=4, photometric="MONOCHROME1", ModalityLUTSequence=DicomSequence([lut])
    )

    np.testing.assert_array_equal(decode_series([mono2]).hu[0], [[100, 100, 200, 300, 300]])
    # MONOCHROME1 after a LUT: y' = min(LUT) + max(LUT) - y over the representable range.
    np.testing.assert_array_equal(decode_series([mono1]).hu[0], [[300, 300, 200, 100, 100]])


_HU = np.array([[-1024, -160, 40, 239, 240, 1000]], dtype="<i2")


def _windowed(**attrs: object) -> bytes:
    return image_file(_HU, signed=True, RescaleSlope=1, RescaleIntercept=0, **attrs)


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
    lut = lut_item(0, [0, 1000, 4095], bits=12)
    voi = image_file(stored, bits_stored=4, VOILUTSequence=DicomSequence([lut]))
    mono1 = image_file(
        stored, bits_stored=4, photometric="MONOCHROME1", WindowCenter=2, WindowWidth=3
    )

    np.testing.assert_allclose(
        decode_series([voi], voi_lut=True).hu[0], [[0, 1000 / 4095, 1, 1]], atol=1e-6
    )
    # The window applies to the stored scale, then MONOCHROME1 gives 1 - v.
    window = np.clip((stored - 1.5) / 2 + 0.5, 0, 1)
    np.testing.assert_allclose(decode_series([mono1], voi_lut=True).hu[0], 1 - window, atol=1e-6)


def test_voi_without_window_scales_the_volume_min_max_to_unit() -> None:
    files = [
        ct_slice(stored_values(0), position=(0, 0, 0), instance=1),
        ct_slice(stored_values(1), position=(0, 0, 1), instance=2),
    ]
    hu = decode_series(files).hu
    shown = decode_series(files, voi_lut=True).hu

    np.testing.assert_allclose(shown, (hu - hu.min()) / (hu.max() - hu.min()), atol=1e-6)
    assert shown.min() == 0.0 and shown.max() == 1.0


_RGB = np.array(
    [[[255, 0, 0], [0, 255, 0], [0, 0, 255]], [[255, 255, 255], [0, 0, 0], [10, 20, 30]]],
    dtype=np.uint8,
)


_LUMA = _RGB.astype(np.float64) @ [0.299, 0.587, 0.114]


@pytest.mark.parametrize("planar", [0, 1])
def test_rgb_becomes_bt601_luminance_in_either_planar_configuration(planar: int) -> None:
    layout = _RGB if planar == 0 else np.moveaxis(_RGB, -1, 0)  # colour-by-plane
    data = image_file(
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
    data = image_file(ybr, bits_allocated=8, photometric="YBR_FULL")

    volume = decode_series([data])

    # YBR -> RGB -> Y rounds to 8 bits twice: within 1.5 of the exact luminance.
    np.testing.assert_allclose(volume.hu[0], _LUMA, atol=1.5)
    np.testing.assert_allclose(volume.hu[0], ybr[..., 0], atol=1.5)


def test_unsupported_photometric_interpretation_is_decode_error() -> None:
    data = image_file(np.zeros((2, 2, 3), np.uint8), bits_allocated=8, photometric="RGB")
    ds = read_dicom(data)
    ds.PhotometricInterpretation = "CMYK"
    with pytest.raises(DecodeError, match=r"cmyk\.dcm: photometric interpretation 'CMYK'"):
        decode_series([encode_as_is(ds)], names=["cmyk.dcm"])


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
    data = image_file(
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

    ok = decode_series([image_file(frames, pixel_data=exact + b"\0\0")]).hu  # padding < a frame
    np.testing.assert_array_equal(ok, frames)
    with pytest.raises(DecodeError, match=r"p\.dcm: pixel data is 72 bytes, expected 48 \(2 frame"):
        decode_series([image_file(frames, pixel_data=exact + exact[:24])], names=["p.dcm"])
    with pytest.raises(
        DecodeError, match=r"p\.dcm: pixel data is 46 bytes, expected 48.*truncated"
    ):
        decode_series([image_file(frames, pixel_data=exact[:-2])], names=["p.dcm"])
    odd = np.arange(9, dtype=np.uint8).reshape(3, 3)  # 9 bytes: written with a padding byte
    assert len(read_dicom(image_file(odd, bits_allocated=8)).PixelData) == 10
    np.testing.assert_array_equal(decode_series([image_file(odd, bits_allocated=8)]).hu[0], odd)


def test_missing_transfer_syntax_uses_the_encoding_the_file_was_read_in() -> None:
    words = np.array([[1, 2], [300, -4]], dtype="<i2")
    ds = read_dicom(image_file(words, signed=True))
    buf = BytesIO()
    del ds.file_meta.TransferSyntaxUID
    pydicom.dcmwrite(buf, ds, implicit_vr=True, little_endian=True)
    data = buf.getvalue()
    assert "TransferSyntaxUID" not in read_dicom(data).file_meta

    np.testing.assert_array_equal(decode_series([data]).hu[0], words)


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
    data = bytearray(pydicom_file(name))
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
    ds = read_dicom(image_file(np.zeros((2, 3), "<u4"), bits_allocated=32))
    del ds.PixelData, ds.BitsStored, ds.HighBit, ds.PixelRepresentation
    ds.FloatPixelData = values.tobytes()

    np.testing.assert_array_equal(decode_series([encode_as_is(ds)]).hu[0], values)
    ds.PhotometricInterpretation = "MONOCHROME1"
    inverted = decode_series([encode_as_is(ds)]).hu[0]
    np.testing.assert_allclose(inverted, (3e5 - 1.25) - values, rtol=1e-6)
