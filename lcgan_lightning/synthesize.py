"""Synthesize an augmentation set: one generated CT slice per training mask of a data fraction.

The set is written in the format of :mod:`lcgan_lightning.data.synthetic_set` (read by the
segmenter's ``data.augment=gan``), with a manifest recording the checkpoint and its sha256, the
fraction, seed, dropout, torch build and device, plus ``previews/`` (mask | synthetic pairs and a
mask | real | synthetic grid per lesion class).

Row i is generated alone with seed ``row_seed(seed, i)`` (:mod:`lcgan_lightning.models.generation`),
so the set does not depend on batching and `regenerate_from_manifest` reproduces it bit for bit
(same checkpoint, same data, same torch build and device type; the manifest records both).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lcgan_lightning.data.slices import SliceSet
from lcgan_lightning.data.synthetic_set import (
    SyntheticSetError,
    read_manifest,
    rows_for_source,
    sha256_file,
    write_synthetic_set,
)
from lcgan_lightning.figures import contact_sheet, sample_grid
from lcgan_lightning.models.generation import generate_set, load_generator, resolve_device

log = logging.getLogger(__name__)

PREVIEW = "previews/preview.png"
SAMPLES = "previews/samples.png"


def _package_version() -> str:
    try:
        from importlib.metadata import version

        return version("lcgan_lightning")
    except Exception:
        return "unknown"


def _loader(device: str, trust: bool = False) -> Callable[[str], Any]:
    return lambda path: load_generator(path, map_location=resolve_device(device), trust=trust)


def write_previews(out_dir: Path, masks: np.ndarray, images: np.ndarray, real: np.ndarray | None,
                   n: int = 8) -> list[str]:
    """Mask | synthetic pairs (lesion slices first) and the mask | real | synthetic grid, as PNGs.

    Returns the written paths relative to `out_dir`.
    """
    if n <= 0 or len(masks) == 0:
        return []
    lesion = np.flatnonzero(masks.reshape(len(masks), -1).max(1) > 0)
    rows = np.concatenate([lesion, np.setdiff1d(np.arange(len(masks)), lesion)])[:n]
    contact_sheet(out_dir / PREVIEW, masks[rows], images[rows].astype(np.float32), [],
                  title=f"rows: mask, synthetic (dataset rows {rows.tolist()})")
    written = [PREVIEW]
    if sample_grid(out_dir / SAMPLES, masks, real, images) is not None:
        written.append(SAMPLES)
    return written


def synthesize(
    checkpoint: str | Path,
    slices: SliceSet,
    out_dir: str | Path,
    fraction: float,
    seed: int = 0,
    dropout: bool = True,
    previews: int = 8,
    load_generator: Callable[[str], Any] | None = None,
    device: str = "auto",
    trust: bool = False,
) -> dict[str, Any]:
    """Generate one image per slice of `slices` (the fraction's training slices) into `out_dir`.

    Writes the set atomically, then its previews; returns the manifest. `trust` allows a
    checkpoint holding pickled code (`trust_checkpoint`, see `load_checkpoint`).
    """
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"generator checkpoint {checkpoint} does not exist")
    masks = np.asarray(slices.masks).astype(np.uint8)
    if len(masks) == 0:
        raise ValueError(f"no training slice for fraction {fraction}: nothing to synthesize")
    generator = (load_generator or _loader(device, trust))(str(checkpoint))
    images = generate_set(generator, masks, seed, dropout)
    out_dir = Path(out_dir)
    write_synthetic_set(
        out_dir,
        images,
        masks,
        slices,
        checkpoint=str(checkpoint.resolve()),
        checkpoint_sha256=sha256_file(checkpoint),
        fraction=float(fraction),
        seed=int(seed),
        dropout=bool(dropout),
        row_seed="numpy SeedSequence([seed, row]).generate_state(1)[0]; one mask per generate() call",
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        package_version=_package_version(),
        torch_version=torch.__version__,
        device=str(getattr(generator, "device", "cpu")),
        previews=([PREVIEW] + ([SAMPLES] if masks.any() else [])) if previews > 0 else [],
    )
    write_previews(out_dir, masks, images, np.asarray(slices.images, dtype=np.float32), previews)
    log.info("wrote %d synthetic slices to %s", len(masks), out_dir)
    return read_manifest(out_dir)


def regenerate_from_manifest(
    manifest_path: str | Path,
    slices: SliceSet,
    load_generator: Callable[[str], Any] | None = None,
    check_sha: bool = True,
    device: str = "auto",
    trust: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Rebuild (images float16, masks uint8) of a synthetic set from its manifest.

    `slices` holds the manifest's source slices (e.g. `open_datamodule(data_cfg).slices`). The
    checkpoint must still hash to the manifest's sha256 (unless check_sha=False); `trust` as in
    `synthesize`.
    """
    manifest_path = Path(manifest_path)
    manifest = read_manifest(manifest_path.parent)
    ckpt = Path(manifest["checkpoint"])
    if not ckpt.is_file():
        raise FileNotFoundError(f"{manifest_path}: checkpoint {ckpt} does not exist")
    if check_sha and (found := sha256_file(ckpt)) != manifest.get("checkpoint_sha256"):
        raise SyntheticSetError(
            f"{ckpt}: this checkpoint changed since the set in {manifest_path} was made "
            f"(sha256 {found}, the manifest records {manifest.get('checkpoint_sha256')})"
        )
    rows = rows_for_source(slices, manifest["source"])
    masks = np.asarray(slices.masks[rows]).astype(np.uint8)
    generator = (load_generator or _loader(device, trust))(str(ckpt))
    images = generate_set(generator, masks, int(manifest["seed"]), bool(manifest["dropout"]))
    return images, masks
