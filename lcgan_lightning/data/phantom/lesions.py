"""Hemorrhage lesions: class levels, size quantiles, 3D sampling and drawing per slice."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from lcgan_lightning.data.phantom.geometry import _Geo, _levels

IPH, IVH, SAH, EDH, SDH = 1, 2, 3, 4, 5

# Slices with lesion per patient in real head-CT sets, quantiles (p0 and p100 are our tails).
_SLICES_Q = ([0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0], [1, 1, 3, 6, 8, 13, 18])
# Peak cross-section area of one lesion (mm^2), quantiles; tuned so that the per-slice areas over
# the whole dataset land near the real per-slice quantiles 19 / 92 / 254 / 564 / 1296 mm^2.
_PEAK_AREA_Q = ([0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0], [8, 20, 100, 300, 680, 1500, 2500])


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
