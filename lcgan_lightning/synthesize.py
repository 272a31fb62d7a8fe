"""Synthesize an augmentation set: k generated CT slices per training mask of a data fraction
(`synthesize`, a ``redraw`` set), or one CT per NEW mask made from those masks by the mask bank
(`synthesize_novel`, a ``novel`` set).

The set is written in the format of :mod:`lcgan_lightning.data.synthetic_set` (read by the
segmenter's ``data.augment=gan``), with a manifest recording the checkpoint and its sha256, the
fraction, seed, dropout, torch build and device, plus ``previews/`` (mask | synthetic pairs and a
mask | real | synthetic grid per lesion class).

Copy c of training mask i is generated alone with seed ``row_seed(seed, i, c)``
(:mod:`lcgan_lightning.models.generation`; copy 0 is the one-per-mask set of before), so the set
does not depend on batching and `regenerate_from_manifest` reproduces it bit for bit (same
checkpoint, same data, same torch build and device type; the manifest records both). Row i of a
novel set is new mask i (`novel_masks`, deterministic per bank seed) with seed ``row_seed(seed, i)``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lcgan_lightning.data.mask_bank import MaskBankConfig, novel_masks, position_diversity
from lcgan_lightning.data.slices import SliceSet
from lcgan_lightning.data.synthetic_set import (
    SyntheticSetError,
    read_manifest,
    rows_for_source,
    sha256_file,
    write_novel_set,
    write_synthetic_set,
)
from lcgan_lightning.figures import contact_sheet, novel_mask_sheet, sample_grid
from lcgan_lightning.metrics import to_json_safe
from lcgan_lightning.models.generation import generate_set, load_generator, resolve_device
from lcgan_lightning.selection.novel_check import JUDGE_CHECK, judge_novel_check

log = logging.getLogger(__name__)

PREVIEW = "previews/preview.png"
NOVEL_PREVIEW = "previews/novel_masks.png"
ROW_SEED = ("numpy SeedSequence([seed, row]).generate_state(1)[0] for copy 0, SeedSequence([seed, row, "
            "copy]) for copy >= 1 (row = the mask's index in its copy block); one mask per generate() call")
SAMPLES = "previews/samples.png"


def _package_version() -> str:
    try:
        from importlib.metadata import version

        return version("lcgan_lightning")
    except Exception:
        return "unknown"


def _loader(device: str, trust: bool = False) -> Callable[[str], Any]:
    return lambda path: load_generator(path, map_location=resolve_device(device), trust=trust)


def _provenance(checkpoint: Path, fraction: float, seed: int, dropout: bool, generator: Any) -> dict[str, Any]:
    """The manifest fields every synthetic set records: what made it, from what, where and when."""
    return {
        "checkpoint": str(checkpoint.resolve()),
        "checkpoint_sha256": sha256_file(checkpoint),
        "fraction": float(fraction),
        "seed": int(seed),
        "dropout": bool(dropout),
        "row_seed": ROW_SEED,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "package_version": _package_version(),
        "torch_version": torch.__version__,
        "device": str(getattr(generator, "device", "cpu")),
    }


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
    per_mask: int = 1,
) -> dict[str, Any]:
    """Generate `per_mask` images per slice of `slices` (the fraction's training slices) into
    `out_dir` (copy-major rows; per_mask=1 is the one-per-mask set).

    Writes the set atomically, then its previews; returns the manifest. `trust` allows a
    checkpoint holding pickled code (`trust_checkpoint`, see `load_checkpoint`).
    """
    if int(per_mask) < 1:
        raise ValueError(f"data.synthetic_per_mask={per_mask}: must be >= 1")
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"generator checkpoint {checkpoint} does not exist")
    masks = np.asarray(slices.masks).astype(np.uint8)
    if len(masks) == 0:
        raise ValueError(f"no training slice for fraction {fraction}: nothing to synthesize")
    generator = (load_generator or _loader(device, trust))(str(checkpoint))
    k = int(per_mask)
    images = np.concatenate([generate_set(generator, masks, seed, dropout, copy=c) for c in range(k)])
    out_dir = Path(out_dir)
    write_synthetic_set(
        out_dir,
        images,
        np.concatenate([masks] * k),
        slices.select(np.tile(np.arange(len(masks)), k)),
        copies=np.repeat(np.arange(k), len(masks)),
        **_provenance(checkpoint, fraction, seed, dropout, generator),
        previews=([PREVIEW] + ([SAMPLES] if masks.any() else [])) if previews > 0 else [],
    )
    write_previews(out_dir, masks, images[: len(masks)], np.asarray(slices.images, dtype=np.float32), previews)
    log.info("wrote %d synthetic slices (%d per mask) to %s", len(images), k, out_dir)
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
    generator = (load_generator or _loader(device, trust))(str(ckpt))
    seed, dropout = int(manifest["seed"]), bool(manifest["dropout"])
    if manifest.get("kind") == "novel":
        src = rows_for_source(slices, manifest["mask_source"])
        bank = manifest["mask_bank"]
        made = novel_masks(np.asarray(slices.masks[src]).astype(np.uint8), int(manifest["n"]),
                           int(bank["seed"]), MaskBankConfig(**bank["config"]))
        return generate_set(generator, made.masks, seed, dropout), made.masks
    rows = rows_for_source(slices, manifest["source"])
    copies = np.asarray([int(r.get("copy", 0)) for r in manifest["source"]], dtype=np.int64)
    masks = np.asarray(slices.masks[rows]).astype(np.uint8)
    images = np.empty(masks.shape, dtype=np.float16)
    for c in np.unique(copies):  # each copy block is generated as synthesize did: row = index in block
        block = np.flatnonzero(copies == c)
        images[block] = generate_set(generator, masks[block], seed, dropout, copy=int(c))
    return images, masks


def synthesize_novel(
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
    per_mask: int = 1,
    n: int | None = None,
    bank_seed: int | None = None,
    bank_config: MaskBankConfig | Mapping[str, Any] | None = None,
    judge: Any = None,
) -> dict[str, Any]:
    """New masks from `slices` (the fraction's training masks) and one generated CT per new mask,
    written as a ``novel`` set into `out_dir`; returns the manifest.

    n = `per_mask` x len(slices) new masks unless `n` is given (the set then records per_mask
    null). The mask bank uses `bank_seed` (default `seed`) and `bank_config`; the manifest records
    both, the rejection counts by reason and the lesion-position diversity of old and new masks.
    With a `judge` (a segmenter with ``predict_masks``) the set also gets ``judge_check.json``
    (`judge_novel_check`: per-class FCN score of CTs from new vs from training masks).
    """
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"generator checkpoint {checkpoint} does not exist")
    train = np.asarray(slices.masks).astype(np.uint8)
    if len(train) == 0:
        raise ValueError(f"no training slice for fraction {fraction}: nothing to synthesize")
    if n is None and int(per_mask) < 1:
        raise ValueError(f"data.synthetic_per_mask={per_mask}: must be >= 1")
    count = int(n) if n is not None else int(per_mask) * len(train)
    config = bank_config if isinstance(bank_config, MaskBankConfig) else MaskBankConfig(**dict(bank_config or {}))
    bseed = int(seed if bank_seed is None else bank_seed)
    t0 = time.perf_counter()
    made = novel_masks(train, count, bseed, config)
    bank_s = time.perf_counter() - t0
    if len(made.masks) == 0:
        raise ValueError(f"mask bank made no new mask from {len(train)} training masks (rejected: {made.rejected})")
    generator = (load_generator or _loader(device, trust))(str(checkpoint))
    images = generate_set(generator, made.masks, seed, dropout)
    out_dir = Path(out_dir)
    tried = max(made.attempts, 1)
    write_novel_set(
        out_dir, images, made.masks, slices, None if n is not None else int(per_mask), to_json_safe(made.provenance),
        **_provenance(checkpoint, fraction, seed, dropout, generator),
        mask_bank={
            "seed": bseed,
            "config": to_json_safe(dataclasses.asdict(config)),
            "n_requested": count,
            "n_made": int(len(made.masks)),
            "complete": bool(made.complete),
            "attempts": int(made.attempts),
            "rejected": dict(sorted(made.rejected.items())),
            "rejected_share": {k: round(v / tried, 4) for k, v in sorted(made.rejected.items())},
            "position_diversity": {"training_masks": position_diversity(train),
                                   "new_masks": position_diversity(made.masks)},
            "seconds": round(bank_s, 2),
            "provenance_rows": "provenance[i].source_rows index mask_source",
        },
        previews=([NOVEL_PREVIEW, PREVIEW] + ([SAMPLES] if made.masks.any() else [])) if previews > 0 else [],
    )
    if previews > 0:
        novel_mask_sheet(out_dir / NOVEL_PREVIEW, made.masks, made.provenance, train, images, previews,
                         title=f"new masks (bank seed {bseed}) beside their source masks, and their CTs")
        write_previews(out_dir, made.masks, images, None, previews)
    if judge is not None:
        train_images = generate_set(generator, train, seed, dropout)
        check = judge_novel_check(judge, images, made.masks, train_images, train,
                                  np.asarray(slices.images, dtype=np.float32))
        tmp = out_dir / f".{JUDGE_CHECK}.tmp"
        tmp.write_text(json.dumps(check, indent=1) + "\n")
        tmp.replace(out_dir / JUDGE_CHECK)
        log.info("judge check: FCN score %s on CTs of new masks, %s on CTs of training masks",
                 check["new_masks"]["fcn_score"], check["training_masks"]["fcn_score"])
    log.info("wrote %d synthetic slices from new masks (%d candidates, rejected %s) to %s",
             len(images), made.attempts, made.rejected, out_dir)
    return read_manifest(out_dir)
