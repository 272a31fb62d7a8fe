"""HU handling, windowing, slicing/orientation and resizing."""

import nibabel as nib
import numpy as np
import pytest
from data_helpers import AFFINE, head_volume, write_image, write_nifti

from lcgan_lightning.data.preprocess import (
    acquisition_axis,
    image_to_hu,
    resize_images,
    resize_masks,
    resolve_window,
    to_slices,
    window_to_unit,
)
from lcgan_lightning.data.validation import DatasetError


@pytest.mark.parametrize("storage", ["uint16", "int16", "scaled"])
def test_hu_round_trip(tmp_path, storage):
    hu, _ = head_volume([(1, 2)])
    path = write_image(tmp_path / f"{storage}.nii.gz", hu, storage)
    img = nib.load(str(path))
    got = image_to_hu(path, img)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, hu.astype(np.float32))
    assert got.min() == -1000 and got.max() == 1000


def test_uint16_offset_values(tmp_path):
    # stored 0 -> -1024 HU, 1024 -> 0 HU, 1094 -> 70 HU (BHSD convention)
    path = write_nifti(tmp_path / "u.nii", np.array([0, 1024, 1094] * 2, dtype=np.uint16).reshape(1, 2, 3),
                       dtype=np.uint16)
    np.testing.assert_array_equal(image_to_hu(path, nib.load(str(path))).ravel(), [-1024, 0, 70] * 2)


def test_int16_without_negative_values_is_offset_storage(tmp_path):
    hu, _ = head_volume()
    path = write_nifti(tmp_path / "o.nii", hu.astype(np.int32) + 1024, dtype=np.int16)
    np.testing.assert_array_equal(image_to_hu(path, nib.load(str(path))), hu)
    # an explicit offset overrides the detection
    np.testing.assert_array_equal(image_to_hu(path, nib.load(str(path)), hu_offset=0), hu + 1024)


def test_window_values_hand_computed():
    # brain 40/80: [0, 80] -> [-1, 1]; 40 -> 0; 60 -> 0.5; below/above clip
    hu = np.array([-1000, 0, 20, 40, 60, 80, 1000], dtype=np.float32)
    np.testing.assert_allclose(window_to_unit(hu, *resolve_window("brain")), [-1, -1, -0.5, 0, 0.5, 1, 1])
    assert resolve_window([80, 200]) == (80.0, 200.0)
    assert resolve_window({"level": 600, "width": 2800}) == (600.0, 2800.0)
    with pytest.raises(DatasetError, match="unknown window 'lung'"):
        resolve_window("lung")


def test_acquisition_axis_is_largest_spacing():
    assert acquisition_axis(np.diag([0.5, 0.5, 5.0, 1])) == 2
    assert acquisition_axis(np.diag([5.0, 0.45, 0.45, 1])) == 0
    assert acquisition_axis(np.diag([1.0, 1.0, 1.0, 1])) == 2  # isotropic: default 3rd axis


def test_orientation_anterior_up_right_on_left():
    vol = np.zeros((4, 5, 3), dtype=np.int16)
    # RAS affine: voxel (X-1, Y-1) is the most right and most anterior one
    vol[3, 4, :] = 1
    s = to_slices(vol, np.diag([0.5, 0.5, 5.0, 1]), 2)
    assert s.shape == (3, 5, 4)  # [slices, rows = A-P, cols = R-L]
    assert s[0, 0, 0] == 1 and s.sum() == 3
    # LPS-like affine (DICOM-derived files): voxel (0, 0) is the most right and anterior
    vol2 = np.zeros((4, 5, 3), dtype=np.int16)
    vol2[0, 0, :] = 1
    s2 = to_slices(vol2, np.diag([-0.5, -0.5, 5.0, 1]), 2)
    assert s2[0, 0, 0] == 1
    # sagittal acquisition along axis 0: slices are [Y(A), Z(S)] planes with superior up
    vol3 = np.zeros((3, 4, 5), dtype=np.int16)
    vol3[:, 1, 4] = 1  # top (most superior) row
    s3 = to_slices(vol3, np.diag([5.0, 0.5, 0.5, 1]), 0)
    assert s3.shape == (3, 5, 4) and s3[:, 0, :].sum() == 3


def test_slice_index_follows_file_order():
    _, label = head_volume([(2, 4)])
    s = to_slices(label, AFFINE, 2)
    assert np.flatnonzero(s.reshape(6, -1).any(axis=1)).tolist() == [4]


def test_resize_keeps_mask_labels_valid():
    rng = np.random.default_rng(0)
    masks = rng.integers(0, 6, size=(3, 64, 64)).astype(np.uint8)
    masks[:, :, :10] = 0
    out = resize_masks(masks, 32)
    assert out.dtype == np.uint8 and out.shape == (3, 32, 32)
    assert set(np.unique(out)) <= set(np.unique(masks))
    # nearest-exact picks pixel 2i+1 (centre) when halving
    np.testing.assert_array_equal(out, masks[:, 1::2, 1::2])


def test_resize_images_range_and_padding():
    img = np.ones((2, 20, 40), dtype=np.float32)  # non-square: padded with air to 40x40
    out = resize_images(img, 20)
    assert out.shape == (2, 20, 20)
    assert out.min() >= -1 and out.max() <= 1
    np.testing.assert_allclose(out[:, 0, :], -1.0)  # padding rows (air)
    np.testing.assert_allclose(out[:, 10, :], 1.0)  # centre row is image
