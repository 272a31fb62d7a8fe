"""Whole phantom dataset in the BHSD / nnU-Net layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lcgan_lightning.constants import CLASS_NAMES
from lcgan_lightning.data.phantom.geometry import FOV_MM, SLICE_MM
from lcgan_lightning.data.phantom.patient import simulate_patient
from lcgan_lightning.data.phantom.writer import dataset_json, write_volume


def generate_phantom(
    out_dir: str | Path,
    num_patients: int,
    seed: int = 0,
    image_size: int = 256,
    num_slices: int = 24,
    overwrite: bool = False,
) -> list[Path]:
    """Write ``num_patients`` phantom patients in the BHSD layout; returns the image paths.

    Writes ``imagesTr/``, ``labelsTr/``, ``phantom.json`` (settings and per-volume classes) and,
    last, ``dataset.json``. A directory that already holds volumes is refused unless
    ``overwrite`` (then its ``*.nii.gz`` volumes are replaced).
    """
    if num_patients < 1:
        raise ValueError(f"num_patients must be >= 1, got {num_patients}")
    out = Path(out_dir)
    existing = sorted(out.glob("imagesTr/*.nii.gz")) + sorted(out.glob("labelsTr/*.nii.gz"))
    if existing:
        if not overwrite:
            raise FileExistsError(
                f"{out}: already holds {len(existing)} NIfTI volumes; choose another out_dir or set overwrite=true"
            )
        for path in existing:
            path.unlink()
        (out / "dataset.json").unlink(missing_ok=True)
    (out / "imagesTr").mkdir(parents=True, exist_ok=True)
    (out / "labelsTr").mkdir(parents=True, exist_ok=True)
    paths, volumes = [], []
    for i in range(num_patients):
        for vol in simulate_patient(seed, i, image_size, num_slices):
            paths.append(write_volume(vol, out))
            per_slice = (vol.label > 0).any(axis=(0, 1))
            volumes.append({
                "name": vol.name,
                "patient": vol.patient_id,
                "study": vol.study_id,
                "classes": [CLASS_NAMES[c] for c in sorted(set(np.unique(vol.label).tolist()) - {0})],
                "lesion_slices": int(per_slice.sum()),
            })
    settings = {"num_patients": num_patients, "seed": seed, "image_size": image_size,
                "num_slices": num_slices, "pixel_mm": FOV_MM / image_size, "slice_mm": SLICE_MM}
    (out / "phantom.json").write_text(json.dumps({"settings": settings, "volumes": volumes}, indent=1) + "\n")
    (out / "dataset.json").write_text(json.dumps(dataset_json(len(paths)), indent=2) + "\n")
    return paths
