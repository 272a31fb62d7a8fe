"""Built-in head-CT phantom with intracranial hemorrhage, written in the BHSD / nnU-Net layout.

Each patient is a procedurally drawn head: scalp, skull (outer table, diploe, inner table), folded
cortex over white matter, sulci, fissures, ventricles, deep grey nuclei, skull base with petrous
ridges, orbits and posterior fossa, plus 1-2 hemorrhage classes drawn as 3D shapes sampled slice by
slice. Values are in HU (figures from public radiology references); the label holds lesion
voxels only (perihematomal edema is drawn but not labelled).

Geometry is computed in millimetres in a head-fixed frame, ``U`` toward the patient's left and ``V``
toward posterior, so the same patient looks the same at every ``image_size``. Small images are drawn
at a finer grid and block-averaged (partial volume), then blurred and given correlated noise.

Everything a patient gets depends only on ``(seed, patient index)``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from lcgan_lightning.constants import (
    CLASS_NAMES,
    HU_MAX,
    HU_MIN,
    OURS_TO_BHSD,
    UINT16_HU_OFFSET,
)

FOV_MM = 250.0  # 512 px <-> 0.488 mm, like most real head CTs
SLICE_MM = 5.0
RENDER_MIN = 192  # images smaller than this are drawn finer and block-averaged
IPH, IVH, SAH, EDH, SDH = 1, 2, 3, 4, 5
SECOND_STUDY_PROB = 0.2
BHSD_LABELS = {"background": 0, "EDH": 1, "IPH": 2, "IVH": 3, "SAH": 4, "SDH": 5}

# ct-facts.md: slices with lesion per patient, quantiles (p0 and p100 are our tails).
_SLICES_Q = ([0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0], [1, 1, 3, 6, 8, 13, 18])
# Peak cross-section area of one lesion (mm^2), quantiles; tuned so that the per-slice areas over
# the whole dataset land near ct-facts' 19 / 92 / 254 / 564 / 1296 mm^2.
_PEAK_AREA_Q = ([0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0], [8, 20, 100, 300, 680, 1500, 2500])


@dataclass
class PhantomVolume:
    """One study: ``hu`` int16 and ``label`` uint8 (our class ids), both [X, Y, Z] as in the NIfTI."""

    patient_id: str
    study_id: str
    hu: np.ndarray
    label: np.ndarray
    affine: np.ndarray
    classes: list[int] = field(default_factory=list)

    @property
    def name(self) -> str:
        """BHSD file stem ``ID_<patient>_ID_<study>``."""
        return f"ID_{self.patient_id}_ID_{self.study_id}"

    def axial(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Slice ``k`` in display orientation (anterior up, patient's right on the left)."""
        return np.rot90(self.hu[:, :, k]), np.rot90(self.label[:, :, k])


# ----------------------------------------------------------------------------- sampling helpers


def phantom_affine(image_size: int) -> np.ndarray:
    """Voxel-to-RAS affine: ``FOV_MM / image_size`` in-plane (LAS like dcm2niix), 5 mm slices."""
    s = FOV_MM / image_size
    c = s * (image_size - 1) / 2.0
    return np.array(
        [[-s, 0, 0, c], [0, s, 0, -c], [0, 0, SLICE_MM, -60.0], [0, 0, 0, 1]], dtype=np.float64
    )


def _levels(num_slices: int) -> np.ndarray:
    """Axial level of each slice, 0 = skull base, 1 = vertex; slices always span the whole head."""
    return np.linspace(0.03, 0.97, num_slices)


@dataclass
class _Anatomy:
    A: float  # half width (mm, left-right)
    B: float  # half length (mm, antero-posterior)
    harm: np.ndarray  # [k, amp, phase] shape perturbation
    skull_harm: np.ndarray
    scalp: float
    skull: float
    gap: float  # subarachnoid CSF between inner table and cortex
    sulc_w: float  # sulcal half-width
    sulc_wk: np.ndarray  # per-sulcus width factor
    gm_thick: float
    vent: float  # ventricle scale
    n_gyri: int
    sulc_depth: np.ndarray
    sec_depth: np.ndarray  # shallow secondary sulcus inside each gyrus (0 = none)
    sulc_phase: np.ndarray
    warp: np.ndarray  # [m, q, r, amp, phase]
    gm: float
    wm: float
    csf: float
    deep_gm: float
    noise: float
    cup: float
    muscle: float
    tex: np.ndarray  # low-frequency texture harmonics


@dataclass
class _Pose:
    angle: float
    cx: float
    cy: float
    noise_scale: float


@dataclass
class _Lesion:
    cls: int
    center: float  # slice index (float)
    half: float  # half height in slices
    peak: float  # peak area mm^2
    theta: float = 0.0
    u: float = 0.0
    v: float = 0.0
    aspect: float = 1.5
    orient: float = 0.0
    hu: float = 65.0
    extra: dict = field(default_factory=dict)

    def scale(self, k: int) -> float:
        """Cross-section area at slice ``k`` relative to the peak (a rounded 3D body)."""
        x = (k - self.center) / self.half
        return float(max(0.0, 1.0 - x * x) ** 1.5)


def _sample_anatomy(rng: np.random.Generator) -> _Anatomy:
    A = rng.uniform(66.0, 76.0)
    B = A * rng.uniform(1.17, 1.30)
    atrophy = rng.random()
    harm = np.stack(
        [np.arange(2, 6), rng.normal(0, 0.012, 4), rng.uniform(0, 2 * np.pi, 4)], axis=1
    )
    skull_harm = np.stack(
        [np.arange(1, 4), rng.normal(0, 0.12, 3), rng.uniform(0, 2 * np.pi, 3)], axis=1
    )
    n_gyri = int(rng.integers(30, 38))
    nw = 6
    warp = np.stack(
        [
            rng.integers(1, 11, nw).astype(float),  # angular frequency (integer: periodic)
            rng.uniform(-0.35, 0.35, nw),  # depth frequency (rad/mm): sulci wind with depth
            rng.uniform(-6, 6, nw),  # level frequency (rad per unit level)
            rng.uniform(0.06, 0.26, nw),  # amplitude in gyri
            rng.uniform(0, 2 * np.pi, nw),
        ],
        axis=1,
    )
    tex = np.stack([rng.normal(0, 1, (6, 2)).ravel()[:6], rng.uniform(0, 2 * np.pi, 6)], axis=1)
    return _Anatomy(
        A=A,
        B=B,
        harm=harm,
        skull_harm=skull_harm,
        scalp=rng.uniform(3.5, 6.5),
        skull=rng.uniform(5.0, 8.0),
        gap=0.6 + 2.0 * atrophy,
        sulc_w=0.3 + 0.9 * atrophy,
        sulc_wk=rng.uniform(0.2, 1.6, n_gyri).astype(np.float32),
        gm_thick=rng.uniform(2.6, 3.6),
        vent=0.8 + 0.7 * atrophy + rng.uniform(-0.1, 0.1),
        n_gyri=n_gyri,
        sulc_depth=rng.uniform(4.0, 20.0, n_gyri).astype(np.float32),
        sec_depth=np.clip(rng.uniform(-6.0, 10.0, n_gyri), 0, None).astype(np.float32),
        sulc_phase=rng.uniform(0, 2 * np.pi, n_gyri).astype(np.float32),
        warp=warp,
        gm=rng.uniform(38.0, 43.0),
        wm=rng.uniform(23.0, 28.0),
        csf=rng.uniform(3.0, 10.0),
        deep_gm=rng.uniform(33.0, 37.0),
        noise=rng.uniform(3.0, 6.0),
        cup=rng.uniform(2.0, 6.0),
        muscle=rng.uniform(4.0, 9.0),
        tex=tex,
    )


def _sample_pose(rng: np.random.Generator) -> _Pose:
    return _Pose(
        angle=float(np.clip(rng.normal(0, 0.07), -0.2, 0.2)),
        cx=float(rng.normal(0, 3.0)),
        cy=float(rng.normal(4.0, 3.0)),
        noise_scale=rng.uniform(0.9, 1.1),
    )


# Axial levels (0 skull base .. 1 vertex) where each class may sit.
_CLASS_LEVELS = {
    EDH: (0.25, 0.9),
    SDH: (0.25, 0.9),
    IPH: (0.32, 0.8),
    IVH: (0.36, 0.62),
    SAH: (0.18, 0.9),
}


def _sample_lesions(
    rng: np.random.Generator, classes: list[int], num_slices: int
) -> list[_Lesion]:
    """3D bleeds of the given classes: level range, extent in slices, peak area and shape."""
    levels = _levels(num_slices)
    q_slices = rng.random()
    total = max(1.0, float(np.interp(q_slices, *_SLICES_Q)) * num_slices / 24.0)
    lesions = []
    for cls in classes:
        # two bleeds of one patient overlap in level, so each spans most of the lesion slices
        share = 1.0 if len(classes) == 1 else rng.uniform(0.55, 1.0)
        n = int(np.clip(round(total * share), 1, max(1, num_slices - 1)))
        lo, hi = _CLASS_LEVELS[cls]
        allowed = np.flatnonzero((levels >= lo) & (levels <= hi))
        if allowed.size == 0:
            allowed = np.arange(num_slices)
        n = min(n, allowed.size) if cls == IVH else n
        first = int(rng.integers(allowed[0], max(allowed[0], allowed[-1] - n + 1) + 1))
        first = int(np.clip(first, 0, num_slices - n))
        les = _Lesion(
            cls=cls,
            center=first + (n - 1) / 2.0,
            half=n / 2.0 + 0.2,
            # taller bleeds are larger in cross-section too
            peak=float(np.interp(0.5 * q_slices + 0.5 * rng.random(), *_PEAK_AREA_Q)),
        )
        if cls == EDH:
            # temporal most often, otherwise fronto-parietal / occipital convexity
            side = rng.choice([-1.0, 1.0])
            les.theta = side * (rng.normal(np.pi / 2, 0.35) if rng.random() < 0.6 else rng.uniform(0.4, 2.7))
            les.aspect = rng.uniform(2.2, 3.6)
            les.hu = rng.uniform(62, 82)
        elif cls == SDH:
            side = rng.choice([-1.0, 1.0])
            les.theta = side * rng.uniform(1.0, 2.2)
            les.extra["alpha"] = rng.uniform(0.7, 1.1)
            les.hu = rng.uniform(58, 78)
        elif cls == IPH:
            site = rng.random()
            side = rng.choice([-1.0, 1.0])
            if site < 0.45:  # basal ganglia
                les.u, les.v = side * rng.uniform(18, 26), rng.uniform(-8, 6)
            elif site < 0.6:  # thalamus
                les.u, les.v = side * rng.uniform(9, 14), rng.uniform(6, 14)
            else:  # lobar: keep well inside the cortex
                ang = rng.uniform(0.3, 2.8) * side
                rad = rng.uniform(25, 42)
                les.u, les.v = rad * np.sin(ang), -rad * np.cos(ang)
            les.aspect = rng.uniform(1.1, 2.0)
            les.orient = rng.uniform(0, np.pi)
            les.hu = rng.uniform(60, 74)
            les.extra["edema"] = rng.uniform(0.25, 0.6)  # rim width relative to the radius
            les.extra["edema_hu"] = rng.uniform(10, 18)
            les.extra["harm"] = np.stack(
                [np.arange(2, 5), rng.normal(0, 0.09, 3), rng.uniform(0, 2 * np.pi, 3)], axis=1
            )
        elif cls == IVH:
            les.extra["level"] = rng.uniform(-5, 22)  # fluid level, mm posterior of head centre
            les.extra["sides"] = rng.choice([-1.0, 1.0, 0.0])  # 0 = both
            les.hu = rng.uniform(55, 75)
        elif cls == SAH:
            kind = rng.random()
            side = rng.choice([-1.0, 1.0])
            if kind < 0.5:
                les.extra["kind"] = "convexity"
                les.theta = side * rng.uniform(0.5, 2.6)
            elif kind < 0.75:
                les.extra["kind"] = "fissure"
                les.theta = rng.choice([0.0, np.pi])
            else:
                les.extra["kind"] = "sylvian"
                les.theta = side * rng.uniform(1.2, 1.7)
            les.hu = rng.uniform(56, 72)
        lesions.append(les)
    return lesions


# ----------------------------------------------------------------------------- geometry helpers


def _window(t: float, tc: float, th: float) -> float:
    """1 at level ``tc``, falling to 0 at ``tc +- th`` (an ellipsoid's cross-section profile)."""
    x = (t - tc) / th
    return float(np.sqrt(max(0.0, 1.0 - x * x)))


class _Geo:
    """Per-study pixel geometry in the head frame, with cached distance fields.

    ``u``/``v`` are anatomical coordinates of a reference head (71 x 90 mm half axes); structures
    are placed there and scale with the patient's head.
    """

    def __init__(self, anat: _Anatomy, pose: _Pose, n: int, align: int = 1):
        px = FOV_MM / n
        ax = (np.arange(n, dtype=np.float32) - (n - 1) / 2.0) * px
        yg, xg = np.meshgrid(ax, ax, indexing="ij")  # rows anterior -> posterior, cols right -> left
        self.n, self.px, self.pose = n, px, pose
        ca, sa = np.cos(pose.angle), np.sin(pose.angle)
        x0, y0 = xg - pose.cx, yg - pose.cy
        self.U = (ca * x0 + sa * y0).astype(np.float32)
        self.V = (-sa * x0 + ca * y0).astype(np.float32)
        self.y_scanner = y0  # posterior distance in the scanner frame (gravity for fluid levels)
        self.sU, self.sV = anat.A / 71.0, anat.B / 90.0
        self.u, self.v = self.U / self.sU, self.V / self.sV
        self.r = np.hypot(self.U, self.V)
        self.theta = np.arctan2(self.U, -self.V)  # 0 anterior, +pi/2 patient's left
        s, c = np.sin(self.theta), np.cos(self.theta)
        a = anat.A * (1.0 - 0.06 * c)  # egg: wider at the back
        r0 = 1.0 / np.sqrt((s / a) ** 2 + (c / anat.B) ** 2)
        pert = np.ones_like(r0)
        for k, amp, ph in anat.harm:
            pert += amp * np.cos(k * self.theta + ph)
        self.R0 = (r0 * pert).astype(np.float32)
        skf = np.ones_like(r0)
        for k, amp, ph in anat.skull_harm:
            skf *= 1.0 + amp * np.cos(k * self.theta + ph)
        self.skull_f = skf.astype(np.float32)
        self.side_w = (np.abs(s) ** 6).astype(np.float32)
        self.diploe_tex = np.cos(self.theta * 7.0).astype(np.float32)
        self._seg_cache: dict = {}
        # keep only the head's bounding box (a multiple of ``align`` for block averaging)
        rows, cols = np.nonzero(self.R0 * 1.02 + 2 * px > self.r)
        i0, j0 = (rows.min() // align) * align, (cols.min() // align) * align
        i1, j1 = -(-(rows.max() + 1) // align) * align, -(-(cols.max() + 1) // align) * align
        self.box = (slice(i0, i1), slice(j0, j1))
        for name in ("U", "V", "y_scanner", "u", "v", "r", "theta", "R0", "skull_f", "side_w", "diploe_tex"):
            setattr(self, name, np.ascontiguousarray(getattr(self, name)[self.box]))
        self.shape = self.U.shape

    def crop(self, cu: float, cv: float, rad: float) -> tuple[slice, slice]:
        """Pixel window (rows, cols) that holds a disc of radius ``rad`` (anatomical mm) at (cu, cv)."""
        ca, sa = np.cos(self.pose.angle), np.sin(self.pose.angle)
        U, V = cu * self.sU, cv * self.sV
        x = ca * U - sa * V + self.pose.cx
        y = sa * U + ca * V + self.pose.cy
        rr = rad * max(self.sU, self.sV) + 2 * self.px
        h = (self.n - 1) / 2.0
        j0, j1 = int((x - rr) / self.px + h), int((x + rr) / self.px + h) + 2
        i0, i1 = int((y - rr) / self.px + h), int((y + rr) / self.px + h) + 2
        i0, i1 = i0 - self.box[0].start, i1 - self.box[0].start
        j0, j1 = j0 - self.box[1].start, j1 - self.box[1].start
        nr, nc = self.shape
        return slice(max(i0, 0), max(min(i1, nr), 0)), slice(max(j0, 0), max(min(j1, nc), 0))

    def ell(self, cu, cv, ru, rv, ang: float = 0.0, margin: float = 0.0) -> np.ndarray:
        """Approximate signed distance (mm, < 0 inside) to an ellipse; +inf far outside."""
        out = np.full(self.shape, np.inf, dtype=np.float32)
        if ru <= 0 or rv <= 0:
            return out
        sl = self.crop(cu, cv, max(ru, rv) + margin)
        u, v = self.u[sl] - cu, self.v[sl] - cv
        c, s = np.cos(ang), np.sin(ang)
        x = (u * c + v * s) / ru
        y = (-u * s + v * c) / rv
        out[sl] = (np.hypot(x, y) - 1.0) * min(ru, rv)
        return out

    def seg(self, a: tuple[float, float], b: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
        key = (a, b)
        if key not in self._seg_cache:
            du, dv = b[0] - a[0], b[1] - a[1]
            lam = ((self.u - a[0]) * du + (self.v - a[1]) * dv) / max(du * du + dv * dv, 1e-9)
            lam = np.clip(lam, 0.0, 1.0).astype(np.float32)
            d = np.hypot(self.u - a[0] - lam * du, self.v - a[1] - lam * dv).astype(np.float32)
            self._seg_cache[key] = (d, lam)
        return self._seg_cache[key]

    def tube(self, pts: list[tuple[float, float]], widths: list[float]) -> np.ndarray:
        """Signed distance (mm) to a tube along ``pts`` with radius interpolated from ``widths``."""
        out = np.full(self.shape, np.inf, dtype=np.float32)
        for i in range(len(pts) - 1):
            if widths[i] <= 0 and widths[i + 1] <= 0:
                continue
            d, lam = self.seg(pts[i], pts[i + 1])
            np.minimum(out, d - (widths[i] + lam * (widths[i + 1] - widths[i])), out=out)
        return out


def _level_scale(t: float) -> float:
    """Head cross-section scale with axial level: dome toward the vertex, narrower at the base."""
    if t > 0.4:
        x = (t - 0.4) / 0.68
        return float(np.sqrt(max(0.0, 1.0 - x * x)))
    if t < 0.2:
        return 0.93 + 0.35 * t
    return 1.0


# ----------------------------------------------------------------------------- one slice


def _render_slice(
    anat: _Anatomy, geo: _Geo, lesions: list[_Lesion], k: int, t: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """HU (float32, noise-free), label (uint8) and head mask on the render grid for slice ``k``."""
    v, U, theta = geo.v, geo.U, geo.theta
    R = geo.R0 * _level_scale(t)
    d = R - geo.r  # depth below the skin (mm)
    head = d > 0
    hu = np.full(d.shape, -1000.0, dtype=np.float32)
    label = np.zeros(d.shape, dtype=np.uint8)

    # scalp: skin, subcutaneous fat, galea / temporalis muscle (thick laterally at mid levels)
    scalp = anat.scalp + anat.muscle * _window(t, 0.3, 0.25) * geo.side_w
    fat_end = 1.8 + 0.5 * anat.scalp
    hu[head] = 40.0
    fat = (d > 1.8) & (d < fat_end)
    hu[fat] = -85.0 + 15.0 * np.clip(d[fat] - 1.8, 0, 1)
    hu[(d >= fat_end) & (d < scalp)] = 48.0

    # skull: outer table / diploe / inner table
    sk = anat.skull * geo.skull_f * (1.0 - 1.5 * max(0.0, t - 0.85))
    ds = d - scalp
    bone = (ds >= 0) & (ds < sk)
    tab = 0.28 * sk
    dip = bone & (ds > tab) & (ds < sk - tab)
    hu[bone] = 1350.0 + 250.0 * np.cos(ds[bone] * 2.1)
    hu[dip] = 430.0 + 110.0 * geo.diploe_tex[dip]

    # intracranial space; c = "distance to CSF": < 0 CSF, [0, gm_thick) cortex, beyond white matter
    dd = ds - sk
    brain = dd >= 0
    rr = np.maximum(geo.r, 1.0)
    c = dd - anat.gap
    # gyri: sulci at warped angular positions, each with its own depth and width
    ng = anat.n_gyri
    p = ng * (theta + np.pi) / (2 * np.pi)
    for m, q, rl, amp, ph in anat.warp.tolist():  # python floats keep float32 math
        p = p + amp * np.sin(m * theta + q * dd + rl * t + ph)
    ks = np.floor(p + 0.5)
    idx = ks.astype(np.int64) % ng
    delta = np.abs(p - ks) * (2 * np.pi / ng) * rr
    depth = anat.sulc_depth[idx] * (0.7 + 0.3 * np.sin(np.float32(7.0 * t) + anat.sulc_phase[idx]))
    depth *= 0.6 + 0.4 * min(1.0, max(0.0, (t - 0.15) / 0.3))
    ex = dd - anat.gap - depth
    c_sulc = np.where(ex < 0, delta, np.hypot(delta, ex)) - anat.sulc_w * anat.sulc_wk[idx]
    # secondary (branch) sulci halfway between primaries break the regular comb
    p2 = p + 0.5
    ks2 = np.floor(p2 + 0.5)
    idx2 = ks2.astype(np.int64) % ng
    delta2 = np.abs(p2 - ks2) * (2 * np.pi / ng) * rr
    ex2 = dd - anat.gap - anat.sec_depth[idx2]
    c_sec = np.where(ex2 < 0, delta2, np.hypot(delta2, ex2)) - 0.6 * anat.sulc_w * anat.sulc_wk[idx2]
    np.minimum(c_sulc, c_sec, out=c_sulc)
    c_sulc[dd < anat.gap] = -1.0
    np.minimum(c, c_sulc, out=c)

    # interhemispheric fissure (above the corpus callosum it runs the whole length)
    wf = 0.6 + 0.6 * anat.sulc_w
    ant_end, post_start = (-26.0, 30.0) if t < 0.66 else (1e3, -1e3)
    if t < 0.3:
        post_start = 1e3  # posterior fossa level: no occipital fissure
    fis = (v < ant_end) | (v > post_start)
    np.minimum(c, np.where(fis, np.abs(U) - wf, np.inf), out=c)

    # sylvian fissures (insula), basal cisterns
    w_syl = _window(t, 0.33, 0.12)
    if w_syl > 0:
        for sg in (-1.0, 1.0):
            ws = [w_syl * (x + anat.sulc_w) for x in (0.8, 1.0, 1.3)]
            np.minimum(c, geo.tube([(sg * 30, -6), (sg * 46, -14), (sg * 80, -8)], ws), out=c)
    w_cis = _window(t, 0.24, 0.09)
    if w_cis > 0:
        np.minimum(c, geo.ell(0.0, -6.0, 9.0 * w_cis, 6.0 * w_cis), out=c)
        ring = np.abs(geo.ell(0.0, 8.0, 13.0, 11.0, margin=3.0)) - 1.5 * w_cis
        np.minimum(c, ring, out=c)

    gm = anat.gm
    tissue = np.where(c < 0, anat.csf, np.where(c < anat.gm_thick, gm, anat.wm)).astype(np.float32)
    blend = (c >= anat.gm_thick) & (c < anat.gm_thick + 1.5)  # GM/WM junction is not a step
    tissue[blend] = gm + (anat.wm - gm) * (c[blend] - anat.gm_thick) / 1.5

    # deep grey nuclei: caudate head, lentiform nucleus, thalamus
    w_bg = _window(t, 0.38, 0.11)
    if w_bg > 0:
        for sg in (-1.0, 1.0):
            for cu, cv, ru, rv, ang in ((12, -12, 4.5, 7.5, 0.3), (22, -1, 5.5, 13, -0.35),
                                        (10, 10, 7.5, 10, 0.2)):
                e = geo.ell(sg * cu, cv, ru * w_bg, rv * w_bg, ang * sg)
                tissue[e < 0] = anat.deep_gm
    vent = _ventricles(anat, geo, t)
    tissue[vent < 0] = anat.csf
    if t < 0.3:
        _posterior_fossa(anat, geo, tissue, t)
    if t > 0.3:  # falx
        tissue[(np.abs(U) < 0.35) & fis & (c < 0)] = 46.0
    # cupping (brighter next to the skull) and faint low-frequency inhomogeneity
    tissue += anat.cup * np.exp(-dd / 12.0)
    for (a, ph), m in zip(anat.tex[:3].tolist(), (2, 3, 5), strict=True):
        tissue += 0.6 * a * np.sin(m * theta + 0.05 * dd + ph)
    hu[brain] = tissue[brain]

    if t < 0.3:
        _skull_base(geo, hu, d, t, head)

    # lesions, inside the intracranial space only
    ctx = dict(dd=dd, rin=R - scalp - sk, c=np.where(brain, c, np.inf), vent=vent,
               brain=brain & (hu > -200) & (hu < 200))
    for les in lesions:
        s = les.scale(k)
        if s > 0:
            _draw_lesion(les, s, geo, ctx, hu, label)
    return hu, label, head


def _ventricles(anat: _Anatomy, geo: _Geo, t: float) -> np.ndarray:
    """Signed distance (mm) to the lateral, third and temporal-horn ventricles at level ``t``."""
    vs = anat.vent
    out = np.full(geo.u.shape, np.inf, dtype=np.float32)
    # (u, v, half width, level centre, level half range) along each lateral ventricle, front to back
    spec = [(11, -31, 2.0, 0.44, 0.12), (7, -19, 5.0, 0.45, 0.15), (6, -3, 3.5, 0.52, 0.16),
            (9, 12, 3.5, 0.55, 0.14), (17, 24, 6.0, 0.45, 0.15), (15, 37, 2.5, 0.41, 0.10)]
    ws = [w * vs * _window(t, tc, th) for (_, _, w, tc, th) in spec]
    if max(ws) > 0:
        shift = round((vs - 1.0) * 3.0, 1)
        for sg in (-1.0, 1.0):
            lat = geo.tube([(sg * (pu + shift), pv) for (pu, pv, *_r) in spec], ws)
            lat[sg * geo.u <= 0.9] = np.inf  # septum pellucidum
            np.minimum(out, lat, out=out)
    w3 = _window(t, 0.36, 0.08)
    if w3 > 0:
        np.minimum(out, geo.tube([(0, -7), (0, 6)], [0.6 + 1.5 * w3 * vs] * 2), out=out)
    wt = _window(t, 0.26, 0.06)
    if wt > 0:
        for sg in (-1.0, 1.0):
            np.minimum(out, geo.tube([(sg * 27, -8), (sg * 30, 6)], [wt * 1.5 * vs] * 2), out=out)
    return out


def _posterior_fossa(anat: _Anatomy, geo: _Geo, tissue: np.ndarray, t: float) -> None:
    """Cerebellum (folia), vermis cleft, pons with prepontine cistern, fourth ventricle."""
    u, v = geo.u, geo.v
    w = _window(t, 0.12, 0.2)
    pf = v > 10.0 + 0.5 * np.abs(u)
    rho = np.hypot(u, (v - 30.0) * 1.2)
    ang = np.arctan2(u, v - 30.0)
    ph = rho / 4.5 + 0.8 * np.sin(3 * ang + 0.3 * rho) + 0.5 * np.sin(7 * ang + 1.0)
    fol = np.abs(ph - np.round(ph)) * 4.5
    cb = np.where(fol < 0.5, anat.csf + 20.0, np.where(fol < 1.6, anat.gm - 2.0, anat.wm + 8.0))
    cb = np.where(rho < 9.0, anat.wm + 5.0, cb)
    tissue[pf] = cb[pf]
    tissue[pf & (np.abs(u) < 0.8 + anat.sulc_w) & (v > 40)] = anat.csf  # vallecula
    pons = geo.ell(0.0, 8.0, 13.0 * w + 3, 11.0 * w + 3, margin=4.0)
    tissue[(pons < 1.2 + anat.sulc_w) & (pons >= 0) & (v < 8.0)] = anat.csf
    tissue[pons < 0] = anat.wm + 5.0
    v4 = geo.ell(0.0, 20.0, 4.5 * anat.vent * w + 0.5, 2.5 * anat.vent * w + 0.5)
    tissue[v4 < 0] = anat.csf


def _skull_base(geo: _Geo, hu: np.ndarray, d: np.ndarray, t: float, head: np.ndarray) -> None:
    """Petrous ridges with mastoid air, clivus and sphenoid sinus, orbits and ethmoid cells."""
    u, v = geo.u, geo.v
    wp = _window(t, 0.14, 0.13)
    if wp > 0:
        for sg in (-1.0, 1.0):
            pet = geo.tube([(sg * 13, 0), (sg * 34, 12), (sg * 58, 20)], [3.0 * wp, 5.5 * wp, 7.0 * wp])
            m = (pet < 0) & head
            hu[m] = 1300.0 + 300.0 * np.cos(pet[m] * 1.5)
            cells = (geo.ell(sg * 55, 22, 6.0 * wp, 5.0 * wp) < 0) & (np.cos(u * 1.7) * np.cos(v * 1.9) > -0.35)
            hu[cells & head] = -900.0
        hu[(geo.ell(0.0, -6.0, 9.0 * wp, 10.0 * wp) < 0) & head] = 700.0
        hu[(geo.ell(0.0, -14.0, 10.0 * wp, 7.0 * wp) < 0) & head] = -950.0
    wo = _window(t, 0.04, 0.14)
    if wo > 0:
        # in front of the cranial cavity: orbits with globes and lenses, ethmoid air cells
        wall_v = -44.0 - 0.004 * u * u
        face = (v < wall_v) & head & (d > 5.0)
        hu[face] = 45.0
        for sg in (-1.0, 1.0):
            orbit = geo.ell(sg * 31, -64, 17 * wo + 2, 14 * wo + 2, margin=3.0)
            hu[(orbit < 2.0) & (orbit >= 0) & face] = 900.0
            hu[(orbit < 0) & face] = -80.0
            globe = geo.ell(sg * 32, -68, 11.5 * wo + 1, 11.5 * wo + 1, margin=1.0)
            hu[(globe < 0) & face] = 12.0
            hu[(np.abs(globe) < 0.7) & face] = 35.0
            hu[(geo.ell(sg * 32, -78, 3.5 * wo, 1.6 * wo + 0.1) < 0) & face] = 110.0
        eth = geo.ell(0.0, -62, 9.0 * wo + 1, 14.0 * wo + 1, margin=1.0)
        m = (eth < 0) & face
        hu[m] = np.where(np.cos(u[m] * 1.4) * np.cos(v[m] * 1.2) > 0.75, 500.0, -920.0)
        hu[(np.abs(eth) < 1.0) & face] = 900.0
        hu[(np.abs(v - wall_v) < 1.5 + 2.0 * wo) & head & (d > 5.0)] = 1100.0


def _largest(mask: np.ndarray, keep: int) -> np.ndarray:
    """``mask`` reduced to its ``keep`` largest connected components."""
    if not mask.any():
        return mask
    lab, n = ndimage.label(mask)
    if n <= keep:
        return mask
    sizes = np.bincount(lab.ravel())[1:]
    return np.isin(lab, np.argsort(sizes)[::-1][:keep] + 1)


def _draw_lesion(les: _Lesion, s: float, geo: _Geo, ctx: dict, hu: np.ndarray, label: np.ndarray) -> None:
    """Paint lesion ``les`` at cross-section scale ``s`` (0..1) into ``hu`` and ``label``."""
    area = les.peak * s
    brain, dd = ctx["brain"], ctx["dd"]
    u, v = geo.u, geo.v
    if les.cls in (EDH, SDH):
        dth = np.angle(np.exp(1j * (geo.theta - les.theta)))
        near = (np.abs(dth) < 0.05) & (dd > -1) & (dd < 3)
        rin_c = float(np.median(ctx["rin"][near])) if near.any() else 60.0
        if les.cls == EDH:  # biconvex lens: parabolic thickness over a short arc
            L = np.sqrt(1.5 * area * les.aspect)
            T = L / les.aspect
            alpha = L / (2 * rin_c)
            x = dth / alpha
            thick = T * np.clip(1 - x * x, 0, None)
        else:  # crescent: long arc, blunt thickness profile, one hemisphere only
            alpha = min(les.extra["alpha"], abs(les.theta) - 0.12, np.pi - abs(les.theta) - 0.12)
            L = 2 * alpha * rin_c
            T0 = 4 * area / (np.pi * L)
            if T0 < 3.0:  # small SDH: shorter arc, at least 3 mm thick
                L = 4 * area / (np.pi * 3.0)
                alpha = L / (2 * rin_c)
                T0 = 3.0
            x = dth / alpha
            thick = T0 * np.sqrt(np.clip(1 - x * x, 0, None))
            thick = np.where(np.sign(geo.theta) == np.sign(les.theta), thick, 0.0)
        m = _largest(np.asarray((dd >= 0.3) & (dd < thick) & (np.abs(x) < 1) & brain), 1)
        hu[m] = les.hu + 8.0 * np.clip(1 - dd[m] / np.maximum(thick[m], 1e-3), 0, 1) * (np.abs(x[m]) < 0.6)
        label[m] = les.cls
    elif les.cls == IPH:  # irregular oval with a dense core and an unlabelled edema rim
        rmin = np.sqrt(area / (np.pi * les.aspect))
        rmaj = rmin * les.aspect
        ew = les.extra["edema"]
        sl = geo.crop(les.u, les.v, rmaj * (1.4 + ew) + 2)
        cth, sth = np.cos(les.orient), np.sin(les.orient)
        uu, vv = u[sl] - les.u, v[sl] - les.v
        x = (uu * cth + vv * sth) / rmaj
        y = (-uu * sth + vv * cth) / rmin
        phi = np.arctan2(y, x)
        pert = np.ones_like(x)
        for kk, amp, ph in les.extra["harm"].tolist():
            pert += amp * min(1.0, rmaj / 12.0) * np.cos(kk * phi + ph)
        rho = np.hypot(x, y) / pert
        b, h, lab = brain[sl], hu[sl], label[sl]
        edema_w = ew * (1.0 + 0.5 * np.cos(3 * phi + les.orient))  # irregular rim
        ed = (rho >= 1) & (rho < 1 + edema_w) & b & (h > 0) & (h < 100) & (lab == 0)
        h[ed] = 0.15 * h[ed] + 0.85 * les.extra["edema_hu"]
        m = _largest((rho < 1) & b, 1)
        h[m] = les.hu + 14.0 * np.clip(1 - rho[m], 0, 1) ** 1.5
        lab[m] = IPH
    elif les.cls == IVH:  # dependent blood with a fluid level in the scanner frame (supine patient)
        m = (ctx["vent"] < 0) & brain & (geo.y_scanner > les.extra["level"])
        if les.extra["sides"] != 0:
            m &= np.sign(geo.U) == les.extra["sides"]
        m = _largest(m, 2)
        hu[m] = les.hu
        label[m] = IVH
    elif les.cls == SAH:  # blood replacing CSF in sulci / fissures / cisterns around a centre
        kind = les.extra["kind"]
        if kind == "fissure":
            cu, cv, su, sv = 0.0, (-55.0 if les.theta == 0.0 else 60.0), 0.5, 1.0
        elif kind == "sylvian":
            cu, cv, su, sv = np.sign(les.theta) * 45, -10.0, 1.0, 0.7
        else:
            cu, cv, su, sv = 62.0 * np.sin(les.theta), -75.0 * np.cos(les.theta), 1.0, 1.0
        sl = geo.crop(cu, cv, 60.0)
        # CSF spaces, plus a surface layer thick enough to link the sulci at coarse pixels
        cand = ((ctx["c"][sl] < 0.8) | (dd[sl] < 1.2 + 0.5 * geo.px)) & brain[sl] & (ctx["vent"][sl] >= 0) & (dd[sl] > 0.2)
        n_px = int(round(area / (geo.px * geo.px)))
        if n_px < 1 or not cand.any():
            return
        # the n_px CSF pixels nearest to the centre (elliptical distance): area as sampled,
        # and one connected patch because the surface CSF links the sulci
        dist = np.hypot((u[sl] - cu) / su, (v[sl] - cv) / sv)[cand]
        pick = np.argpartition(dist, n_px - 1)[:n_px] if n_px < dist.size else slice(None)
        rows, cols = np.nonzero(cand)
        m = np.zeros(geo.shape, dtype=bool)
        m[rows[pick] + sl[0].start, cols[pick] + sl[1].start] = True
        m = _largest(m, 2)
        hu[m] = les.hu
        label[m] = SAH


# ----------------------------------------------------------------------------- patient / dataset


def _block_mean(a: np.ndarray, f: int) -> np.ndarray:
    if f == 1:
        return a
    h, w = a.shape
    return a.reshape(h // f, f, w // f, f).mean(axis=(1, 3))


@lru_cache(maxsize=8)
def _noise_gain(sigma: float) -> float:
    delta = np.zeros((33, 33))
    delta[16, 16] = 1.0
    return float(np.sqrt((ndimage.gaussian_filter(delta, sigma) ** 2).sum()))


def _ids(seed: int, index: int, rng: np.random.Generator) -> tuple[str, list[str]]:
    patient = f"{index:04d}{int(rng.integers(16**4)):04x}"
    n_studies = 2 if rng.random() < SECOND_STUDY_PROB else 1
    studies = [f"{int(x):08x}" for x in rng.integers(16**8, size=n_studies)]
    if n_studies == 2 and studies[0] == studies[1]:
        studies[1] = f"{(int(studies[1], 16) + 1) % 16**8:08x}"
    return patient, studies


def patient_classes(seed: int, index: int) -> list[int]:
    """Lesion classes (our ids) of patient ``index``: consecutive patients cycle through all five."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index, 1)))
    offset = int(np.random.default_rng(np.random.SeedSequence(seed)).integers(5))
    first = 1 + (index + offset) % 5
    classes = [first]
    if rng.random() < 0.4:
        classes.append(int(rng.choice([c for c in range(1, 6) if c != first])))
    return classes


def simulate_patient(
    seed: int,
    index: int,
    image_size: int = 256,
    num_slices: int = 24,
    noise: bool = True,
) -> list[PhantomVolume]:
    """All studies (1 or 2) of phantom patient ``index``; depends only on ``(seed, index)``."""
    if image_size < 16 or num_slices < 2:
        raise ValueError(f"phantom needs image_size >= 16 and num_slices >= 2, got {image_size}, {num_slices}")
    root = np.random.SeedSequence(seed, spawn_key=(index,))
    s_ids, s_anat, s_les, s_studies = root.spawn(4)
    patient, studies = _ids(seed, index, np.random.default_rng(s_ids))
    anat = _sample_anatomy(np.random.default_rng(s_anat))
    classes = patient_classes(seed, index)
    lesions = _sample_lesions(np.random.default_rng(s_les), classes, num_slices)

    f = max(1, -(-RENDER_MIN // image_size))
    n = image_size * f
    levels = _levels(num_slices)
    affine = phantom_affine(image_size)
    sigma_psf = 0.55
    out = []
    for si, (study, ss) in enumerate(zip(studies, s_studies.spawn(len(studies)), strict=True)):
        rng = np.random.default_rng(ss)
        pose = _sample_pose(rng)
        study_lesions = lesions
        if si > 0:  # follow-up scan: same bleed, partly resorbed
            shrink = rng.uniform(0.6, 1.0)
            study_lesions = [
                _Lesion(**{**les.__dict__, "peak": les.peak * shrink, "hu": les.hu - rng.uniform(0, 8)})
                for les in lesions
            ]
        geo = _Geo(anat, pose, n, f)
        ob = tuple(slice(b.start // f, b.stop // f) for b in geo.box)  # the box at output size
        hu_vol = np.empty((num_slices, image_size, image_size), dtype=np.int16)
        lab_vol = np.zeros((num_slices, image_size, image_size), dtype=np.uint8)
        for k, t in enumerate(levels):
            hu_box, lab_box, head_box = _render_slice(anat, geo, study_lesions, k, float(t))
            hu = np.full((image_size, image_size), -1000.0, dtype=np.float32)
            hu[ob] = _block_mean(hu_box, f)
            lab = lab_vol[k]
            if f > 1:
                frac = np.stack([_block_mean((lab_box == c).astype(np.float32), f) for c in range(1, 6)])
                best = np.where(frac.max(0) >= 0.5, frac.argmax(0) + 1, 0).astype(np.uint8)
                for c in range(1, 6):  # a lesion smaller than a pixel keeps its best-covered pixels
                    top = frac[c - 1].max()
                    if top >= 0.25 and not (best == c).any():
                        best[(frac[c - 1] >= max(0.25, 0.7 * top)) & (best == 0)] = c
                best[_block_mean(head_box.astype(np.float32), f) < 0.99] = 0
                lab[ob] = best
            else:
                lab[ob] = lab_box
            hu = ndimage.gaussian_filter(hu, sigma_psf)
            if noise:
                g = ndimage.gaussian_filter(rng.standard_normal(hu.shape, dtype=np.float32), 0.7)
                hu += g * np.float32(anat.noise * pose.noise_scale / _noise_gain(0.7))
            hu_vol[k] = np.clip(np.rint(hu), HU_MIN, HU_MAX).astype(np.int16)
        # display [Z, rows, cols] -> NIfTI [X, Y, Z] (rot90 clockwise per slice)
        hu_xyz = np.ascontiguousarray(np.rot90(hu_vol, -1, axes=(1, 2)).transpose(1, 2, 0))
        lab_xyz = np.ascontiguousarray(np.rot90(lab_vol, -1, axes=(1, 2)).transpose(1, 2, 0))
        out.append(PhantomVolume(patient, study, hu_xyz, lab_xyz, affine, classes))
    return out


def write_volume(vol: PhantomVolume, out_dir: Path) -> Path:
    """Write ``imagesTr/<name>.nii.gz`` (uint16 = HU + 1024) and ``labelsTr/<name>.nii.gz`` (BHSD labels)."""
    lut = np.zeros(len(CLASS_NAMES), dtype=np.uint8)
    for ours, bhsd in OURS_TO_BHSD.items():
        lut[ours] = bhsd
    stored = (vol.hu.astype(np.int32) + UINT16_HU_OFFSET).astype(np.uint16)
    paths = []
    for sub, data in (("imagesTr", stored), ("labelsTr", lut[vol.label])):
        img = nib.Nifti1Image(data, vol.affine)
        img.header.set_data_dtype(data.dtype)
        img.header.set_xyzt_units("mm", "sec")
        img.set_qform(vol.affine, code=1)
        img.set_sform(vol.affine, code=1)
        path = out_dir / sub / f"{vol.name}.nii.gz"
        nib.save(img, path)
        paths.append(path)
    return paths[0]


def dataset_json(num_training: int) -> dict:
    """nnU-Net v2 style dataset description with BHSD label values."""
    return {
        "name": "lcgan_phantom",
        "description": "Synthetic head CT with intracranial hemorrhage (lcgan_lightning phantom)",
        "channel_names": {"0": "CT"},
        "labels": dict(BHSD_LABELS),
        "numTraining": num_training,
        "file_ending": ".nii.gz",
    }


def generate_phantom(
    out_dir: str | Path,
    num_patients: int,
    seed: int = 0,
    image_size: int = 256,
    num_slices: int = 24,
    overwrite: bool = False,
) -> list[Path]:
    """Write ``num_patients`` phantom patients in the BHSD layout; returns the image paths.

    Writes ``imagesTr/``, ``labelsTr/``, ``phantom.json`` (settings and per-volume classes) and,
    last, ``dataset.json``. A directory that already holds volumes is refused unless
    ``overwrite`` (then its ``*.nii.gz`` volumes are replaced).
    """
    if num_patients < 1:
        raise ValueError(f"num_patients must be >= 1, got {num_patients}")
    out = Path(out_dir)
    existing = sorted(out.glob("imagesTr/*.nii.gz")) + sorted(out.glob("labelsTr/*.nii.gz"))
    if existing:
        if not overwrite:
            raise FileExistsError(
                f"{out}: already holds {len(existing)} NIfTI volumes; choose another out_dir or set overwrite=true"
            )
        for path in existing:
            path.unlink()
        (out / "dataset.json").unlink(missing_ok=True)
    (out / "imagesTr").mkdir(parents=True, exist_ok=True)
    (out / "labelsTr").mkdir(parents=True, exist_ok=True)
    paths, volumes = [], []
    for i in range(num_patients):
        for vol in simulate_patient(seed, i, image_size, num_slices):
            paths.append(write_volume(vol, out))
            per_slice = (vol.label > 0).any(axis=(0, 1))
            volumes.append({
                "name": vol.name,
                "patient": vol.patient_id,
                "study": vol.study_id,
                "classes": [CLASS_NAMES[c] for c in sorted(set(np.unique(vol.label).tolist()) - {0})],
                "lesion_slices": int(per_slice.sum()),
            })
    settings = {"num_patients": num_patients, "seed": seed, "image_size": image_size,
                "num_slices": num_slices, "pixel_mm": FOV_MM / image_size, "slice_mm": SLICE_MM}
    (out / "phantom.json").write_text(json.dumps({"settings": settings, "volumes": volumes}, indent=1) + "\n")
    (out / "dataset.json").write_text(json.dumps(dataset_json(len(paths)), indent=2) + "\n")
    return paths
