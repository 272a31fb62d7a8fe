"""Every bad-input case raises DatasetError whose message names the file and the defect."""

import re

import numpy as np
import pytest
from data_helpers import (
    AFFINE,
    bhsd_cases,
    head_volume,
    truncate_gzip,
    write_bhsd,
    write_ctich,
    write_garbage,
    write_nifti,
)

from lcgan_lightning.data.datamodule import CTSliceDataModule
from lcgan_lightning.data.loading import load_slices
from lcgan_lightning.data.validation import DatasetError


@pytest.fixture
def root(tmp_path):
    return write_bhsd(tmp_path / "ds", {"ID_a_ID_1": [(2, 1)], "ID_b_ID_1": [(3, 2)]})


def _raises(root, pattern, **kw):
    with pytest.raises(DatasetError) as info:
        load_slices(root, kw.pop("dataset_format", "bhsd"), image_size=32, **kw)
    msg = str(info.value)
    assert re.search(pattern, msg, flags=re.S), msg
    return msg


def test_shape_mismatch(root):
    _, label = head_volume([(2, 1)], shape=(32, 30, 6))
    bad = write_nifti(root / "labelsTr" / "ID_b_ID_1.nii.gz", label, dtype=np.uint8)
    msg = _raises(root, "shape mismatch")
    assert msg.startswith(str(bad)) and "(32, 30, 6)" in msg and "(32, 32, 6)" in msg


def test_affine_mismatch(root):
    _, label = head_volume([(2, 1)])
    affine = AFFINE.copy()
    affine[0, 3] = 12.0
    bad = write_nifti(root / "labelsTr" / "ID_a_ID_1.nii.gz", label, affine, dtype=np.uint8)
    assert _raises(root, "affine mismatch").startswith(str(bad))


def test_label_value_outside_map(root):
    _, label = head_volume([(2, 1), (9, 3)])
    bad = write_nifti(root / "labelsTr" / "ID_a_ID_1.nii.gz", label, dtype=np.uint8)
    msg = _raises(root, r"label value\(s\) \[9\] outside the label map")
    assert msg.startswith(str(bad))


def test_non_integer_labels(root):
    _, label = head_volume([(2, 1)])
    label = label.astype(np.float32)
    label[10, 10, 1] = 0.5
    bad = write_nifti(root / "labelsTr" / "ID_b_ID_1.nii.gz", label, dtype=np.float32)
    msg = _raises(root, r"non-integer labels: 1 voxels have fractional values \(e.g. \[0.5\]\)")
    assert msg.startswith(str(bad))


def test_float_labels_with_integral_values_are_fine(root):
    _, label = head_volume([(3, 2)])
    write_nifti(root / "labelsTr" / "ID_b_ID_1.nii.gz", label, dtype=np.float32)
    assert len(load_slices(root, "bhsd", 32)) == 2


def test_nan_in_image(root):
    hu, _ = head_volume([(2, 1)])
    hu = hu.astype(np.float32)
    hu[3, 4, 5] = np.nan
    bad = write_nifti(root / "imagesTr" / "ID_a_ID_1.nii.gz", hu, dtype=np.float32)
    msg = _raises(root, r"NaN/inf values \(1 voxels, first at voxel \(3, 4, 5\)\)")
    assert msg.startswith(str(bad))


@pytest.mark.parametrize("breaker", [truncate_gzip, write_garbage])
def test_unreadable_file(root, breaker):
    bad = breaker(root / "imagesTr" / "ID_b_ID_1.nii.gz")
    assert _raises(root, "unreadable or corrupt file").startswith(str(bad))


def test_image_without_label(root):
    (root / "labelsTr" / "ID_b_ID_1.nii.gz").unlink()
    msg = _raises(root, "image without label")
    assert msg.startswith(str(root / "imagesTr" / "ID_b_ID_1.nii.gz"))


def test_label_without_image(root):
    (root / "imagesTr" / "ID_a_ID_1.nii.gz").unlink()
    msg = _raises(root, "label without image")
    assert msg.startswith(str(root / "labelsTr" / "ID_a_ID_1.nii.gz"))


def test_no_usable_slice(tmp_path):
    root = write_bhsd(tmp_path / "empty", {"c1": [], "c2": []})
    msg = _raises(root, r"no usable slice in the whole dataset \(2 volumes, 12 slices, lesion_only=True")
    assert msg.startswith(str(root))


def test_missing_root_and_folders(tmp_path):
    assert _raises(tmp_path / "nope", "dataset root not found").startswith(str(tmp_path / "nope"))
    (tmp_path / "x").mkdir()
    assert _raises(tmp_path / "x", "folder not found").startswith(str(tmp_path / "x" / "imagesTr"))


def test_ctich_csv_missing_column(tmp_path):
    root = write_ctich(tmp_path / "c", {1: [(("Subdural",), 1)]})
    csv_path = root / "hemorrhage_diagnosis_raw_ct.csv"
    csv_path.write_text(csv_path.read_text().replace("Subdural", "SubduralX"))
    msg = _raises(root, r"missing column\(s\) \['Subdural'\]", dataset_format="ctich")
    assert msg.startswith(str(csv_path))


def test_fraction_selects_no_patient(tmp_path):
    root = write_bhsd(tmp_path / "ds", bhsd_cases(6))
    with pytest.raises(DatasetError, match=r"data.fraction=0.0: fraction selects no patient"):
        CTSliceDataModule(root=root, image_size=32, fraction=0.0)
    with pytest.raises(DatasetError, match=r"data.fraction=1.5: fraction selects no patient"):
        CTSliceDataModule(root=root, image_size=32, fraction=1.5)


def test_too_few_patients_for_split(tmp_path):
    root = write_bhsd(tmp_path / "ds", bhsd_cases(2))
    dm = CTSliceDataModule(root=root, image_size=32)
    with pytest.raises(DatasetError, match="2 patient\\(s\\) cannot be split.*training would get no patient"):
        dm.setup()


def test_unknown_config_key(tmp_path):
    with pytest.raises(DatasetError) as info:
        CTSliceDataModule(root=tmp_path, image_size=32, foo=1)
    msg = str(info.value)
    assert "data: unknown config key(s) ['foo']" in msg and "'image_size'" in msg and "'fraction'" in msg
    with pytest.raises(DatasetError, match=r"data.phantom: unknown config key\(s\) \['size'\]"):
        CTSliceDataModule(root=tmp_path, phantom={"num_patients": 3, "size": 4})
