"""dataengine.formats.dicom._series: series choice, slice order, duplicates,
gaps and skipped non-image files, on synthetic series with known values."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.encaps import encapsulate

from dataengine.errors import DecodeError
from dataengine.formats.dicom import decode_series, pick_series, read_dicom, require_image

from .conftest import (
    ct_slice,
    image_file,
    pydicom_file,
    stored_values,
    to_hu,
)


def test_series_is_sorted_by_position_not_file_order_or_instance_number() -> None:
    z = [-10.0, -7.5, -5.0, -2.5, 0.0, 2.5]
    stored = [stored_values(k) for k in range(len(z))]
    # InstanceNumber runs against the positions, so only positions give this order.
    files = [
        ct_slice(stored[k], position=(1.0, 2.0, z[k]), instance=len(z) - k) for k in range(len(z))
    ]
    shuffle = [3, 0, 5, 1, 4, 2]

    volume = decode_series([files[k] for k in shuffle])

    assert volume.hu.shape == (6, 4, 5)
    for k in range(len(z)):
        np.testing.assert_array_equal(volume.hu[k], to_hu(stored[k]))
    assert volume.hu[0, 0, 0] == -1024.0  # stored 0
    assert volume.hu[5, 3, 4] == 2 * (19 * 7 + 500) - 1024
    assert volume.spacing_mm == pytest.approx((2.5, 0.5, 0.7))
    assert volume.series_uid == "1.2.826.0.1.3680043.8.498.1"


def test_without_positions_instance_number_orders_the_series() -> None:
    stored = [stored_values(k) for k in range(4)]
    instance = [3, 1, 4, 2]
    files = [ct_slice(stored[k], position=None, instance=instance[k]) for k in range(4)]

    volume = decode_series(files)

    for out, k in enumerate([1, 3, 0, 2]):
        np.testing.assert_array_equal(volume.hu[out], to_hu(stored[k]))
    assert volume.spacing_mm == pytest.approx((2.5, 0.5, 0.7))  # SliceThickness


def test_without_positions_or_instance_numbers_file_order_is_kept() -> None:
    stored = [stored_values(k) for k in range(3)]
    files = [ct_slice(s, position=None, instance=None) for s in stored]

    volume = decode_series(files)

    for k in range(3):
        np.testing.assert_array_equal(volume.hu[k], to_hu(stored[k]))


def test_duplicate_positions_keep_the_first_file() -> None:
    stored = [stored_values(k) for k in range(4)]
    files = [
        ct_slice(stored[0], position=(0.0, 0.0, 0.0), instance=1),
        ct_slice(stored[1], position=(0.0, 0.0, 5.0), instance=2),
        ct_slice(stored[2], position=(0.0, 0.0, 0.0), instance=3),  # duplicate of file 0
        ct_slice(stored[3], position=(0.0, 0.0, 10.0), instance=4),
    ]

    volume = decode_series(files)

    assert volume.hu.shape[0] == 3
    for out, k in enumerate([0, 1, 3]):
        np.testing.assert_array_equal(volume.hu[out], to_hu(stored[k]))
    assert volume.spacing_mm[0] == pytest.approx(5.0)


def test_mixed_series_keep_the_largest() -> None:
    big, small = "1.2.3.1", "1.2.3.2"
    files = [
        ct_slice(stored_values(9), position=(0, 0, 0), instance=1, series_uid=small),
        ct_slice(stored_values(0), position=(0, 0, 0), instance=1, series_uid=big),
        ct_slice(stored_values(1), position=(0, 0, 1), instance=2, series_uid=big),
        ct_slice(stored_values(8), position=(0, 0, 1), instance=2, series_uid=small),
        ct_slice(stored_values(2), position=(0, 0, 2), instance=3, series_uid=big),
    ]

    volume = decode_series(files)

    assert volume.series_uid == big
    assert volume.hu.shape == (3, 4, 5)
    for k in range(3):
        np.testing.assert_array_equal(volume.hu[k], to_hu(stored_values(k)))


def test_slices_of_different_sizes_are_decode_error() -> None:
    files = [
        ct_slice(stored_values(0), position=(0, 0, 0), instance=1),
        ct_slice(stored_values(1, rows=6), position=(0, 0, 1), instance=2),
    ]
    with pytest.raises(DecodeError, match=r"b\.dcm: 6x5 pixels.*a\.dcm.*4x5"):
        decode_series(files, names=["a.dcm", "b.dcm"])


def test_empty_series_is_decode_error() -> None:
    with pytest.raises(DecodeError, match="no files"):
        decode_series([])


def test_missing_slices_are_filled_by_linear_interpolation() -> None:
    z = [0.0, 2.0, 4.0, 12.0, 14.0, 16.0]  # 6, 8 and 10 mm are missing
    stored = [stored_values(k) for k in range(len(z))]
    files = [ct_slice(stored[k], position=(0, 0, z[k]), instance=k + 1) for k in range(len(z))]

    volume = decode_series(files[::-1])

    assert volume.hu.shape == (9, 4, 5)
    assert volume.synthesised_slices == 3 and volume.dropped_slices == 0
    assert volume.spacing_mm[0] == pytest.approx(2.0)
    for out, k in [(0, 0), (1, 1), (2, 2), (6, 3), (7, 4), (8, 5)]:
        np.testing.assert_array_equal(volume.hu[out], to_hu(stored[k]))
    for j, t in [(3, 0.25), (4, 0.5), (5, 0.75)]:
        np.testing.assert_allclose(
            volume.hu[j], (1 - t) * to_hu(stored[2]) + t * to_hu(stored[3]), atol=1e-3
        )


def test_a_gap_too_large_to_fill_keeps_the_longest_run() -> None:
    z = [-200.0, 0.0, 1.0, 2.0, 3.0]  # a stray slice 200 mm from the stack
    files = [ct_slice(stored_values(k), position=(0, 0, z[k]), instance=k + 1) for k in range(5)]

    volume = decode_series(files)

    assert volume.hu.shape == (4, 4, 5)
    assert (volume.synthesised_slices, volume.dropped_slices) == (0, 1)
    for out in range(4):
        np.testing.assert_array_equal(volume.hu[out], to_hu(stored_values(out + 1)))
    assert volume.spacing_mm[0] == pytest.approx(1.0)


def test_near_duplicate_positions_keep_the_first_file() -> None:
    files = [
        ct_slice(stored_values(0), position=(0, 0, 5.004), instance=1),
        ct_slice(stored_values(1), position=(0, 0, 0.0), instance=2),
        ct_slice(stored_values(2), position=(0, 0, 5.0), instance=3),  # 4 um below file 0
    ]

    volume = decode_series(files)

    assert volume.hu.shape[0] == 2 and volume.dropped_slices == 1
    np.testing.assert_array_equal(volume.hu[1], to_hu(stored_values(0)))


def test_series_tie_goes_to_the_smallest_uid_whatever_the_file_order() -> None:
    a = [
        ct_slice(stored_values(k), position=(0, 0, k), instance=k, series_uid="1.2.9")
        for k in range(2)
    ]
    b = [
        ct_slice(stored_values(5 + k), position=(0, 0, k), instance=k, series_uid="1.2.10")
        for k in range(2)
    ]

    for files in (a + b, b + a, [a[0], b[0], a[1], b[1]]):
        volume = decode_series(files)
        assert volume.series_uid == "1.2.10"  # string order: "1.2.10" < "1.2.9"
        np.testing.assert_array_equal(volume.hu[0], to_hu(stored_values(5)))
    assert pick_series({"1.2.9": 3, "1.2.10": 2}) == "1.2.9"


def test_non_image_files_in_a_series_are_skipped() -> None:
    files = [
        pydicom_file("reportsi.dcm"),
        ct_slice(stored_values(0), position=(0, 0, 0), instance=1),
        ct_slice(stored_values(1), position=(0, 0, 2), instance=2),
    ]
    volume = decode_series(files)
    assert volume.hu.shape == (2, 4, 5)
    np.testing.assert_array_equal(volume.hu[1], to_hu(stored_values(1)))


def test_an_undecodable_series_beside_the_served_one_is_not_decoded() -> None:
    served = [
        ct_slice(stored_values(k), position=(0, 0, k), instance=k, series_uid="1.2.5")
        for k in range(2)
    ]
    other = image_file(
        np.zeros((4, 4), np.uint8),
        bits_allocated=8,
        syntax="1.2.840.10008.1.2.4.100",  # MPEG-2 video: no decoder
        pixel_data=encapsulate([bytes(64)]),
    )
    volume = decode_series([other, *served])
    assert volume.series_uid == "1.2.5" and volume.hu.shape == (2, 4, 5)
    with pytest.raises(DecodeError, match=r"v\.dcm: MPEG2 Main Profile / Main Level"):
        require_image(read_dicom(other), name="v.dcm")
