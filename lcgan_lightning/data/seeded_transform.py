"""The seeding every per-sample training augmentation shares (`data.augment_online`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


class SeededSampleTransform:
    """Picklable `SliceDataset` transform that draws fresh random levels for every sample.

    The random pipeline is built in the process that uses it. The training loader seeds each sample
    (`seed_next`, from its epoch's shuffle seed and position), so the levels depend neither on DataLoader
    workers nor on where a run was resumed; without a sample seed each process seeds its pipeline once
    from torch.initial_seed(). Subclasses say how to build (`_build`), reseed (`_reseed`) and apply
    (`_apply`) their pipeline.
    """

    def __init__(self) -> None:
        self._transform: Any = None
        self._pid_seed: int | None = None
        self._next_seed: int | None = None

    def seed_next(self, seed: int) -> None:
        """Seed the levels of the next call."""
        self._next_seed = int(seed) % 2**32

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        seed = torch.initial_seed() % 2**32
        if self._transform is None or (self._pid_seed != seed and self._next_seed is None):
            self._transform = self._build(seed)
            self._pid_seed = seed
        if self._next_seed is not None:
            self._reseed(self._next_seed)
            self._next_seed = None
        return self._apply(image, mask)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_transform": None, "_pid_seed": None, "_next_seed": None}

    def _build(self, seed: int) -> Any:
        raise NotImplementedError

    def _reseed(self, seed: int) -> None:
        raise NotImplementedError

    def _apply(self, image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError
