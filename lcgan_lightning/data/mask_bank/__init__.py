"""Mask bank: NEW lesion masks (shapes, positions, class mixes) from the training masks of one
fraction, for the LcGAN to turn into CTs.

A mask carries no anatomy, so everything is learned from the lesions themselves:

- **Plausible intracranial region**: the convex hull of every lesion pixel of all training masks
  and of its mirror image across the midline (the image's central column). Every real lesion
  pixel lies inside it; it grows as more masks (with more boundary-hugging EDH/SDH/SAH) are seen
  and is conservative (never larger than the hull of observed lesions) with few. The
  *skull-side boundary* is the region's outer band: pixels at Euclidean distance <= ``touch_px``
  from the nearest pixel outside the region.
- **Geometric variation** of a whole mask: elastic deformation, flip across the midline, rotation
  and isotropic scaling (albumentations, nearest interpolation: class ids are only kept or
  cleared).
- **Transplant** of one lesion component (8-connected, one class) into another training slice,
  placed by its class's rule (see `transplant`): EDH/SDH rotated along the skull and pushed out
  to touch the boundary; IPH and SAH at an angle and relative depth drawn from the real ones of
  their class, IPH never touching the boundary; IVH at a real IVH position, inside the hull of
  the real IVH pixels (the ventricle zone). It may not overlap lesions already there.
- **Class balance**: each mask is made for a focus class that keeps the new masks' class counts
  on `class_targets` (rare classes raised to ``balance_ratio`` x the most frequent, at most
  ``max_boost`` x their real share).
- **Checks** (`check_mask`): no component under ``min_fragment_area`` px, every class's area
  within the [min, max] of the training masks holding it, every lesion pixel inside the region.
  Rejected candidates are counted by reason and retried up to ``max_tries_per_mask`` x n.
- **Diversity** (`position_diversity`): distinct (class, cell) pairs of an 8x8 grid occupied by
  lesion component centroids.
"""

from lcgan_lightning.data.mask_bank.bank import (
    SOURCES,
    MaskBank,
    MaskBankConfig,
    NovelMasks,
    class_targets,
    novel_masks,
)
from lcgan_lightning.data.mask_bank.diversity import lesion_cells, position_diversity
from lcgan_lightning.data.mask_bank.stats import (
    Component,
    IntracranialRegion,
    MaskStats,
    check_mask,
    describe_masks,
    estimate_region,
    validate_masks,
)
from lcgan_lightning.data.mask_bank.transforms import GeometricVariation, transplant

__all__ = [
    "SOURCES",
    "Component",
    "GeometricVariation",
    "IntracranialRegion",
    "MaskBank",
    "MaskBankConfig",
    "MaskStats",
    "NovelMasks",
    "check_mask",
    "class_targets",
    "describe_masks",
    "estimate_region",
    "lesion_cells",
    "novel_masks",
    "position_diversity",
    "transplant",
    "validate_masks",
]
