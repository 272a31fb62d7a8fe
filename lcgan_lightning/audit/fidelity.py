"""Distribution fidelity (FID / MiFID on judge features) and mask fidelity (judge Dice per class).

MiFID (Bai et al. 2021) as implemented by torchmetrics 1.9: ``MiFID = FID / d`` where ``d`` is the
memorisation distance, the mean over REAL features of the cosine distance ``1 - |cos|`` to the
nearest synthetic feature, used only when ``d < eps`` (else ``d = 1`` and MiFID = FID). Note that
Bai et al. average over the generated images instead; torchmetrics takes the real side. When
FID <= 1e-8 torchmetrics returns 0, so a set that reproduces the whole real set gets MiFID 0:
read the copy rate, not MiFID, for exact copies.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from lcgan_lightning.constants import LESION_CLASSES, NUM_CLASSES
from lcgan_lightning.metrics import class_dice


class PrecomputedFeatures(nn.Module):
    """Identity "feature network": torchmetrics' FID/MiFID on features computed elsewhere, once."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, features: Tensor) -> Tensor:  # noqa: D102
        return features.double()


def memorisation_distance(real: Tensor, synthetic: Tensor) -> float:
    """Mean over real rows of min over synthetic rows of ``1 - |cos|`` (torchmetrics' direction)."""
    r = nn.functional.normalize(real.double(), dim=1)
    s = nn.functional.normalize(synthetic.double(), dim=1)
    return float((1.0 - (r @ s.T).abs()).min(dim=1).values.mean())


def mifid(real: Tensor, synthetic: Tensor, cosine_distance_eps: float = 0.1) -> dict[str, float]:
    """FID, memorisation distance and MiFID of two feature sets [M, F] and [N, F] (torchmetrics)."""
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.mifid import MemorizationInformedFrechetInceptionDistance

    if real.ndim != 2 or synthetic.ndim != 2 or real.shape[1] != synthetic.shape[1]:
        raise ValueError(
            f"mifid: expected features [M, F] and [N, F], got {tuple(real.shape)} "
            f"and {tuple(synthetic.shape)}"
        )
    if len(real) < 2 or len(synthetic) < 2:
        raise ValueError(
            f"mifid: needs >= 2 rows per side, got {len(real)} real and {len(synthetic)} synthetic"
        )
    net = PrecomputedFeatures(int(real.shape[1]))
    fid = FrechetInceptionDistance(feature=net, reset_real_features=True)
    mi = MemorizationInformedFrechetInceptionDistance(
        feature=net, reset_real_features=True, cosine_distance_eps=float(cosine_distance_eps)
    )
    for metric in (fid, mi):
        metric.update(real.double(), real=True)
        metric.update(synthetic.double(), real=False)
    d = memorisation_distance(real, synthetic)
    return {
        "fid": float(fid.compute()),
        "mifid": float(mi.compute()),
        "memorisation_distance": d,
        "penalty_active": bool(d < cosine_distance_eps),
        "cosine_distance_eps": float(cosine_distance_eps),
    }


@torch.no_grad()
def mask_fidelity(
    images: Tensor,
    masks: Tensor,
    predict_masks: Callable[[Tensor], Tensor],
    batch_size: int = 64,
) -> dict[str, Any]:
    """Per lesion class, the judge's mean Dice over images whose conditioning mask holds the class.

    images [N,1,H,W] in [-1,1], masks [N,H,W] class ids, ``predict_masks`` -> [B,H,W] label maps.
    A class in no conditioning mask has Dice None (JSON null) and count 0.
    """
    if len(images) != len(masks) or tuple(images.shape[-2:]) != tuple(masks.shape[-2:]):
        raise ValueError(
            f"mask_fidelity: images {tuple(images.shape)} and masks {tuple(masks.shape)} differ"
        )
    total = np.zeros(NUM_CLASSES - 1)
    count = np.zeros(NUM_CLASSES - 1, dtype=np.int64)
    for start in range(0, len(images), batch_size):
        pred = predict_masks(images[start : start + batch_size]).cpu().numpy()
        true = masks[start : start + batch_size].cpu().numpy()
        if pred.shape != true.shape:
            raise ValueError(
                f"predict_masks returned shape {pred.shape} for a batch of masks {true.shape}"
            )
        for p, t in zip(pred, true, strict=True):
            present = np.isin(np.arange(1, NUM_CLASSES), t)
            d = class_dice(p, t)
            total[present] += d[present]
            count += present
    return {
        "per_class_dice": {
            name: float(total[i] / count[i]) if count[i] else None
            for i, name in enumerate(LESION_CLASSES)
        },
        "n_images": {name: int(count[i]) for i, name in enumerate(LESION_CLASSES)},
    }
