"""What the training masks teach: the plausible intracranial region, lesion components and the
per-class ranges every new mask is checked against.

Coordinates are (row, col) pixels; angles ``phi = atan2(row - cy, col - cx)`` about the region
centre; the midline is the image's central column (the slices are head-centred).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage

from lcgan_lightning.constants import CLASS_NAMES, NUM_CLASSES

IPH, IVH, SAH, EDH, SDH = 1, 2, 3, 4, 5
CONNECTIVITY = np.ones((3, 3), dtype=bool)  # 8-connected components everywhere
N_ANGLE_BINS = 720


def validate_masks(masks: np.ndarray, name: str = "train_masks") -> np.ndarray:
    """``masks`` as uint8 [N,H,W] label maps, values 0-5; raises ValueError naming the defect."""
    arr = np.asarray(masks)
    if arr.ndim != 3:
        raise ValueError(f"{name}: expected [N,H,W] label maps, got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] < 8 or arr.shape[2] < 8:
        raise ValueError(f"{name}: needs at least one mask of at least 8x8 px, "
                         f"got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
        raise ValueError(f"{name}: label maps must have an integer dtype, got {arr.dtype}")
    if arr.min() < 0 or arr.max() >= NUM_CLASSES:
        bad = np.setdiff1d(np.unique(arr), np.arange(NUM_CLASSES))
        raise ValueError(f"{name}: values {bad.tolist()[:10]} outside the class ids "
                         f"0-{NUM_CLASSES - 1}")
    return arr.astype(np.uint8, copy=False)


@dataclass(frozen=True)
class IntracranialRegion:
    """Where lesions may lie: the convex hull of every lesion pixel of the training masks and of
    its mirror image across the midline (the skull is convex and roughly symmetric).

    ``depth`` is the Euclidean distance (px) of each region pixel to the nearest pixel outside
    (1 on the region's outer ring, 0 outside); the "skull-side boundary" is ``depth <= touch_px``.
    ``outside`` is the distance (px) of each pixel outside the region to the region (0 inside).
    ``radius[b]`` is the boundary's distance from ``center`` along angle bin ``b``.
    """

    mask: np.ndarray
    depth: np.ndarray
    outside: np.ndarray
    center: tuple[float, float]
    radius: np.ndarray

    def polar(self, rows: np.ndarray | float, cols: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """(angle, distance) of pixel positions about the region centre."""
        dy, dx = np.asarray(rows) - self.center[0], np.asarray(cols) - self.center[1]
        return np.arctan2(dy, dx), np.hypot(dy, dx)

    def boundary_radius(self, phi: np.ndarray | float) -> np.ndarray:
        """Distance from the centre to the region's boundary along angle(s) ``phi``."""
        b = np.floor((np.asarray(phi) + np.pi) / (2 * np.pi) * N_ANGLE_BINS).astype(np.int64)
        return self.radius[b % N_ANGLE_BINS]

    def contains(self, rows: np.ndarray, cols: np.ndarray) -> bool:
        """True if every (rounded) position lies inside the region."""
        r, c = np.rint(rows).astype(np.int64), np.rint(cols).astype(np.int64)
        h, w = self.mask.shape
        if r.size == 0:
            return True
        if r.min() < 0 or c.min() < 0 or r.max() >= h or c.max() >= w:
            return False
        return bool(self.mask[r, c].all())


def estimate_region(masks: np.ndarray) -> IntracranialRegion:
    """The plausible intracranial region of label maps ``masks`` [N,H,W] (IntracranialRegion)."""
    foot = masks.max(axis=0) > 0
    if not foot.any():
        raise ValueError("train_masks: no lesion pixel in any mask; cannot estimate a region")
    foot |= foot[:, ::-1]
    pts = np.argwhere(foot)[:, ::-1].astype(np.int32)  # (x=col, y=row) for OpenCV
    region = np.zeros(foot.shape, dtype=np.uint8)
    cv2.fillPoly(region, [cv2.convexHull(pts)], 1)
    region = region.astype(bool) | foot
    region |= region[:, ::-1]
    depth = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1].astype(np.float32)
    outside = ndimage.distance_transform_edt(~region).astype(np.float32)
    rr, cc = np.nonzero(region)
    center = (float(rr.mean()), float(cc.mean()))
    phi = (np.arange(N_ANGLE_BINS) + 0.5) / N_ANGLE_BINS * 2 * np.pi - np.pi
    steps = np.arange(0.0, float(np.hypot(*region.shape)), 0.5)
    ys = np.rint(center[0] + np.sin(phi)[:, None] * steps).astype(np.int64)
    xs = np.rint(center[1] + np.cos(phi)[:, None] * steps).astype(np.int64)
    ok = (ys >= 0) & (xs >= 0) & (ys < region.shape[0]) & (xs < region.shape[1])
    inside = ok & region[np.clip(ys, 0, region.shape[0] - 1), np.clip(xs, 0, region.shape[1] - 1)]
    first_out = np.argmin(inside, axis=1)  # the region is convex: inside up to its first exit
    first_out[inside.all(axis=1)] = steps.size
    radius = steps[np.maximum(first_out - 1, 0)]
    return IntracranialRegion(region, depth, outside, center, radius)


@dataclass(frozen=True)
class Component:
    """One 8-connected lesion component of one class in training mask ``row``."""

    row: int
    cls: int
    top: int
    left: int
    crop: np.ndarray  # bool, its bounding box
    area: int
    centroid: tuple[float, float]
    phi: float
    rho: float  # centroid distance from the centre / boundary distance at that angle

    def pixels(self) -> tuple[np.ndarray, np.ndarray]:
        """Absolute (rows, cols) of its pixels."""
        r, c = np.nonzero(self.crop)
        return r + self.top, c + self.left


@dataclass
class MaskStats:
    """Everything learned from the training masks (see `describe_masks`)."""

    shape: tuple[int, int]
    region: IntracranialRegion
    components: list[Component]
    rows_with: dict[int, np.ndarray]  # class -> training rows containing it (fragment-free first)
    presence: np.ndarray  # [NUM_CLASSES] number of masks containing each class
    area_min: np.ndarray  # [NUM_CLASSES] smallest per-mask class area among masks with the class
    area_max: np.ndarray
    ventricles: np.ndarray  # bool [H,W]: hull of the mirrored IVH pixels (empty without IVH)
    angles: dict[int, np.ndarray]  # class -> component centroid angles, with mirrored copies
    rhos: dict[int, np.ndarray]
    ivh_centroids: np.ndarray  # [k, 2] (row, col), with mirrored copies


def lesion_bbox(mask: np.ndarray, pad: int = 1) -> tuple[slice, slice] | None:
    """Bounding box of the lesion pixels of ``mask`` grown by ``pad`` (None if there are none)."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    h, w = mask.shape
    return (slice(max(rows[0] - pad, 0), min(rows[-1] + pad + 1, h)),
            slice(max(cols[0] - pad, 0), min(cols[-1] + pad + 1, w)))


def _mirror_angle(phi: np.ndarray) -> np.ndarray:
    return np.angle(np.exp(1j * (np.pi - phi)))


def describe_masks(masks: np.ndarray, min_fragment_area: int, ventricle_margin_px: float
                   ) -> MaskStats:
    """Region, components (at least ``min_fragment_area`` px) and per-class statistics."""
    masks = validate_masks(masks)
    n, h, w = masks.shape
    region = estimate_region(masks)
    comps: list[Component] = []
    counts = np.zeros((n, NUM_CLASSES), dtype=np.int64)
    clean = np.zeros(n, dtype=bool)
    for i in range(n):
        box = lesion_bbox(masks[i])
        if box is None:
            continue
        crop = masks[i][box]
        counts[i] = np.bincount(crop.ravel(), minlength=NUM_CLASSES)
        lab, k = ndimage.label(crop > 0, structure=CONNECTIVITY)
        clean[i] = np.bincount(lab.ravel(), minlength=k + 1)[1:].min() >= min_fragment_area
        for c in (np.flatnonzero(counts[i, 1:]) + 1).tolist():
            lab, k = ndimage.label(crop == c, structure=CONNECTIVITY)
            for j, sl in enumerate(ndimage.find_objects(lab), start=1):
                piece = lab[sl] == j
                area = int(piece.sum())
                if area < min_fragment_area:
                    continue
                pr, pc = np.nonzero(piece)
                top, left = sl[0].start + box[0].start, sl[1].start + box[1].start
                cy, cx = float(pr.mean() + top), float(pc.mean() + left)
                phi, r = region.polar(cy, cx)
                rho = float(r / max(float(region.boundary_radius(phi)), 1.0))
                comps.append(Component(i, int(c), top, left, piece, area, (cy, cx), float(phi),
                                       rho))
    if not comps:
        raise ValueError(f"train_masks: no lesion component of at least {min_fragment_area} px")
    present = counts > 0
    big = np.where(present, counts, np.iinfo(np.int64).max).min(axis=0)
    area_min = np.where(present.any(axis=0), big, 0)
    area_max = counts.max(axis=0)
    ivh = np.asarray([c.centroid for c in comps if c.cls == IVH]).reshape(-1, 2)
    ivh = np.concatenate([ivh, np.stack([ivh[:, 0], (w - 1) - ivh[:, 1]], axis=1)])
    ventricles = np.zeros((h, w), dtype=np.uint8)
    ivh_pix = np.zeros((h, w), dtype=bool)
    for x in comps:
        if x.cls == IVH:
            ivh_pix[x.top:x.top + x.crop.shape[0], x.left:x.left + x.crop.shape[1]] |= x.crop
    ivh_pix |= ivh_pix[:, ::-1]
    if ivh_pix.any():
        hull = cv2.convexHull(np.argwhere(ivh_pix)[:, ::-1].astype(np.int32))
        cv2.fillPoly(ventricles, [hull], 1)
        ventricles = ndimage.distance_transform_edt(ventricles == 0) <= ventricle_margin_px
    angles, rhos = {}, {}
    for c in range(1, NUM_CLASSES):
        phi = np.asarray([x.phi for x in comps if x.cls == c])
        angles[c] = np.concatenate([phi, _mirror_angle(phi)])
        rhos[c] = np.asarray([x.rho for x in comps if x.cls == c])
    # geometric sources: rows whose components all pass the fragment check, if the class has any
    rows_with = {c: np.flatnonzero(present[:, c] & clean) if (present[:, c] & clean).any()
                 else np.flatnonzero(present[:, c]) for c in range(1, NUM_CLASSES)}
    return MaskStats((h, w), region, comps, rows_with, present.sum(axis=0), area_min, area_max,
                     ventricles.astype(bool), angles, rhos, ivh)


def check_mask(mask: np.ndarray, stats: MaskStats, min_fragment_area: int,
               region_tolerance_px: float = 1.0) -> list[str]:
    """Reasons to reject a candidate mask (empty list: accepted).

    - ``bad_values``: a value outside 0-5; ``empty``: no lesion pixel;
    - ``fragment``: an 8-connected lesion component (any classes together) under
      ``min_fragment_area`` px;
    - ``area_low:<class>`` / ``area_high:<class>``: the class's area outside the [min, max] of the
      training masks holding that class (``unseen:<class>`` if no training mask holds it);
    - ``outside_region``: a lesion pixel farther than ``region_tolerance_px`` outside the region.
    """
    if mask.shape != stats.shape:
        raise ValueError(f"mask: shape {mask.shape} differs from the training masks' {stats.shape}")
    if mask.min(initial=0) < 0 or mask.max(initial=0) >= NUM_CLASSES:
        return ["bad_values"]
    box = lesion_bbox(mask)
    if box is None:
        return ["empty"]
    crop = mask[box]
    reasons = []
    lab, k = ndimage.label(crop > 0, structure=CONNECTIVITY)
    if np.bincount(lab.ravel(), minlength=k + 1)[1:].min() < min_fragment_area:
        reasons.append("fragment")
    areas = np.bincount(crop.ravel(), minlength=NUM_CLASSES)
    for c in np.flatnonzero(areas[1:]) + 1:
        name = CLASS_NAMES[c]
        if stats.presence[c] == 0:
            reasons.append(f"unseen:{name}")
        elif areas[c] < stats.area_min[c]:
            reasons.append(f"area_low:{name}")
        elif areas[c] > stats.area_max[c]:
            reasons.append(f"area_high:{name}")
    if stats.region.outside[box][crop > 0].max() > region_tolerance_px:
        reasons.append("outside_region")
    return reasons
