"""Patient-level train/val/test split and nested training subsets, deterministic per seed.

Rule (also in docs/data.md):
1. Sizes: n_test = max(1, round(test_ratio * n)), n_val = max(1, round(val_ratio * n)) (a ratio of 0
   gives 0); train gets the rest and must keep at least one patient. round = half up.
2. Rare classes first: for each lesion class, from the one carried by the fewest patients up, and for
   train, then test, then val: if that part has no patient carrying the class yet and still has room,
   one unassigned carrier (seeded random choice) is put there. So a class with one carrier is trained
   on, with two it is also tested, and with three or more (and room) it is in train, val and test.
3. The other patients are shuffled (seeded) and fill test, then val, up to their sizes; the rest is train.
4. Training order (`splits["train"]`): first a class cover, then the other training patients in seeded
   random order. The cover: for each lesion class present in train, rarest (fewest training carriers)
   first, not yet carried by a cover patient, one of its carriers chosen uniformly (seeded) is added;
   then any cover patient whose classes the others already carry is dropped. So the cover has
   L <= (number of classes) patients, rarest class first, and every prefix of >= L patients holds
   every lesion class of the training split.
5. Training subsets are prefixes of that order, so they are nested (2.5 % ⊂ 10 % ⊂ 25 % ⊂ 100 %):
   fraction f takes k(f) = min(n_train, max(1, round(f * n_train))) patients (key "0.025"), a
   count n takes n patients (key "n=53"; 1 <= n <= n_train, else an error). Every subset of >= 5
   patients holds every training class (always so with the 5 lesion classes; with more classes a
   >= 5-patient subset shorter than the cover is an error). data.fraction and data.subset_patients
   use the same prefix rule.
Consequence of 4: a small subset is not a uniform sample of the training patients. Its first L
patients are carriers of each class, so rare classes (and the slices of their carriers) are
over-represented compared with a random draw of the same size: in a 5-patient subset each class has
at least one carrier (>= 20 %) whatever its share of the training split. Subsets of fewer than L
patients hold only carriers of the rarest classes. Each cover patient is drawn uniformly among one
class's carriers; a patient with several classes is likelier to end up in the cover only because it
can be drawn for each of them (and then makes earlier picks redundant). The bias fades with size: at
the paper's 53 patients (2.5 % of 2,117) the cover is at most 5 of 53 patients, the rest random.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lcgan_lightning.data.validation import DataConfigError, DatasetError
from lcgan_lightning.layout import fraction_key

if TYPE_CHECKING:
    from lcgan_lightning.data.slices import SliceSet

log = logging.getLogger(__name__)
DEFAULT_SUBSETS = (0.025, 0.1, 0.25)
COVERAGE_MIN_PATIENTS = 5  # subsets with at least this many patients hold every training class


def round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def subset_size(fraction: float, n_train: int) -> int:
    """Number of training patients for `fraction` (see module docstring); DatasetError if none."""
    if not 0.0 < float(fraction) <= 1.0 or n_train < 1:
        raise DataConfigError(f"data.fraction={fraction}: fraction selects no patient "
                           f"(must be in (0, 1]; {n_train} training patients)")
    return min(n_train, max(1, round_half_up(float(fraction) * n_train)))


def count_size(patients: int, n_train: int, name: str = "data.subset_patients") -> int:
    """`patients` itself if it is an integer in [1, n_train]; else DatasetError naming both numbers."""
    if isinstance(patients, bool) or not isinstance(patients, numbers.Integral):
        raise DatasetError(f"{name}={patients!r}: a patient count must be an integer")
    if not 1 <= int(patients) <= n_train:
        raise DatasetError(f"{name}={patients}: requested {patients} training patient(s), "
                           f"{n_train} available (must be 1 to {n_train})")
    return int(patients)


def check_one_count(patients: object) -> None:
    """ConfigError if data.subset_patients holds a list: that key is one count for one training run."""
    if isinstance(patients, (list, tuple)):
        sizes = ",".join(str(k) for k in patients)
        raise DataConfigError(
            f"data.subset_patients={list(patients)}: one patient count for one training run; "
            f"a list of subset sizes is data.subset_counts=[{sizes}]",
            hint=f"set data.subset_counts=[{sizes}] (nested subsets in splits.json) and "
                 "data.subset_patients to one count or null")


def count_key(patients: int) -> str:
    """JSON key of a patient count: 53 -> "n=53" (never mistaken for a fraction key)."""
    return f"n={int(patients)}"


def subset_key(fraction: float | None = None, patients: int | None = None) -> str:
    """Key in `splits["subsets"]` of a subset given by exactly one of `fraction` or `patients`."""
    _one_of(fraction, patients)
    if patients is not None:
        return count_key(patients)
    assert fraction is not None  # _one_of: exactly one of them is given
    return fraction_key(fraction)


def subset_label(key: str) -> str:
    """Human label of a subset key: "0.025" -> "2.5 %", "n=53" -> "53 patients"."""
    if key.startswith("n="):
        return f"{int(key[2:])} patients"
    return f"{float(key) * 100:g} %"


def _one_of(fraction: float | None, patients: int | None) -> None:
    if (fraction is None) == (patients is None):
        raise DatasetError(f"training subset: give exactly one of fraction ({fraction}) or "
                           f"patients ({patients})")


def class_cover(patient_classes: Mapping[str, Iterable[int]], rng: np.random.Generator) -> list[str]:
    """Seeded patients carrying every class, rarest class first, none redundant (module rule 4)."""
    classes = {str(p): {int(c) for c in cs} for p, cs in patient_classes.items()}
    patients = sorted(classes)
    all_classes = sorted(set().union(*classes.values())) if classes else []
    carriers = {c: [p for p in patients if c in classes[p]] for c in all_classes}
    cover: list[str] = []
    covered: set[int] = set()
    for c in sorted(all_classes, key=lambda c: (len(carriers[c]), c)):
        if c not in covered:
            pick = carriers[c][int(rng.integers(len(carriers[c])))]
            cover.append(pick)
            covered |= classes[pick]
    # a later pick may carry an earlier pick's classes too: drop such redundant picks
    for p in list(cover):
        others = [q for q in cover if q != p]
        if set().union(*(classes[q] for q in others)) >= covered:
            cover = others
    return cover


def make_splits(
    patient_classes: Mapping[str, Iterable[int]] | SliceSet,
    val_ratio: float = 0.15,
    test_ratio: float = 0.15,
    subsets: Sequence[float] = DEFAULT_SUBSETS,
    seed: int = 0,
    subset_counts: Sequence[int] = (),
) -> dict:
    """Split patients (id -> lesion class ids they carry, or a SliceSet) into train/val/test + subsets.

    `splits["subsets"]` holds one prefix of `splits["train"]` per fraction in `subsets` (keys
    `fraction_key`) and per patient count in `subset_counts` (keys `count_key`), in that order.
    """
    if hasattr(patient_classes, "classes_per_patient"):
        patient_classes = patient_classes.classes_per_patient()
    patients = sorted(str(p) for p in patient_classes)
    n = len(patients)
    if not 0 <= val_ratio < 1 or not 0 <= test_ratio < 1 or val_ratio + test_ratio >= 1:
        raise DataConfigError(f"data.val_ratio={val_ratio}, data.test_ratio={test_ratio}: each must be in "
                           "[0, 1) and their sum < 1")
    n_test = max(1, round_half_up(test_ratio * n)) if test_ratio > 0 else 0
    n_val = max(1, round_half_up(val_ratio * n)) if val_ratio > 0 else 0
    if n - n_test - n_val < 1:
        raise DatasetError(f"{n} patient(s) cannot be split into train/val/test with val_ratio={val_ratio}, "
                           f"test_ratio={test_ratio}: training would get no patient")
    rng = np.random.default_rng([int(seed), 0])
    classes = {str(p): {int(c) for c in patient_classes[p]} for p in patient_classes}
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
    cover = class_cover({p: classes[p] for p in parts["train"]}, order_rng)
    others = sorted(set(parts["train"]) - set(cover))
    train = cover + [others[i] for i in order_rng.permutation(len(others))]
    sizes = {fraction_key(f): subset_size(f, len(train)) for f in sorted(float(f) for f in subsets)}
    counts = sorted(count_size(k, len(train), "data.subset_counts") for k in subset_counts)
    sizes |= {count_key(k): k for k in counts}
    n_classes = len({c for p in train for c in classes[p]})
    for key, k in sizes.items():
        if COVERAGE_MIN_PATIENTS <= k < len(cover):
            raise DatasetError(
                f"training subset {key} has {k} patients but the {n_classes} lesion classes of the "
                f"{len(train)} training patients need {len(cover)} (every subset of >= "
                f"{COVERAGE_MIN_PATIENTS} patients must hold every class)")
    return {
        "train": train,
        "val": sorted(parts["val"]),
        "test": sorted(parts["test"]),
        "subsets": {key: train[:k] for key, k in sizes.items()},
    }


def training_subset(splits: Mapping, fraction: float | None = None,
                    patients: int | None = None) -> tuple[str, list[str]]:
    """(key, patients) of the training subset of `fraction` or of `patients` patients (prefix rule)."""
    _one_of(fraction, patients)
    check_one_count(patients)
    train = list(splits["train"])
    if patients is not None:
        k = count_size(patients, len(train))
    else:
        assert fraction is not None  # _one_of: exactly one of them is given
        k = subset_size(fraction, len(train))
    return subset_key(fraction, patients), train[:k]


def training_patients(splits: Mapping, fraction: float | None = None,
                      patients: int | None = None) -> list[str]:
    """Training patients of `fraction` (1.0 = all) or the first `patients` of them (prefix rule)."""
    return training_subset(splits, fraction, patients)[1]


def reconcile_splits(existing: Mapping, computed: Mapping) -> dict:
    """The split a run dir keeps when its splits.json exists and a job computes `computed`.

    Train/val/test (and the training order) must be equal, else ValueError naming the part that
    differs. Subsets are prefixes of that one order, so a subset the file lacks (a new
    `data.subset_counts` entry) is added and every other is kept: one split per run dir, with the
    union of the subsets ever asked for. A subset present in both must hold the same patients.
    """
    differ = [part for part in ("train", "val", "test") if list(existing.get(part, [])) != list(computed[part])]
    if differ == ["train"] and set(existing["train"]) == set(computed["train"]):
        raise ValueError("its training order differs")
    if differ:
        raise ValueError(f"its {'/'.join(differ)} patients differ")
    subsets = dict(existing.get("subsets", {}))
    for key, patients in computed["subsets"].items():
        if key in subsets and list(subsets[key]) != list(patients):
            raise ValueError(f"its training subset {key} holds other patients")
        subsets.setdefault(key, list(patients))
    return {**existing, "subsets": subsets}


def write_run_split(path: str | Path, computed: Mapping, source: str, write: bool = True) -> None:
    """Keep one split per run dir in `path` (splits.json): write `computed` if there is none; else the
    file must hold the same split (`reconcile_splits`; the error names `source`, e.g. "data.seed=5 gives
    for /data/x") and gains the subsets it lacks. `write`: False on the non-zero ranks of a DDP job."""
    path = Path(path)
    keep = dict(computed)
    if path.is_file():
        try:
            existing = load_splits(path)
        except ValueError as exc:
            raise DatasetError(f"{path}: unreadable splits file ({exc})") from exc
        try:
            keep = reconcile_splits(existing, computed)
        except ValueError as exc:
            raise DatasetError(f"{path}: holds a different split than {source} ({exc}: seed, ratios or data "
                               "changed); use another run dir or delete the file") from exc
        if keep == existing:
            return
        log.info("%s: adding training subset(s) %s", path, sorted(set(keep["subsets"]) - set(existing["subsets"])))
    if write:
        save_splits(keep, path)


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
