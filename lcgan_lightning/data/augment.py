"""Traditional augmentation of the paper (§4.3) with albumentations 2.

Definitions (every image gets a random level of each affine transform, then blur / intensity with p=0.5):
- rotation: uniform in [-25°, +25°];
- rescale: uniform factor in [0.85, 1.15] ("-15 to 15 percent");
- horizontal shear "-10 to 10 pixels": a shear angle θ moves the top and bottom rows (distance
  size/2 from the centre) by tan(θ)·size/2 pixels, so θ_max = atan(10 / (REFERENCE_SIZE/2)) with
  REFERENCE_SIZE = 256 (the pix2pix resolution): ±4.47°. The angle is kept at every image size, i.e. the
  shear is ±10 px at 256², ±2.5 px at 64² — the same geometric change of the head at any resolution;
- Gaussian blur "radius 2" with p=0.5: PIL's radius is the standard deviation, so sigma = 2 px, kernel
  13 px (±3 sigma);
- intensity increase "up to 50 %" with p=0.5: on the window rescaled to [0, 1] every pixel is multiplied
  by one factor U(1, 1.5) per image, then clipped to 1 (air stays 0);
- images bilinear, masks nearest, borders filled with air (-1 in [-1, 1]; mask 0), so mask values after
  the transform are a subset of those before.
"""

from __future__ import annotations

import math

import albumentations as A
import cv2
import numpy as np

from lcgan_lightning.data.seeded_transform import SeededSampleTransform
from lcgan_lightning.data.slices import SliceSet

REFERENCE_SIZE = 256
ROTATE_DEG = 25.0
SCALE = (0.85, 1.15)
SHEAR_PX = 10.0
BLUR_SIGMA = 2.0
BLUR_KERNEL = 13
INTENSITY_MAX = 1.5


def shear_degrees(shear_px: float = SHEAR_PX, reference_size: int = REFERENCE_SIZE) -> float:
    """Shear angle that moves the top/bottom rows of a reference_size² image by shear_px."""
    return math.degrees(math.atan(shear_px / (reference_size / 2.0)))


def paper_augmentation(image_size: int, seed: int | None = None) -> A.Compose:
    """The paper's pipeline for float32 images in [0, 1] (use `augment_pair` for [-1, 1] slices)."""
    del image_size  # ranges are size-independent (see module docstring); kept for the interface
    shear = shear_degrees()
    return A.Compose(
        [
            A.Affine(rotate=(-ROTATE_DEG, ROTATE_DEG), scale=SCALE,
                     shear={"x": (-shear, shear), "y": (0.0, 0.0)},
                     interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST,
                     border_mode=cv2.BORDER_CONSTANT, fill=0.0, fill_mask=0, p=1.0),
            A.GaussianBlur(blur_limit=(BLUR_KERNEL, BLUR_KERNEL), sigma_limit=(BLUR_SIGMA, BLUR_SIGMA), p=0.5),
            A.MultiplicativeNoise(multiplier=(1.0, INTENSITY_MAX), per_channel=False, elementwise=False, p=0.5),
        ],
        seed=seed,
    )


def augment_pair(transform: A.Compose, image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Apply `transform` to one slice: image float [H,W] in [-1,1], mask uint8 [H,W] -> same types."""
    unit = (np.asarray(image, dtype=np.float32) + 1.0) * 0.5
    out = transform(image=unit, mask=np.asarray(mask, dtype=np.uint8))
    img = np.clip(out["image"], 0.0, 1.0) * 2.0 - 1.0
    return img.astype(np.float32), np.asarray(out["mask"], dtype=np.uint8)


def make_traditional_set(slices: SliceSet, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One transformed copy of every slice: (images float16 [N,H,W], masks uint8 [N,H,W]); same seed → same set."""
    transform = paper_augmentation(slices.image_size, seed=int(seed))
    images = np.empty(slices.images.shape, dtype=np.float16)
    masks = np.empty(slices.masks.shape, dtype=np.uint8)
    for i in range(len(slices)):
        img, msk = augment_pair(transform, slices.images[i], slices.masks[i])
        images[i], masks[i] = img, msk
    return images, masks


class OnlineAugmentation(SeededSampleTransform):
    """The paper's traditional augmentation on the fly, fresh random levels for every sample (seeding:
    `SeededSampleTransform`)."""

    def __init__(self, image_size: int):
        super().__init__()
        self.image_size = image_size

    def _build(self, seed: int) -> A.Compose:
        return paper_augmentation(self.image_size, seed=seed)

    def _reseed(self, seed: int) -> None:
        self._transform.set_random_seed(seed)

    def _apply(self, image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return augment_pair(self._transform, image, mask)
