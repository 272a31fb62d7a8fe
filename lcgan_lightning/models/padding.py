"""Edge padding to a multiple of a network's total stride (and the crop back)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pad_to_multiple(x: torch.Tensor, stride: int) -> tuple[torch.Tensor, int, int]:
    """Replicate-pad [..., H, W] on the bottom/right to multiples of `stride`; returns (x, H, W)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % stride, (-w) % stride
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x, h, w
