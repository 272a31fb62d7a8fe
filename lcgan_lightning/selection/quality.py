"""Image-quality measures for generated CT slices (paper §3.2.2) plus optional FID / SSIM / PSNR.

Conventions (also written into scores.json):

* Inputs are images in [-1, 1] (the project's windowed range), shape [B,1,H,W] or [B,H,W].
  Both sharpness measures first map them to [0, 1] (``(x + 1) / 2``). By default they use the
  WHOLE image, the paper's figure (§3.2.2).
* ``laplacian_variance``: variance (population, over pixels) of the 3x3 Laplacian
  ``[[0,1,0],[1,-4,1],[0,1,0]]`` computed on the interior (no padding, so no border artefacts).
  Higher = sharper. With ``region`` (boolean [B,1,H,W]) only the Laplacian at region pixels counts.
* In-head sharpness: noise has a high Laplacian variance too, and on the whole image the sharp
  skull-to-air edge weighs in. ``head_region`` takes the head of the REAL slice of the same mask
  (pixels above the window floor, the largest connected part, holes filled, eroded so the 3x3
  stencil never reaches the air), and ``sharpness_ratio`` compares a candidate's in-head Laplacian
  variance with the real slices' in the same regions: 1 = as sharp as real, noise > 1, blur < 1.
  The FFT measure has no in-head variant: cutting the image to a region adds the region's own
  edge to the spectrum.
* ``fft_mean``: mean magnitude of the orthonormal 2-D DFT, ``|FFT2(x)| / sqrt(H*W)``, over every
  coefficient except the DC term (the DC term is the mean brightness, not detail). Linear magnitude,
  not log. Higher = more high-frequency content = sharper.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import Tensor, nn

if TYPE_CHECKING:
    from lcgan_lightning.models.segmenter import Segmenter

SHARPNESS_CONVENTION = (
    "sharpness = variance of the 3x3 Laplacian of each whole image mapped to [0,1] (interior pixels); "
    "fft_mean = mean |FFT2| (orthonormal) of each whole image mapped to [0,1], DC term excluded. "
    "Both are averaged over a candidate's images; for both, HIGHER IS SHARPER (less blurry). "
    "sharpness_in_head = the same Laplacian variance over the head of the REAL slice of the same "
    "mask only (pixels above -1 + 0.1, largest connected part, holes filled, eroded by "
    "max(1, H//64) px); sharpness_ratio = mean sharpness_in_head of the candidate / that of the "
    "real slices, same regions (1 = as sharp as real; noise pushes it above 1, blur below)."
)

_LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)


def _as_unit_batch(images: Tensor) -> Tensor:
    """[B,H,W] or [B,1,H,W] in [-1,1] -> float32 [B,1,H,W] in [0,1]."""
    if images.ndim == 3:
        images = images.unsqueeze(1)
    if images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(f"expected images [B,1,H,W] or [B,H,W], got shape {tuple(images.shape)}")
    return (images.float() + 1.0) / 2.0


def _as_region(region: Tensor | np.ndarray, shape: torch.Size) -> Tensor:
    """Boolean region [B,H,W] or [B,1,H,W] -> bool [B,1,H,W] matching the image batch `shape`."""
    r = torch.as_tensor(np.asarray(region) if not isinstance(region, Tensor) else region)
    if r.ndim == 3:
        r = r.unsqueeze(1)
    if r.dtype != torch.bool:
        raise ValueError(f"region must be a boolean mask, got dtype {r.dtype}")
    if tuple(r.shape) != tuple(shape):
        raise ValueError(f"region has shape {tuple(r.shape)} but the images are {tuple(shape)}")
    return r


def laplacian_variance(images: Tensor, region: Tensor | np.ndarray | None = None) -> Tensor:
    """Per-image variance of the Laplacian, Tensor[B]; higher = sharper.

    region: optional boolean mask [B,1,H,W] (or [B,H,W]); only the Laplacian at its pixels counts
    (border pixels excluded as without it). An image whose region is empty gets NaN.
    """
    x = _as_unit_batch(images)
    lap = F.conv2d(x, _LAPLACIAN.to(x.device, x.dtype))
    if region is None:
        return lap.flatten(1).var(dim=1, unbiased=False)
    keep = _as_region(region, x.shape)[:, :, 1:-1, 1:-1].to(x.device).flatten(1).to(x.dtype)
    lap = lap.flatten(1)
    n = keep.sum(1)
    mean = (lap * keep).sum(1) / n
    var = (((lap - mean[:, None]) ** 2) * keep).sum(1) / n
    return torch.where(n > 0, var, torch.full_like(var, float("nan")))


def head_region(
    real_images: Tensor | np.ndarray, eps: float = 0.1, erode: int | None = None
) -> Tensor:
    """Boolean head mask [B,1,H,W] of real CT slices [B,1,H,W] or [B,H,W] in [-1,1].

    Per slice: pixels above the window floor (-1 + eps), the largest connected part (drops stray
    noise in the air), holes filled (ventricles and CSF near the floor), then eroded by `erode`
    pixels (default max(1, H // 64)) so the Laplacian's 3x3 stencil never reaches the air and the
    skull-to-air edge does not dominate.
    """
    x = _as_unit_batch(torch.as_tensor(real_images).detach().cpu())[:, 0].numpy() * 2.0 - 1.0
    if not 0.0 < eps < 2.0:
        raise ValueError(f"head_region: eps must lie in (0, 2), got {eps}")
    erode = max(1, x.shape[-2] // 64) if erode is None else int(erode)
    if erode < 0:
        raise ValueError(f"head_region: erode must be >= 0 pixels, got {erode}")
    out = np.zeros(x.shape, dtype=bool)
    for i, img in enumerate(x):
        labels, n = ndimage.label(img > -1.0 + eps)
        if n == 0:
            continue
        head = labels == (np.argmax(np.bincount(labels.ravel())[1:]) + 1)
        head = ndimage.binary_fill_holes(head)
        if erode:
            head = ndimage.binary_erosion(head, iterations=erode)
        out[i] = head
    return torch.from_numpy(out).unsqueeze(1)


def sharpness_ratio(fake: Tensor, real: Tensor, region: Tensor | np.ndarray | None = None) -> float:
    """Mean in-head Laplacian variance of `fake` / that of `real`, both [B,1,H,W] in [-1,1].

    Row i of `fake` was generated from the mask of real slice i; both use the head of the real
    slice (`head_region(real)` unless `region` is given). 1 = as sharp as real, noise > 1, blur < 1.
    NaN when the real slices have no in-head detail at all.
    """
    if fake.shape[0] != real.shape[0]:
        raise ValueError(
            f"sharpness_ratio: {fake.shape[0]} generated but {real.shape[0]} real images"
        )
    region = head_region(real) if region is None else region
    num = nanmean(laplacian_variance(fake, region))
    den = nanmean(laplacian_variance(real, region))
    return num / den if den > 0 else float("nan")


def nanmean(values: Tensor) -> float:
    """Mean over the finite entries (NaN = image without a region); NaN if there is none."""
    v = values[torch.isfinite(values)]
    return float(v.mean()) if len(v) else float("nan")


def fft_mean(images: Tensor) -> Tensor:
    """Per-image mean |FFT2| without the DC term, Tensor[B]; higher = sharper."""
    x = _as_unit_batch(images)[:, 0]
    mag = torch.fft.fft2(x, norm="ortho").abs().flatten(1)
    return mag[:, 1:].mean(dim=1)  # index 0 of the flattened spectrum is the DC term


class EncoderFeatures(nn.Module):
    """Wrap a segmenter's `encoder_features` as a torchmetrics FID feature network.

    torchmetrics calls it with the image batch exactly as passed to `update` (custom networks get
    no resizing or uint8 conversion), so images stay in [-1, 1], the judge's training range.
    """

    def __init__(self, judge: Segmenter, num_features: int) -> None:
        super().__init__()
        self.judge = judge
        self.num_features = num_features

    def forward(self, images: Tensor) -> Tensor:  # noqa: D102
        with torch.no_grad():
            return self.judge.encoder_features(images).flatten(1).double().cpu()


def judge_fid(judge: Segmenter, real: Tensor, fake: Tensor, batch_size: int = 32) -> float:
    """FID between real and generated images [B,1,H,W] in [-1,1], judge encoder as feature network.

    Not comparable with Inception FID values from the literature: the features are the judge
    segmenter's pooled encoder activations. Needs at least 2 images on each side.
    """
    from torchmetrics.image.fid import FrechetInceptionDistance

    if len(real) < 2 or len(fake) < 2:
        raise ValueError(f"FID needs >= 2 images per side, got {len(real)} real and {len(fake)} fake")
    with torch.no_grad():
        num_features = int(judge.encoder_features(real[:1].float()).flatten(1).shape[1])
    fid = FrechetInceptionDistance(
        feature=EncoderFeatures(judge, num_features), normalize=True, reset_real_features=True
    )
    for side, imgs in ((True, real), (False, fake)):
        for start in range(0, len(imgs), batch_size):
            fid.update(imgs[start : start + batch_size].float(), real=side)
    return float(fid.compute())


def ssim_psnr(fake: Tensor, real: Tensor) -> tuple[float, float]:
    """Mean SSIM and PSNR (dB) of generated vs the real slice of the same mask, images in [-1,1].

    Data range 2.0 (the width of [-1,1]); higher is closer to the real slice for both. A GAN
    is not expected to reproduce the real slice, so these are reference figures, not criteria.
    """
    from torchmetrics.functional.image import (
        peak_signal_noise_ratio,
        structural_similarity_index_measure,
    )

    f, r = _as_unit_batch(fake) * 2 - 1, _as_unit_batch(real) * 2 - 1
    # one tensor (the tuple only with return_full_image / return_contrast_sensitivity)
    ssim = cast(Tensor, structural_similarity_index_measure(f, r, data_range=2.0))
    psnr = peak_signal_noise_ratio(f, r, data_range=2.0, reduction="none", dim=(1, 2, 3)).mean()
    return float(ssim), float(psnr)
