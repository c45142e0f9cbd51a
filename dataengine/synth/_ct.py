"""A synthetic CT series as a hospital PACS exports it: Part-10 files,
explicit VR little endian (or RLE Lossless, or JPEG 2000 Lossless), CT Image
Storage, int16 stored values with ``HU = stored * 1 - 1024``, identifying
headers and a private block."""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, JPEG2000Lossless, RLELossless, generate_uid

from dataengine.synth._identity import Finding, Identity

__all__ = ["CT_IMAGE_STORAGE", "TRANSFER_SYNTAXES", "CtSeries", "make_ct_series", "render_volume"]

# openjpeg logs one INFO line per encoded tile, i.e. per slice
logging.getLogger("openjpeg.encode").setLevel(logging.WARNING)

# name -> transfer syntax of the written files; the encoded ones are lossless,
# so every name yields the same pixels
TRANSFER_SYNTAXES: dict[str, UID] = {
    "explicit": ExplicitVRLittleEndian,
    "rle": RLELossless,
    "jpeg2000": JPEG2000Lossless,
}

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
RESCALE_INTERCEPT = -1024.0
AIR_HU = -1000.0
TISSUE_HU = 40.0
LESION_HU = 300.0
_PRIVATE_CREATOR = "ACME 1.1"


@dataclass(frozen=True)
class CtSeries:
    """Encoded files in the order written (shuffled instance order) and the UIDs used."""

    files: tuple[bytes, ...]
    study_uid: str
    series_uid: str
    frame_uid: str
    sop_uids: tuple[str, ...]  # by instance number - 1


def render_volume(
    finding: Finding, slices: int, rows: int, cols: int, rng: np.random.Generator
) -> np.ndarray:
    """HU volume ``[slices, rows, cols]``: an elliptic body of soft tissue in
    air with noise, plus a hyperdense disc in the named quadrant.

    Quadrants follow the radiological convention: the patient's right is the
    image's left (low column index), upper is low row index.
    """
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float32)
    cy, cx = (rows - 1) / 2, (cols - 1) / 2
    ry, rx = rows * 0.40, cols * 0.45
    body = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
    vol = np.full((slices, rows, cols), AIR_HU, dtype=np.float32)
    vol[:, body] = TISSUE_HU
    if finding.quadrant is not None:
        horizontal, vertical = finding.quadrant.split()
        qy = cy - ry * 0.45 if vertical == "upper" else cy + ry * 0.45
        qx = cx - rx * 0.45 if horizontal == "right" else cx + rx * 0.45
        radius = max(2.0, min(rows, cols) * 0.11)
        disc = (yy - qy) ** 2 + (xx - qx) ** 2 <= radius**2
        vol[:, disc] = LESION_HU
    vol += rng.normal(0.0, 12.0, size=vol.shape).astype(np.float32)
    return vol


def _uid(seed: int, study_index: int, *parts: object) -> str:
    return generate_uid(
        entropy_srcs=["medstream-synth", str(seed), str(study_index), *map(str, parts)]
    )


_SPACING_MM = (0.7, 0.7)  # row, column
_THICKNESS_MM = 5.0


def _describe_study(ds: Dataset, ident: Identity, study_index: int) -> None:
    """Patient, study, series and equipment attributes, PHI included."""
    date = ident.study_datetime.strftime("%Y%m%d")
    time = ident.study_datetime.strftime("%H%M%S")
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = date
    ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = time
    ds.AccessionNumber = ident.accession
    ds.Modality = "CT"
    ds.Manufacturer = "ACME Medical"
    ds.InstitutionName = ident.institution
    ds.InstitutionAddress = ident.institution_address
    ds.ReferringPhysicianName = ident.doctor_dicom
    ds.StationName = "CT-ROOM-03"
    ds.StudyDescription = "CT ABDOMEN WITHOUT CONTRAST"
    ds.SeriesDescription = "AXIAL 5MM"
    ds.OperatorsName = "^".join(reversed(ident.technician)).upper()
    ds.ManufacturerModelName = "Synthetica 64"
    ds.PatientName = ident.dicom_name
    ds.PatientID = ident.mrn
    ds.PatientBirthDate = ident.birth_date.strftime("%Y%m%d")
    ds.PatientSex = ident.sex
    ds.PatientTelephoneNumbers = ident.phone_dashed
    ds.BodyPartExamined = "ABDOMEN"
    ds.KVP = "120"
    ds.DeviceSerialNumber = f"SN{study_index:06d}"
    ds.PatientPosition = "FFS"
    ds.StudyID = "1"
    ds.SeriesNumber = 2


def _describe_slice(ds: Dataset, i: int, rows: int, cols: int) -> None:
    """Geometry and pixel-format attributes of slice ``i`` (HU = stored - 1024)."""
    ds.SliceThickness = f"{_THICKNESS_MM:.1f}"
    ds.ImagePositionPatient = [
        f"{-cols * _SPACING_MM[1] / 2:.2f}",
        f"{-rows * _SPACING_MM[0] / 2:.2f}",
        f"{-i * _THICKNESS_MM:.2f}",
    ]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.PositionReferenceIndicator = ""
    ds.SliceLocation = f"{-i * _THICKNESS_MM:.2f}"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.PixelSpacing = [f"{_SPACING_MM[0]:.2f}", f"{_SPACING_MM[1]:.2f}"]
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.WindowCenter = "40"
    ds.WindowWidth = "400"
    ds.RescaleIntercept = f"{RESCALE_INTERCEPT:.0f}"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"


def _add_private_phi(ds: Dataset, ident: Identity, first_sop_uid: str) -> None:
    """PHI hidden where de-identification must find it: private elements,
    one inside a sequence item."""
    ref = Dataset()
    ref.ReferencedSOPClassUID = CT_IMAGE_STORAGE
    ref.ReferencedSOPInstanceUID = first_sop_uid
    block = ref.private_block(0x0009, _PRIVATE_CREATOR, create=True)
    block.add_new(0x02, "LO", ident.mrn)
    ds.ReferencedImageSequence = [ref]
    private = ds.private_block(0x0009, _PRIVATE_CREATOR, create=True)
    private.add_new(0x01, "LO", ident.dicom_name)
    private.add_new(0x03, "DA", ident.birth_date.strftime("%Y%m%d"))


def make_ct_series(
    ident: Identity,
    finding: Finding,
    *,
    seed: int,
    study_index: int,
    slices: int,
    rows: int,
    cols: int,
    rng: np.random.Generator,
    transfer_syntax: str = "explicit",
) -> CtSeries:
    """Encode one CT series, files in a shuffled instance order.

    ``transfer_syntax`` is a key of ``TRANSFER_SYNTAXES``. RLE and JPEG 2000
    are encoded by pylibjpeg's plugins (named, so the bytes do not depend on
    which encoders happen to be installed), keeping the SOP Instance UIDs.
    """
    syntax = TRANSFER_SYNTAXES[transfer_syntax]
    hu = render_volume(finding, slices, rows, cols, rng)
    stored = np.clip(np.rint(hu - RESCALE_INTERCEPT), -32768, 32767).astype("<i2")
    study_uid = _uid(seed, study_index, "study")
    series_uid = _uid(seed, study_index, "series")
    frame_uid = _uid(seed, study_index, "frame")
    sop_uids = tuple(_uid(seed, study_index, "sop", i) for i in range(slices))
    files: dict[int, bytes] = {}
    for i in range(slices):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = UID(CT_IMAGE_STORAGE)
        meta.MediaStorageSOPInstanceUID = UID(sop_uids[i])
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.SourceApplicationEntityTitle = "PACS_EXPORT"
        ds = Dataset()
        ds.file_meta = meta
        ds.preamble = b"\x00" * 128
        ds.SOPClassUID = CT_IMAGE_STORAGE
        ds.SOPInstanceUID = sop_uids[i]
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.InstanceNumber = i + 1
        _describe_study(ds, ident, study_index)
        _describe_slice(ds, i, rows, cols)
        _add_private_phi(ds, ident, sop_uids[0])
        ds.PixelData = stored[i].tobytes()
        if syntax != ExplicitVRLittleEndian:
            ds.compress(syntax, encoding_plugin="pylibjpeg", generate_instance_uid=False)
        buf = io.BytesIO()
        pydicom.dcmwrite(buf, ds, enforce_file_format=True)
        files[i] = buf.getvalue()
    order = rng.permutation(slices)
    return CtSeries(
        files=tuple(files[int(k)] for k in order),
        study_uid=study_uid,
        series_uid=series_uid,
        frame_uid=frame_uid,
        sop_uids=sop_uids,
    )
