"""DICOM written by other software (the files pydicom ships: GE, Philips,
dcmtk, GDCM, OFFIS, ...), decoded by ``dataengine.formats.dicom`` and packed
by ``dataengine.pack``. Values are checked against a lossless reference of
the same image where one exists."""

from __future__ import annotations

import json
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from pydicom.pixels import apply_color_lut
from pydicom.uid import JPEG2000, ExplicitVRLittleEndian, JPEGLossless

from dataengine.errors import DecodeError, NotAnImageError
from dataengine.formats.dicom import Volume, decode_series, read_dicom
from dataengine.pack import QUARANTINE_NAME, PackConfig, pack_dataset
from dataengine.pipeline.prefix import run_prefix
from dataengine.pipeline.spec import PipelineSpec
from dataengine.shards import Dataset as ShardDataset
from dataengine.v1 import record_pb2

from .conftest import pydicom_file, pydicom_file_path

BT601 = np.array([0.299, 0.587, 0.114])


def _decode(name: str, *, voi_lut: bool = False) -> Volume:
    return decode_series([pydicom_file(name)], names=[name], voi_lut=voi_lut)


def _syntax(name: str) -> str:
    return str(read_dicom(pydicom_file(name)).file_meta.TransferSyntaxUID.name)


# -- transfer syntaxes: lossless ones reproduce the reference exactly --------


@pytest.mark.parametrize(
    ("name", "syntax"),
    [
        ("MR_small_implicit.dcm", "Implicit VR Little Endian"),
        ("MR_small_bigendian.dcm", "Explicit VR Big Endian"),
        ("MR_small_expb.dcm", "Explicit VR Big Endian"),
        ("MR_small_RLE.dcm", "RLE Lossless"),
        ("MR_small_jp2klossless.dcm", "JPEG 2000 Image Compression (Lossless Only)"),
        ("MR_small_jpeg_ls_lossless.dcm", "JPEG-LS Lossless Image Compression"),
        ("MR_small_padded.dcm", "Explicit VR Little Endian"),  # 128 bytes of trailing padding
    ],
)
def test_lossless_mr_small_encodings_equal_the_uncompressed_reference(
    name: str, syntax: str
) -> None:
    reference = _decode("MR_small.dcm")
    assert _syntax(name) == syntax

    volume = _decode(name)

    np.testing.assert_array_equal(volume.hu, reference.hu)
    assert volume.hu.shape == (1, 64, 64)
    assert (volume.hu.min(), volume.hu.max()) == (127.0, 2145.0)
    assert volume.spacing_mm == pytest.approx((0.8, 0.3125, 0.3125))


def test_ct_small_is_hounsfield_units_with_its_rescale() -> None:
    ds = read_dicom(pydicom_file("CT_small.dcm"))
    assert (float(ds.RescaleSlope), float(ds.RescaleIntercept)) == (1.0, -1024.0)

    volume = _decode("CT_small.dcm")

    stored = np.frombuffer(ds.PixelData, dtype="<i2").reshape(128, 128)
    np.testing.assert_array_equal(volume.hu[0], stored * 1.0 - 1024.0)
    assert volume.hu.min() >= -1024 and volume.hu.max() <= 3071  # a CT's HU range
    assert (volume.hu.min(), volume.hu.max()) == (-896.0, 1167.0)
    assert volume.spacing_mm == pytest.approx((5.0, 0.661468, 0.661468))  # SliceThickness


def test_deflated_syntax_equals_the_same_dataset_uncompressed() -> None:
    assert _syntax("image_dfl.dcm") == "Deflated Explicit VR Little Endian"
    ds = read_dicom(pydicom_file("image_dfl.dcm"))
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)

    volume = _decode("image_dfl.dcm")

    np.testing.assert_array_equal(volume.hu, decode_series([buf.getvalue()]).hu)
    assert volume.hu.shape == (1, 512, 512)
    assert (volume.hu.min(), volume.hu.max()) == (0.0, 255.0)
    assert float(volume.hu.mean()) == pytest.approx(127.116, abs=1e-3)


@pytest.mark.parametrize(
    ("name", "syntax"),
    [
        ("SC_rgb_jpeg_gdcm.dcm", "JPEG Lossless, Non-Hierarchical, First-Order Prediction"),
        ("SC_rgb_gdcm_KY.dcm", "JPEG 2000 Image Compression"),
        ("SC_rgb_rle_16bit.dcm", "RLE Lossless"),
        ("SC_rgb_rle_32bit.dcm", "RLE Lossless"),
        ("SC_rgb_small_odd.dcm", "Explicit VR Little Endian"),
    ],
)
def test_lossless_colour_encodings_give_the_reference_luminance(name: str, syntax: str) -> None:
    """SC_rgb_rle.dcm (8-bit RGB, RLE) is the reference picture; the 16- and
    32-bit versions hold each 8-bit value v as v * 257 and v * 16843009."""
    assert _syntax(name).startswith(syntax)
    if name == "SC_rgb_small_odd.dcm":  # its own reference: 3x3, written by another tool
        rgb = read_dicom(pydicom_file(name)).pixel_array.astype(np.float64)
        np.testing.assert_allclose(_decode(name).hu[0], rgb @ BT601, atol=1e-4)
        return
    reference = _decode("SC_rgb_rle.dcm").hu
    scale = {"SC_rgb_rle_16bit.dcm": 257.0, "SC_rgb_rle_32bit.dcm": 16843009.0}.get(name, 1.0)

    volume = _decode(name)

    assert volume.hu.shape == (1, 100, 100)
    np.testing.assert_allclose(volume.hu / scale, reference, atol=1e-3)


def test_jpeg_lossless_process_14_decodes_like_selection_value_1() -> None:
    """No Process 14 (1.2.840.10008.1.2.4.57) file ships with pydicom; a first-
    order-prediction stream is also a valid Process 14 stream, so relabel one."""
    ds = read_dicom(pydicom_file("SC_rgb_jpeg_gdcm.dcm"))
    ds.file_meta.TransferSyntaxUID = JPEGLossless
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)

    volume = decode_series([buf.getvalue()])

    np.testing.assert_array_equal(volume.hu, _decode("SC_rgb_jpeg_gdcm.dcm").hu)


# -- lossy syntaxes: within a stated tolerance of the reference ---------------


@pytest.mark.parametrize(
    ("name", "photometric", "max_error", "mean_error"),
    [
        ("SC_rgb_jpeg_dcmtk.dcm", "YBR_FULL", 2.0, 0.3),  # JPEG baseline, dcmtk
        ("SC_rgb_dcmtk_+eb+cr.dcm", "RGB", 1.0, 0.15),
        ("SC_rgb_dcmtk_+eb+cy+n1.dcm", "YBR_FULL", 8.0, 0.55),
        ("SC_rgb_dcmtk_+eb+cy+n2.dcm", "YBR_FULL", 2.0, 0.3),
        ("SC_rgb_dcmtk_+eb+cy+np.dcm", "YBR_FULL_422", 8.0, 0.55),
        ("SC_rgb_dcmtk_+eb+cy+s2.dcm", "YBR_FULL_422", 2.0, 0.3),
        ("SC_rgb_dcmtk_+eb+cy+s4.dcm", "YBR_FULL", 2.0, 0.3),
        ("SC_rgb_jpeg_lossy_gdcm.dcm", "YBR_FULL", 8.0, 0.45),  # JPEG baseline, GDCM
        ("SC_ybr_full_422_uncompressed.dcm", "YBR_FULL_422", 2.0, 0.3),  # subsampled chroma
        ("SC_rgb_jls_lossy_line.dcm", "RGB", 2.0, 0.71),  # JPEG-LS NEAR=2, per sample
        ("SC_rgb_jls_lossy_sample.dcm", "RGB", 2.0, 0.71),
    ],
)
def test_lossy_colour_is_within_tolerance_of_the_lossless_reference(
    name: str, photometric: str, max_error: float, mean_error: float
) -> None:
    """Luminance (0..255) against SC_rgb_rle.dcm. JPEG-LS near-lossless bounds
    every sample's error by NEAR = 2, so the luminance error is at most 2."""
    assert read_dicom(pydicom_file(name)).PhotometricInterpretation == photometric
    reference = _decode("SC_rgb_rle.dcm").hu

    error = np.abs(_decode(name).hu - reference)

    assert float(error.max()) <= max_error + 1e-3
    assert float(error.mean()) <= mean_error


def test_jpeg_2000_lossy_by_openjpeg_is_within_tolerance_of_mr_small() -> None:
    ds = read_dicom(pydicom_file("MR_small.dcm"))
    ds.compress(JPEG2000, j2k_cr=[5])  # OpenJPEG (pylibjpeg-openjpeg), 5:1 lossy
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    assert len(ds.PixelData) < 64 * 64 * 2 / 4
    reference = _decode("MR_small.dcm").hu  # 127..2145

    volume = decode_series([buf.getvalue()])

    error = np.abs(volume.hu - reference)
    assert 0 < float(error.max()) <= 48  # measured 40
    assert float(error.mean()) <= 8  # measured 7.3


def test_two_lossy_codecs_of_one_image_agree() -> None:
    """JPEG2000.dcm (lossy J2K) and JPGExtended.dcm (12-bit JPEG Extended) hold
    the same 1024x256 secondary capture; neither is a lossless reference."""
    j2k, jpeg = _decode("JPEG2000.dcm"), _decode("JPGExtended.dcm")
    assert _syntax("JPEG2000.dcm") == "JPEG 2000 Image Compression"
    assert _syntax("JPGExtended.dcm") == "JPEG Extended (Process 2 and 4)"

    assert j2k.hu.shape == jpeg.hu.shape == (1, 1024, 256)
    assert j2k.spacing_mm == pytest.approx((1.0, 2.26, 2.26))
    assert float(np.abs(j2k.hu - jpeg.hu).mean()) < 5.0
    assert np.corrcoef(j2k.hu.ravel(), jpeg.hu.ravel())[0, 1] > 0.95
    assert (jpeg.hu.min(), jpeg.hu.max()) == (0.0, 264.0)


def test_jpeg_ls_near_lossless_grey_and_lossy_ct() -> None:
    eight, sixteen = _decode("JPEGLSNearLossless_08.dcm"), _decode("JPEGLSNearLossless_16.dcm")
    assert _syntax("JPEGLSNearLossless_16.dcm") == "JPEG-LS Lossy (Near-Lossless) Image Compression"
    assert eight.hu.shape == (1, 45, 10) and sixteen.hu.shape == (1, 50, 10)
    assert (eight.hu.min(), eight.hu.max()) == (0.0, 255.0)
    assert (sixteen.hu.min(), sixteen.hu.max()) == (0.0, 65535.0)
    assert float(sixteen.hu.mean()) == pytest.approx(12014.5)

    ct = _decode("693_J2KI.dcm")  # lossy JPEG 2000 CT, intercept -1024
    stored = read_dicom(pydicom_file("693_J2KI.dcm")).pixel_array
    np.testing.assert_array_equal(ct.hu[0], stored - 1024.0)
    assert ct.hu.shape == (1, 512, 512)
    assert ct.spacing_mm == pytest.approx((20.0, 0.478516, 0.478516))


# -- photometric interpretations ---------------------------------------------------


def test_monochrome1_radiograph_is_inverted_then_rescaled() -> None:
    name = "dicomdirtests/77654033/CR1/6154"  # CR, MONOCHROME1, 12 of 16 bits
    ds = read_dicom(pydicom_file(name))
    assert ds.PhotometricInterpretation == "MONOCHROME1" and ds.BitsStored == 12
    stored = ds.pixel_array.astype(np.float64)

    volume = _decode(name)

    # y' = slope * (0 + 4095 - stored) + intercept, slope 0.684, intercept 200.
    np.testing.assert_allclose(volume.hu[0], 0.684 * (4095 - stored) + 200, atol=1e-3)
    assert volume.spacing_mm == pytest.approx((1.0, 0.1, 0.1))  # ImagerPixelSpacing


def test_palette_colour_becomes_luminance_of_its_lut() -> None:
    ds = read_dicom(pydicom_file("examples_palette.dcm"))
    rgb = apply_color_lut(ds.pixel_array, ds).astype(np.float64)  # 16-bit LUT entries

    volume = _decode("examples_palette.dcm")

    assert volume.hu.shape == (1, 350, 800)
    np.testing.assert_allclose(volume.hu[0], rgb @ BT601, atol=0.01)


def test_planar_configuration_1_big_endian_rgb() -> None:
    ds = read_dicom(pydicom_file("ExplVR_BigEnd.dcm"))
    assert ds.PlanarConfiguration == 1 and _syntax("ExplVR_BigEnd.dcm") == "Explicit VR Big Endian"
    planes = np.frombuffer(ds.PixelData, np.uint8).reshape(3, 60, 80).astype(np.float64)

    volume = _decode("ExplVR_BigEnd.dcm")

    np.testing.assert_allclose(volume.hu[0], np.tensordot(BT601, planes, axes=1), atol=1e-3)


@pytest.mark.parametrize("name", ["examples_jpeg2k.dcm", "GDCMJ2K_TextGBR.dcm"])
def test_ybr_rct_jpeg_2000_colour(name: str) -> None:
    assert read_dicom(pydicom_file(name)).PhotometricInterpretation == "YBR_RCT"
    rgb = read_dicom(pydicom_file(name)).pixel_array.astype(np.float64)  # the decoder's RGB
    np.testing.assert_allclose(_decode(name).hu[0], rgb @ BT601, atol=1e-3)


def test_one_bit_segmentation() -> None:
    volume = _decode("liver_1frame.dcm")
    assert volume.hu.shape == (1, 512, 512)
    assert set(np.unique(volume.hu).tolist()) == {0.0, 1.0}
    assert float(volume.hu.sum()) == 36233.0
    np.testing.assert_array_equal(volume.hu, _decode("liver_expb_1frame.dcm").hu)


# -- VOI LUT ------------------------------------------------------------------------


def test_window_of_mr_small_only_when_asked() -> None:
    ds = read_dicom(pydicom_file("MR_small.dcm"))
    assert (float(ds.WindowCenter), float(ds.WindowWidth)) == (600.0, 1600.0)
    values = _decode("MR_small.dcm").hu

    shown = _decode("MR_small.dcm", voi_lut=True).hu

    np.testing.assert_allclose(shown, np.clip((values - 599.5) / 1599 + 0.5, 0, 1), atol=1e-6)
    assert float(shown.min()) == pytest.approx((127 - 599.5) / 1599 + 0.5, abs=1e-6)
    assert shown.max() == 1.0  # 2145 is above the window


def test_prefix_applies_the_window_only_with_image_voi_lut() -> None:
    record = record_pb2.StudyRecord(
        images=[
            record_pb2.EncodedFile(format="dicom", name="a.dcm", data=pydicom_file("MR_small.dcm"))
        ]
    )
    plain = PipelineSpec(image_slices=1, image_resize=64, image_crop=64)
    voi = PipelineSpec(image_slices=1, image_resize=64, image_crop=64, image_voi_lut=True)
    assert PipelineSpec.from_proto(voi.to_proto()) == voi
    assert voi.to_proto().image_voi_lut and not plain.to_proto().image_voi_lut
    assert voi.prefix_key() != plain.prefix_key()

    hu = run_prefix(record, plain)["hu"]
    shown = run_prefix(record, voi)["hu"]

    values = _decode("MR_small.dcm").hu
    np.testing.assert_allclose(hu, values, atol=1e-3)  # same grid: resampling is the identity
    # Display values are stored as float16: at most 2^-12 off in [0, 1].
    expected = np.clip((values - 599.5) / 1599 + 0.5, 0, 1)
    np.testing.assert_allclose(shown, expected, atol=2**-12 + 1e-6)


# -- multi-frame and series ------------------------------------------------------


@pytest.mark.parametrize("name", ["rtdose.dcm", "rtdose_rle.dcm", "rtdose_expb.dcm"])
def test_rt_dose_frames_become_slices_with_grid_offsets(name: str) -> None:
    volume = _decode(name)

    assert volume.hu.shape == (15, 10, 10)
    assert volume.spacing_mm == pytest.approx((5.0, 10.0, 10.0))  # GridFrameOffsetVector
    np.testing.assert_array_equal(volume.hu, _decode("rtdose.dcm").hu)
    np.testing.assert_array_equal(volume.hu[0], _decode("rtdose_1frame.dcm").hu[0])
    assert volume.hu.max() == 1254000.0  # stored dose; DoseGridScaling is not a rescale


def test_two_frame_colour_and_thirty_frame_ultrasound() -> None:
    two = _decode("SC_rgb_rle_2frame.dcm")
    reference = _decode("SC_rgb_rle.dcm").hu[0]
    assert two.hu.shape == (2, 100, 100)
    np.testing.assert_array_equal(two.hu[0], reference)
    np.testing.assert_allclose(two.hu[1], 255 - reference, atol=1e-3)  # frame 2 is inverted

    us = _decode("examples_ybr_color.dcm")  # JPEG baseline YBR_FULL_422, 30 frames
    frames = read_dicom(pydicom_file("examples_ybr_color.dcm")).pixel_array.astype(np.float64)
    assert us.hu.shape == (30, 240, 320)
    np.testing.assert_allclose(us.hu, frames @ BT601, atol=1e-3)


def _folder(name: str) -> list[Path]:
    return sorted((pydicom_file_path("CT_small.dcm").parent / "dicomdirtests" / name).iterdir())


def test_real_ct_series_is_ordered_by_position_against_instance_numbers() -> None:
    paths = _folder("98892001/CT5N")  # InstanceNumber 6..10 while z falls
    z = [float(read_dicom(p.read_bytes()).ImagePositionPatient[2]) for p in paths]
    assert z == sorted(z, reverse=True)

    for order in (paths, paths[::-1]):
        volume = decode_series([p.read_bytes() for p in order])
        assert volume.hu.shape == (5, 16, 16)
        for out, p in enumerate(paths[::-1]):  # ascending z
            np.testing.assert_array_equal(volume.hu[out], decode_series([p.read_bytes()]).hu[0])
        assert volume.spacing_mm == pytest.approx((2.5, 0.488281, 0.488281))


def test_real_series_with_a_stray_slice_keeps_the_contiguous_run() -> None:
    paths = _folder("77654033/CT2")  # z = -99.48, then 103.02, 104.27, 105.52 mm

    volume = decode_series([p.read_bytes() for p in paths])

    assert volume.hu.shape == (3, 16, 16)
    assert (volume.dropped_slices, volume.synthesised_slices) == (1, 0)
    assert volume.spacing_mm[0] == pytest.approx(1.25, abs=1e-4)
    for out, p in enumerate(paths[1:]):
        np.testing.assert_array_equal(volume.hu[out], decode_series([p.read_bytes()]).hu[0])


def test_real_localizer_series_mixing_planes_gives_one_plane_whatever_the_order() -> None:
    paths = _folder("98892003/MR2")  # three series; two tie at three files each
    results = []
    for order in (paths, paths[::-1]):
        volume = decode_series([p.read_bytes() for p in order])
        results.append(volume)
        # "...0.136" < "...0.17" as strings; its three files lie in three planes.
        assert volume.series_uid == "1.3.6.1.4.1.5962.1.1.0.0.0.1196533885.18148.0.136"
        assert volume.hu.shape == (1, 16, 16) and volume.dropped_slices == 2
    np.testing.assert_array_equal(results[0].hu, results[1].hu)


# -- what is not decoded, and why ---------------------------------------------------


@pytest.mark.parametrize(
    ("name", "sop_class"),
    [
        ("reportsi.dcm", "Basic Text SR Storage"),
        ("test-SR.dcm", "Comprehensive SR Storage"),
        ("rtplan.dcm", "RT Plan Storage"),
        ("waveform_ecg.dcm", "12-lead ECG Waveform Storage"),
        ("dicomdirtests/DICOMDIR", "Media Storage Directory Storage"),
        ("dicomdirtests/DICOMDIR-bigEnd", "Media Storage Directory Storage"),
    ],
)
def test_non_image_objects_are_not_image_errors_naming_the_sop_class(
    name: str, sop_class: str
) -> None:
    with pytest.raises(NotAnImageError, match=rf"{name}: {sop_class}: not an image") as info:
        _decode(name)
    assert info.value.kind == "not_image"


@pytest.mark.filterwarnings("ignore:Invalid value for VR:UserWarning")  # badVR.dcm
@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("JPEG-lossy.dcm", r"(?s)JPEG Extended \(Process 2 and 4\).*libjpeg"),  # bad scan header
        ("JPEG2000-embedded-sequence-delimiter.dcm", r"JPEG 2000 Image Compression"),
        ("MR_truncated.dcm", r"pixel data is 8130 bytes, expected 8192"),
        ("badVR.dcm", r"invalid NumberOfFrames '1A'"),
        ("priv_SQ.dcm", r"MR Image Storage without PixelData"),
        ("rtstruct.dcm", r"not DICOM"),  # a bare dataset: no preamble, no File Meta
    ],
)
def test_broken_real_files_are_decode_errors_saying_why(name: str, message: str) -> None:
    with pytest.raises(DecodeError, match=message) as info:
        _decode(name)
    assert type(info.value) is DecodeError and info.value.kind == "decode"


# -- pack: real files in a raw study layout -----------------------------------------


def _jpeg_xl(name: str) -> bytes:
    """A real file relabelled JPEG XL (pydicom cannot decode that syntax)."""
    data = pydicom_file(name)
    htj2k = b"1.2.840.10008.1.2.4.201\0"  # the same length as the JPEG XL UID, padded
    ds = read_dicom(data)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.201"
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue().replace(htj2k, b"1.2.840.10008.1.2.4.110\0")


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Invalid value for VR:UserWarning")  # rtplan.dcm's UIDs
def test_pack_real_files_decodes_images_and_quarantines_the_rest(
    tmp_path: Path, deid_key: object
) -> None:
    raw = tmp_path / "raw"
    layout = {
        "study_a": [  # a real 5-slice CT (files without a suffix) beside non-images
            *[(f"ct/{p.name}", p.read_bytes()) for p in _folder("98892001/CT5N")],
            ("report.dcm", pydicom_file("reportsi.dcm")),
            ("DICOMDIR", pydicom_file("dicomdirtests/DICOMDIR")),
            ("broken_jpeg.dcm", pydicom_file("JPEG-lossy.dcm")),
        ],
        "study_b": [
            ("mr_rle.dcm", pydicom_file("MR_small_RLE.dcm")),
            ("plan.dcm", pydicom_file("rtplan.dcm")),
            ("mr_jxl.dcm", _jpeg_xl("MR_small_jp2klossless.dcm")),
        ],
        "study_c": [  # two series: the 15-frame dose grid is the one served
            ("sc_jpeg_lossless.dcm", pydicom_file("SC_rgb_jpeg_gdcm.dcm")),
            ("dose_rle.dcm", pydicom_file("rtdose_rle.dcm")),
        ],
        "study_d": [("sr.dcm", pydicom_file("test-SR.dcm"))],
    }
    for study, files in layout.items():
        for rel, data in files:
            assert read_dicom(data).get("BurnedInAnnotation") != "YES"
            (raw / study / rel).parent.mkdir(parents=True, exist_ok=True)
            (raw / study / rel).write_bytes(data)
    out = tmp_path / "out"

    pack_dataset(raw, out, PackConfig(key=deid_key, workers=1, shard_samples=4))

    quarantine = [json.loads(line) for line in (out / QUARANTINE_NAME).read_text().splitlines()]
    found = {(q["path"], q["kind"]) for q in quarantine}
    assert found == {
        ("study_a/report.dcm", "not_image"),
        ("study_a/DICOMDIR", "not_image"),
        ("study_a/broken_jpeg.dcm", "decode"),
        ("study_b/plan.dcm", "not_image"),
        ("study_b/mr_jxl.dcm", "decode"),
        ("study_d/sr.dcm", "not_image"),
        ("study_d", "no_usable_files"),
    }
    reasons = {q["path"]: q["reason"] for q in quarantine}
    assert "Basic Text SR Storage: not an image" in reasons["study_a/report.dcm"]
    assert "Media Storage Directory Storage: not an image" in reasons["study_a/DICOMDIR"]
    assert "RT Plan Storage: not an image" in reasons["study_b/plan.dcm"]
    assert "Comprehensive SR Storage: not an image" in reasons["study_d/sr.dcm"]
    assert "JPEG Extended (Process 2 and 4)" in reasons["study_a/broken_jpeg.dcm"]
    assert (
        "JPEG XL Lossless (1.2.840.10008.1.2.4.110) is not supported"
        in (reasons["study_b/mr_jxl.dcm"])
    )

    with ShardDataset(out) as ds:
        assert len(ds) == 3
        a, b, c = (ds.read(i) for i in range(3))
    ct = decode_series([f.data for f in a.images])
    assert ct.hu.shape == (5, 16, 16) and len(a.images) == 5
    reference = decode_series([p.read_bytes() for p in _folder("98892001/CT5N")])
    np.testing.assert_array_equal(ct.hu, reference.hu)  # de-identification keeps pixels
    assert (a.meta["modality"], a.meta["image_slices"], a.meta["image_series"]) == ("CT", "5", "1")
    assert a.meta["series_uid"] == ct.series_uid
    np.testing.assert_array_equal(
        decode_series([f.data for f in b.images]).hu, _decode("MR_small.dcm").hu
    )
    served = decode_series([f.data for f in c.images])
    assert served.hu.shape == (15, 10, 10)
    np.testing.assert_array_equal(served.hu, _decode("rtdose.dcm").hu)
    assert c.meta["series_uid"] == served.series_uid != ""
    assert (c.meta["image_series"], c.meta["image_slices"], c.meta["modality"]) == (
        "2",
        "15",
        "RTDOSE",
    )
