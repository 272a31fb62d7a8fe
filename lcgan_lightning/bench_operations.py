"""Timings of single operations outside the LcGAN step (`python -m lcgan_lightning.bench --loader |
--mask-bank | --audit`): DataLoader throughput of the training batches, mask-bank generation, and the
audit of a synthetic set. Wall-clock numbers go to the bench JSON, not into test assertions.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

# the wall-time limits the test suite used to assert, kept beside the measurements for comparison
MASK_BANK_BUDGET_S = 20.0  # 1000 new masks at 256²
AUDIT_BUDGET_S = 60.0  # 1000 synthetic vs 800 real slices at 128²
VERDICTS_BUDGET_S = 0.5  # every metric's comparison, 40 test patients x 5 repeats per arm


def loader_throughput(image_size: int = 256, batch: int = 32, workers: int = 1, n: int = 1024,
                      repeats: int = 2) -> dict[str, Any]:
    """Slices/s through the training DataLoader (memory-mapped cache arrays, lean samples, shuffled,
    `collate_slices`, `workers` worker processes); the best of `repeats` passes."""
    import tempfile

    from torch.utils.data import DataLoader

    from lcgan_lightning.data.collate import collate_slices
    from lcgan_lightning.data.dataset import SliceDataset
    from lcgan_lightning.data.slices import SliceSet

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        masks = np.zeros((n, image_size, image_size), np.uint8)
        q = image_size // 4
        masks[:, q:2 * q, q:2 * q] = rng.integers(1, 6, (n, 1, 1))
        np.save(f"{tmp}/images.npy", rng.uniform(-1, 1, (n, image_size, image_size)).astype(np.float16))
        np.save(f"{tmp}/masks.npy", masks)
        slices = SliceSet(np.load(f"{tmp}/images.npy", mmap_mode="r"), np.load(f"{tmp}/masks.npy", mmap_mode="r"),
                          np.array(["p"] * n), np.array(["v"] * n), np.arange(n))
        best = 0.0
        for _ in range(repeats):
            loader = DataLoader(SliceDataset(slices, onehot=False), batch_size=batch, shuffle=True,
                                num_workers=workers, collate_fn=collate_slices, persistent_workers=workers > 0)
            next(iter(loader))  # start the workers
            start, seen = time.perf_counter(), 0
            for b in loader:
                seen += len(b["image"])
            rate = seen / (time.perf_counter() - start)
            best = max(best, rate)
            print(f"loader {image_size}² batch {batch} workers {workers}: {rate:8.0f} slices/s", flush=True)
    return {"image_size": image_size, "batch": batch, "workers": workers, "slices": n, "slices_per_s": best}


def mask_bank_timing(n_masks: int = 1000, image_size: int = 256, patients: int = 16,
                     num_slices: int = 24) -> dict[str, Any]:
    """Seconds for a MaskBank fitted on the phantom's lesion masks to generate `n_masks` new ones."""
    from lcgan_lightning.data.mask_bank import MaskBank
    from lcgan_lightning.data.phantom import lesion_masks

    train = lesion_masks(1, patients, image_size, num_slices)
    bank = MaskBank(train, seed=0)
    start = time.perf_counter()
    res = bank.generate(n_masks)
    elapsed = time.perf_counter() - start
    print(f"mask bank: {n_masks} new masks at {image_size}² from {len(train)} training masks in "
          f"{elapsed:.1f} s (budget {MASK_BANK_BUDGET_S:g} s; {res.attempts} candidates, rejected "
          f"{res.rejected})", flush=True)
    return {"masks": n_masks, "image_size": image_size, "training_masks": len(train), "s": elapsed,
            "budget_s": MASK_BANK_BUDGET_S, "complete": bool(res.complete), "attempts": int(res.attempts),
            "rejected": res.rejected}


def stand_in_features(seed: int = 0):
    """Deterministic random two-layer conv net, mean- and max-pooled: a stand-in judge encoder."""
    g = torch.Generator().manual_seed(seed)
    w1 = torch.randn(16, 1, 5, 5, generator=g) / 5.0
    w2 = torch.randn(32, 16, 3, 3, generator=g) / 12.0

    def features(x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(torch.nn.functional.conv2d(x, w1, stride=2))
        h = torch.relu(torch.nn.functional.conv2d(h, w2, stride=2))
        return torch.cat([h.mean((2, 3)), h.amax((2, 3))], dim=1)

    return features


class StandInGenerator:
    """Stand-in generator: a grey level per class, plus seeded noise of std ``noise``."""

    def __init__(self, image_size: int, noise: float) -> None:
        self.image_size = image_size
        self.noise = noise

    def generate(self, masks: torch.Tensor, seed: int, dropout: bool = True) -> torch.Tensor:
        base = masks.float().unsqueeze(1) / 5.0 * 1.6 - 0.8
        g = torch.Generator().manual_seed(int(seed) % 2**63)
        return (base + self.noise * torch.randn(base.shape, generator=g)).clamp(-1, 1)


def audit_inputs(n_synthetic: int = 1000, n_real: int = 800, image_size: int = 128) -> dict[str, Any]:
    """Seeded random audit inputs with a stand-in judge and generator (keyword arguments of audit_set)."""
    rng = np.random.default_rng(0)
    real = rng.uniform(-1, 1, (n_real, image_size, image_size)).astype(np.float32)
    ids = [f"p{i // 20}" for i in range(n_real)]
    syn = rng.uniform(-1, 1, (n_synthetic, image_size, image_size)).astype(np.float32)
    masks = rng.integers(0, 6, (n_synthetic, image_size, image_size), dtype=np.uint8)
    return {"synthetic": syn, "synthetic_masks": masks, "real": real, "real_patients": ids,
            "feature_fn": stand_in_features(),
            "predict_masks": lambda x: torch.zeros(len(x), image_size, image_size, dtype=torch.long),
            "generator": StandInGenerator(image_size, 0.1)}


def audit_timing(n_synthetic: int = 1000, n_real: int = 800, image_size: int = 128) -> dict[str, Any]:
    """Seconds for `audit_set` of `n_synthetic` synthetic vs `n_real` real slices (every part on)."""
    from lcgan_lightning.audit import audit_set

    inputs = audit_inputs(n_synthetic, n_real, image_size)
    start = time.perf_counter()
    audit_set(**inputs)
    elapsed = time.perf_counter() - start
    print(f"audit of {n_synthetic} synthetic vs {n_real} real at {image_size}²: {elapsed:.1f} s "
          f"(budget {AUDIT_BUDGET_S:g} s)", flush=True)
    return {"synthetic": n_synthetic, "real": n_real, "image_size": image_size, "s": elapsed,
            "budget_s": AUDIT_BUDGET_S}


def verdicts_timing(n_patients: int = 40, repeats: int = 5, images: int = 60, size: int = 32) -> dict[str, Any]:
    """Seconds for the paired comparisons of every metric (4 + 5 classes) of two arms of `repeats`
    runs tested on `images` slices of `n_patients` patients (random label maps)."""
    from lcgan_lightning.constants import LESION_CLASSES
    from lcgan_lightning.inference import paired_comparison
    from lcgan_lightning.stats import BASE_METRICS, patient_table

    rng = np.random.default_rng(0)
    true = rng.integers(0, 6, (images, size, size)).astype(np.uint8)
    patients = np.array([f"P{i % n_patients:02d}" for i in range(images)])

    def run() -> Any:
        noisy = np.where(rng.random(true.shape) < 0.1, rng.integers(0, 6, true.shape), true).astype(np.uint8)
        return patient_table(noisy, true, patients)

    variant, reference = [run() for _ in range(repeats)], [run() for _ in range(repeats)]
    metrics = [*BASE_METRICS, *(f"dsc_{c}" for c in LESION_CLASSES)]
    start = time.perf_counter()
    for metric in metrics:
        paired_comparison(variant, reference, metric)
    elapsed = time.perf_counter() - start
    print(f"verdicts: {len(metrics)} comparisons of {repeats} vs {repeats} runs on {n_patients} patients in "
          f"{elapsed * 1000:.0f} ms (budget {VERDICTS_BUDGET_S:g} s)", flush=True)
    return {"comparisons": len(metrics), "repeats": repeats, "patients": n_patients, "s": elapsed,
            "budget_s": VERDICTS_BUDGET_S}
