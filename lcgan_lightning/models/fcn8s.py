"""FCN-8s (Long et al. 2015) with a VGG-16 encoder, as the paper's segmenter (§4.1).

Differences from the Caffe reference, and why:
* fc6 is a 7×7 convolution with padding 3 (instead of the reference's ``pad 100`` on conv1_1 and
  crops): output size equals input size with no cropping offsets, and inputs as small as 32²
  work. Inputs whose side is not a multiple of 32 are edge-padded and the output is cropped back.
* Input is 1 channel (windowed CT). When ImageNet weights are loaded, conv1_1's RGB kernels are
  SUMMED over the colour axis, which is exactly equivalent to feeding the grey image replicated
  to three channels.
* ``width`` scales every channel count (1.0 = the paper's 64-128-256-512-512 / 4096 network;
  0.125 gives 8-16-32-64-64 / 512 for CPU runs). ImageNet weights need ``width=1.0``.
* ``fc6_kernel`` (7 in FCN and the paper: VGG's fc6 over a 7×7 pool5 at 224²) can be smaller. At
  64² pool5 is 2×2 and at 128² 4×4, so most of a 7×7 kernel reads padding, yet at width 0.125 it holds
  76 % of the weights and a third of a 64² training step (docs/models.md). ImageNet
  weights need 7.
* ``batch_norm=True`` (not in the paper) puts BatchNorm after every encoder conv, the layout of
  torchvision's ``vgg16_bn``; it makes training from scratch (no ImageNet file) converge far
  faster on small data. ImageNet loading then expects a ``vgg16_bn`` state dict.
* Upsampling is transposed convolution ×2, ×2, ×8 (kernels 4, 4, 16) initialised to bilinear
  interpolation and learned; score layers are zero-initialised as in the reference, so training
  starts from the coarse fc7 prediction.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lcgan_lightning.checkpoint_io import UnsafeCheckpointError, load_checkpoint
from lcgan_lightning.constants import NUM_CLASSES
from lcgan_lightning.errors import WeightsNotFoundError
from lcgan_lightning.models.padding import pad_to_multiple

VGG16_CHANNELS = (64, 128, 256, 512, 512)
VGG16_CONVS_PER_BLOCK = (2, 2, 3, 3, 3)
FC_CHANNELS = 4096


def _bias(conv: nn.Conv2d) -> torch.Tensor:
    """The bias of one of the network's convolutions (all but the upsampling ones have one)."""
    assert conv.bias is not None
    return conv.bias


# torchvision's vgg16().features indices of the 13 conv layers (ReLU and MaxPool layers between).
VGG16_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)


def bilinear_kernel(channels: int, kernel_size: int) -> torch.Tensor:
    """Transposed-conv weight [C, C, k, k] that performs bilinear upsampling per channel."""
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = torch.arange(kernel_size, dtype=torch.float32)
    filt1d = 1 - (og - center).abs() / factor
    filt = filt1d[:, None] * filt1d[None, :]
    weight = torch.zeros(channels, channels, kernel_size, kernel_size)
    weight[range(channels), range(channels)] = filt
    return weight


class FCN8s(nn.Module):
    """FCN-8s: VGG-16 encoder, score layers on pool3/pool4/fc7, ×2 ×2 ×8 upsampling with skips.

    ``forward(x [B, in_channels, H, W]) -> logits [B, num_classes, H, W]`` for any H, W.
    """

    stride = 32

    def __init__(
        self,
        num_classes: int = NUM_CLASSES,
        in_channels: int = 1,
        width: float = 1.0,
        dropout: float = 0.5,
        batch_norm: bool = False,
        fc6_kernel: int = 7,
    ) -> None:
        super().__init__()
        if width <= 0:
            raise ValueError(f"width must be > 0, got {width}")
        if fc6_kernel < 1 or fc6_kernel % 2 == 0:
            raise ValueError(f"fc6_kernel must be an odd number >= 1, got {fc6_kernel}")
        self.width = width
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.batch_norm = batch_norm
        chans = [max(1, round(c * width)) for c in VGG16_CHANNELS]
        fc = max(1, round(FC_CHANNELS * width))
        layers: list[nn.Module] = []
        self.pool_ends: list[int] = []  # index after each max-pool in `features`
        prev = in_channels
        for n_convs, c in zip(VGG16_CONVS_PER_BLOCK, chans, strict=True):
            for _ in range(n_convs):
                layers.append(nn.Conv2d(prev, c, 3, padding=1))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(c))
                layers.append(nn.ReLU(inplace=True))
                prev = c
            layers.append(nn.MaxPool2d(2, 2))
            self.pool_ends.append(len(layers))
        # Same layout and indices as torchvision's vgg16().features (vgg16_bn() with batch_norm),
        # so ImageNet keys map one to one.
        self.features = nn.Sequential(*layers)
        self.fc6 = nn.Conv2d(chans[4], fc, fc6_kernel, padding=fc6_kernel // 2)
        self.fc7 = nn.Conv2d(fc, fc, 1)
        self.drop = nn.Dropout(dropout)
        self.score_fr = nn.Conv2d(fc, num_classes, 1)
        self.score_pool4 = nn.Conv2d(chans[3], num_classes, 1)
        self.score_pool3 = nn.Conv2d(chans[2], num_classes, 1)
        self.upscore2 = nn.ConvTranspose2d(
            num_classes, num_classes, 4, stride=2, padding=1, bias=False
        )
        self.upscore_pool4 = nn.ConvTranspose2d(
            num_classes, num_classes, 4, stride=2, padding=1, bias=False
        )
        self.upscore8 = nn.ConvTranspose2d(
            num_classes, num_classes, 16, stride=8, padding=4, bias=False
        )
        self.feature_dim = chans[4]
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(_bias(m))
        for m in (self.score_fr, self.score_pool4, self.score_pool3):
            nn.init.zeros_(m.weight)
            nn.init.zeros_(_bias(m))
        for m in (self.upscore2, self.upscore_pool4, self.upscore8):
            m.weight.data.copy_(bilinear_kernel(self.num_classes, m.kernel_size[0]))

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        p3, p4 = self.pool_ends[2], self.pool_ends[3]
        pool3 = self.features[:p3](x)
        pool4 = self.features[p3:p4](pool3)
        pool5 = self.features[p4:](pool4)
        return pool3, pool4, pool5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, h, w = pad_to_multiple(x, self.stride)
        pool3, pool4, pool5 = self._encode(x)
        fc7 = self.drop(F.relu(self.fc7(self.drop(F.relu(self.fc6(pool5))))))
        up = self.upscore2(self.score_fr(fc7)) + self.score_pool4(pool4)
        up = self.upscore_pool4(up) + self.score_pool3(pool3)
        return self.upscore8(up)[..., :h, :w]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Global-average-pooled pool5 features [B, 512·width] (used for FID-style scores)."""
        x, _, _ = pad_to_multiple(x, self.stride)
        return self._encode(x)[2].mean(dim=(2, 3))


def load_vgg16_imagenet(model: FCN8s, path: str | Path) -> None:
    """Initialise ``model``'s encoder and fc6/fc7 from a LOCAL torchvision VGG-16 state dict.

    The file is torchvision's ``vgg16-397923af.pth`` format (``vgg16_bn-6c64b313.pth`` when the
    model has ``batch_norm``): ``features.N.weight/bias`` for the
    13 convs and ``classifier.0`` / ``classifier.3`` (fc6 [4096, 25088], fc7 [4096, 4096]), which
    are reshaped to 7×7 and 1×1 convolutions. Nothing is downloaded. Raises a clear error naming
    the file when it is missing, unreadable or does not match (missing keys, wrong shapes).
    """
    path = Path(path)
    if model.width != 1.0:
        raise ValueError(
            f"ImageNet VGG-16 weights ({path}) need width=1.0, the model has width={model.width}"
        )
    if model.fc6.kernel_size != (7, 7):
        raise ValueError(
            f"ImageNet VGG-16 weights ({path}) need fc6_kernel=7, the model has {model.fc6.kernel_size[0]}"
        )
    if not path.is_file():
        raise WeightsNotFoundError(
            f"{path}: pretrained VGG-16 state dict not found (torchvision format, e.g. "
            "vgg16-397923af.pth; set pretrained_vgg16=null to train from scratch)"
        )
    try:
        state = load_checkpoint(path, map_location="cpu")
    except UnsafeCheckpointError as e:
        # torchvision's file holds tensors only: no trust switch, this file is not that one
        raise UnsafeCheckpointError(
            path,
            e.refused,
            hint="torchvision's VGG-16 state dict holds tensors only; download it again.",
        ) from None
    except Exception as e:  # noqa: BLE001 - report any unreadable file the same way
        raise ValueError(f"cannot read pretrained VGG-16 state dict {path}: {e}") from e
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path} is not a state dict (got {type(state).__name__})")

    targets: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # file key -> (param, value)
    problems: list[str] = []

    def take(key: str, param: torch.Tensor, reshape=None) -> None:
        if key not in state:
            problems.append(f"missing key {key}")
            return
        value = state[key]
        if not isinstance(value, torch.Tensor):
            problems.append(f"{key} is not a tensor")
            return
        try:
            value = reshape(value) if reshape else value
        except RuntimeError:
            pass  # shape check below reports it
        if tuple(value.shape) != tuple(param.shape):
            problems.append(
                f"{key}: shape {tuple(state[key].shape)} does not fit {tuple(param.shape)}"
            )
            return
        targets[key] = (param, value)

    def first_conv(w: torch.Tensor) -> torch.Tensor:
        if model.in_channels == 1 and w.ndim == 4 and w.shape[1] == 3:
            return w.sum(dim=1, keepdim=True)
        return w

    convs = [(i, m) for i, m in enumerate(model.features) if isinstance(m, nn.Conv2d)]
    for n, (idx, conv) in enumerate(convs):
        take(f"features.{idx}.weight", conv.weight, first_conv if n == 0 else None)
        take(f"features.{idx}.bias", _bias(conv))
        if model.batch_norm:
            bn = model.features[idx + 1]
            for name in ("weight", "bias", "running_mean", "running_var"):
                take(f"features.{idx + 1}.{name}", getattr(bn, name))
    take("classifier.0.weight", model.fc6.weight, lambda w: w.reshape(model.fc6.weight.shape))
    take("classifier.0.bias", _bias(model.fc6))
    take("classifier.3.weight", model.fc7.weight, lambda w: w.reshape(model.fc7.weight.shape))
    take("classifier.3.bias", _bias(model.fc7))
    if problems and model.batch_norm and "features.1.running_mean" not in state:
        problems.insert(0, "no BatchNorm keys: a plain vgg16 file needs batch_norm=false")
    elif problems and not model.batch_norm and "features.1.running_mean" in state:
        problems.insert(0, "BatchNorm keys found: a vgg16_bn file needs batch_norm=true")
    if problems:
        raise ValueError(
            f"{path} does not match torchvision's VGG-16 ({len(problems)} problems): "
            + "; ".join(problems[:10])
            + (" ..." if len(problems) > 10 else "")
        )
    with torch.no_grad():
        for param, value in targets.values():
            param.copy_(value.to(param.dtype))
