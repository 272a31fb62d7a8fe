"""Patient-level train/val/test split and nested training subsets, deterministic per seed.

Rule (also in the README):
1. Sizes: n_test = max(1, round(test_ratio * n)), n_val = max(1, round(val_ratio * n)) (a ratio of 0
   gives 0); train gets the rest and must keep at least one patient. round = half up.
2. Rare classes first: for each lesion class, from the one carried by the fewest patients up, and for
   train, then test, then val: if that part has no patient carrying the class yet and still has room,
   one unassigned carrier (seeded random choice) is put there. So a class with one carrier is trained
   on, with two it is also tested, and with three or more (and room) it is in train, val and test.
3. The other patients are shuffled (seeded) and fill test, then val, up to their sizes; the rest is train.
4. Training subsets: the training patients in a seeded random order (that order is `splits["train"]`);
   the subset of fraction f is the first k(f) = min(n_train, max(1, round(f * n_train))) of them, so
   2.5 % ⊂ 10 % ⊂ 25 % ⊂ 100 % and each has at least one patient. Any other fraction (data.fraction)
   uses the same prefix rule.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lcgan_lightning.data.validation import DatasetError
from lcgan_lightning.layout import fraction_key

if TYPE_CHECKING:
    from lcgan_lightning.data.slices import SliceSet

DEFAULT_SUBSETS = (0.025, 0.1, 0.25)


def round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def subset_size(fraction: float, n_train: int) -> int:
    """Number of training patients for `fraction` (see module docstring); DatasetError if none."""
    if not 0.0 < float(fraction) <= 1.0 or n_train < 1:
        raise DatasetError(f"data.fraction={fraction}: fraction selects no patient "
                           f"(must be in (0, 1]; {n_train} training patients)")
    return min(n_train, max(1, round_half_up(float(fraction) * n_train)))


def make_splits(
    patient_classes: Mapping[str, Iterable[int]] | SliceSet,
    val_ratio: float = 0.15,
    test_ratio: float = 0.15,
    subsets: Sequence[float] = DEFAULT_SUBSETS,
    seed: int = 0,
) -> dict:
    """Split patients (id -> lesion class ids they carry, or a SliceSet) into train/val/test + subsets."""
    if hasattr(patient_classes, "classes_per_patient"):
        patient_classes = patient_classes.classes_per_patient()
    patients = sorted(str(p) for p in patient_classes)
    n = len(patients)
    if not 0 <= val_ratio < 1 or not 0 <= test_ratio < 1 or val_ratio + test_ratio >= 1:
        raise DatasetError(f"data.val_ratio={val_ratio}, data.test_ratio={test_ratio}: each must be in "
                           "[0, 1) and their sum < 1")
    n_test = max(1, round_half_up(test_ratio * n)) if test_ratio > 0 else 0
    n_val = max(1, round_half_up(val_ratio * n)) if val_ratio > 0 else 0
    if n - n_test - n_val < 1:
        raise DatasetError(f"{n} patient(s) cannot be split into train/val/test with val_ratio={val_ratio}, "
                           f"test_ratio={test_ratio}: training would get no patient")
    rng = np.random.default_rng([int(seed), 0])
    classes = {p: {int(c) for c in patient_classes[p]} for p in patients}
    capacity = {"test": n_test, "val": n_val, "train": n - n_test - n_val}
    parts: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    where: dict[str, str] = {}
    all_classes = sorted({c for cs in classes.values() for c in cs})
    carriers = {c: [p for p in patients if c in classes[p]] for c in all_classes}
    for c in sorted(all_classes, key=lambda c: (len(carriers[c]), c)):
        for part in ("train", "test", "val"):
            if any(c in classes[p] for p in parts[part]) or len(parts[part]) >= capacity[part]:
                continue
            free = [p for p in carriers[c] if p not in where]
            if not free:
                break
            pick = free[int(rng.integers(len(free)))]
            parts[part].append(pick)
            where[pick] = part
    rest = [p for p in patients if p not in where]
    rest = [rest[i] for i in rng.permutation(len(rest))]
    for part in ("test", "val", "train"):
        while len(parts[part]) < capacity[part] and rest:
            p = rest.pop(0)
            parts[part].append(p)
            where[p] = part
    order_rng = np.random.default_rng([int(seed), 1])
    train_sorted = sorted(parts["train"])
    train = [train_sorted[i] for i in order_rng.permutation(len(train_sorted))]
    sizes = [subset_size(f, len(train)) for f in sorted(subsets)]
    return {
        "train": train,
        "val": sorted(parts["val"]),
        "test": sorted(parts["test"]),
        "subsets": {fraction_key(f): train[:k] for f, k in zip(sorted(subsets), sizes, strict=True)},
    }


def training_patients(splits: Mapping, fraction: float) -> list[str]:
    """Training patients of `fraction` (1.0 = all): the prefix rule of the module docstring."""
    train = list(splits["train"])
    return train[: subset_size(fraction, len(train))]


def save_splits(splits: Mapping, path: str | Path) -> Path:
    """Write splits.json (creating the folder; atomic replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(splits, indent=2))
    os.replace(tmp, path)
    return path


def load_splits(path: str | Path) -> dict:
    """Read a splits.json."""
    return json.loads(Path(path).read_text())
