"""Traditional augmentation: paper ranges, labels stay valid, deterministic per seed."""

import math

import albumentations as A
import numpy as np
import pytest

from lcgan_lightning.data.augment import (
    OnlineAugmentation,
    augment_pair,
    make_traditional_set,
    paper_augmentation,
    shear_degrees,
)
from lcgan_lightning.data.slices import SliceSet


def _slices(n=6, size=48):
    rng = np.random.default_rng(0)
    images = np.full((n, size, size), -1.0, dtype=np.float16)
    images[:, 8:40, 8:40] = rng.uniform(-0.5, 0.5, (n, 32, 32))
    masks = np.zeros((n, size, size), dtype=np.uint8)
    masks[:, 12:20, 12:30] = 1
    masks[:, 24:30, 20:34] = 5
    masks[::2, 32:36, 10:20] = 3
    return SliceSet.from_arrays(images, masks, [f"P{i}" for i in range(n)])


def test_paper_ranges():
    t = paper_augmentation(256)
    affine, blur, intensity = t.transforms
    assert isinstance(affine, A.Affine) and affine.rotate == (-25, 25) and affine.scale == {"x": (0.85, 1.15), "y": (0.85, 1.15)}
    assert math.isclose(shear_degrees(), math.degrees(math.atan(10 / 128)))
    assert affine.shear["x"] == pytest.approx((-4.4671, 4.4671), abs=1e-4) and affine.shear["y"] == (0, 0)
    assert blur.p == 0.5 and blur.sigma_limit == (2.0, 2.0)
    assert intensity.p == 0.5 and tuple(intensity.multiplier) == (1.0, 1.5)


def test_labels_stay_valid_and_images_in_range():
    s = _slices()
    images, masks = make_traditional_set(s, seed=0)
    assert images.shape == s.images.shape and images.dtype == np.float16 and masks.dtype == np.uint8
    for before, after in zip(s.masks, masks, strict=True):
        assert set(np.unique(after)) <= set(np.unique(before))
    assert images.min() >= -1 and images.max() <= 1
    assert not np.array_equal(masks, s.masks)  # something moved
    # corners are outside the rotated/scaled head for at most a small shift: air stays air
    assert np.all(images[:, 0, 0] == -1)


def test_deterministic_per_seed():
    s = _slices()
    a, b, c = make_traditional_set(s, 7), make_traditional_set(s, 7), make_traditional_set(s, 8)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_intensity_increase_only_brightens():
    t = A.Compose([A.MultiplicativeNoise(multiplier=(1.0, 1.5), per_channel=False, elementwise=False, p=1.0)],
                  seed=0)
    image = np.linspace(-1, 1, 64, dtype=np.float32).reshape(8, 8)
    out, _ = augment_pair(t, image, np.zeros((8, 8), np.uint8))
    unit_in, unit_out = (image + 1) / 2, (out + 1) / 2
    ratio = unit_out[unit_in > 0.1] / unit_in[unit_in > 0.1]
    assert np.all(out >= image - 1e-6) and out[0, 0] == -1.0  # air unchanged
    unclipped = unit_out[unit_in > 0.1] < 1
    assert np.allclose(ratio[unclipped], ratio[unclipped][0], atol=1e-5)  # one factor per image
    assert 1.0 <= ratio[unclipped][0] <= 1.5


def test_online_augmentation_picklable_and_valid():
    import pickle

    s = _slices()
    aug = pickle.loads(pickle.dumps(OnlineAugmentation(48)))
    img, msk = aug(np.asarray(s.images[0], np.float32), s.masks[0])
    assert img.shape == (48, 48) and set(np.unique(msk)) <= set(np.unique(s.masks[0]))
