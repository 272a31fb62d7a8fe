"""Edge padding to a multiple of a network's total stride (and the crop back)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def pad_to_multiple(x: torch.Tensor, stride: int | Sequence[int]) -> tuple[torch.Tensor, int, int]:
    """Replicate-pad [..., H, W] on the bottom/right to multiples of `stride` (one int, or (sy, sx) per
    axis); returns (x, H, W)."""
    sy, sx = (stride, stride) if isinstance(stride, int) else (int(stride[0]), int(stride[1]))
    h, w = x.shape[-2:]
    ph, pw = (-h) % sy, (-w) % sx
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x, h, w
