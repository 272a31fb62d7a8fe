"""Seed diversity: does the generator use its noise? (pix2pix is known to ignore it: mode collapse.)

For each sampled mask, the generator draws ``k`` images with different seeds (image j of mask i
uses ``row_seed(seed, i * k + j)``); the score is the SSIM (data range 2, the [-1, 1] window) of
every unordered pair among the k, averaged over pairs and masks. 1.0 = identical images whatever
the seed; lower = more diverse.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import torch
from torch import Tensor


@torch.no_grad()
def seed_diversity(
    generator: Any, masks: Tensor | np.ndarray, k: int = 4, seed: int = 0, dropout: bool = True
) -> dict[str, Any]:
    """Mean pairwise SSIM among ``k`` seeds per mask, overall and per mask (masks [n,H,W])."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    from lcgan_lightning.selection.score import generate_rows, row_seed

    if k < 2:
        raise ValueError(f"seed diversity needs k >= 2 images per mask, got k={k}")
    masks = torch.as_tensor(np.asarray(masks)).long()
    if masks.ndim != 3 or len(masks) == 0:
        raise ValueError(
            f"seed diversity: masks must be [n, H, W] with n >= 1, got {tuple(masks.shape)}"
        )
    n = len(masks)
    seeds = [row_seed(seed, i * k + j) for i in range(n) for j in range(k)]
    images = generate_rows(generator, masks.repeat_interleave(k, dim=0), seeds, dropout=dropout)
    images = images.view(n, k, *images.shape[1:])
    a, b = torch.combinations(torch.arange(k), r=2).T
    # one tensor (the tuple only with return_full_image / return_contrast_sensitivity)
    ssim = cast(Tensor, structural_similarity_index_measure(
        images[:, a].flatten(0, 1), images[:, b].flatten(0, 1), data_range=2.0, reduction="none"
    )).view(n, -1)
    per_mask = ssim.double().mean(dim=1)
    return {
        "mean_pairwise_ssim": float(per_mask.mean()),
        "per_mask": per_mask.tolist(),
        "k": k,
        "n_masks": n,
    }
