"""SPADE generator (Park et al., CVPR 2019) on MONAI's `SPADENet`, with a seeded noise input.

Two modes:

* `vae=False` (default): MONAI's SPADENet without its encoder starts from the down-sampled label
  map and is deterministic. To make it a sampler, a noise vector z (`z_dim` values, one per image)
  is replicated over the pixels and concatenated to the 6-channel one-hot mask before it reaches
  every SPADE block ("3-D noise", as OASIS does, Schönfeld et al. ICLR 2021): SPADE's label map is
  [one-hot mask, z]. `z_dim=0`: no noise, the generator is deterministic.
* `vae=True`: SPADENet with its image encoder (GauGAN's VAE mode): the decoder starts from fc(z);
  training encodes the real slice to (mu, logvar), generation draws z from the prior N(0, I).

The output passes a tanh: images in [-1, 1].
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.nets import SPADENet
from torch import nn

from lcgan_lightning.constants import NUM_CLASSES
from lcgan_lightning.errors import ConfigError


class SPADEGenerator(nn.Module):
    """Mask (one-hot [B,6,H,W]) + noise z [B,z_dim] -> image [B,1,H,W] in [-1,1].

    Args:
        image_size: side of the square slices (divisible by 2 ** len(channels)).
        channels: encoder widths of MONAI's SPADENet (the decoder runs them in reverse, from
            image_size / 2 ** len(channels) up to full size).
        z_dim: noise values per image (0: deterministic; the VAE's latent size when `vae`).
        vae: GauGAN's VAE mode (an image encoder; the KL term is the module's).
        hidden: channels of the convolutions inside each SPADE normalisation.
        norm: MONAI norm name of the parameter-free normalisation SPADE modulates.
    """

    def __init__(self, image_size: int, channels: Sequence[int] = (32, 64, 128, 256), z_dim: int = 16,
                 vae: bool = False, hidden: int = 128, norm: str = "INSTANCE"):
        super().__init__()
        channels = [int(c) for c in channels]
        if image_size % (2 ** len(channels)):
            raise ConfigError(f"model.channels: data.image_size={image_size} must be divisible by "
                              f"2**len(channels) = {2 ** len(channels)}",
                              hint="drop a level from model.channels or use another image size")
        if vae and z_dim < 1:
            raise ConfigError("model.z_dim: the VAE mode needs z_dim >= 1")
        self.z_dim, self.vae = int(z_dim), bool(vae)
        self.net = SPADENet(spatial_dims=2, in_channels=1, out_channels=1,
                            label_nc=NUM_CLASSES + (0 if vae else self.z_dim),
                            input_shape=(image_size, image_size), channels=list(channels),
                            z_dim=self.z_dim if vae else None, is_vae=self.vae,
                            spade_intermediate_channels=int(hidden), norm=norm, last_act="TANH")

    def forward(self, onehot: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        if self.vae:
            if z is None:
                raise ValueError("SPADEGenerator(vae=True) needs z (encode() or the prior)")
            return self.net.decode(onehot, z)
        if self.z_dim:
            if z is None:
                raise ValueError(f"SPADEGenerator needs z [B,{self.z_dim}]")
            h, w = onehot.shape[-2:]
            onehot = torch.cat([onehot, z[:, :, None, None].expand(-1, -1, h, w).to(onehot.dtype)], dim=1)
        return self.net.decode(onehot)

    def encode(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """VAE mode: (mu, logvar) [B,z_dim] of an image [B,1,H,W]."""
        mu, logvar = self.net.encoder(image)
        return mu, logvar
