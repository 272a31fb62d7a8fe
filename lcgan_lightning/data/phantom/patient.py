"""One phantom patient: sampled anatomy and lesions rendered into 1-2 studies."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import ndimage

from lcgan_lightning.constants import HU_MAX, HU_MIN
from lcgan_lightning.data.phantom.anatomy import _sample_anatomy, _sample_pose
from lcgan_lightning.data.phantom.geometry import _Geo, _levels
from lcgan_lightning.data.phantom.lesions import _Lesion, _sample_lesions
from lcgan_lightning.data.phantom.render import _render_slice
from lcgan_lightning.data.phantom.writer import PhantomVolume, _ids, phantom_affine

RENDER_MIN = 192  # images smaller than this are drawn finer and block-averaged


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


def lesion_masks(seed: int, num_patients: int, image_size: int, num_slices: int) -> np.ndarray:
    """Lesion slices' masks (display orientation) of noise-free phantom patients, uint8 [N,H,W]."""
    out = []
    for i in range(num_patients):
        for vol in simulate_patient(seed, i, image_size, num_slices, noise=False):
            out += [vol.axial(k)[1] for k in range(vol.label.shape[2]) if vol.label[:, :, k].any()]
    return np.ascontiguousarray(np.stack(out), dtype=np.uint8)
