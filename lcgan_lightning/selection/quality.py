"""Image-quality measures for generated CT slices (paper §3.2.2) plus optional FID / SSIM / PSNR.

Conventions (also written into scores.json):

* Inputs are images in [-1, 1] (the project's windowed range), shape [B,1,H,W] or [B,H,W].
  Both sharpness measures first map them to [0, 1] (``(x + 1) / 2``) and use the WHOLE image
  (no head mask): CT slices are a bright head on a uniform black background, so the whole-image
  figure compares like with like across generators (paper §3.2.2).
* ``laplacian_variance``: variance (population, over pixels) of the 3x3 Laplacian
  ``[[0,1,0],[1,-4,1],[0,1,0]]`` computed on the interior (no padding, so no border artefacts).
  Higher = sharper.
* ``fft_mean``: mean magnitude of the orthonormal 2-D DFT, ``|FFT2(x)| / sqrt(H*W)``, over every
  coefficient except the DC term (the DC term is the mean brightness, not detail). Linear magnitude,
  not log. Higher = more high-frequency content = sharper.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SHARPNESS_CONVENTION = (
    "sharpness = variance of the 3x3 Laplacian of each whole image mapped to [0,1] (interior pixels); "
    "fft_mean = mean |FFT2| (orthonormal) of each whole image mapped to [0,1], DC term excluded. "
    "Both are averaged over a candidate's images; for both, HIGHER IS SHARPER (less blurry)."
)

_LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)


def _as_unit_batch(images: Tensor) -> Tensor:
    """[B,H,W] or [B,1,H,W] in [-1,1] -> float32 [B,1,H,W] in [0,1]."""
    if images.ndim == 3:
        images = images.unsqueeze(1)
    if images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(f"expected images [B,1,H,W] or [B,H,W], got shape {tuple(images.shape)}")
    return (images.float() + 1.0) / 2.0


def laplacian_variance(images: Tensor) -> Tensor:
    """Per-image variance of the Laplacian, Tensor[B]; higher = sharper."""
    x = _as_unit_batch(images)
    lap = F.conv2d(x, _LAPLACIAN.to(x.device, x.dtype))
    return lap.flatten(1).var(dim=1, unbiased=False)


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

    def __init__(self, judge: nn.Module, num_features: int) -> None:
        super().__init__()
        self.judge = judge
        self.num_features = num_features

    def forward(self, images: Tensor) -> Tensor:  # noqa: D102
        with torch.no_grad():
            return self.judge.encoder_features(images).flatten(1).double().cpu()


def judge_fid(judge: nn.Module, real: Tensor, fake: Tensor, batch_size: int = 32) -> float:
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
    ssim = structural_similarity_index_measure(f, r, data_range=2.0)
    psnr = peak_signal_noise_ratio(f, r, data_range=2.0, reduction="none", dim=(1, 2, 3)).mean()
    return float(ssim), float(psnr)
