"""Training sets of the segmenter: originals plus GAN-synthetic and/or traditional copies (§4.2–4.3).

``build_extra_train_sets(augment, train_slices, synthetic_dir, image_source, seed)`` returns the
datasets the datamodule appends to the original training slices (kept for every variant but
``synthetic_only``, which trains on the synthetic pairs alone: ``gan_slices`` is then the whole
training set; train on synthetic, test on real):

* ``none``        → []
* ``traditional`` → one transformed copy of every training slice
  (:func:`lcgan_lightning.data.augment.make_traditional_set`, seeded) — training set ×2
* ``gan``         → ``per_mask`` synthetic CTs per training mask — training set ×(1 + k)
* ``both``        → both of the above — training set ×(2 + k)
* ``gan_novel``   → synthetic CTs of k x N NEW masks (a ``novel`` set, ``novel_dir``) — ×(1 + k)
* ``both_novel``  → ``gan_novel`` + ``traditional`` — ×(2 + k)

(k = ``data.synthetic_per_mask``, default 1.)

GAN images come from a synthetic set on disk (:mod:`lcgan_lightning.data.synthetic_set`) when
``synthetic_dir`` is set; otherwise from ``image_source(masks, seed)``, a function the caller
provides (``lcgan-train`` builds one from ``data.generator_ckpt`` with the same per-row seeds as
``lcgan-synthesize``, so both routes give the same images). The data layer never loads models.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from lcgan_lightning.data.dataset import SliceDataset
from lcgan_lightning.data.slices import SliceSet
from lcgan_lightning.data.synthetic_set import SyntheticSetError, load_synthetic_rows
from lcgan_lightning.variants import AUGMENTS

log = logging.getLogger(__name__)

# masks uint8 [N,H,W], seed -> synthetic images float16 [N,H,W] in [-1,1]
ImageSource = Callable[[np.ndarray, int], np.ndarray]


def gan_slices(
    train_slices: SliceSet,
    synthetic_dir: str | Path | None = None,
    image_source: ImageSource | None = None,
    seed: int = 0,
    per_mask: int = 1,
) -> SliceSet:
    """`per_mask` synthetic partners per training slice (copy-major): from a set on disk
    (preferred), else from `image_source` (copy c > 0 as ``image_source(masks, seed, copy=c)``)."""
    if synthetic_dir:
        return load_synthetic_rows(synthetic_dir, train_slices, per_mask, kind="redraw")
    if image_source is not None:
        masks = np.asarray(train_slices.masks)
        images = [image_source(masks, int(seed), **({"copy": c} if c else {})) for c in range(int(per_mask))]
        return train_slices.select(np.tile(np.arange(len(masks)), int(per_mask))).with_arrays(
            np.concatenate(images), np.concatenate([masks] * int(per_mask)))
    raise SyntheticSetError(
        "data.augment needs GAN images: set data.synthetic_dir (a folder written by lcgan-synthesize) "
        "or data.generator_ckpt (an LcGAN checkpoint to generate from)"
    )


def novel_slices(train_slices: SliceSet, novel_dir: str | Path | None, per_mask: int = 1) -> SliceSet:
    """Synthetic pairs of new masks: the first per_mask x N rows of the novel set in `novel_dir`."""
    if not novel_dir:
        raise SyntheticSetError("data.augment=gan_novel|both_novel needs data.novel_dir (a folder written by "
                                "lcgan-synthesize masks=novel)")
    return load_synthetic_rows(novel_dir, train_slices, per_mask, kind="novel")


def traditional_slices(train_slices: SliceSet, seed: int) -> SliceSet:
    """One transformed copy of every training slice (paper §4.3 ranges)."""
    from lcgan_lightning.data.augment import make_traditional_set

    images, masks = make_traditional_set(train_slices, seed)
    return train_slices.with_arrays(images, masks)


def build_extra_train_sets(
    augment: str,
    train_slices: SliceSet,
    synthetic_dir: str | Path | None = None,
    image_source: ImageSource | None = None,
    seed: int = 0,
    per_mask: int = 1,
    novel_dir: str | Path | None = None,
) -> list[Dataset]:
    """Datasets appended after the original training slices for ``augment`` (module docstring)."""
    aug = AUGMENTS.get(augment)
    if aug is None or not aug.originals:
        raise ValueError(f"augment={augment!r} is not one of {[a.name for a in AUGMENTS.values() if a.originals]}")
    make = {
        "gan": lambda: gan_slices(train_slices, synthetic_dir, image_source, seed, per_mask),
        "gan_novel": lambda: novel_slices(train_slices, novel_dir, per_mask),
        "traditional": lambda: traditional_slices(train_slices, seed),
    }
    extras: list[tuple[str, SliceSet]] = [(name, make[name]()) for name in aug.extras]
    total = len(train_slices) + sum(len(s) for _, s in extras)
    log.info(
        "segmenter training set (augment=%s): %d original%s = %d slices",
        augment,
        len(train_slices),
        "".join(f" + {len(s)} {name}" for name, s in extras),
        total,
    )
    return [SliceDataset(s) for _, s in extras]
