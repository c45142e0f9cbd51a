"""DICOM element values read as text: the one reading that de-identification
(``deid/dicom.py``) and ``verify`` both use."""

from __future__ import annotations

from pydicom.dataelem import DataElement

__all__ = ["dicom_text", "element_texts", "element_values"]


def dicom_text(value: object) -> str:
    """A DICOM element value as text: bytes read as Latin-1, ``None`` as
    ``""``, padding spaces and NULs stripped."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return "" if value is None else str(value).strip(" \x00")


def element_values(elem: DataElement) -> list[object]:
    """The values of ``elem`` as a list, as pydicom holds them: none for an
    empty element, one for a single value (a string or bytes counts as one),
    else each value of a multi-valued element."""
    value = elem.value
    if value is None or value == "":
        return []
    if isinstance(value, str | bytes) or elem.VM <= 1:
        return [value]
    return list(value)


def element_texts(elem: DataElement) -> list[str]:
    """``element_values(elem)``, each read with ``dicom_text``."""
    return [dicom_text(v) for v in element_values(elem)]
