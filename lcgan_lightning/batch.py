"""The batch contract: loaders deliver slices as stored, and what the networks read is built after
the transfer, on the device, by the models' `on_after_batch_transfer` (a model of your own that
trains on `CTSliceDataModule` calls `model_batch` there too).

Loader batch: "image" [B,1,H,W] float16 (float32 when augmented on the fly), "mask" [B,H,W] uint8
class ids, plus ids. Model batch: "image" float32, "mask" int64 and, for the LcGAN, "mask_onehot"
[B,6,H,W] float32 — built here on the GPU instead of per batch on the CPU (12× fewer bytes through
the DataLoader at 256²).
"""

from __future__ import annotations

from typing import Any

import torch

from lcgan_lightning.constants import NUM_CLASSES


def onehot_masks(masks: torch.Tensor, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """Class ids [B,H,W] (any integer dtype) -> float32 one-hot [B,num_classes,H,W] on the same device."""
    classes = torch.arange(num_classes, device=masks.device, dtype=masks.dtype).view(1, -1, 1, 1)
    return (masks.unsqueeze(1) == classes).to(torch.float32)


def speed_up(module: torch.nn.Module, channels_last: bool = False, compile: bool = False) -> None:
    """`model.channels_last` / `model.compile` for one network, in place: NHWC weights (fast convolution
    kernels on recent GPUs and on CPUs with oneDNN) and `torch.compile` (`nn.Module.compile`: the
    state_dict keys and checkpoints stay as they are; compiled on the first call)."""
    if channels_last:
        # Module.to accepts memory_format (torch's overloads for it leave the keyword out)
        module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    if compile:
        module.compile()


def model_batch(batch: dict[str, Any], onehot: bool = False, channels_last: bool = False) -> dict[str, Any]:
    """A transferred loader batch as the networks read it (see the module docstring); idempotent."""
    out = dict(batch)
    if torch.is_tensor(out.get("image")):
        out["image"] = out["image"].to(torch.float32)
    if torch.is_tensor(out.get("mask")):
        out["mask"] = out["mask"].to(torch.int64)
        if onehot and "mask_onehot" not in out:
            out["mask_onehot"] = onehot_masks(out["mask"])
    if channels_last:
        for key in ("image", "mask_onehot"):
            if torch.is_tensor(out.get(key)) and out[key].dim() == 4:
                out[key] = out[key].contiguous(memory_format=torch.channels_last)
    return out
