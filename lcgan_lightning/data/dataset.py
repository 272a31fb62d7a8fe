"""torch Dataset over a SliceSet, yielding the sample dict of the shared interface."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from lcgan_lightning.constants import NUM_CLASSES
from lcgan_lightning.data.slices import SliceSet


class SliceDataset(Dataset):
    """torch Dataset over a SliceSet yielding the sample dict of the shared interface.

    `transform(image float32 [H,W] in [-1,1], mask uint8 [H,W]) -> (image, mask)` is applied first
    (e.g. online augmentation). `onehot=False` ("lean" samples: image float16, mask uint8, no
    mask_onehot) is for loaders that batch with `collate_slices`; the models build the float32 image,
    int64 mask and one-hot on their device.
    """

    def __init__(self, slices: SliceSet, transform: Callable[[np.ndarray, np.ndarray], tuple] | None = None,
                 onehot: bool = True):
        self.slices = slices
        self.transform = transform
        self.onehot = onehot

    def __len__(self) -> int:
        return len(self.slices)

    def __getitem__(self, i: int) -> dict[str, Any]:
        s = self.slices
        image = np.array(s.images[i])  # copy out of the (read-only) memmap
        mask = np.array(s.masks[i], dtype=np.uint8)
        if self.transform is not None:
            image, mask = self.transform(image.astype(np.float32), mask)
            image, mask = np.ascontiguousarray(image), np.ascontiguousarray(mask, dtype=np.uint8)
        sample = {"patient": str(s.patients[i]), "volume": str(s.volumes[i]), "slice": int(s.slice_index[i])}
        if not self.onehot:
            return {"image": torch.from_numpy(image)[None], "mask": torch.from_numpy(mask), **sample}
        return {
            "image": torch.from_numpy(image).to(torch.float32)[None],
            "mask": torch.from_numpy(mask).to(torch.int64),
            "mask_onehot": torch.from_numpy(one_hot(mask)),
            **sample,
        }


_CLASS_IDS = np.arange(NUM_CLASSES, dtype=np.uint8)


def one_hot(masks: np.ndarray) -> np.ndarray:
    """uint8 class ids [..., H, W] -> float32 one-hot [..., NUM_CLASSES, H, W].

    numpy's compare is several times faster here than torch's broadcast compare on CPU.
    """
    masks = np.asarray(masks, dtype=np.uint8)
    return (masks[..., None, :, :] == _CLASS_IDS.reshape(-1, 1, 1)).astype(np.float32)
