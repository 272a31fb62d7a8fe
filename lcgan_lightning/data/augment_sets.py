"""Extra training sets for the segmenter: GAN-synthetic and/or traditionally augmented copies (§4.2–4.3).

``build_extra_train_sets(augment, train_slices, synthetic_dir, generator_ckpt, seed)`` returns the
datasets the datamodule appends to the original training slices (which are always kept):

* ``none``        → []
* ``traditional`` → one transformed copy of every training slice
  (:func:`lcgan_lightning.data.augment.make_traditional_set`, seeded) — training set ×2
* ``gan``         → one synthetic CT per training mask — training set ×2
* ``both``        → both of the above — training set ×3

GAN images come from a synthetic set on disk when ``synthetic_dir`` is set, otherwise they are
generated once at set-up, in memory, from ``generator_ckpt`` (nothing is written to disk), with
the same per-row seeds as ``lcgan-synthesize`` — so both routes give the same images.

Synthetic set on disk (written by ``lcgan-synthesize`` via :func:`write_synthetic_set`)::

    <synthetic_dir>/images.npy     float16 [N, H, W], synthetic CT windowed to [-1, 1]
    <synthetic_dir>/masks.npy      uint8   [N, H, W], the conditioning masks (our class ids)
    <synthetic_dir>/manifest.json  {"format": "lcgan-synthetic-v1", "n": N, "image_size": H,
                                    "source": [{"patient": str, "volume": str, "slice": int}, ...],
                                    ...free metadata (generator_ckpt, seed, fraction, ...)}

Row i of the arrays is the synthetic partner of the training slice ``source[i]``
(patient, volume, slice index along the acquisition axis). The manifest is written last, so a
directory without it is incomplete. When used for training, the set must cover EXACTLY the
training slices of the configured fraction (same keys, same masks); anything else is an error.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from lcgan_lightning.constants import AUGMENT_CHOICES
from lcgan_lightning.data.slices import SliceDataset, SliceSet

log = logging.getLogger(__name__)

SYNTHETIC_FORMAT = "lcgan-synthetic-v1"
SYNTHETIC_FILES = ("images.npy", "masks.npy", "manifest.json")


class SyntheticSetError(ValueError):
    """A synthetic set that is missing, malformed or does not match the training slices."""


def _keys(slices: SliceSet) -> list[tuple[str, str, int]]:
    return [
        (str(p), str(v), int(s))
        for p, v, s in zip(slices.patients, slices.volumes, slices.slice_index, strict=True)
    ]


def _show(keys: Sequence[tuple[str, str, int]], k: int = 5) -> str:
    shown = ", ".join(f"{p}/{v}/slice {s}" for p, v, s in list(keys)[:k])
    return shown + (f" ... ({len(keys)} in all)" if len(keys) > k else "")


def write_synthetic_set(
    out_dir: str | Path, images: np.ndarray, masks: np.ndarray, source: SliceSet, **meta: Any
) -> Path:
    """Write a synthetic set (format in the module docstring) for the training slices ``source``.

    ``images`` [N,H,W] in [-1,1] are stored as float16; row i belongs to ``source``'s slice i.
    Written into a temporary folder and renamed, so ``out_dir`` is either complete or absent.
    """
    out = Path(out_dir)
    images = np.asarray(images)
    masks = np.asarray(masks, dtype=np.uint8)
    if images.shape != masks.shape or images.ndim != 3 or len(images) != len(source):
        raise SyntheticSetError(
            f"{out}: images {images.shape}, masks {masks.shape} and {len(source)} source slices do not match"
        )
    if not np.isfinite(images).all():
        raise SyntheticSetError(f"{out}: synthetic images contain NaN/inf")
    manifest = {
        **meta,
        "format": SYNTHETIC_FORMAT,
        "n": int(len(images)),
        "image_size": int(images.shape[-1]),
        "source": [{"patient": p, "volume": v, "slice": s} for p, v, s in _keys(source)],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".tmp-{out.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    np.save(tmp / "images.npy", np.clip(images, -1.0, 1.0).astype(np.float16))
    np.save(tmp / "masks.npy", masks)
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    if out.exists():
        shutil.rmtree(out)
    os.rename(tmp, out)
    return out


def read_synthetic_set(synthetic_dir: str | Path) -> SliceSet:
    """Read a synthetic set from disk as a SliceSet (images memory-mapped); validates the format."""
    d = Path(synthetic_dir)
    if not d.is_dir():
        raise SyntheticSetError(
            f"synthetic set not found: {d} (run lcgan-synthesize, or set data.generator_ckpt)"
        )
    missing = [f for f in SYNTHETIC_FILES if not (d / f).is_file()]
    if missing:
        raise SyntheticSetError(f"{d}: incomplete synthetic set, missing {missing}")
    try:
        manifest = json.loads((d / "manifest.json").read_text())
        source = manifest["source"]
        patients = [str(r["patient"]) for r in source]
        volumes = [str(r["volume"]) for r in source]
        slice_index = [int(r["slice"]) for r in source]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise SyntheticSetError(
            f"{d / 'manifest.json'}: malformed manifest ({type(e).__name__}: {e})"
        ) from e
    try:
        images = np.load(d / "images.npy", mmap_mode="r")
        masks = np.load(d / "masks.npy", mmap_mode="r")
    except (OSError, ValueError) as e:
        raise SyntheticSetError(f"{d}: unreadable images.npy/masks.npy ({e})") from e
    if images.ndim != 3 or images.shape != masks.shape or len(images) != len(source):
        raise SyntheticSetError(
            f"{d}: images.npy {images.shape}, masks.npy {masks.shape} and manifest ({len(source)} rows) disagree"
        )
    if images.dtype != np.float16 or masks.dtype != np.uint8:
        raise SyntheticSetError(
            f"{d}: images.npy must be float16 and masks.npy uint8, got {images.dtype} and {masks.dtype}"
        )
    return SliceSet(
        images, masks, np.asarray(patients), np.asarray(volumes), np.asarray(slice_index)
    )


def match_synthetic_set(synthetic: SliceSet, train_slices: SliceSet, where: str) -> SliceSet:
    """The synthetic set reordered like ``train_slices``; error unless it covers them exactly."""
    syn_keys, train_keys = _keys(synthetic), _keys(train_slices)
    if synthetic.images.shape[1:] != train_slices.images.shape[1:]:
        raise SyntheticSetError(
            f"{where}: synthetic images are {synthetic.images.shape[1:]}, training slices "
            f"{train_slices.images.shape[1:]} (was it made at another data.image_size?)"
        )
    row = {}
    dupes = []
    for i, k in enumerate(syn_keys):
        if k in row:
            dupes.append(k)
        row[k] = i
    if dupes:
        raise SyntheticSetError(f"{where}: manifest lists slices more than once: {_show(dupes)}")
    missing = [k for k in train_keys if k not in row]
    extra = sorted(set(row) - set(train_keys))
    if missing or extra:
        raise SyntheticSetError(
            f"{where}: synthetic set does not cover exactly the {len(train_keys)} training slices of this "
            f"fraction: {len(missing)} training slices have no synthetic image"
            + (f" ({_show(missing)})" if missing else "")
            + f", {len(extra)} synthetic rows are not training slices"
            + (f" ({_show(extra)})" if extra else "")
            + " — was it synthesised for another data.fraction, seed or dataset?"
        )
    order = np.array([row[k] for k in train_keys], dtype=np.int64)
    masks = np.asarray(synthetic.masks[order])
    differ = np.flatnonzero((masks != train_slices.masks).reshape(len(order), -1).any(axis=1))
    if differ.size:
        raise SyntheticSetError(
            f"{where}: {differ.size} synthetic masks differ from their training masks "
            f"({_show([train_keys[i] for i in differ])}) — stale synthetic set?"
        )
    images = np.asarray(synthetic.images[order])
    if not np.isfinite(images).all():
        raise SyntheticSetError(f"{where}: images.npy contains NaN/inf")
    return train_slices.with_arrays(images, masks)


def generate_synthetic_images(
    generator_ckpt: str | Path,
    masks: np.ndarray,
    seed: int,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """One synthetic CT per mask from an LcGAN checkpoint: float16 [N,H,W] in [-1,1], in memory.

    Same rows as ``lcgan-synthesize`` writes for this checkpoint and seed: row i is generated
    alone with seed ``row_seed(seed, i)`` and dropout on (:func:`lcgan_lightning.synthesize.generate_set`).
    Uses the current CUDA device when there is one.
    """
    from lcgan_lightning.models.lcgan import load_generator
    from lcgan_lightning.synthesize import generate_set

    if device is None:
        device = f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu"
    gen = load_generator(generator_ckpt, map_location=device)
    if masks.shape[-1] != gen.image_size or masks.shape[-2] != gen.image_size:
        raise SyntheticSetError(
            f"{generator_ckpt}: generator makes {gen.image_size}² images, training masks are "
            f"{masks.shape[-2]}×{masks.shape[-1]} (data.image_size must match the GAN's)"
        )
    with torch.no_grad():
        out = generate_set(gen, np.asarray(masks), int(seed), dropout=True)
    del gen
    return out


def gan_slices(
    train_slices: SliceSet,
    synthetic_dir: str | Path | None,
    generator_ckpt: str | Path | None,
    seed: int,
) -> SliceSet:
    """One synthetic partner per training slice, from disk (preferred) or generated in memory."""
    if synthetic_dir:
        if generator_ckpt:
            log.info(
                "data.synthetic_dir is set: using %s, not generating from %s",
                synthetic_dir,
                generator_ckpt,
            )
        where = str(synthetic_dir)
        return match_synthetic_set(read_synthetic_set(synthetic_dir), train_slices, where)
    if generator_ckpt:
        images = generate_synthetic_images(generator_ckpt, np.asarray(train_slices.masks), seed)
        return SliceSet(
            images,
            np.asarray(train_slices.masks).copy(),
            train_slices.patients.copy(),
            train_slices.volumes.copy(),
            train_slices.slice_index.copy(),
        )
    raise SyntheticSetError(
        "data.augment needs GAN images: set data.synthetic_dir (a folder written by lcgan-synthesize) "
        "or data.generator_ckpt (an LcGAN checkpoint to generate from)"
    )


def traditional_slices(train_slices: SliceSet, seed: int) -> SliceSet:
    """One transformed copy of every training slice (paper §4.3 ranges)."""
    from lcgan_lightning.data.augment import make_traditional_set

    images, masks = make_traditional_set(train_slices, seed)
    return train_slices.with_arrays(images, masks)


def build_extra_train_sets(
    augment: str,
    train_slices: SliceSet,
    synthetic_dir: str | Path | None = None,
    generator_ckpt: str | Path | None = None,
    seed: int = 0,
) -> list[Dataset]:
    """Datasets appended after the original training slices for ``augment`` (module docstring)."""
    if augment not in AUGMENT_CHOICES:
        raise ValueError(f"augment={augment!r} is not one of {AUGMENT_CHOICES}")
    extras: list[tuple[str, SliceSet]] = []
    if augment in ("gan", "both"):
        extras.append(("gan", gan_slices(train_slices, synthetic_dir, generator_ckpt, seed)))
    if augment in ("traditional", "both"):
        extras.append(("traditional", traditional_slices(train_slices, seed)))
    total = len(train_slices) + sum(len(s) for _, s in extras)
    log.info(
        "segmenter training set (augment=%s): %d original%s = %d slices",
        augment,
        len(train_slices),
        "".join(f" + {len(s)} {name}" for name, s in extras),
        total,
    )
    return [SliceDataset(s) for _, s in extras]
