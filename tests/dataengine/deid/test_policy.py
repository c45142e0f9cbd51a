"""dataengine.deid.policy and dataengine.deid.annex_e: the site's choices and
Table E.1-1 as data."""

from __future__ import annotations

import pytest
from pydicom.datadict import dictionary_VR, keyword_for_tag

from dataengine.deid import DeidPolicy
from dataengine.deid.annex_e import (
    ACTIONS,
    BASIC_PROFILE,
    MEDSTREAM_EXTRA,
    VERSION_ATTRIBUTES,
    repeating_action,
    resolve,
)
from dataengine.deid.policy import PrivateTagRef, parse_private_tag
from dataengine.errors import ConfigError


def test_defaults() -> None:
    policy = DeidPolicy()
    assert policy.date_mode == "shift"
    assert policy.max_date_shift_days == 365
    assert policy.keep_private == ()
    assert policy.allow_burned_in is False
    assert policy.describe() == {
        "date_mode": "shift",
        "max_date_shift_days": 365,
        "keep_private": [],
        "allow_burned_in": False,
    }


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"date_mode": "blur"}, "deid.date_mode"),
        ({"max_date_shift_days": 0}, "deid.max_date_shift_days"),
        ({"max_date_shift_days": 36501}, "deid.max_date_shift_days"),
        ({"max_date_shift_days": True}, "deid.max_date_shift_days"),
        ({"max_date_shift_days": "30"}, "deid.max_date_shift_days"),
        ({"keep_private": "0019,GEMS_ACQU_01,10"}, "deid.keep_private"),
        ({"keep_private": ("0019,GEMS_ACQU_01",)}, "deid.keep_private"),
        ({"keep_private": ("0018,GEMS_ACQU_01,10",)}, "deid.keep_private"),  # even group
        ({"keep_private": ("0019, ,10",)}, "deid.keep_private"),
        ({"keep_private": ("0019,X,1G",)}, "deid.keep_private"),
        ({"keep_private": (19,)}, "deid.keep_private"),
        ({"allow_burned_in": "yes"}, "deid.allow_burned_in"),
    ],
)
def test_bad_values_name_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        DeidPolicy(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field
    assert field in str(info.value)


def test_keep_private_is_normalized_and_parsed() -> None:
    policy = DeidPolicy(keep_private=["0019, GEMS_ACQU_01 ,0a", "0029,SIEMENS CSA HEADER,10"])  # type: ignore[arg-type]
    assert policy.keep_private == ("0019,GEMS_ACQU_01,0A", "0029,SIEMENS CSA HEADER,10")
    assert policy.private_refs == {
        PrivateTagRef(0x0019, "GEMS_ACQU_01", 0x0A),
        PrivateTagRef(0x0029, "SIEMENS CSA HEADER", 0x10),
    }
    assert hash(policy) == hash(DeidPolicy(keep_private=policy.keep_private))
    assert str(parse_private_tag("7fe1,GEMS_ID,ff")) == "7FE1,GEMS_ID,FF"


def test_table_is_the_standard_attributes() -> None:
    assert len(BASIC_PROFILE) >= 600
    for tag, (keyword, action) in {
        **BASIC_PROFILE,
        **MEDSTREAM_EXTRA,
        **VERSION_ATTRIBUTES,
    }.items():
        assert keyword_for_tag(tag) == keyword, hex(tag)  # the tag number is right
        assert action in ACTIONS
        resolve(action)
    expected = {
        "PatientName": "Z",
        "PatientID": "Z/D",
        "PatientBirthDate": "Z",
        "PatientSex": "Z",
        "PatientAge": "X",
        "PatientAddress": "X",
        "OtherPatientIDsSequence": "X",
        "AccessionNumber": "Z",
        "StudyID": "Z",
        "StudyDate": "Z",
        "SeriesDate": "X/D",
        "AcquisitionDate": "X/Z",
        "ContentDate": "Z/D",
        "AcquisitionDateTime": "X/Z/D",
        "InstitutionName": "X/Z/D",
        "InstitutionAddress": "X",
        "ReferringPhysicianName": "Z",
        "PerformingPhysicianName": "X",
        "OperatorsName": "X/Z/D",
        "StationName": "X/Z/D",
        "DeviceSerialNumber": "X/Z/D",
        "ProtocolName": "X/D",
        "StudyDescription": "X",
        "SeriesDescription": "X",
        "ImageComments": "X",
        "StudyInstanceUID": "U",
        "SeriesInstanceUID": "U",
        "SOPInstanceUID": "U",
        "FrameOfReferenceUID": "U",
        "ReferencedSOPInstanceUID": "U",
        "MediaStorageSOPInstanceUID": "U",
        "ReferencedImageSequence": "X/Z/U*",
        "SourceImageSequence": "X/Z/U*",
        "IconImageSequence": "X",
        "DigitalSignaturesSequence": "X",
        "OriginalAttributesSequence": "X",
        "RequestAttributesSequence": "X",
        "ContentSequence": "X",
        "ClinicalTrialSubjectID": "D",
        "VerifyingObserverName": "D",
    }
    # PS3.15 lists no software version attribute: the profile keeps them
    assert not set(VERSION_ATTRIBUTES) & (set(BASIC_PROFILE) | set(MEDSTREAM_EXTRA))
    assert {kw for kw, _ in VERSION_ATTRIBUTES.values()} == {
        "SoftwareVersions",
        "ImplementationVersionName",
    }
    by_keyword = {kw: action for kw, action in BASIC_PROFILE.values()}
    assert {k: by_keyword[k] for k in expected} == expected
    # every VR of the standard's table occurs, person names and UIDs included
    vrs = {dictionary_VR(tag) for tag in BASIC_PROFILE}
    assert {"PN", "UI", "DA", "DT", "TM", "SQ", "LO", "SH", "LT", "ST", "UT", "OB"} <= vrs


def test_repeating_groups_and_resolution() -> None:
    assert repeating_action(0x60003000) == "X"  # Overlay Data
    assert repeating_action(0x601E4000) == "X"  # Overlay Comments, another plane
    assert repeating_action(0x50020010) == "X"  # a curve
    assert repeating_action(0x60013000) is None  # odd group: private, handled elsewhere
    assert repeating_action(0x00100010) is None
    assert [resolve(a) for a in ("D", "Z", "X", "U", "K", "C")] == [
        "dummy",
        "empty",
        "remove",
        "remap",
        "keep",
        "remove",
    ]
    assert [resolve(a) for a in ("Z/D", "X/Z", "X/D", "X/Z/D", "X/Z/U*")] == [
        "empty",
        "empty",
        "remove",
        "empty",
        "recurse",
    ]
