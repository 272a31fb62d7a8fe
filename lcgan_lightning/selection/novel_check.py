"""The judge's check of a novel set: can the generator draw lesions where it never saw them?

The judge segmenter's per-class Dice (FCN score, `score.image_figures`) on CTs generated from NEW
masks is set against its Dice on CTs the same generator made, with the same per-row seeds, from the
REAL training masks the new ones came from (and, as a ceiling, on the real CTs of those masks).
A new-mask score well below the real-mask one means lesions at new places or in new class mixes
come out less recognisable.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from lcgan_lightning.constants import LESION_CLASSES
from lcgan_lightning.metrics import to_json_safe
from lcgan_lightning.selection.score import CONVENTIONS, image_figures

JUDGE_CHECK = "judge_check.json"

CONVENTION = (
    "Judge segmenter's Dice on generated CTs vs the masks they were generated from (selection "
    "fcn_score convention: " + CONVENTIONS["fcn_score"] + ") for three image sets: new_masks = the "
    "novel set's CTs; training_masks = CTs the same generator made from the training masks (row i "
    "seeded like the novel set's row i); real_ct = the real CTs of the training masks. "
    "difference = new_masks - training_masks (fcn_score and per class; null where a class is "
    "missing from either)."
)


def _figures(images: np.ndarray, masks: np.ndarray, judge: Any, batch_size: int) -> dict[str, Any]:
    imgs = torch.as_tensor(np.asarray(images, dtype=np.float32)).unsqueeze(1)
    out = image_figures(imgs, torch.as_tensor(np.asarray(masks)).long(), judge, batch_size)
    return {k: out[k] for k in ("fcn_score", "per_class_dsc", "precision", "recall", "n_images")}


def judge_novel_check(judge: Any, new_images: np.ndarray, new_masks: np.ndarray, train_images: np.ndarray,
                      train_masks: np.ndarray, real_images: np.ndarray | None = None,
                      batch_size: int = 16) -> dict[str, Any]:
    """Per-class FCN score of CTs from new masks vs CTs from training masks (JSON-safe dict).

    `judge.predict_masks(images [B,1,H,W]) -> [B,H,W]`; images are [N,H,W] in [-1,1].
    """
    new = _figures(new_images, new_masks, judge, batch_size)
    old = _figures(train_images, train_masks, judge, batch_size)

    def diff(a: Any, b: Any) -> float | None:
        ok = a is not None and b is not None and np.isfinite(a) and np.isfinite(b)
        return float(a) - float(b) if ok else None

    out = {
        "convention": CONVENTION,
        "new_masks": new,
        "training_masks": old,
        "real_ct": None if real_images is None else _figures(real_images, train_masks, judge, batch_size),
        "difference": {
            "fcn_score": diff(new["fcn_score"], old["fcn_score"]),
            "per_class_dsc": {c: diff(new["per_class_dsc"].get(c), old["per_class_dsc"].get(c))
                              for c in LESION_CLASSES},
        },
    }
    return to_json_safe(out)
