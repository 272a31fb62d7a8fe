"""Built-in phantom: determinism, NIfTI layout and values, lesion placement, CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from lcgan_lightning.constants import BHSD_TO_OURS, CLASS_NAMES, OURS_TO_BHSD
from lcgan_lightning.data.phantom import (
    FOV_MM,
    generate_phantom,
    patient_classes,
    phantom_affine,
    simulate_patient,
)
from lcgan_lightning.paths import REPO_ROOT

SIZE, SLICES = 64, 8


@pytest.fixture(scope="module")
def clean_patients():
    """Noise-free volumes of 10 patients (64², 8 slices), for value checks."""
    return [v for i in range(10) for v in simulate_patient(3, i, SIZE, SLICES, noise=False)]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("phantom")
    paths = generate_phantom(out, num_patients=4, seed=7, image_size=SIZE, num_slices=SLICES)
    return out, paths


def test_same_seed_same_voxels_other_seed_differs():
    a = simulate_patient(5, 2, SIZE, SLICES)
    b = simulate_patient(5, 2, SIZE, SLICES)
    c = simulate_patient(6, 2, SIZE, SLICES)
    assert len(a) == len(b)
    for va, vb in zip(a, b, strict=True):
        assert va.name == vb.name
        np.testing.assert_array_equal(va.hu, vb.hu)
        np.testing.assert_array_equal(va.label, vb.label)
    assert not np.array_equal(a[0].hu, c[0].hu)
    assert a[0].hu.shape == (SIZE, SIZE, SLICES) and a[0].hu.dtype == np.int16
    assert a[0].label.dtype == np.uint8


def test_first_patients_do_not_depend_on_dataset_size(tmp_path):
    small = generate_phantom(tmp_path / "a", num_patients=2, seed=1, image_size=32, num_slices=4)
    large = generate_phantom(tmp_path / "b", num_patients=3, seed=1, image_size=32, num_slices=4)
    assert [p.name for p in small] == [p.name for p in large[: len(small)]]
    for p in small:
        q = tmp_path / "b" / "imagesTr" / p.name
        np.testing.assert_array_equal(np.asanyarray(nib.load(p).dataobj), np.asanyarray(nib.load(q).dataobj))


def test_parallel_generation_writes_the_same_dataset(tmp_path):
    one = generate_phantom(tmp_path / "one", num_patients=3, seed=2, image_size=32, num_slices=4, workers=1)
    two = generate_phantom(tmp_path / "two", num_patients=3, seed=2, image_size=32, num_slices=4, workers=2)
    assert [p.name for p in one] == [p.name for p in two]  # patient order kept
    for name in ("phantom.json", "dataset.json"):
        assert (tmp_path / "one" / name).read_text() == (tmp_path / "two" / name).read_text()
    for p, q in zip(one, two, strict=True):
        np.testing.assert_array_equal(np.asanyarray(nib.load(p).dataobj), np.asanyarray(nib.load(q).dataobj))
        lp, lq = (x.parent.parent / "labelsTr" / x.name for x in (p, q))
        np.testing.assert_array_equal(np.asanyarray(nib.load(lp).dataobj), np.asanyarray(nib.load(lq).dataobj))


def test_written_volumes_read_back_exactly(written):
    out, paths = written
    lut = np.zeros(6, dtype=np.uint8)
    for ours, bhsd in OURS_TO_BHSD.items():
        lut[ours] = bhsd
    expected = {v.name: v for i in range(4) for v in simulate_patient(7, i, SIZE, SLICES)}
    assert {p.name.removesuffix(".nii.gz") for p in paths} == set(expected)
    for path in paths:
        vol = expected[path.name.removesuffix(".nii.gz")]
        img = nib.load(path)
        lab = nib.load(out / "labelsTr" / path.name)
        assert img.get_data_dtype() == np.uint16 and lab.get_data_dtype() == np.uint8
        stored = np.asanyarray(img.dataobj)
        assert stored.dtype == np.uint16  # no scaling: raw stored values
        np.testing.assert_array_equal(stored.astype(np.int32) - 1024, vol.hu)
        labels = np.asanyarray(lab.dataobj)
        assert set(np.unique(labels).tolist()) <= {0, 1, 2, 3, 4, 5}
        np.testing.assert_array_equal(labels, lut[vol.label])
        # and back to our ids with the loader's map
        np.testing.assert_array_equal(np.vectorize(BHSD_TO_OURS.get)(labels), vol.label)
        np.testing.assert_allclose(img.affine, lab.affine)


def test_affine_spacing():
    for size, pixel in ((512, 0.488), (256, 0.977), (64, 3.906)):
        aff = phantom_affine(size)
        spacing = np.sqrt((aff[:3, :3] ** 2).sum(axis=0))
        np.testing.assert_allclose(spacing, [pixel, pixel, 5.0], atol=1e-3)
        assert size * spacing[0] == pytest.approx(FOV_MM)


def test_nifti_header_and_dataset_json(written):
    out, paths = written
    img = nib.load(paths[0])
    np.testing.assert_allclose(img.header.get_zooms(), (FOV_MM / SIZE, FOV_MM / SIZE, 5.0), rtol=1e-6)
    assert img.shape == (SIZE, SIZE, SLICES)
    assert nib.aff2axcodes(img.affine) == ("L", "A", "S")
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "CT"}
    assert meta["labels"] == {"background": 0, "EDH": 1, "IPH": 2, "IVH": 3, "SAH": 4, "SDH": 5}
    assert meta["numTraining"] == len(paths) == len(list((out / "labelsTr").glob("*.nii.gz")))
    assert meta["file_ending"] == ".nii.gz"
    for p in paths:
        assert p.name.startswith("ID_") and "_ID_" in p.name[3:]


def test_some_patients_have_two_studies():
    ids = [(v.patient_id, v.study_id) for i in range(12) for v in simulate_patient(0, i, 32, 2)]
    patients = [p for p, _ in ids]
    repeated = {p for p in patients if patients.count(p) == 2}
    assert repeated, "no patient with a second study among the first 12"
    assert len(set(ids)) == len(ids)  # studies are distinct
    assert len(set(patients)) == 12


def test_every_class_appears(clean_patients):
    present = set()
    for v in clean_patients:
        present |= set(np.unique(v.label).tolist())
    assert present == {0, 1, 2, 3, 4, 5}
    # consecutive patients cycle through the five classes
    assert {patient_classes(11, i)[0] for i in range(5)} == {1, 2, 3, 4, 5}


def test_lesions_are_blood_inside_the_head(clean_patients):
    for v in clean_patients:
        lab = v.label > 0
        assert lab.any(), f"{v.name}: no lesion"
        assert (v.hu[lab] > 0).all(), f"{v.name}: lesion voxel outside the head"
        for c in range(1, 6):
            m = v.label == c
            if m.any():
                assert np.median(v.hu[m]) > 45, f"{v.name} {CLASS_NAMES[c]}: median HU {np.median(v.hu[m])}"
        # slices without lesion exist
        assert (~lab.any(axis=(0, 1))).any()


def test_epidural_and_subdural_touch_the_inner_table(clean_patients):
    seen = 0
    for v in clean_patients:
        bone = v.hu > 300
        for c in (4, 5):  # EDH, SDH
            for k in np.flatnonzero((v.label == c).any(axis=(0, 1))):
                near = ndimage.binary_dilation(v.label[:, :, k] == c, iterations=1)
                assert (near & bone[:, :, k]).any(), f"{v.name} {CLASS_NAMES[c]} slice {k} off the skull"
                seen += 1
    assert seen > 0


def test_parenchymal_bleed_has_unlabelled_edema_rim():
    iph_patients = [i for i in range(15) if 1 in patient_classes(2, i)]
    vols = [v for i in iph_patients for v in simulate_patient(2, i, 128, SLICES, noise=False)]
    assert vols
    rims = []
    for v in vols:
        iph = v.label == 1
        for k in np.flatnonzero(iph.any(axis=(0, 1))):
            ring = ndimage.binary_dilation(iph[:, :, k], iterations=3) & (v.label[:, :, k] == 0)
            rims.append(v.hu[:, :, k][ring & (v.hu[:, :, k] < 100)])
    rim = np.concatenate(rims)
    # darker than white matter (23-28) on average, so visibly hypodense, and never labelled
    assert np.median(rim) < 24  # 21 with the rim, 27 without (seed 2)


def test_refuses_to_mix_with_existing_volumes(written, tmp_path):
    out, _ = written
    with pytest.raises(FileExistsError, match="already holds"):
        generate_phantom(out, num_patients=1, seed=0, image_size=32, num_slices=2)
    # overwrite replaces every volume of the old dataset
    first = generate_phantom(tmp_path / "o", num_patients=3, seed=0, image_size=32, num_slices=2)
    second = generate_phantom(tmp_path / "o", num_patients=1, seed=1, image_size=32, num_slices=2, overwrite=True)
    assert sorted(p.name for p in (tmp_path / "o" / "imagesTr").iterdir()) == sorted(p.name for p in second)
    assert not set(first) & set(second)
    assert json.loads((tmp_path / "o" / "dataset.json").read_text())["numTraining"] == len(second)
    with pytest.raises(ValueError, match="num_patients"):
        generate_phantom(tmp_path / "x", num_patients=0, seed=0, image_size=32)
    with pytest.raises(ValueError, match="image_size"):
        simulate_patient(0, 0, image_size=8)


def test_cli_writes_the_bhsd_layout(tmp_path):
    out = tmp_path / "ph"
    cmd = [sys.executable, "-m", "lcgan_lightning.cli.phantom", f"out_dir={out}", "num_patients=2",
           "seed=3", "image_size=32", "num_slices=4", f"hydra.run.dir={tmp_path / 'run'}"]
    res = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    images = sorted(p.name for p in (out / "imagesTr").glob("*.nii.gz"))
    labels = sorted(p.name for p in (out / "labelsTr").glob("*.nii.gz"))
    assert images == labels and len(images) >= 2
    assert json.loads((out / "dataset.json").read_text())["numTraining"] == len(images)
    settings = json.loads((out / "phantom.json").read_text())["settings"]
    assert settings["seed"] == 3 and settings["image_size"] == 32 and settings["num_slices"] == 4
    vol = simulate_patient(3, 0, 32, 4)[0]
    stored = np.asanyarray(nib.load(out / "imagesTr" / f"{vol.name}.nii.gz").dataobj)
    np.testing.assert_array_equal(stored.astype(np.int32) - 1024, vol.hu)
