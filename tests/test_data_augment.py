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


# ---- data.augment_online: the choice, and nnU-Net's augmentation ----------------------------------
def _labelled_head(size=48):
    """An L-shaped bleed (classes 3 and 5) off-centre: bright (+1) exactly where the label is > 0, air
    (-1) elsewhere, so after any transform the bright region must still be the labelled one."""
    image = np.full((size, size), -1.0, np.float32)
    mask = np.zeros((size, size), np.uint8)
    mask[8:30, 12:20] = 3
    mask[24:30, 20:38] = 5
    image[mask > 0] = 1.0
    return image, mask


def _iou(image, mask):
    lo, hi = np.percentile(image, [1, 99])
    bright, labelled = image > (lo + hi) / 2, mask > 0
    return (bright & labelled).sum() / max((bright | labelled).sum(), 1)


def test_online_choice():
    from lcgan_lightning.data.augment_nnunet import NnUNetAugmentation
    from lcgan_lightning.data.augment_online import check_online_choice, online_augmentation
    from lcgan_lightning.data.datamodule import CTSliceDataModule
    from lcgan_lightning.data.validation import DataConfigError

    assert [check_online_choice(v) for v in (False, None, "false", True, "true", "nnunet", "NNUNET")] \
        == [False, False, False, True, True, "nnunet", "nnunet"]
    assert online_augmentation(False, 48) is None
    assert isinstance(online_augmentation(True, 48), OnlineAugmentation)  # today's augmentation, as it was
    assert isinstance(online_augmentation("nnunet", 48), NnUNetAugmentation)
    with pytest.raises(DataConfigError, match="data.augment_online: 'nnunet2' is not one of false, true, nnunet"):
        CTSliceDataModule(root="unused", augment_online="nnunet2")


def test_nnunet_probabilities_are_nnunets():
    from monai import transforms as T

    from lcgan_lightning.data.augment_nnunet import nnunet_transforms

    ts = nnunet_transforms().transforms
    probs = [(type(t).__name__, t.weights[0] if isinstance(t, T.OneOf) else t.prob) for t in ts]
    assert probs == [("RandRotated", 0.2), ("RandZoomd", 0.2), ("OneOf", 0.2), ("RandGaussianNoised", 0.1),
                     ("RandGaussianSmoothd", 0.1), ("RandScaleIntensityd", 0.15),
                     ("RandScaleIntensityFixedMeand", 0.15), ("RandSimulateLowResolutiond", 0.125),
                     ("RandAdjustContrastd", 0.1), ("RandAdjustContrastd", 0.3), ("RandFlipd", 0.5),
                     ("RandFlipd", 0.5)]
    assert ts[8].adjuster.invert_image and not ts[9].adjuster.invert_image and ts[9].adjuster.retain_stats


def test_nnunet_keeps_labels_aligned_with_images():
    from lcgan_lightning.data.augment_nnunet import NnUNetAugmentation

    image, mask = _labelled_head()
    spatial, full = NnUNetAugmentation(48, intensity=False), NnUNetAugmentation(48)
    moved, geometry, everything, misaligned, previous = 0, [], [], [], None
    for seed in range(120):
        spatial.seed_next(seed)
        img, msk = spatial(image, mask)
        geometry.append(_iou(img, msk))
        moved += not np.array_equal(msk, mask)
        if previous is not None:  # the control: image and label of two different draws
            misaligned.append(_iou(img, previous))
        previous = msk
        full.seed_next(seed)
        everything.append(_iou(*full(image, mask)))
    assert moved > 60  # mirroring alone moves 3 of 4 slices
    # bilinear image vs nearest label on the same grid: equal up to a boundary pixel here and there
    assert min(geometry) > 0.85 and np.mean(geometry) > 0.96  # measured: 0.88 and 0.978
    assert np.mean(everything) > 0.9  # measured 0.954: noise, blur and low resolution blur the edge
    assert np.mean(misaligned) < 0.5  # measured 0.33: a pair transformed with different draws is caught


def test_nnunet_never_creates_class_ids():
    from lcgan_lightning.data.augment_nnunet import NnUNetAugmentation

    image, mask = _labelled_head(32)
    mask[2:6, 2:6], mask[26:30, 2:6], mask[2:6, 26:30], mask[10:14, 24:28] = 1, 2, 4, 0
    aug = NnUNetAugmentation(32)
    for seed in range(300):
        aug.seed_next(seed)
        img, msk = aug(image, mask)
        assert img.dtype == np.float32 and msk.dtype == np.uint8 and img.shape == msk.shape == (32, 32)
        assert -1.0 <= img.min() and img.max() <= 1.0
        assert set(np.unique(msk)) <= set(range(6)), (seed, np.unique(msk))


def test_nnunet_is_seeded_per_sample_and_picklable():
    import pickle

    from lcgan_lightning.data.augment_nnunet import NnUNetAugmentation

    image, mask = _labelled_head()
    aug = pickle.loads(pickle.dumps(NnUNetAugmentation(48)))
    outs = []
    for seed in (5, 6, 5):
        aug.seed_next(seed)
        outs.append(aug(image, mask))
    assert np.array_equal(outs[0][0], outs[2][0]) and np.array_equal(outs[0][1], outs[2][1])
    assert not np.array_equal(outs[0][0], outs[1][0])


@pytest.mark.slow
def test_nnunet_online_batches_do_not_depend_on_workers(tmp_path):
    """data.augment_online=nnunet through the datamodule: seeded per sample, so 0 or 2 loader workers give
    the same augmented epoch (and a resumed epoch augments as the first time)."""
    import torch
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from lcgan_lightning.data.datamodule import open_datamodule
    from lcgan_lightning.paths import CONF_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[
            "data=phantom", "data.image_size=32", "data.phantom.num_patients=8", "data.phantom.num_slices=8",
            "data.batch_size=4", f"paths.root_dir={tmp_path}", f"paths.output_dir={tmp_path / 'out'}"])

    def epoch(workers: int, online: bool | str) -> tuple[torch.Tensor, torch.Tensor]:
        dm = open_datamodule(cfg.data, augment_online=online, num_workers=workers)
        torch.manual_seed(7)
        batches = list(dm.train_dataloader())
        return torch.cat([b["image"] for b in batches]).float(), torch.cat([b["mask"] for b in batches])

    plain, paper, serial, parallel = epoch(0, False), epoch(0, True), epoch(0, "nnunet"), epoch(2, "nnunet")
    assert torch.equal(serial[0], parallel[0]) and torch.equal(serial[1], parallel[1])
    assert not torch.equal(serial[0], plain[0]) and not torch.equal(serial[0], paper[0])
    assert serial[0].shape == plain[0].shape and int(serial[1].max()) <= 5
