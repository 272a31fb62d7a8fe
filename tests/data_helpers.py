"""Tiny synthetic NIfTI datasets in every dataset format the loader reads (and ways to break them).

A volume is X×Y×Z = 32×32×6 voxels of 0.5×0.5×5 mm (axis 2 = acquisition axis): air -1000 HU, a
skull ring 1000 HU, brain 30 HU, and box-shaped lesions of 70 HU. A lesion is (stored label value,
slice k, slot); slot s puts the box at x in [8, 14), y in [4 + 4 s, 7 + 4 s) so boxes of one slice
never overlap (18 voxels each).
"""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

SHAPE = (32, 32, 6)
AFFINE = np.diag([0.5, 0.5, 5.0, 1.0])
LESION_HU = 70
BRAIN_HU = 30
BOX_VOXELS = 18


def lesion_box(slot: int) -> tuple[slice, slice]:
    return slice(8, 14), slice(4 + 4 * slot, 7 + 4 * slot)


def head_volume(lesions: Sequence[tuple] = (), shape: tuple = SHAPE, label_dtype=np.uint8
                ) -> tuple[np.ndarray, np.ndarray]:
    """(HU int16 [X,Y,Z], label [X,Y,Z]) with box lesions (value, k[, slot])."""
    x, y = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    r = np.hypot((x - (shape[0] - 1) / 2) / (shape[0] / 2), (y - (shape[1] - 1) / 2) / (shape[1] / 2))
    plane = np.full(shape[:2], -1000, dtype=np.int16)
    plane[r < 0.95] = 1000
    plane[r < 0.85] = BRAIN_HU
    hu = np.repeat(plane[:, :, None], shape[2], axis=2)
    label = np.zeros(shape, dtype=label_dtype)
    for lesion in lesions:
        value, k = lesion[0], lesion[1]
        slot = lesion[2] if len(lesion) > 2 else int(value) % 6
        bx, by = lesion_box(slot)
        hu[bx, by, k] = LESION_HU
        label[bx, by, k] = value
    return hu, label


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray = AFFINE, dtype=None,
                slope: float | None = None, inter: float | None = None) -> Path:
    """Save `data` (cast to `dtype`) with optional scl_slope/scl_inter."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.asarray(data if dtype is None else np.asarray(data).astype(dtype))
    img = nib.Nifti1Image(arr, affine)
    img.set_data_dtype(arr.dtype)
    if slope is not None or inter is not None:
        img.header.set_slope_inter(slope if slope is not None else 1.0, inter if inter is not None else 0.0)
    nib.save(img, str(path))
    return path


def write_image(path: Path, hu: np.ndarray, storage: str = "uint16", affine: np.ndarray = AFFINE) -> Path:
    """storage: uint16 (HU + 1024, BHSD), int16 (HU), scaled (int16 stored = HU + 1024, scl_inter -1024)."""
    if storage == "uint16":
        return write_nifti(path, hu.astype(np.int32) + 1024, affine, np.uint16)
    if storage == "int16":
        return write_nifti(path, hu, affine, np.int16)
    if storage == "scaled":
        return write_nifti(path, hu.astype(np.int32) + 1024, affine, np.int16, slope=1.0, inter=-1024.0)
    raise ValueError(storage)


def write_bhsd(root: Path, cases: dict[str, Sequence[tuple]], storage: str = "uint16",
               nnunet_channel: bool = False, dataset_json: bool = True, ext: str = ".nii.gz") -> Path:
    """BHSD/nnU-Net format; `cases`: case name -> lesions with BHSD label values (1 EDH ... 5 SDH)."""
    for case, lesions in cases.items():
        hu, label = head_volume(lesions)
        suffix = "_0000" if nnunet_channel else ""
        write_image(root / "imagesTr" / f"{case}{suffix}{ext}", hu, storage)
        write_nifti(root / "labelsTr" / f"{case}{ext}", label, dtype=np.uint8)
    if dataset_json:
        meta = {"name": "tiny", "labels": {"background": 0, "EDH": 1, "IPH": 2, "IVH": 3, "SAH": 4, "SDH": 5},
                "channel_names": {"0": "CT"}, "numTraining": len(cases), "file_ending": ext}
        (root / "dataset.json").write_text(json.dumps(meta))
    return root


CTICH_FLAG_COLUMNS = ("Intraventricular", "Intraparenchymal", "Subarachnoid", "Epidural", "Subdural")


def write_ctich(root: Path, cases: dict[int, Sequence[tuple[Sequence[str], int]]], mask_value: int = 1,
                shape: tuple = SHAPE) -> Path:
    """CT-ICH format; `cases`: patient number -> [(flagged CSV subtype columns, slice k)] (mask = box)."""
    rows = []
    for number, lesions in cases.items():
        hu, label = head_volume([(mask_value, k, 0) for _, k in lesions], shape=shape)
        write_nifti(root / "ct_scans" / f"{number:03d}.nii", hu, dtype=np.int16)
        write_nifti(root / "masks" / f"{number:03d}.nii", label, dtype=np.uint8)
        flags_by_slice = {k: set(cols) for cols, k in lesions}
        for k in range(shape[2]):
            cols = flags_by_slice.get(k, set())
            row = {"PatientNumber": number, "SliceNumber": k + 1}
            row.update({c: int(c in cols) for c in CTICH_FLAG_COLUMNS})
            row["No_Hemorrhage"] = int(not cols)
            row["Fracture_Yes_No"] = 0
            rows.append(row)
    with (root / "hemorrhage_diagnosis_raw_ct.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["PatientNumber", "SliceNumber", *CTICH_FLAG_COLUMNS,
                                                "No_Hemorrhage", "Fracture_Yes_No"])
        writer.writeheader()
        writer.writerows(rows)
    return root


def write_folder(root: Path, cases: dict[str, Sequence[tuple]], storage: str = "int16") -> Path:
    """folder format: images/ + labels/ with arbitrary stored label values."""
    for case, lesions in cases.items():
        hu, label = head_volume(lesions)
        write_image(root / "images" / f"{case}.nii.gz", hu, storage)
        write_nifti(root / "labels" / f"{case}.nii.gz", label, dtype=np.uint8)
    return root


def bhsd_cases(num_patients: int, seed: int = 0, studies: int = 1) -> dict[str, list[tuple]]:
    """Cases ID_pNN_ID_sM with 1-3 lesion slices each; every BHSD class appears (patient i has class i%5+1)."""
    rng = np.random.default_rng(seed)
    cases = {}
    for p in range(num_patients):
        for s in range(studies):
            value = p % 5 + 1
            ks = sorted(rng.choice(SHAPE[2], size=int(rng.integers(1, 4)), replace=False).tolist())
            cases[f"ID_p{p:02d}_ID_s{s}"] = [(value, k) for k in ks]
    return cases


def truncate_gzip(path: Path) -> Path:
    """Make a .nii.gz unreadable: keep a valid gzip header but cut the stream."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    return path


def write_garbage(path: Path) -> Path:
    """Overwrite a file with bytes that are no NIfTI at all."""
    with gzip.open(path, "wb") if path.name.endswith(".gz") else path.open("wb") as fh:
        fh.write(b"this is not a nifti file" * 20)
    return path
