"""PatchGAN discriminator of the LcGAN (paper Fig. 2): 70x70 patches, 30x30 logits at 256x256.

C64-C128-C256 (4x4, stride 2) - C512 (4x4, stride 1) - C1 (4x4, stride 1), LeakyReLU(0.2), no norm on
the first layer, input = concat(condition, image). Written out rather than MONAI's PatchDiscriminator,
whose padding and final layers differ from pix2pix's (its output is not 30x30 at 256).
"""

from __future__ import annotations

from torch import nn

from lcgan_lightning.models.generator import make_norm


def patch_receptive_field(n_layers: int) -> int:
    """Side of the input patch one output logit sees (70 for n_layers=3)."""
    rf = 1
    # layers from the output back to the input: final conv (s1), penultimate conv (s1), n_layers convs (s2)
    for stride in [1, 1] + [2] * n_layers:
        rf = (rf - 1) * stride + 4
    return rf


class PatchDiscriminator(nn.Module):
    """pix2pix NLayerDiscriminator: [B,in_channels,S,S] -> patch logits [B,1,S',S'] (S'=30 at S=256, n_layers=3)."""

    def __init__(self, in_channels: int, ndf: int = 64, n_layers: int = 3, norm: str = "batch"):
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        bias = norm == "instance"
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, ndf, kernel_size=4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
        ]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, kernel_size=4, stride=2, padding=1, bias=bias),
                make_norm(norm, ndf * mult),
                nn.LeakyReLU(0.2),
            ]
        prev, mult = mult, min(2**n_layers, 8)
        layers += [
            nn.Conv2d(ndf * prev, ndf * mult, kernel_size=4, stride=1, padding=1, bias=bias),
            make_norm(norm, ndf * mult),
            nn.LeakyReLU(0.2),
            nn.Conv2d(ndf * mult, 1, kernel_size=4, stride=1, padding=1),
        ]
        self.model = nn.Sequential(*layers)
        self.receptive_field = patch_receptive_field(n_layers)

    def forward(self, x):
        return self.model(x)
