"""Batching of SliceDataset samples into one shared-memory buffer per batch (`collate_slices`)."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import default_collate, get_worker_info


def batch_tensor(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An empty batch tensor; inside a DataLoader worker in shared memory (as default_collate
    allocates), so the batch is not copied again when it is sent to the main process."""
    out = torch.empty(shape, dtype=dtype)
    return out.share_memory_() if get_worker_info() is not None else out


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def collate_slices(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch SliceDataset samples (full or lean, mixed) as they are stored: image [B,1,H,W] float16
    (float32 when a sample is, e.g. online-augmented), mask uint8 [B,H,W] class ids, each integer key
    (`slice`) int64 [B], the rest as default_collate. The models turn these into float32 / int64 / the
    one-hot after the transfer to their device (`on_after_batch_transfer`): a batch of 32 at 256² is
    6 MB instead of 72 MB.

    Image, mask and integer keys are views of ONE byte buffer: a worker hands each shared-memory
    storage to the main process separately (a file descriptor each), so one storage instead of three
    makes the hand-over, the limit of a 1-worker loader, cheaper (docs/data.md)."""
    b, (h, w) = len(samples), tuple(samples[0]["mask"].shape)
    dtype = torch.float16 if all(s["image"].dtype == torch.float16 for s in samples) else torch.float32
    int_keys = [k for k, v in samples[0].items()
                if k not in ("image", "mask", "mask_onehot") and _is_int(v) and all(_is_int(s[k]) for s in samples)]
    # in the buffer: int64 keys first (8-byte aligned), then the image, then the mask
    n_int, n_img = 8 * b * len(int_keys), b * h * w * dtype.itemsize
    buf = batch_tensor((n_int + n_img + b * h * w,), torch.uint8)
    ints = buf[:n_int].view(torch.int64).view(len(int_keys), b)
    ints.copy_(torch.tensor([[s[k] for s in samples] for k in int_keys], dtype=torch.int64).view(len(int_keys), b))
    images = buf[n_int:n_int + n_img].view(dtype).view(b, 1, h, w)
    torch.stack([s["image"].to(dtype) for s in samples], out=images)
    masks = buf[n_int + n_img:].view(b, h, w)
    torch.stack([s["mask"].to(torch.uint8) for s in samples], out=masks)
    skip = {"image", "mask", "mask_onehot", *int_keys}
    rest = default_collate([{k: v for k, v in s.items() if k not in skip} for s in samples])
    return {"image": images, "mask": masks, **dict(zip(int_keys, ints, strict=True)), **rest}
