"""Whole phantom dataset in the BHSD / nnU-Net layout."""

from __future__ import annotations

import json
import os
import shutil
import socket
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from lcgan_lightning.constants import CLASS_NAMES
from lcgan_lightning.data.phantom.geometry import FOV_MM, SLICE_MM
from lcgan_lightning.data.phantom.patient import simulate_patient
from lcgan_lightning.data.phantom.writer import dataset_json, write_volume
from lcgan_lightning.data.validation import DataConfigError, DatasetError


def generate_phantom(
    out_dir: str | Path,
    num_patients: int,
    seed: int = 0,
    image_size: int = 256,
    num_slices: int = 24,
    overwrite: bool = False,
    workers: int | None = None,
) -> list[Path]:
    """Write ``num_patients`` phantom patients in the BHSD layout; returns the image paths.

    Writes ``imagesTr/``, ``labelsTr/``, ``phantom.json`` (settings and per-volume classes) and,
    last, ``dataset.json``. A directory that already holds volumes is refused unless
    ``overwrite`` (then its ``*.nii.gz`` volumes are replaced). Patients are simulated by
    ``workers`` processes (None: one per CPU, at most 8); patient i depends only on (seed, i), so the
    files are the same for any number of workers.
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
    workers = min(os.cpu_count() or 1, 8) if workers is None else max(1, int(workers))
    args = [(out, seed, i, image_size, num_slices) for i in range(num_patients)]
    if workers > 1 and num_patients > 1:
        with ProcessPoolExecutor(min(workers, num_patients)) as pool:
            per_patient = list(pool.map(_write_patient, args))
    else:
        per_patient = [_write_patient(a) for a in args]
    paths = [path for written in per_patient for path, _ in written]
    volumes = [meta for written in per_patient for _, meta in written]
    settings = {"num_patients": num_patients, "seed": seed, "image_size": image_size,
                "num_slices": num_slices, "pixel_mm": FOV_MM / image_size, "slice_mm": SLICE_MM}
    (out / "phantom.json").write_text(json.dumps({"settings": settings, "volumes": volumes}, indent=1) + "\n")
    (out / "dataset.json").write_text(json.dumps(dataset_json(len(paths)), indent=2) + "\n")
    return paths


def _write_patient(args: tuple[Path, int, int, int, int]) -> list[tuple[Path, dict]]:
    """Simulate patient i and write its volumes; (path, phantom.json entry) per volume."""
    out, seed, i, image_size, num_slices = args
    written = []
    for vol in simulate_patient(seed, i, image_size, num_slices):
        per_slice = (vol.label > 0).any(axis=(0, 1))
        written.append((write_volume(vol, out), {
            "name": vol.name,
            "patient": vol.patient_id,
            "study": vol.study_id,
            "classes": [CLASS_NAMES[c] for c in sorted(set(np.unique(vol.label).tolist()) - {0})],
            "lesion_slices": int(per_slice.sum()),
        }))
    return written


def ensure_phantom(root: Path, phantom: Mapping[str, Any]) -> Path:
    """Generate the phantom dataset into `root` unless it is there already (atomic: temp dir + rename)."""
    if (root / "dataset.json").is_file():
        return root
    missing = [k for k in ("num_patients", "seed", "image_size") if phantom.get(k) is None]
    if missing:
        raise DataConfigError(f"data.phantom: missing {missing} (needed to generate {root})")
    if root.exists() and any(root.iterdir()):
        raise DatasetError(f"{root}: exists but has no dataset.json; remove it to regenerate the phantom")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".tmp-{root.name}-{socket.gethostname()}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    generate_phantom(tmp, num_patients=int(phantom["num_patients"]), seed=int(phantom["seed"]),
                     image_size=int(phantom["image_size"]), num_slices=int(phantom.get("num_slices", 24)))
    try:
        if root.exists():
            root.rmdir()  # an empty folder (e.g. made by the user) is replaced
        os.rename(tmp, root)
    except OSError:
        # another job generated the same phantom at the same time: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
        if not (root / "dataset.json").is_file():
            raise
    return root
