"""Class colours and small image helpers shared by panels, overlays, contact sheets and reports."""

from __future__ import annotations

import numpy as np

from lcgan_lightning.constants import CLASS_NAMES

# One colour per class, in class order: the palette label image of `condition: palette` and the
# colour of every mask drawn by the project (background black).
CLASS_COLORS: np.ndarray = np.array(
    [
        [0, 0, 0],  # background
        [255, 0, 0],  # IPH  red
        [0, 255, 0],  # IVH  green
        [0, 0, 255],  # SAH  blue
        [255, 255, 0],  # EDH  yellow
        [255, 0, 255],  # SDH  magenta
    ],
    dtype=np.uint8,
)
assert len(CLASS_COLORS) == len(CLASS_NAMES)


def to_uint8(image) -> np.ndarray:
    """Grey image in [-1,1] (numpy or torch, [H,W] or any shape) -> uint8 in [0,255]."""
    if hasattr(image, "detach"):
        image = image.detach().float().cpu().numpy()
    return np.round((np.clip(np.asarray(image, dtype=np.float32), -1, 1) + 1) * 127.5).astype(np.uint8)


def mask_to_rgb(mask: np.ndarray) -> np.ndarray:
    """Class-index mask [H,W] -> uint8 RGB [H,W,3] in the class colours."""
    return CLASS_COLORS[np.clip(np.asarray(mask, dtype=np.int64), 0, len(CLASS_COLORS) - 1)]


def overlay(grey: np.ndarray, mask: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """uint8 RGB of a grey uint8 slice [H,W] with the lesion classes blended in their colours."""
    rgb = np.repeat(np.asarray(grey, dtype=np.float32)[..., None], 3, axis=-1)
    lesion = np.asarray(mask) > 0
    rgb[lesion] = (1 - alpha) * rgb[lesion] + alpha * mask_to_rgb(mask)[lesion].astype(np.float32)
    return rgb.round().astype(np.uint8)
