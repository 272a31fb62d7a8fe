"""Phantom volumes on disk: BHSD ids, affine, NIfTI writing and the dataset description."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from lcgan_lightning.constants import CLASS_NAMES, OURS_TO_BHSD, UINT16_HU_OFFSET
from lcgan_lightning.data.phantom.geometry import FOV_MM, SLICE_MM

SECOND_STUDY_PROB = 0.2
BHSD_LABELS = {"background": 0, "EDH": 1, "IPH": 2, "IVH": 3, "SAH": 4, "SDH": 5}


@dataclass
class PhantomVolume:
    """One study: ``hu`` int16 and ``label`` uint8 (our class ids), both [X, Y, Z] as in the NIfTI."""

    patient_id: str
    study_id: str
    hu: np.ndarray
    label: np.ndarray
    affine: np.ndarray
    classes: list[int] = field(default_factory=list)

    @property
    def name(self) -> str:
        """BHSD file stem ``ID_<patient>_ID_<study>``."""
        return f"ID_{self.patient_id}_ID_{self.study_id}"

    def axial(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Slice ``k`` in display orientation (anterior up, patient's right on the left)."""
        return np.rot90(self.hu[:, :, k]), np.rot90(self.label[:, :, k])


def phantom_affine(image_size: int) -> np.ndarray:
    """Voxel-to-RAS affine: ``FOV_MM / image_size`` in-plane (LAS like dcm2niix), 5 mm slices."""
    s = FOV_MM / image_size
    c = s * (image_size - 1) / 2.0
    return np.array(
        [[-s, 0, 0, c], [0, s, 0, -c], [0, 0, SLICE_MM, -60.0], [0, 0, 0, 1]], dtype=np.float64
    )


def _ids(seed: int, index: int, rng: np.random.Generator) -> tuple[str, list[str]]:
    patient = f"{index:04d}{int(rng.integers(16**4)):04x}"
    n_studies = 2 if rng.random() < SECOND_STUDY_PROB else 1
    studies = [f"{int(x):08x}" for x in rng.integers(16**8, size=n_studies)]
    if n_studies == 2 and studies[0] == studies[1]:
        studies[1] = f"{(int(studies[1], 16) + 1) % 16**8:08x}"
    return patient, studies


def write_volume(vol: PhantomVolume, out_dir: Path) -> Path:
    """Write ``imagesTr/<name>.nii.gz`` (uint16 = HU + 1024) and ``labelsTr/<name>.nii.gz`` (BHSD labels)."""
    lut = np.zeros(len(CLASS_NAMES), dtype=np.uint8)
    for ours, bhsd in OURS_TO_BHSD.items():
        lut[ours] = bhsd
    stored = (vol.hu.astype(np.int32) + UINT16_HU_OFFSET).astype(np.uint16)
    paths = []
    for sub, data in (("imagesTr", stored), ("labelsTr", lut[vol.label])):
        img = nib.Nifti1Image(data, vol.affine)
        img.header.set_data_dtype(data.dtype)
        img.header.set_xyzt_units("mm", "sec")
        img.set_qform(vol.affine, code=1)
        img.set_sform(vol.affine, code=1)
        path = out_dir / sub / f"{vol.name}.nii.gz"
        nib.save(img, path)
        paths.append(path)
    return paths[0]


def dataset_json(num_training: int) -> dict:
    """nnU-Net v2 style dataset description with BHSD label values."""
    return {
        "name": "lcgan_phantom",
        "description": "Synthetic head CT with intracranial hemorrhage (lcgan_lightning phantom)",
        "channel_names": {"0": "CT"},
        "labels": dict(BHSD_LABELS),
        "numTraining": num_training,
        "file_ending": ".nii.gz",
    }
