"""How varied lesion positions are: distinct occupied cells of a grid over component centroids."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from lcgan_lightning.constants import CLASS_NAMES, NUM_CLASSES
from lcgan_lightning.data.mask_bank.stats import CONNECTIVITY, lesion_bbox, validate_masks


def lesion_cells(masks: np.ndarray, grid: int = 8) -> set[tuple[int, int, int]]:
    """(class, grid row, grid col) of the centroid of every 8-connected lesion component."""
    masks = validate_masks(masks, "masks")
    _, h, w = masks.shape
    cells = set()
    for m in masks:
        box = lesion_bbox(m, pad=0)
        if box is None:
            continue
        crop = m[box]
        for c in np.flatnonzero(np.bincount(crop.ravel(), minlength=NUM_CLASSES)[1:]) + 1:
            lab, k = ndimage.label(crop == c, structure=CONNECTIVITY)
            for cy, cx in ndimage.center_of_mass(lab > 0, lab, range(1, k + 1)):
                gy = min(int((cy + box[0].start) / h * grid), grid - 1)
                gx = min(int((cx + box[1].start) / w * grid), grid - 1)
                cells.add((int(c), gy, gx))
    return cells


def position_diversity(masks: np.ndarray, grid: int = 8) -> dict[str, int]:
    """Distinct occupied cells of a ``grid`` x ``grid`` grid over lesion component centroids, per
    class name and in ``total`` (a class in a new cell, or a new class in a cell, counts)."""
    cells = lesion_cells(masks, grid)
    out = {CLASS_NAMES[c]: sum(1 for x in cells if x[0] == c) for c in range(1, NUM_CLASSES)}
    out["total"] = len(cells)
    return out
