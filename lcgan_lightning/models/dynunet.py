"""MONAI DynUNet (2-D) as the nnU-Net-style segmentation network (`model.arch=dynunet`).

Built from a plan (:mod:`lcgan_lightning.models.dynunet_plan`): per-stage kernels, strides and filters,
instance norm (affine), leaky ReLU 0.01, plain (non-residual) blocks, transposed-convolution upsampling
with kernel = stride: nnU-Net's 2-D U-Net. ``forward`` gives the full-resolution logits only (evaluation,
prediction, the segmenter's ``labels``); ``forward_deep`` gives every deep-supervision output at its own
resolution (full resolution first), for the training loss.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lcgan_lightning.constants import NUM_CLASSES
from lcgan_lightning.models.padding import pad_to_multiple

NORM = ("INSTANCE", {"affine": True})
ACT = ("leakyrelu", {"inplace": True, "negative_slope": 0.01})


class DynUNetSeg(nn.Module):
    """MONAI DynUNet with `deep_supervision` outputs (0 or 1 = none; else full resolution + n-1 heads)."""

    def __init__(
        self,
        kernels: Sequence[Sequence[int]],
        strides: Sequence[Sequence[int]],
        filters: Sequence[int],
        num_classes: int = NUM_CLASSES,
        in_channels: int = 1,
        deep_supervision: int = 0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        from monai.networks.nets import DynUNet

        if not len(kernels) == len(strides) == len(filters) or len(strides) < 3:
            raise ValueError(f"DynUNetSeg: kernels, strides and filters need one entry per stage (>= 3), got "
                             f"{len(kernels)}, {len(strides)}, {len(filters)}")
        if deep_supervision > len(strides) - 1:
            raise ValueError(f"DynUNetSeg: deep_supervision={deep_supervision} outputs, at most {len(strides) - 1} "
                             f"(one per decoder level) for {len(strides)} stages")
        self.n_outputs = max(1, int(deep_supervision))
        self.multiple = [1, 1]
        for s in strides:
            self.multiple = [self.multiple[0] * int(s[0]), self.multiple[1] * int(s[1])]
        self.unet = DynUNet(
            spatial_dims=2,
            in_channels=in_channels,
            out_channels=num_classes,
            kernel_size=[list(k) for k in kernels],
            strides=[list(s) for s in strides],
            upsample_kernel_size=[list(s) for s in strides[1:]],
            filters=list(filters),
            dropout=dropout or None,
            norm_name=NORM,
            act_name=ACT,
            deep_supervision=self.n_outputs > 1,
            deep_supr_num=max(1, self.n_outputs - 1),
            res_block=False,
        )
        self.feature_dim = int(filters[-1])

    def forward_deep(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Logits of every output, full resolution first, each at its level's size ([B, C, ⌈H/2^i⌉, ⌈W/2^i⌉]
        for isotropic strides): the heads MONAI's own forward would interpolate to full size."""
        x, h, w = pad_to_multiple(x, self.multiple)
        u = self.unet
        out = [u.output_block(u.skip_layers(x))[..., :h, :w]]
        for head in u.heads[: self.n_outputs - 1]:  # written by MONAI's skip layers, 1/2 resolution first
            scale = (x.shape[-2] // head.shape[-2], x.shape[-1] // head.shape[-1])
            out.append(head[..., : -(-h // scale[0]), : -(-w // scale[1])])
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, h, w = pad_to_multiple(x, self.multiple)
        u = self.unet
        return u.output_block(u.skip_layers(x))[..., :h, :w]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Global-average-pooled bottleneck features [B, filters[-1]] (for FID-style scores)."""
        x, _, _ = pad_to_multiple(x, self.multiple)
        u = self.unet
        for block in [u.input_block, *u.downsamples, u.bottleneck]:  # the encoder path
            x = block(x)
        return x.mean(dim=(2, 3))
