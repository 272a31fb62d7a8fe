"""Dataset format readers: class remapping (bhsd, ctich, folder), patient grouping, nnU-Net names."""

import json

import numpy as np
import pytest
from data_helpers import BOX_VOXELS, write_bhsd, write_ctich, write_folder

from lcgan_lightning.data.formats import patient_of
from lcgan_lightning.data.loading import load_slices
from lcgan_lightning.data.validation import DatasetError


def _classes_by_slice(s):
    return {(str(v), int(k)): sorted(set(np.unique(m).tolist()) - {0})
            for v, k, m in zip(s.volumes, s.slice_index, s.masks, strict=True)}


@pytest.mark.parametrize("storage", ["uint16", "int16"])
def test_bhsd_remap_and_hu(tmp_path, storage):
    # BHSD 1 EDH, 2 IPH, 3 IVH, 4 SAH, 5 SDH -> ours 4, 1, 2, 3, 5
    cases = {"ID_a_ID_x": [(1, 0), (2, 0), (3, 1)], "ID_b_ID_y": [(4, 3), (5, 5)]}
    s = load_slices(write_bhsd(tmp_path, cases, storage), "bhsd", image_size=32)
    assert _classes_by_slice(s) == {("ID_a_ID_x", 0): [1, 4], ("ID_a_ID_x", 1): [2],
                                    ("ID_b_ID_y", 3): [3], ("ID_b_ID_y", 5): [5]}
    assert int((np.asarray(s.masks) == 4).sum()) == BOX_VOXELS
    # lesion 70 HU, brain 30 HU in the brain window 40/80 -> 0.75 and -0.25
    img = np.asarray(s.images[0], dtype=np.float32)
    lesion = np.asarray(s.masks[0]) == 1
    np.testing.assert_allclose(img[lesion], 0.75, atol=1e-3)
    assert np.isclose(np.median(img), -0.25, atol=1e-3)


def test_bhsd_patients_group_studies_and_other_names(tmp_path):
    cases = {"ID_p1_ID_s1": [(2, 1)], "ID_p1_ID_s2": [(2, 2)], "case_007": [(3, 0)]}
    s = load_slices(write_bhsd(tmp_path, cases), "bhsd", image_size=32)
    assert s.patient_ids() == ["ID_p1", "case_007"]
    assert sorted(set(s.volumes.tolist())) == ["ID_p1_ID_s1", "ID_p1_ID_s2", "case_007"]
    assert patient_of("ID_0a1b2c_ID_99ff") == "ID_0a1b2c"


def test_nnunet_channel_suffix(tmp_path):
    root = write_bhsd(tmp_path, {"case_001": [(2, 1)]}, nnunet_channel=True)
    (root / "imagesTr" / "case_001_0001.nii.gz").write_bytes((root / "imagesTr" / "case_001_0000.nii.gz").read_bytes())
    s = load_slices(root, "bhsd", image_size=32)
    assert s.volumes.tolist() == ["case_001"] and s.slice_index.tolist() == [1]
    assert s.skipped == [{"file": str(root / "imagesTr" / "case_001_0001.nii.gz"),
                          "reason": "extra nnU-Net channel (only _0000 is used)"}]


def test_dataset_json_v1_labels_and_override(tmp_path):
    root = write_bhsd(tmp_path, {"c1": [(1, 0), (2, 1)]})
    # nnU-Net v1 style with another order: 1 = SDH, 2 = IVH
    (root / "dataset.json").write_text(json.dumps({"labels": {"0": "background", "1": "SDH", "2": "IVH"}}))
    assert _classes_by_slice(load_slices(root, "bhsd", 32)) == {("c1", 0): [5], ("c1", 1): [2]}
    # config label_map wins over dataset.json
    s = load_slices(root, "bhsd", 32, label_map={1: "IPH", 2: "SAH"})
    assert _classes_by_slice(s) == {("c1", 0): [1], ("c1", 1): [3]}
    (root / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "blob": 1, "thing": 2}}))
    with pytest.raises(DatasetError, match="dataset.json.*unknown class 'blob'"):
        load_slices(root, "bhsd", 32)


def test_ctich_classes_from_csv(tmp_path):
    cases = {49: [(("Intraparenchymal",), 0), (("Epidural",), 2), (("Subdural", "Subarachnoid"), 3)],
             50: [(("Intraventricular",), 5)]}
    root = write_ctich(tmp_path, cases, mask_value=255)
    s = load_slices(root, "ctich", image_size=32)
    assert _classes_by_slice(s) == {("049", 0): [1], ("049", 2): [4], ("050", 5): [2]}
    assert s.patient_ids() == ["049", "050"]
    assert len(s.skipped) == 1
    assert s.skipped[0]["file"].endswith("masks/049.nii")
    assert "slice 3 (SliceNumber 4): several subtype flags ['SAH', 'SDH']" in s.skipped[0]["reason"]
    # binary: kept, labelled with the first flagged class in our order, listed in notes
    b = load_slices(root, "ctich", image_size=32, multi_label_slices="binary")
    assert _classes_by_slice(b)[("049", 3)] == [3]
    assert b.skipped == [] and "kept for binary use" in b.notes[0]["reason"]


def test_ctich_lesion_without_flag_is_skipped(tmp_path):
    root = write_ctich(tmp_path, {1: [((), 2), (("Subdural",), 4)]})
    s = load_slices(root, "ctich", image_size=32)
    assert _classes_by_slice(s) == {("001", 4): [5]}
    assert "no subtype flag" in s.skipped[0]["reason"]


def test_folder_format_label_map(tmp_path):
    root = write_folder(tmp_path, {"scan_a": [(7, 1), (9, 2)], "scan_b": [(7, 4)]})
    s = load_slices(root, "folder", image_size=32, label_map={7: "SDH", 9: "ivh"})
    assert _classes_by_slice(s) == {("scan_a", 1): [5], ("scan_a", 2): [2], ("scan_b", 4): [5]}
    with pytest.raises(DatasetError, match="needs data.label_map"):
        load_slices(root, "folder", image_size=32)


def test_lesion_only_false_keeps_all_slices_and_resizes(tmp_path):
    root = write_bhsd(tmp_path, {"c1": [(2, 1)]})
    s = load_slices(root, "bhsd", image_size=16, lesion_only=False)
    assert len(s) == 6 and s.slice_index.tolist() == list(range(6))
    assert s.images.shape == (6, 16, 16) and s.images.dtype == np.float16 and s.masks.dtype == np.uint8
    assert set(np.unique(s.masks)) == {0, 1}


def test_lesion_vanishing_on_resize_is_listed(tmp_path):
    from data_helpers import head_volume, write_image, write_nifti

    hu, label = head_volume([(2, 1)])
    label[0, 0, 3] = 2  # one voxel; shown at row 31, col 31 -> not sampled when shrinking 32 -> 8
    write_image(tmp_path / "imagesTr" / "c1.nii.gz", hu)
    write_nifti(tmp_path / "labelsTr" / "c1.nii.gz", label, dtype=np.uint8)
    s = load_slices(tmp_path, "bhsd", image_size=8)
    assert s.slice_index.tolist() == [1]
    assert s.skipped == [{"file": str(tmp_path / "labelsTr" / "c1.nii.gz"),
                          "reason": "slice 3: lesion of 1 px vanished when resizing to 8 px"}]
    kept = load_slices(tmp_path, "bhsd", image_size=8, lesion_only=False)
    assert len(kept) == 6 and kept.skipped == [] and "vanished" in kept.notes[0]["reason"]


def test_dataset_format_key_and_its_old_name(tmp_path, caplog):
    """`data.dataset_format` picks the format; the old key `data.layout` still works, with a warning."""
    from lcgan_lightning.data.datamodule import CTSliceDataModule
    from lcgan_lightning.data.validation import DataConfigError

    assert CTSliceDataModule(root=tmp_path, dataset_format="ctich").dataset_format == "ctich"
    assert CTSliceDataModule(root=tmp_path, layout="folder").dataset_format == "folder"
    assert "data.layout is now data.dataset_format" in caplog.text
    with pytest.raises(DataConfigError, match=r"data.dataset_format: unknown format 'nifti'"):
        load_slices(tmp_path, "nifti", image_size=32)
