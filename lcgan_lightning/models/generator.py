"""pix2pix U-Net generator of the LcGAN (paper §3.1, Fig. 1) and its condition encodings.

Architecture (Isola et al. 2017, the TensorFlow implementation the paper cites):
encoder C64-C128-C256-C512-C512-... with 4x4 stride-2 convolutions and LeakyReLU(0.2),
decoder of 4x4 stride-2 transposed convolutions with ReLU and skip connections, dropout 0.5 in
the three decoder blocks nearest the bottleneck (the generator's only noise source), tanh output.
Depth = log2(image_size) down-samplings, so the bottleneck is always 1x1.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm  # BatchNorm2d and SyncBatchNorm

from lcgan_lightning.constants import NUM_CLASSES
from lcgan_lightning.visual import CLASS_COLORS

NORMS = ("batch", "instance")
CONDITIONS = ("onehot", "palette")

# Fixed colour per class for `condition: palette` (RGB in [0, 255]; the generator sees it in [-1, 1]).
PALETTE_RGB: tuple[tuple[int, int, int], ...] = tuple((int(r), int(g), int(b)) for r, g, b in CLASS_COLORS)


def condition_channels(condition: str) -> int:
    """Number of input channels of a condition encoding."""
    if condition == "onehot":
        return NUM_CLASSES
    if condition == "palette":
        return 3
    raise ValueError(f"condition must be one of {CONDITIONS}, got {condition!r}")


def palette_tensor(device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """[NUM_CLASSES, 3] class colours scaled to [-1, 1]."""
    return torch.tensor(PALETTE_RGB, device=device, dtype=dtype) / 127.5 - 1.0


def masks_to_onehot(masks: torch.Tensor) -> torch.Tensor:
    """LongTensor [B,H,W] of class ids -> float one-hot [B,NUM_CLASSES,H,W]."""
    if masks.dim() != 3:
        raise ValueError(f"masks must be [B,H,W], got shape {tuple(masks.shape)}")
    lo, hi = int(masks.min()), int(masks.max())
    if lo < 0 or hi >= NUM_CLASSES:
        raise ValueError(f"mask values must be class ids in [0, {NUM_CLASSES - 1}], got range [{lo}, {hi}]")
    return F.one_hot(masks.long(), NUM_CLASSES).permute(0, 3, 1, 2).float()


def encode_condition(mask_onehot: torch.Tensor, condition: str) -> torch.Tensor:
    """One-hot [B,6,H,W] -> generator/discriminator condition input ([B,6,H,W] or palette RGB [B,3,H,W])."""
    if condition == "onehot":
        return mask_onehot
    if condition == "palette":
        pal = palette_tensor(mask_onehot.device, mask_onehot.dtype)
        # background pixels (all-zero one-hot never happens, but stay well-defined) -> -1
        return torch.einsum("bkhw,kc->bchw", mask_onehot, pal)
    raise ValueError(f"condition must be one of {CONDITIONS}, got {condition!r}")


def make_norm(norm: str, channels: int) -> nn.Module:
    """BatchNorm2d (affine) or InstanceNorm2d (no affine, no running stats, as pix2pix)."""
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")


class EncoderBlock(nn.Sequential):
    """[LeakyReLU(0.2)] -> Conv 4x4 stride 2 -> [norm]. The outermost block has neither activation nor norm."""

    def __init__(self, in_ch: int, out_ch: int, norm: str, outermost: bool = False, use_norm: bool = True):
        layers: list[nn.Module] = []
        if not outermost:
            layers.append(nn.LeakyReLU(0.2, inplace=False))
        has_norm = use_norm and not outermost
        # batch norm has its own shift; instance norm (no affine) needs the conv bias (pix2pix)
        bias = not has_norm or norm == "instance"
        layers.append(nn.Conv2d(in_ch, out_ch, kernel_size=4, stride=2, padding=1, bias=bias))
        if has_norm:
            layers.append(make_norm(norm, out_ch))
        super().__init__(*layers)


class DecoderBlock(nn.Sequential):
    """ReLU -> ConvTranspose 4x4 stride 2 -> norm -> [Dropout]; the outermost block ends with tanh instead."""

    def __init__(self, in_ch: int, out_ch: int, norm: str, dropout: float = 0.0, outermost: bool = False):
        layers: list[nn.Module] = [nn.ReLU(inplace=False)]
        bias = outermost or norm == "instance"
        layers.append(nn.ConvTranspose2d(in_ch, out_ch, kernel_size=4, stride=2, padding=1, bias=bias))
        if outermost:
            layers.append(nn.Tanh())
        else:
            layers.append(make_norm(norm, out_ch))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        super().__init__(*layers)


def num_downs_for(image_size: int) -> int:
    """log2(image_size) down-samplings (8 at 256): the bottleneck is 1x1."""
    n = int(round(math.log2(image_size)))
    if image_size < 8 or 2**n != image_size:
        raise ValueError(f"image_size must be a power of two >= 8, got {image_size}")
    return n


class UNetGenerator(nn.Module):
    """pix2pix U-Net: condition [B,in_ch,S,S] -> image [B,out_ch,S,S] in [-1,1].

    Encoder widths ngf·(1,2,4,8,8,...) capped at 8·ngf; decoder mirrors them and concatenates the
    encoder output of the same resolution. Dropout in the `n_dropout` decoder blocks nearest the
    bottleneck. No norm on the first encoder layer and on the 1x1 bottleneck.
    """

    def __init__(
        self,
        in_channels: int = NUM_CLASSES,
        out_channels: int = 1,
        image_size: int = 256,
        ngf: int = 64,
        norm: str = "batch",
        dropout: float = 0.5,
        n_dropout: int = 3,
    ):
        super().__init__()
        n = num_downs_for(image_size)
        widths = [ngf * min(2**i, 8) for i in range(n)]
        self.image_size = image_size
        self.encoders = nn.ModuleList()
        prev = in_channels
        for i, w in enumerate(widths):
            self.encoders.append(
                EncoderBlock(prev, w, norm, outermost=(i == 0), use_norm=(i != n - 1))
            )
            prev = w
        self.decoders = nn.ModuleList()
        for j in range(n):  # j = 0 is the block right after the bottleneck
            enc_idx = n - 1 - j
            in_ch = widths[enc_idx] if j == 0 else 2 * widths[enc_idx]
            outermost = j == n - 1
            out_ch = out_channels if outermost else widths[enc_idx - 1]
            p = dropout if j < n_dropout and not outermost else 0.0
            self.decoders.append(DecoderBlock(in_ch, out_ch, norm, dropout=p, outermost=outermost))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            raise ValueError(
                f"generator built for {self.image_size}x{self.image_size} inputs, got {tuple(x.shape[-2:])}"
            )
        skips = []
        h = x
        for enc in self.encoders:
            h = enc(h)
            skips.append(h)
        n = len(self.decoders)
        for j, dec in enumerate(self.decoders):
            if j > 0:
                h = torch.cat([h, skips[n - 1 - j]], dim=1)
            h = dec(h)
        return h


def init_pix2pix_weights(module: nn.Module, std: float = 0.02) -> None:
    """pix2pix init: conv weights N(0, std), biases 0; norm weights N(1, std), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)


@contextmanager
def sampling_mode(module: nn.Module, dropout: bool = True, norm_stats: str = "sample") -> Iterator[None]:
    """Put `module` in the mode used for synthesis; restores every submodule's mode afterwards.

    dropout=True keeps Dropout active (pix2pix's stochastic test mode). norm_stats="sample" normalises
    with the statistics of the current input (what pix2pix does at test time with batch size 1, and what
    the generator saw in training at batch size 1) without touching the running averages;
    "running" uses the stored running averages (BatchNorm eval mode).
    """
    if norm_stats not in ("sample", "running"):
        raise ValueError(f"norm_stats must be 'sample' or 'running', got {norm_stats!r}")
    saved = [(m, m.training, getattr(m, "momentum", None)) for m in module.modules()]
    try:
        module.eval()
        for m in module.modules():
            if isinstance(m, nn.Dropout) and dropout:
                m.train()
            if isinstance(m, _BatchNorm) and norm_stats == "sample":
                m.train()
                m.momentum = 0.0  # running = (1 - 0)·running + 0·batch: averages untouched
        yield
    finally:
        for m, training, momentum in saved:
            m.train(training)
            if isinstance(m, _BatchNorm):
                m.momentum = momentum


@torch.no_grad()
def sample_images(
    generator: nn.Module,
    condition: torch.Tensor,
    seed: int,
    dropout: bool = True,
    norm_stats: str = "sample",
) -> torch.Tensor:
    """Generate one image per condition; same (condition, seed) -> same images, global RNG untouched.

    Samples are generated one at a time so an image never depends on the other members of the batch.
    """
    devices = [condition.device] if condition.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), sampling_mode(generator, dropout, norm_stats):
        torch.manual_seed(int(seed))
        outs = [generator(condition[i : i + 1]) for i in range(condition.shape[0])]
    return torch.cat(outs, dim=0)
