"""Post-processing of predicted label maps (opt-in, ``model.postprocess``).

``region_majority``: every connected lesion region of a predicted label map (the pixels of any
lesion class, 8-connected) takes the class most of its pixels have; background is untouched, so the
binary lesion mask and every lesion-vs-background metric stay exactly as predicted. It removes the
commonest error of a small segmenter on the phantom, a bleed painted in two classes (SDH pixels on an
EDH, say), which the strict per-image DSC counts as a class the image does not have.

It assumes one class per connected bleed, which holds on the phantom (its bleeds are drawn one class
each) but not always on real scans: an IPH with intraventricular extension is one connected region of
two classes, and this would relabel part of it. Use it for a judge on the phantom, or where one class
per region is what you want to measure. Ties go to the lower class id (IPH < IVH < SAH < EDH < SDH).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from lcgan_lightning.errors import ConfigError
from lcgan_lightning.metrics import EIGHT_CONNECTED

POSTPROCESS = ("none", "region_majority")


def check_postprocess(method: str, key: str = "model.postprocess") -> str:
    """``method`` if it names a post-processing, else a ConfigError naming ``key``."""
    if method not in POSTPROCESS:
        raise ConfigError(f"{key}={method!r}: must be one of {POSTPROCESS}")
    return method


def region_majority(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Label maps [B, H, W] with each connected lesion region set to its majority class."""
    if labels.ndim != 3:
        raise ValueError(f"region_majority expects label maps [B, H, W], got shape {tuple(labels.shape)}")
    maps = labels.detach().cpu().numpy()
    out = np.empty_like(maps)
    for i, lab in enumerate(maps):
        regions, n = ndimage.label(lab > 0, structure=EIGHT_CONNECTED)  # as the detection metric's components
        if n == 0:
            out[i] = lab
            continue
        # counts[r, c]: pixels of class c in region r (region 0 = background)
        counts = np.bincount(regions.ravel() * num_classes + lab.ravel(), minlength=(n + 1) * num_classes)
        majority = counts.reshape(n + 1, num_classes).argmax(axis=1)
        majority[0] = 0
        out[i] = majority[regions]
    return torch.from_numpy(out).to(labels.device)


def postprocess_labels(labels: torch.Tensor, method: str, num_classes: int) -> torch.Tensor:
    """``labels`` [B, H, W] after the named post-processing (``none`` returns them unchanged)."""
    if check_postprocess(method) == "none":
        return labels
    return region_majority(labels, num_classes)


__all__ = ["POSTPROCESS", "check_postprocess", "postprocess_labels", "region_majority"]
