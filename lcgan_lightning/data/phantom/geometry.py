"""Head-frame geometry: pixel coordinates, distance fields, axial levels and profiles."""

from __future__ import annotations

import numpy as np

from lcgan_lightning.data.phantom.anatomy import _Anatomy, _Pose

FOV_MM = 250.0  # 512 px <-> 0.488 mm, like most real head CTs
SLICE_MM = 5.0


def _levels(num_slices: int) -> np.ndarray:
    """Axial level of each slice, 0 = skull base, 1 = vertex; slices always span the whole head."""
    return np.linspace(0.03, 0.97, num_slices)


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
