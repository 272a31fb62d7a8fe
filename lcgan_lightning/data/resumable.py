"""A training DataLoader that a checkpoint can resume at any batch, mid-epoch included.

Lightning saves a loader's `state_dict()` in every checkpoint and calls `load_state_dict()` before
iterating again on resume. The state here is the epoch's shuffle seed, the batches the training loop
has consumed and the global RNG states (torch, NumPy, Python, CUDA) at the checkpoint; the resumed
epoch replays the same order from the next batch and the step draws the same dropout masks.

The order is `RandomSampler`'s (one int64 drawn from torch's global RNG per epoch, then `randperm`),
so a run gives the numbers it gave with `DataLoader(shuffle=True)`. Per-sample randomness (online
augmentation) is seeded from (epoch shuffle seed, position), not from a worker's RNG, so it does not
depend on `num_workers`, on prefetching or on where a run was resumed.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sized
from typing import Any, cast

import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Sampler


def rng_state() -> dict[str, Any]:
    """The global RNG states as tensors and plain data (checkpoints load with weights_only=True)."""
    # the legacy tuple form (get_state's default; numpy's stub also admits the dict form)
    kind, keys, pos, has_gauss, gauss = cast(tuple[str, np.ndarray, int, int, float], np.random.get_state())
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` returned."""
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def sample_seed(epoch_seed: int, position: int) -> int:
    """Seed of the sample at `position` of an epoch whose order came from `epoch_seed`."""
    return int(np.random.SeedSequence([epoch_seed % 2**63, position]).generate_state(1)[0])


class ResumableSampler(Sampler):
    """`RandomSampler(range(n), num_samples)` (without replacement) that can start mid-epoch.

    `with_seeds=True` yields (index, sample seed) pairs for `SeededSamples`.
    """

    def __init__(self, n: int, num_samples: int | None = None, with_seeds: bool = False) -> None:
        self.n = int(n)
        self.num_samples = self.n if num_samples is None else int(num_samples)
        self.with_seeds = bool(with_seeds)
        self.epoch = 0
        self.seed: int | None = None  # shuffle seed of the current epoch
        self._resume: dict[str, Any] | None = None

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:  # Lightning calls it at every epoch start
        self.epoch = int(epoch)

    def order(self, seed: int) -> list[int]:
        """The epoch's indices for shuffle seed `seed` (exactly RandomSampler's)."""
        g = torch.Generator()
        g.manual_seed(seed)
        out: list[int] = []
        for _ in range(self.num_samples // self.n):
            out += torch.randperm(self.n, generator=g).tolist()
        return out + torch.randperm(self.n, generator=g).tolist()[: self.num_samples % self.n]

    def __iter__(self) -> Iterator[Any]:
        resume, self._resume = self._resume, None
        if resume is not None and "rng" in resume:
            set_rng_state(resume["rng"])
        if resume is not None and resume.get("seed") is not None:
            seed, start = int(resume["seed"]), int(resume["start"])
        else:  # RandomSampler's draw
            seed, start = int(torch.empty((), dtype=torch.int64).random_().item()), 0
        self.seed = seed
        order = self.order(seed)
        for pos in range(start, len(order)):
            yield (order[pos], sample_seed(seed, pos)) if self.with_seeds else order[pos]


def _seedable(dataset: Dataset) -> list[Any]:
    if isinstance(dataset, ConcatDataset):
        return [t for d in dataset.datasets for t in _seedable(d)]
    transform = getattr(dataset, "transform", None)
    return [transform] if hasattr(transform, "seed_next") else []


class SeededSamples(Dataset):
    """Reads `dataset[index]` for (index, seed) keys after seeding its transforms with `seed`."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self.transforms = _seedable(dataset)

    def __len__(self) -> int:
        return len(cast(Sized, self.dataset))

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        for t in self.transforms:
            t.seed_next(seed)
        return self.dataset[index]


class ResumableLoader(DataLoader):
    """DataLoader over a `ResumableSampler` with Lightning's `state_dict`/`load_state_dict` interface.

    `progress()` -> (batches the training loop has consumed this epoch, batches per epoch) or None;
    the datamodule reads them from its trainer. Without them a state marks the start of an epoch.
    """

    def __init__(self, *args: Any, progress: Callable[[], tuple[int, int] | None] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.progress = progress

    @property
    def exact_resume(self) -> bool:
        """Whether a mid-epoch checkpoint resumes exactly (False once a sampler wrapper, e.g. DDP's, replaced ours)."""
        return isinstance(self.sampler, ResumableSampler)

    def state_dict(self) -> dict[str, Any]:
        if not self.exact_resume:
            return {}
        sampler = cast(ResumableSampler, self.sampler)  # exact_resume
        done_total = self.progress() if self.progress is not None else None
        done, total = done_total if done_total is not None else (0, len(self))
        state: dict[str, Any] = {"epoch": sampler.epoch, "rng": rng_state()}
        if 0 < done < total and sampler.seed is not None:  # mid-epoch: where to go on
            state.update(seed=sampler.seed, batches=int(done))
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state or not self.exact_resume:
            return
        sampler = cast(ResumableSampler, self.sampler)  # exact_resume
        sampler.set_epoch(state["epoch"])
        mid_epoch = state.get("seed") is not None
        persistent = self.num_workers > 0 and self.persistent_workers
        if mid_epoch:
            sampler._resume = {"rng": state["rng"], "seed": state["seed"], "start": state["batches"] * self.batch_size}
        elif persistent:
            # an uninterrupted run reuses its iterator at an epoch start: no base-seed draw before the shuffle draw
            sampler._resume = {"rng": state["rng"]}
        else:
            # an uninterrupted run makes a new iterator (one base-seed draw), then the shuffle draw
            set_rng_state(state["rng"])
