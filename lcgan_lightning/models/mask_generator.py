"""The interface every trained generator keeps (`models.generation.load_generator` returns one).

`generate(masks LongTensor [B,H,W], seed, dropout) -> FloatTensor [B,1,H,W]` in [-1, 1]: seeded (the
same masks and seed give the same images; on CPU bit for bit), each row independent of the others;
plus `image_size`, `device` and `hparams` (the checkpoint's hyper-parameters).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import torch
from torch import nn

from lcgan_lightning.models.generator import masks_to_onehot

G = TypeVar("G", bound="MaskGenerator")


def seeded_normal(shape: Sequence[int], seed: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Standard normal noise drawn from `seed` alone (on CPU, then moved: the same on every device);
    the global RNG is untouched."""
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    return torch.randn(tuple(shape), generator=gen).to(device)


class MaskGenerator(nn.Module):
    """Base of the generators `load_generator` returns: the network (`generator`), shape checks,
    device, hparams. A family sets `build` (hparams -> network) to be read by `from_checkpoint`."""

    kind = "lcgan"

    def __init__(self, generator: nn.Module, image_size: int, hparams: dict[str, Any] | None = None):
        super().__init__()
        self.generator = generator
        self.image_size = int(image_size)
        self.hparams = dict(hparams or {})

    @staticmethod
    def build(hp: Mapping[str, Any]) -> nn.Module:
        """The untrained network the hyper-parameters describe."""
        raise NotImplementedError

    @classmethod
    def from_checkpoint(cls: type[G], hp: dict[str, Any], state: dict[str, torch.Tensor]) -> G:
        """The generator of a checkpoint: `build(hp)` with the checkpoint's generator.* weights."""
        net = cls.build(hp)
        net.load_state_dict(state)
        return cls(net, hp["image_size"], hparams=hp)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def onehot(self, masks: torch.Tensor) -> torch.Tensor:
        """masks LongTensor [B,H,W] (this generator's size) -> float one-hot [B,6,H,W] on its device."""
        if masks.dim() != 3 or masks.shape[-1] != self.image_size or masks.shape[-2] != self.image_size:
            raise ValueError(
                f"masks must be [B,{self.image_size},{self.image_size}] for this generator, got {tuple(masks.shape)}"
            )
        return masks_to_onehot(masks.to(self.device))

    def generate(self, masks: torch.Tensor, seed: int, dropout: bool = True) -> torch.Tensor:
        """masks LongTensor [B,H,W] (class ids) -> FloatTensor [B,1,H,W] in [-1,1]; same seed, same images."""
        raise NotImplementedError
