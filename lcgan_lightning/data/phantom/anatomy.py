"""Per-patient anatomy and per-study pose of the phantom head, sampled from an RNG."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
