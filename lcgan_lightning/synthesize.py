"""Synthesize an augmentation set: one generated CT slice per training mask of a data fraction.

Output (read by the segmenter's ``augment=gan``)::

    <out_dir>/images.npy     float16 [N,H,W] in [-1,1]
    <out_dir>/masks.npy      uint8   [N,H,W] (the source masks, copied)
    <out_dir>/manifest.json  format "lcgan-synthetic-v1", n, image_size, source rows (patient, volume,
                             slice), checkpoint + sha256, fraction, seed, dropout, ... (written last)
    <out_dir>/previews/*.png a few mask | synthetic pairs

Row i is generated alone with seed ``row_seed(seed, i)`` (see ``selection.score.row_seed``), so
the set does not depend on batching and `regenerate_from_manifest` reproduces it bit for bit
(same checkpoint, same data, same torch build and device type; the manifest records both).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lcgan_lightning.data.augment_sets import SYNTHETIC_FORMAT
from lcgan_lightning.data.splits import training_patients
from lcgan_lightning.selection.score import generate_rows, row_seed

log = logging.getLogger(__name__)

MANIFEST_VERSION = 1
# the synthetic-set format the segmenter's data.augment=gan reads (lcgan_lightning.data.augment_sets)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _package_version() -> str:
    try:
        from importlib.metadata import version

        return version("lcgan_lightning")
    except Exception:
        return "unknown"


def _default_loader(path: str, device: str = "auto") -> Any:
    from lcgan_lightning.models.lcgan import load_generator
    from lcgan_lightning.selection.score import resolve_device

    return load_generator(path, map_location=resolve_device(device))


def generate_set(generator: Any, masks: np.ndarray, seed: int, dropout: bool = True, chunk: int = 256) -> np.ndarray:
    """float16 [N,H,W] synthetic images for masks [N,H,W], row i seeded by row_seed(seed, i)."""
    masks = np.asarray(masks)
    out = np.empty(masks.shape, dtype=np.float16)
    for start in range(0, len(masks), chunk):
        stop = min(start + chunk, len(masks))
        seeds = [row_seed(seed, i) for i in range(start, stop)]
        imgs = generate_rows(generator, masks[start:stop].astype(np.int64), seeds, dropout)
        out[start:stop] = imgs[:, 0].clamp(-1, 1).numpy().astype(np.float16)
    return out


def write_previews(out_dir: Path, masks: np.ndarray, images: np.ndarray, n: int = 8) -> list[str]:
    """A few mask | synthetic image pairs as PNGs (lesion slices first)."""
    from lcgan_lightning.selection.score import contact_sheet

    if n <= 0 or len(masks) == 0:
        return []
    lesion = np.flatnonzero(masks.reshape(len(masks), -1).max(1) > 0)
    rows = np.concatenate([lesion, np.setdiff1d(np.arange(len(masks)), lesion)])[:n]
    path = contact_sheet(out_dir / "previews" / "preview.png", masks[rows], images[rows].astype(np.float32),
                         [], title=f"rows: mask, synthetic (dataset rows {rows.tolist()})")
    return [str(path)]


def synthesize(
    checkpoint: str | Path,
    slices: Any,
    out_dir: str | Path,
    fraction: float,
    seed: int = 0,
    dropout: bool = True,
    previews: int = 8,
    load_generator: Callable[[str], Any] | None = None,
    device: str = "auto",
) -> dict[str, Any]:
    """Generate one image per slice of `slices` (SliceSet of the fraction's training patients).

    Writes images.npy, masks.npy, manifest.json (+ previews) under `out_dir`; returns the manifest.
    """
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"generator checkpoint {checkpoint} does not exist")
    masks = np.asarray(slices.masks).astype(np.uint8)
    if len(masks) == 0:
        raise ValueError(f"no training slice for fraction {fraction}: nothing to synthesize")
    generator = load_generator(str(checkpoint)) if load_generator else _default_loader(str(checkpoint), device)
    images = generate_set(generator, masks, seed, dropout)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "manifest.json").unlink(missing_ok=True)  # no manifest = incomplete set
    np.save(out_dir / "images.npy", images)
    np.save(out_dir / "masks.npy", masks)
    manifest = {
        "format": SYNTHETIC_FORMAT,
        "version": MANIFEST_VERSION,
        "checkpoint": str(checkpoint.resolve()),
        "checkpoint_sha256": sha256_file(checkpoint),
        "fraction": float(fraction),
        "seed": int(seed),
        "dropout": bool(dropout),
        "image_size": int(masks.shape[-1]),
        "n": int(len(masks)),
        "row_seed": "numpy SeedSequence([seed, row]).generate_state(1)[0]; one mask per generate() call",
        "source": [
            {"patient": str(p), "volume": str(v), "slice": int(s)}
            for p, v, s in zip(slices.patients, slices.volumes, slices.slice_index, strict=True)
        ],
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "package_version": _package_version(),
        "torch_version": torch.__version__,
        "device": str(getattr(generator, "device", "cpu")),
    }
    manifest["previews"] = write_previews(out_dir, masks, images, previews)
    # written last and atomically: a folder without manifest.json is an incomplete set
    tmp = out_dir / ".manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, out_dir / "manifest.json")
    log.info("wrote %d synthetic slices to %s", len(masks), out_dir)
    return manifest


def rows_for_source(slices: Any, source: Sequence[dict[str, Any]]) -> np.ndarray:
    """Indices into `slices` of the manifest's (patient, volume, slice) rows, in manifest order."""
    index = {
        (str(p), str(v), int(s)): i
        for i, (p, v, s) in enumerate(zip(slices.patients, slices.volumes, slices.slice_index, strict=True))
    }
    rows, missing = [], []
    for src in source:
        key = (str(src["patient"]), str(src["volume"]), int(src["slice"]))
        if key in index:
            rows.append(index[key])
        else:
            missing.append(key)
    if missing:
        raise ValueError(f"{len(missing)} manifest rows are not in the dataset, e.g. {missing[:3]}")
    return np.asarray(rows, dtype=np.int64)


def regenerate_from_manifest(
    manifest_path: str | Path,
    data: Any,
    load_generator: Callable[[str], Any] | None = None,
    check_sha: bool = True,
    device: str = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """Rebuild (images float16, masks uint8) of a synthetic set from its manifest.

    `data` is a SliceSet holding the manifest's source slices, or a data config (DictConfig /
    mapping with `_target_`) for the datamodule that loads them. The checkpoint must still hash to
    the manifest's sha256 (unless check_sha=False).
    """
    manifest_path = Path(manifest_path)
    manifest = json.loads(manifest_path.read_text())
    ckpt = Path(manifest["checkpoint"])
    if not ckpt.is_file():
        raise FileNotFoundError(f"{manifest_path}: checkpoint {ckpt} does not exist")
    if check_sha and sha256_file(ckpt) != manifest["checkpoint_sha256"]:
        raise ValueError(f"{manifest_path}: checkpoint {ckpt} changed since the set was made (sha256 differs)")
    slices = data if hasattr(data, "masks") else load_all_slices(data)
    rows = rows_for_source(slices, manifest["source"])
    masks = np.asarray(slices.masks[rows]).astype(np.uint8)
    generator = load_generator(str(ckpt)) if load_generator else _default_loader(str(ckpt), device)
    images = generate_set(generator, masks, int(manifest["seed"]), bool(manifest["dropout"]))
    return images, masks


def load_all_slices(data_cfg: Any) -> Any:
    """All slices of the dataset a data config describes (instantiates and sets up the datamodule)."""
    from hydra.utils import instantiate

    dm = instantiate(data_cfg)
    dm.prepare_data()
    dm.setup("fit")
    return dm.slices


def training_slices(dm: Any, fraction: float, splits: dict | None = None) -> Any:
    """Training slices of `fraction` (1.0 = all training patients), from `splits` or the datamodule's own."""
    splits = dm.splits if splits is None else splits
    return dm.slices.for_patients(training_patients(splits, fraction))
