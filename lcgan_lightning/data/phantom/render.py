"""One axial slice of the phantom: scalp, skull, cortex, ventricles, skull base, lesions."""

from __future__ import annotations

import numpy as np

from lcgan_lightning.data.phantom.anatomy import _Anatomy
from lcgan_lightning.data.phantom.geometry import _Geo, _level_scale, _window
from lcgan_lightning.data.phantom.lesions import _draw_lesion, _Lesion


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
