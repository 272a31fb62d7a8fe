"""MONAI BasicUNet (2-D) as an alternative segmentation network (`model.arch=basicunet`)."""

from __future__ import annotations

import torch
from torch import nn

from lcgan_lightning.constants import NUM_CLASSES
from lcgan_lightning.models.padding import pad_to_multiple

BASICUNET_FEATURES = (32, 32, 64, 128, 256, 32)


class BasicUNetSeg(nn.Module):
    """MONAI BasicUNet (2-D) with edge padding to a multiple of 16 and an ``encode`` method."""

    stride = 16

    def __init__(
        self,
        num_classes: int = NUM_CLASSES,
        in_channels: int = 1,
        width: float = 1.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        from monai.networks.nets import BasicUNet

        features = tuple(max(1, round(f * width)) for f in BASICUNET_FEATURES)
        self.unet = BasicUNet(
            spatial_dims=2,
            in_channels=in_channels,
            out_channels=num_classes,
            features=features,
            dropout=dropout,
        )
        self.feature_dim = features[4]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, h, w = pad_to_multiple(x, self.stride)
        return self.unet(x)[..., :h, :w]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Global-average-pooled bottleneck features [B, 256·width]."""
        x, _, _ = pad_to_multiple(x, self.stride)
        u = self.unet
        x4 = u.down_4(u.down_3(u.down_2(u.down_1(u.conv_0(x)))))
        return x4.mean(dim=(2, 3))
