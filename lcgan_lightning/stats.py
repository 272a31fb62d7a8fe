"""Per-patient tables of a segmenter's test run: what every set metric is made of, per patient.

Each segmenter's test run stores its predicted and true label maps with the patient of every slice
(``predictions.npz``). Slices of one patient are not independent, so the patient is the unit of
the test-set sample. For every run we sum, per test patient, what the set metrics are made of
(per-image DSC, binary lesion DSC, per-class Dice over images whose truth holds the class,
detection TP/FP/FN); any set metric of any multiset of patients is then a ratio of those sums, and
on all patients it equals the metric of the whole test set. The paired comparison of two groups of
runs built on these tables is :mod:`lcgan_lightning.inference`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lcgan_lightning.constants import CLASS_NAMES, NUM_CLASSES
from lcgan_lightning.metrics import (
    MIN_DSC_FOR_TP,
    MIN_FP_AREA_AT_256,
    binary_dice,
    class_dice,
    detection_counts,
    dsc_of_class_dice,
    min_fp_area,
    truth_classes,
)

BASE_METRICS: tuple[str, ...] = ("dsc", "binary_dsc", "precision", "recall")
VERDICTS: tuple[str, ...] = ("better", "no detectable change", "worse")
NOT_ESTIMABLE = "not estimable"


@dataclass(frozen=True)
class PatientTable:
    """Per-patient sums of one test run (row i belongs to ``patients[i]``, sorted).

    ``class_sum[i, k]`` / ``class_n[i, k]``: sum and count of Dice of lesion class k + 1 over
    patient i's images whose truth holds that class. ``tp``/``fp``/``fn``: detection counts.
    """

    patients: np.ndarray
    n_images: np.ndarray
    dsc_sum: np.ndarray
    binary_dsc_sum: np.ndarray
    class_sum: np.ndarray
    class_n: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    class_names: tuple[str, ...]

    @property
    def metrics(self) -> tuple[str, ...]:
        """Metric names :func:`table_metric` accepts for this table."""
        return BASE_METRICS + tuple(f"dsc_{c}" for c in self.class_names)


def _lesion_names(num_classes: int) -> tuple[str, ...]:
    return tuple(
        CLASS_NAMES[c] if c < len(CLASS_NAMES) else f"class{c}" for c in range(1, num_classes)
    )


def patient_table(
    pred: np.ndarray,
    true: np.ndarray,
    patients: Sequence[str] | np.ndarray,
    num_classes: int = NUM_CLASSES,
    min_dsc: float = MIN_DSC_FOR_TP,
    fp_area_at_256: float = MIN_FP_AREA_AT_256,
) -> PatientTable:
    """Per-patient metric sums from label maps [N, H, W] and the patient id of each image."""
    pred, true = np.asarray(pred), np.asarray(true)
    patients = np.asarray(patients).astype(str)
    if pred.shape != true.shape or pred.ndim != 3:
        raise ValueError(
            "pred and true must be label maps [N, H, W] of one shape, "
            f"got {pred.shape} and {true.shape}"
        )
    if patients.shape != (len(true),):
        raise ValueError(
            f"patients must hold one id per image ({len(true)}), got shape {patients.shape}"
        )
    if len(true) == 0:
        raise ValueError("patient_table needs at least one image, got 0")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    empty = int(np.sum(np.char.str_len(patients) == 0))
    if empty:
        raise ValueError(f"patient ids are empty for {empty} of {len(patients)} images")
    names, inverse = np.unique(patients, return_inverse=True)
    k = num_classes - 1
    _, height, width = true.shape  # [N, H, W] (checked above)
    area = min_fp_area(height, width, at_256=fp_area_at_256)
    dsc = np.empty(len(true))
    binary = np.empty(len(true))
    present_d = np.zeros((len(true), k))
    present_n = np.zeros((len(true), k), dtype=np.int64)
    counts = np.zeros((len(true), 3), dtype=np.int64)
    for i, (p, t) in enumerate(zip(pred, true, strict=True)):
        d = class_dice(p, t, num_classes)
        in_truth = truth_classes(t, num_classes)
        dsc[i] = dsc_of_class_dice(d)
        binary[i] = binary_dice(p, t)
        present_d[i] = np.where(in_truth, d, 0.0)
        present_n[i] = in_truth
        counts[i] = detection_counts(p, t, min_dsc, area)

    def per_patient(values: np.ndarray) -> np.ndarray:
        out = np.zeros((len(names),) + values.shape[1:], dtype=values.dtype)
        np.add.at(out, inverse, values)
        return out

    counts_p = per_patient(counts)
    return PatientTable(
        patients=names,
        n_images=np.bincount(inverse, minlength=len(names)).astype(np.int64),
        dsc_sum=per_patient(dsc),
        binary_dsc_sum=per_patient(binary),
        class_sum=per_patient(present_d),
        class_n=per_patient(present_n),
        tp=counts_p[:, 0],
        fp=counts_p[:, 1],
        fn=counts_p[:, 2],
        class_names=_lesion_names(num_classes),
    )


def load_patient_table(npz_path: str | Path, num_classes: int = NUM_CLASSES) -> PatientTable:
    """:func:`patient_table` of a test run's ``predictions.npz`` (arrays pred, true, patient)."""
    path = Path(npz_path)
    if not path.is_file():
        raise FileNotFoundError(f"predictions file not found: {path}")
    with np.load(path, allow_pickle=False) as z:
        missing = {"pred", "true", "patient"} - set(z.files)
        if missing:
            raise ValueError(f"{path}: missing arrays {sorted(missing)} (has {z.files})")
        return patient_table(z["pred"], z["true"], z["patient"], num_classes)


def _columns(table: PatientTable, metric: str) -> np.ndarray:
    """Per-patient sums [P, c] whose totals determine ``metric`` (see :func:`_from_sums`)."""
    cols: tuple[np.ndarray, ...]
    if metric == "dsc":
        cols = (table.dsc_sum, table.n_images)
    elif metric == "binary_dsc":
        cols = (table.binary_dsc_sum, table.n_images)
    elif metric in ("precision", "recall"):
        cols = (table.tp, table.fp, table.fn)
    elif metric.startswith("dsc_") and metric[4:] in table.class_names:
        k = table.class_names.index(metric[4:])
        cols = (table.class_sum[:, k], table.class_n[:, k])
    else:
        raise ValueError(f"unknown metric {metric!r}; choose from {list(table.metrics)}")
    return np.stack([np.asarray(c, dtype=np.float64) for c in cols], axis=1)


def _from_sums(sums: np.ndarray, metric: str) -> np.ndarray:
    """Metric value from summed columns [..., c]; vectorised over leading axes."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if metric in ("precision", "recall"):
            tp, fp, fn = sums[..., 0], sums[..., 1], sums[..., 2]
            # 0/0 rules of metrics.precision_recall
            if metric == "precision":
                return np.where(tp + fp > 0, tp / (tp + fp), np.where(fn == 0, 1.0, 0.0))
            return np.where(tp + fn > 0, tp / (tp + fn), np.where(fp == 0, 1.0, 0.0))
        num, den = sums[..., 0], sums[..., 1]
        return np.where(den > 0, num / den, np.nan)


def table_metric(
    table: PatientTable, metric: str, patient_idx: Sequence[int] | np.ndarray | None = None
) -> float:
    """Set-level ``metric`` of the patients ``patient_idx`` (rows, repeats allowed; None = all).

    ``metric`` is "dsc", "binary_dsc", "precision", "recall" or "dsc_<CLASS>" (Dice of that
    class over truth-present images, e.g. "dsc_IPH"; NaN when no chosen image holds the class).
    """
    cols = _columns(table, metric)
    if patient_idx is None:
        weights = np.ones(len(cols))
    else:
        idx = np.asarray(patient_idx, dtype=np.int64)
        if idx.ndim != 1 or idx.size == 0 or idx.min() < 0 or idx.max() >= len(cols):
            raise ValueError(
                f"patient_idx must be a non-empty 1-D array of rows in [0, {len(cols)}), got {idx}"
            )
        weights = np.bincount(idx, minlength=len(cols)).astype(np.float64)
    return float(_from_sums(weights @ cols, metric))


def _check_pair(name: str, t: PatientTable, ref_name: str, ref: PatientTable) -> None:
    if not np.array_equal(t.patients, ref.patients):
        only_here = sorted(set(t.patients.tolist()) - set(ref.patients.tolist()))
        only_ref = sorted(set(ref.patients.tolist()) - set(t.patients.tolist()))
        raise ValueError(
            f"{name} covers other test patients than {ref_name}: only in {name}: {only_here}; "
            f"only in {ref_name}: {only_ref}"
        )
    differ = ref.patients[(t.n_images != ref.n_images) | np.any(t.class_n != ref.class_n, axis=1)]
    if differ.size:
        raise ValueError(
            f"{name} has other test images or truth than {ref_name} for patients {differ.tolist()}"
        )


def shared_patients(original: Sequence[PatientTable]) -> bool:
    """True when every repeat was tested on the same patients (one split for all repeats)."""
    return all(np.array_equal(t.patients, original[0].patients) for t in original)


def check_pairing(
    variant: Sequence[PatientTable],
    original: Sequence[PatientTable],
    variant_names: Sequence[str] | None = None,
    original_names: Sequence[str] | None = None,
) -> None:
    """Variant repeat r and original repeat r must hold the same test patients and truth. When all
    repeats share one patient set, every run must match original[0]; otherwise each pair on its own.
    Errors name run r as ``variant_names[r]`` / ``original_names[r]`` (default "variant[r]", ...)."""
    if len(variant) != len(original) or not original:
        raise ValueError(
            "variant and original need the same number (>= 1) of repeats, "
            f"got {len(variant)} and {len(original)}"
        )
    v_names = list(variant_names or [f"variant[{r}]" for r in range(len(variant))])
    o_names = list(original_names or [f"original[{r}]" for r in range(len(original))])
    if shared_patients(original):
        for r, t in enumerate(original):
            _check_pair(o_names[r], t, o_names[0], original[0])
        for r, t in enumerate(variant):
            _check_pair(v_names[r], t, o_names[0], original[0])
        return
    for r, (v, o) in enumerate(zip(variant, original, strict=True)):
        _check_pair(v_names[r], v, o_names[r], o)


def verdict(lo: float, hi: float) -> str:
    """Verdict word: "better" if the interval lies above 0, "worse" if below, else "no detectable
    change".

    An undefined interval (NaN) gives "not estimable".
    """
    if math.isnan(lo) or math.isnan(hi):
        return NOT_ESTIMABLE
    if lo > 0:
        return "better"
    if hi < 0:
        return "worse"
    return "no detectable change"


def mean_std(values: Iterable[float | None]) -> tuple[float, float]:
    """(mean, sample std) of the values, None/NaN ignored; std 0.0 for one value, NaN for none."""
    vals = np.array([float(v) for v in values if v is not None and not math.isnan(float(v))])
    if vals.size == 0:
        return float("nan"), float("nan")
    return float(vals.mean()), float(vals.std(ddof=1)) if vals.size > 1 else 0.0
