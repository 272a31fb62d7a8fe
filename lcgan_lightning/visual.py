"""Colours for masks and small image helpers shared by panels, contact sheets and reports."""

from __future__ import annotations

import numpy as np

from lcgan_lightning.constants import CLASS_NAMES

# One colour per class, in class order (background black).
CLASS_COLORS: np.ndarray = np.array(
    [
        [0, 0, 0],  # background
        [230, 25, 75],  # IPH  red
        [60, 180, 75],  # IVH  green
        [255, 225, 25],  # SAH  yellow
        [0, 130, 200],  # EDH  blue
        [245, 130, 48],  # SDH  orange
    ],
    dtype=np.uint8,
)
assert len(CLASS_COLORS) == len(CLASS_NAMES)


def mask_to_rgb(mask: np.ndarray) -> np.ndarray:
    """Class-index mask [H,W] -> RGB float image [H,W,3] in [0,1] (imshow-ready)."""
    return CLASS_COLORS[np.asarray(mask, dtype=np.int64)].astype(np.float32) / 255.0


def overlay(image: np.ndarray, mask: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Grey image in [-1,1] [H,W] with the mask's lesion colours blended on top -> RGB [0,1]."""
    grey = np.repeat(((np.asarray(image, dtype=np.float32) + 1.0) / 2.0).clip(0, 1)[..., None], 3, axis=-1)
    colours = mask_to_rgb(mask)
    lesion = (np.asarray(mask) > 0)[..., None]
    return np.where(lesion, (1 - alpha) * grey + alpha * colours, grey)
