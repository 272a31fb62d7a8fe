"""nnU-Net's 2-D training augmentation from MONAI dictionary transforms (`data.augment_online=nnunet`).

nnU-Net's ``get_training_transforms`` (v2; v1's ``default_2D_augmentation_params`` for the elastic
deformation), in its order, each with its own probability per sample:

| transform | nnU-Net | here (MONAI) | p |
|---|---|---|---|
| rotation | U(−180°, 180°) | ``RandRotated`` | 0.2 |
| scaling | one factor U(0.7, 1.4) for both axes | ``RandZoomd`` (keep size) | 0.2 |
| elastic deformation | α U(0, 200), σ U(9, 13) px (v1; v2 turns it off) | ``Rand2DElasticd``: control points every 20 px, offsets N(0, m²), m U(0, 3.3) px (the std of v1's field) | 0.2 |
| Gaussian noise | variance U(0, 0.1) | ``RandGaussianNoised``: std U(0, √0.1) in the data's [-1, 1] units | 0.1 |
| Gaussian blur | σ U(0.5, 1) px, p 0.2 per sample × 0.5 per channel | ``RandGaussianSmoothd`` (σ per axis) | 0.1 |
| brightness (multiplicative) | × U(0.75, 1.25) | ``RandScaleIntensityd`` | 0.15 |
| contrast | × U(0.75, 1.25) about the mean, range kept | ``RandScaleIntensityFixedMeand`` | 0.15 |
| low resolution | zoom U(0.5, 1), nearest down, cubic up, p 0.25 × 0.5 per channel | ``RandSimulateLowResolutiond`` | 0.125 |
| gamma, inverted image | γ U(0.7, 1.5), mean and std kept | ``RandAdjustContrastd(invert_image, retain_stats)`` | 0.1 |
| gamma | γ U(0.7, 1.5), mean and std kept | ``RandAdjustContrastd(retain_stats)`` | 0.3 |
| mirroring | each axis | ``RandFlipd`` per axis | 0.5 each |

Geometry: image bilinear, label nearest (the same random grid for both; the zoom's label "nearest-exact",
whose sample points are bilinear's: plain "nearest" shifts the label up to half a pixel × the zoom), borders
air and background.
The transforms see the window rescaled to [0, 1] (air 0: padding fills air, brightness keeps air
black; nnU-Net works on z-scored images); the result is clipped to [0, 1] and mapped back to [-1, 1];
labels stay the class ids they were (nearest sampling and 0 padding create none). Every sample is
seeded (`seed_next`, from the training loader's epoch shuffle seed and position: reproducible, resume
exact, independent of workers), as `OnlineAugmentation` is.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from lcgan_lightning.data.seeded_transform import SeededSampleTransform

ROTATE_RAD, P_ROTATE = math.pi, 0.2
ZOOM, P_ZOOM = (0.7, 1.4), 0.2
ELASTIC_SPACING_PX, ELASTIC_MAGNITUDE_PX, P_ELASTIC = 20.0, (0.0, 3.3), 0.2
NOISE_STD, P_NOISE = math.sqrt(0.1), 0.1  # in [-1, 1] units (half of it on the [0, 1] scale used here)
BLUR_SIGMA, P_BLUR = (0.5, 1.0), 0.2 * 0.5
BRIGHTNESS, P_BRIGHTNESS = 0.25, 0.15     # factor 1 + U(-0.25, 0.25)
CONTRAST, P_CONTRAST = 0.25, 0.15
LOWRES_ZOOM, P_LOWRES = (0.5, 1.0), 0.25 * 0.5
GAMMA, P_GAMMA_INVERTED, P_GAMMA = (0.7, 1.5), 0.1, 0.3
P_MIRROR = 0.5
KEYS = ("image", "label")


def nnunet_transforms(spatial: bool = True, intensity: bool = True) -> Any:
    """The MONAI Compose of the module docstring for {"image": [1,H,W] in [0,1], "label": [1,H,W] float}.
    `spatial` / `intensity` off leave those transforms out (tests check each part alone)."""
    from monai import transforms as T

    geometric: list[Any] = [
        T.RandRotated(KEYS, range_x=ROTATE_RAD, prob=P_ROTATE, keep_size=True, mode=("bilinear", "nearest"),
                      padding_mode="zeros", align_corners=False),
        T.RandZoomd(KEYS, prob=P_ZOOM, min_zoom=ZOOM[0], max_zoom=ZOOM[1], keep_size=True,
                    mode=("bilinear", "nearest-exact"), padding_mode="constant", align_corners=(False, None)),
        # (gated by OneOf: Rand2DElasticd would resample both keys on an identity grid when it does nothing)
        T.OneOf([T.Rand2DElasticd(KEYS, spacing=ELASTIC_SPACING_PX, magnitude_range=ELASTIC_MAGNITUDE_PX, prob=1.0,
                                  mode=("bilinear", "nearest"), padding_mode="zeros"), T.Identityd(KEYS)],
                weights=[P_ELASTIC, 1.0 - P_ELASTIC]),
    ]
    photometric: list[Any] = [
        T.RandGaussianNoised("image", prob=P_NOISE, std=NOISE_STD / 2, sample_std=True),
        T.RandGaussianSmoothd("image", sigma_x=BLUR_SIGMA, sigma_y=BLUR_SIGMA, prob=P_BLUR),
        T.RandScaleIntensityd("image", factors=BRIGHTNESS, prob=P_BRIGHTNESS),
        T.RandScaleIntensityFixedMeand("image", factors=CONTRAST, fixed_mean=True, preserve_range=True,
                                       prob=P_CONTRAST),
        T.RandSimulateLowResolutiond("image", prob=P_LOWRES, downsample_mode="nearest", upsample_mode="bicubic",
                                     zoom_range=LOWRES_ZOOM),
        T.RandAdjustContrastd("image", prob=P_GAMMA_INVERTED, gamma=GAMMA, invert_image=True, retain_stats=True),
        T.RandAdjustContrastd("image", prob=P_GAMMA, gamma=GAMMA, invert_image=False, retain_stats=True),
    ]
    mirror: list[Any] = [T.RandFlipd(KEYS, prob=P_MIRROR, spatial_axis=0), T.RandFlipd(KEYS, prob=P_MIRROR, spatial_axis=1)]
    return T.Compose([*(geometric if spatial else []), *(photometric if intensity else []),
                      *(mirror if spatial else [])])


class NnUNetAugmentation(SeededSampleTransform):
    """nnU-Net's augmentation with fresh random levels for every sample (seeding:
    `SeededSampleTransform`, as `OnlineAugmentation`)."""

    def __init__(self, image_size: int, spatial: bool = True, intensity: bool = True):
        super().__init__()
        self.image_size = image_size
        self.spatial, self.intensity = bool(spatial), bool(intensity)

    def _build(self, seed: int) -> Any:
        transform = nnunet_transforms(self.spatial, self.intensity)  # a MONAI Compose
        _seed_all(transform, seed)
        return transform

    def _reseed(self, seed: int) -> None:
        _seed_all(self._transform, seed)

    def _apply(self, image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from monai.data import get_track_meta, set_track_meta
        from monai.utils import convert_to_numpy

        unit = (np.asarray(image, dtype=np.float32)[None] + 1.0) * 0.5
        label = np.asarray(mask, dtype=np.float32)[None]
        # plain tensors (no metadata to carry) on one intra-op thread (as in a DataLoader worker): these
        # are small tensor operations, several times faster so than with metadata on a thread pool
        tracking, threads = get_track_meta(), torch.get_num_threads()
        set_track_meta(False)
        torch.set_num_threads(1)
        try:
            out = self._transform({"image": torch.from_numpy(unit), "label": torch.from_numpy(label)})
        finally:
            set_track_meta(tracking)
            torch.set_num_threads(threads)
        img = np.clip(convert_to_numpy(out["image"])[0], 0.0, 1.0) * 2.0 - 1.0
        lab = np.rint(convert_to_numpy(out["label"])[0])
        return img.astype(np.float32), lab.astype(np.uint8)


def _seed_all(transform: Any, seed: int) -> None:
    """One NumPy generator, seeded with `seed`, drawn from by every transform in order."""
    state = np.random.RandomState(seed)
    for t in transform.transforms:
        t.set_random_state(state=state)
