"""dataengine.formats.dicom._read: parsing one file (with or without the Part 10
preamble), images told from non-image objects, garbage and truncation."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.uid import (
    ExplicitVRLittleEndian,
)

from dataengine.errors import DecodeError, NotAnImageError
from dataengine.formats.dicom import decode_series, read_dicom

from .conftest import (
    ct_slice,
    encode,
    pydicom_file,
    stored_values,
)


def test_non_image_object_is_not_an_image_error_naming_its_sop_class() -> None:
    with pytest.raises(NotAnImageError, match=r"plan\.dcm: RT Plan Storage: not an image") as info:
        decode_series([pydicom_file("rtplan.dcm")], names=["plan.dcm"])
    assert info.value.kind == "not_image"
    assert isinstance(info.value, DecodeError)


def test_image_class_without_pixel_data_is_decode_error_not_skipped() -> None:
    ds = read_dicom(ct_slice(stored_values(0), position=(0, 0, 0), instance=1))
    del ds.PixelData
    with pytest.raises(DecodeError, match=r"cut\.dcm: CT Image Storage without PixelData") as info:
        decode_series([encode(ds)], names=["cut.dcm"])
    assert info.value.kind == "decode"


def test_file_without_preamble_is_read_through_its_file_meta() -> None:
    data = pydicom_file("CT_small.dcm")
    assert data[128:132] == b"DICM"
    bare = data[132:]  # starts directly with the (0002,xxxx) File Meta elements

    ds = read_dicom(bare, name="bare.dcm")
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    np.testing.assert_array_equal(decode_series([bare]).hu, decode_series([data]).hu)


def test_dataset_without_file_meta_is_refused() -> None:
    with pytest.raises(DecodeError, match=r"nometa\.dcm: not DICOM"):
        read_dicom(pydicom_file("ExplVR_LitEndNoMeta.dcm"), name="nometa.dcm")


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
    data = pydicom_file("CT_small.dcm")
    with pytest.raises(DecodeError, match=r"cut\.dcm"):
        decode_series([data[:keep]], names=["cut.dcm"])


def test_read_dicom_returns_the_dataset() -> None:
    ds = read_dicom(ct_slice(stored_values(0), position=(1, 2, 3), instance=7))
    assert isinstance(ds, pydicom.Dataset)
    assert ds.InstanceNumber == 7
    assert [float(v) for v in ds.ImagePositionPatient] == [1.0, 2.0, 3.0]


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about each bad value
@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(132, 1400), st.integers(0, 255)), min_size=1, max_size=6))
def test_corrupt_header_bytes_give_a_volume_or_decode_error(edits: list[tuple[int, int]]) -> None:
    """Whatever a bit rot does to the header, nothing but DecodeError escapes."""
    data = bytearray(pydicom_file("CT_small.dcm"))
    for offset, value in edits:
        data[offset] = value
    try:
        volume = decode_series([bytes(data)])
    except DecodeError:
        return
    assert volume.hu.ndim == 3 and volume.hu.dtype == np.float32
