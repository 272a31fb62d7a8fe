"""The two ways a new mask is made: geometric variation of a whole mask (albumentations, nearest
interpolation) and transplant of one lesion component into another training slice."""

from __future__ import annotations

import math

import albumentations as A
import cv2
import numpy as np

from lcgan_lightning.constants import CLASS_NAMES
from lcgan_lightning.data.mask_bank.stats import (
    EDH,
    IPH,
    IVH,
    SDH,
    Component,
    MaskStats,
    lesion_bbox,
)

_NEAREST = dict(interpolation=cv2.INTER_NEAREST, mask_interpolation=cv2.INTER_NEAREST,
                border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=0)
REFERENCE_SIZE = 256  # elastic settings are given for 256² and scaled with the image size


class GeometricVariation:
    """Elastic deformation (probability ``elastic_p``), flip across the midline (``flip_p``),
    rotation in ±``rotate_deg`` and isotropic scaling in ``scale`` about the image centre.

    ``elastic_alpha`` / ``elastic_sigma`` are albumentations' ElasticTransform settings at 256²
    (sigma scales with the image size, alpha with its square, so shapes deform alike at any
    size); the elastic field is drawn on the lesions' bounding box grown by 3 sigma, which
    equals the full-image result whenever no pixel moves farther than that margin.
    """

    def __init__(self, shape: tuple[int, int], rotate_deg: float, scale: tuple[float, float],
                 flip_p: float, elastic_p: float, elastic_alpha: float, elastic_sigma: float):
        f = max(shape) / REFERENCE_SIZE
        self.elastic_p = float(elastic_p)
        self.margin = int(math.ceil(3 * elastic_sigma * f)) + 2
        self.affine = A.Compose([
            A.HorizontalFlip(p=flip_p),
            A.Affine(rotate=(-rotate_deg, rotate_deg), scale=tuple(scale), keep_ratio=True, p=1.0,
                     **_NEAREST),
        ], save_applied_params=True, seed=0)
        self.elastic = A.Compose([
            A.ElasticTransform(alpha=elastic_alpha * f * f, sigma=elastic_sigma * f,
                               noise_distribution="uniform", p=1.0, **_NEAREST),
        ], seed=0)

    def __call__(self, mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
        """A varied copy of label map ``mask`` and the parameters drawn (JSON-safe)."""
        out = mask.copy()
        elastic = bool(rng.random() < self.elastic_p)
        box = lesion_bbox(out, pad=self.margin)
        if elastic and box is not None:
            self.elastic.set_random_seed(int(rng.integers(2**31)))
            out[box] = self.elastic(image=np.ascontiguousarray(out[box]))["image"]
        self.affine.set_random_seed(int(rng.integers(2**31)))
        res = self.affine(image=out)
        applied = dict(res["applied_transforms"])
        aff = applied["Affine"]
        params = {"flip": "HorizontalFlip" in applied, "rotate_deg": float(aff["rotate"]),
                  "scale": float(aff["scale"]["x"]), "elastic": elastic}
        return np.asarray(res["image"], dtype=np.uint8), params


def _matrix(center: tuple[float, float], mirror_col: float | None, theta: float,
            shift: np.ndarray) -> np.ndarray:
    """3x3 map (x=col, y=row): mirror across column ``mirror_col``, rotate by ``theta`` about
    ``center`` (angles grow like ``atan2(row, col)``), then translate by ``shift`` (x, y)."""
    m = np.eye(3)
    if mirror_col is not None:
        m = np.array([[-1.0, 0.0, 2 * mirror_col], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    cy, cx = center
    c, s = math.cos(theta), math.sin(theta)
    rot = np.array([[c, -s, cx - c * cx + s * cy], [s, c, cy - s * cx - c * cy], [0.0, 0.0, 1.0]])
    move = np.array([[1.0, 0.0, shift[0]], [0.0, 1.0, shift[1]], [0.0, 0.0, 1.0]])
    return move @ rot @ m


def _apply(m: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return m[1, 0] * cols + m[1, 1] * rows + m[1, 2], m[0, 0] * cols + m[0, 1] * rows + m[0, 2]


def _fit_along(stats: MaskStats, rows: np.ndarray, cols: np.ndarray, u: np.ndarray, t: float,
               push_out: bool, limit: int) -> float | None:
    """Shift ``t`` (px along unit ``u`` = (x, y)) that keeps the points inside the region; with
    ``push_out`` the largest such shift (the points touch the boundary)."""
    inside = lambda tt: stats.region.contains(rows + tt * u[1], cols + tt * u[0])  # noqa: E731
    for _ in range(limit):
        if inside(t):
            break
        t -= 1.0
    else:
        return None
    if push_out:
        for _ in range(limit):
            if not inside(t + 1.0):
                break
            t += 1.0
    return t


def transplant(component: Component, target: np.ndarray, target_row: int, stats: MaskStats,
               rng: np.random.Generator, mirror_p: float, angle_jitter_deg: float,
               rho_jitter: float, ivh_jitter_px: float, touch_px: float
               ) -> tuple[np.ndarray | None, dict, str | None]:
    """``target`` with ``component`` moved into it by the class's placement rule.

    Returns (new mask or None, parameters, rejection reason or None). Rules (angles about the
    region centre, drawn from the class's real component angles and their mirror images, plus a
    normal jitter of ``angle_jitter_deg``):

    - EDH, SDH: rotated about the centre to the new angle (their curve stays concentric with the
      skull), then pushed outward until they touch the region boundary (``depth <= touch_px``);
    - IPH, SAH: rotated to the new angle and put at a relative radius (centroid distance over the
      boundary distance) drawn from the class's real ones, jittered by ``rho_jitter``; IPH must not
      touch the boundary (parenchyma), SAH keeps the sulcal/cisternal depth of real SAH;
    - IVH: not rotated; its centroid goes to a real IVH centroid (or its mirror image) jittered
      by ``ivh_jitter_px``, and all of it must lie in the ventricle zone (hull of real IVH).
    """
    region = stats.region
    cls = component.cls
    name = CLASS_NAMES[cls]
    h, w = stats.shape
    mirror = bool(rng.random() < mirror_p)
    mirror_col = (w - 1) / 2.0 if mirror else None
    rows, cols = component.pixels()
    rows, cols = rows.astype(np.float64), cols.astype(np.float64)
    cy, cx = component.centroid
    if mirror_col is not None:  # i.e. mirror
        cx = 2 * mirror_col - cx
    phi_src = math.atan2(cy - region.center[0], cx - region.center[1])
    if cls == IVH:
        theta = 0.0
        pick = stats.ivh_centroids[int(rng.integers(len(stats.ivh_centroids)))]
        goal = pick + rng.normal(0.0, ivh_jitter_px, 2)
        shift = np.array([goal[1] - cx, goal[0] - cy])
        u = np.array([0.0, 0.0])
    else:
        angles = stats.angles[cls]
        phi = float(angles[int(rng.integers(len(angles)))]
                    + rng.normal(0.0, math.radians(angle_jitter_deg)))
        theta = math.remainder(phi - phi_src, 2 * math.pi)
        u = np.array([math.cos(phi), math.sin(phi)])
        r_now = math.hypot(cy - region.center[0], cx - region.center[1])
        if cls in (EDH, SDH):
            shift = np.zeros(2)
        else:
            rhos = stats.rhos[cls]
            rho = rhos[int(rng.integers(len(rhos)))] + rng.normal(0.0, rho_jitter)
            rho = float(np.clip(rho, 0.0, 1.0))
            shift = (rho * float(region.boundary_radius(phi)) - r_now) * u
    m = _matrix(region.center, mirror_col, theta, shift)
    pr, pc = _apply(m, rows, cols)
    if cls != IVH:
        t0 = 0.0
        if cls in (EDH, SDH):  # estimate the outward push from the boundary profile
            for _ in range(4):
                ph, rr = region.polar(pr + t0 * u[1], pc + t0 * u[0])
                cosd = np.clip(np.cos(ph - math.atan2(u[1], u[0])), 0.3, None)
                t0 += float(np.min((region.boundary_radius(ph) - rr) / cosd))
        t = _fit_along(stats, pr, pc, u, math.floor(t0), cls in (EDH, SDH), max(h, w))
        if t is None:
            return None, {}, "outside_region"
        shift = shift + t * u
        m = _matrix(region.center, mirror_col, theta, shift)
    canvas = np.zeros((h, w), dtype=np.uint8)
    canvas[component.top:component.top + component.crop.shape[0],
           component.left:component.left + component.crop.shape[1]] = component.crop
    placed = cv2.warpAffine(canvas, m[:2], (w, h), flags=cv2.INTER_NEAREST, borderValue=0) > 0
    prr, pcc = np.nonzero(placed)
    params = {"class": name, "component_row": int(component.row), "target_row": int(target_row),
              "component_area": int(component.area), "placed_area": int(prr.size),
              "mirror": mirror, "rotate_deg": math.degrees(theta),
              "shift_px": [float(shift[1]), float(shift[0])],
              "from_centroid": [float(component.centroid[0]), float(component.centroid[1])],
              "to_centroid": [float(prr.mean()), float(pcc.mean())] if prr.size else None}
    if prr.size == 0:
        return None, params, "vanished"
    if (target[placed] > 0).any():
        return None, params, "overlap"
    depth = float(region.depth[placed].min())
    if cls in (EDH, SDH) and depth > touch_px:
        return None, params, f"placement:{name}_off_boundary"
    if cls == IPH and depth <= touch_px:
        return None, params, "placement:IPH_at_boundary"
    if cls == IVH and not stats.ventricles[placed].all():
        return None, params, "placement:IVH_outside_ventricles"
    out = target.copy()
    out[placed] = cls
    return out, params, None
