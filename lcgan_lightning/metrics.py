"""Segmentation metrics of the paper (§4.1, Tables 1–3): per-image DSC, per-class DSC, detection P/R.

Exact definitions (masks hold our class ids 0 background, 1 IPH, 2 IVH, 3 SAH, 4 EDH, 5 SDH):

DSC (paper eq. 2, "per image, background ignored, averaged over the evaluation set")
    For one image and one lesion class c, S_c = predicted pixels of class c, G_c = true pixels of
    class c, Dice_c = 2|S_c ∩ G_c| / (|S_c| + |G_c|). The image's DSC is the mean of Dice_c over
    the lesion classes present in the prediction OR the truth of that image; a class absent from
    both is left out of that image's mean. An image with no lesion pixel in either prediction or
    truth scores 1.0 (nothing to find, nothing found). The set's DSC is the plain mean of the
    image DSCs over all evaluated images. (The default evaluation sets hold lesion slices only,
    so the 1.0 case does not arise there.)

Per-class DSC (Table 3)
    For class c, the mean of Dice_c over the images where c is present in the truth or the
    prediction. A class present in no image of the set (neither truth nor prediction) has no
    value: NaN in memory, ``null`` in JSON.

Per-class DSC over truth-present images (``per_class_dsc_present``)
    For class c, the mean of Dice_c over the images whose TRUTH holds class c; images where c
    is only predicted (false alarms of that class) are left out, so the value answers "how well
    is class c segmented where it exists". NaN (``null``) when no truth image holds c.

Binary lesion DSC (``binary_dsc``)
    Per image, lesion = any class 1..5 against background: 2|P ∩ T| / (|P| + |T|) with P, T the
    predicted and true lesion pixels, 1.0 when both are empty; averaged over all images. Lesion
    type is ignored (an IPH predicted as SAH at the right place scores 1).

Detection precision / recall (Table 2), class-agnostic
    Per image, lesion = any class 1..5 (binary); connected components with 8-connectivity
    (``scipy.ndimage.label``) of the true lesion mask and of the predicted lesion mask.
    * Each TRUE component g is matched to the union P_g of all predicted components that
      overlap it. Dice(g, P_g) = 2|g ∩ P_g| / (|g| + |P_g|). g is a true positive (TP) when that
      Dice ≥ 0.25, else a false negative (FN) (no overlapping prediction → Dice 0 → FN).
    * A PREDICTED component that overlaps no true component is a false positive (FP) when its
      area is ≥ the noise threshold, and ignored when smaller. The threshold is 200 px at
      256×256 and scales with the image area: 200 · H·W / 256² (12.5 px at 64², 3.125 at 32²).
      A predicted component that overlaps a true component is never an FP (if its overlap is
      poor, the true component is the FN).
    * Counts are summed over all images of the set; precision = TP / (TP + FP),
      recall = TP / (TP + FN). 0/0: precision is 1.0 when TP + FP = 0 and FN = 0 (nothing
      predicted, nothing to find) and 0.0 when TP + FP = 0 but FN > 0; recall is 1.0 when
      TP + FN = 0 and FP = 0, else 0.0.
    Lesion type is not part of the detection criterion: two touching lesions of different
    classes form one component. Type errors are measured by DSC and per-class DSC.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from torchmetrics import Metric

from lcgan_lightning.constants import LESION_CLASSES, NUM_CLASSES

MIN_DSC_FOR_TP = 0.25
MIN_FP_AREA_AT_256 = 200.0
EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def _as_numpy(mask: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    return np.asarray(mask)


def _check_pair(pred: np.ndarray, true: np.ndarray, ndim: int) -> None:
    if pred.shape != true.shape or pred.ndim != ndim:
        raise ValueError(
            f"prediction and truth must both have {ndim} dims and the same shape, "
            f"got {pred.shape} and {true.shape}"
        )


def min_fp_area(height: int, width: int, at_256: float = MIN_FP_AREA_AT_256) -> float:
    """Noise threshold for unmatched predicted components: 200 px at 256², scaled by image area."""
    return at_256 * height * width / (256.0 * 256.0)


def class_dice(pred: np.ndarray, true: np.ndarray, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Dice of each lesion class 1..num_classes-1 on one image; NaN where absent from both."""
    pred, true = _as_numpy(pred), _as_numpy(true)
    _check_pair(pred, true, 2)
    out = np.full(num_classes - 1, np.nan, dtype=np.float64)
    for c in range(1, num_classes):
        s, g = pred == c, true == c
        total = int(s.sum()) + int(g.sum())
        if total:
            out[c - 1] = 2.0 * int(np.logical_and(s, g).sum()) / total
    return out


def dsc_of_class_dice(d: np.ndarray) -> float:
    """Per-image DSC from its class Dice values: mean over present classes, 1.0 if none is present."""
    return 1.0 if np.all(np.isnan(d)) else float(np.nanmean(d))


def image_dsc(pred: np.ndarray, true: np.ndarray, num_classes: int = NUM_CLASSES) -> float:
    """Per-image DSC: mean Dice over lesion classes present in prediction or truth (1.0 if none)."""
    return dsc_of_class_dice(class_dice(pred, true, num_classes))


def truth_classes(true: np.ndarray, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Boolean [num_classes - 1]: which lesion classes 1..num_classes-1 occur in the truth."""
    true = _as_numpy(true)
    return np.isin(np.arange(1, num_classes), np.unique(true))


def truth_present_dice(
    pred: np.ndarray, true: np.ndarray, num_classes: int = NUM_CLASSES
) -> np.ndarray:
    """Dice of each lesion class on one image; NaN where the class is absent from the truth."""
    d = class_dice(pred, true, num_classes)
    return np.where(truth_classes(true, num_classes), d, np.nan)


def binary_dice(pred: np.ndarray, true: np.ndarray) -> float:
    """Binary lesion DSC of one image (any class > 0 vs background); 1.0 when both are empty."""
    pred, true = _as_numpy(pred), _as_numpy(true)
    _check_pair(pred, true, 2)
    s, g = pred > 0, true > 0
    total = int(s.sum()) + int(g.sum())
    return 2.0 * int(np.logical_and(s, g).sum()) / total if total else 1.0


def detection_counts(
    pred: np.ndarray,
    true: np.ndarray,
    min_dsc: float = MIN_DSC_FOR_TP,
    fp_area: float | None = None,
) -> tuple[int, int, int]:
    """(TP, FP, FN) of lesion components in one image (see the module docstring for the rule)."""
    pred, true = _as_numpy(pred), _as_numpy(true)
    _check_pair(pred, true, 2)
    if fp_area is None:
        fp_area = min_fp_area(*true.shape)
    true_lab, n_true = ndimage.label(true > 0, structure=EIGHT_CONNECTED)
    pred_lab, n_pred = ndimage.label(pred > 0, structure=EIGHT_CONNECTED)
    tp = fn = fp = 0
    for j in range(1, n_true + 1):
        g = true_lab == j
        hit = np.unique(pred_lab[g])
        hit = hit[hit > 0]
        if hit.size == 0:
            fn += 1
            continue
        p = np.isin(pred_lab, hit)
        dice = 2.0 * int(np.logical_and(g, p).sum()) / (int(g.sum()) + int(p.sum()))
        if dice >= min_dsc:
            tp += 1
        else:
            fn += 1
    if n_pred:  # vectorised: a noisy prediction can have thousands of components
        touching = np.zeros(n_pred + 1, dtype=bool)
        touching[pred_lab[true_lab > 0]] = True
        areas = np.bincount(pred_lab.ravel(), minlength=n_pred + 1)
        fp = int(np.count_nonzero(~touching[1:] & (areas[1:] >= fp_area)))
    return tp, fp, fn


def precision_recall(tp: int, fp: int, fn: int) -> tuple[float, float]:
    """Precision and recall from summed counts, with the module's 0/0 rule."""
    precision = tp / (tp + fp) if tp + fp else (1.0 if fn == 0 else 0.0)
    recall = tp / (tp + fn) if tp + fn else (1.0 if fp == 0 else 0.0)
    return float(precision), float(recall)


def compute_metrics(
    preds: np.ndarray | torch.Tensor,
    trues: np.ndarray | torch.Tensor,
    num_classes: int = NUM_CLASSES,
    min_dsc: float = MIN_DSC_FOR_TP,
    fp_area_at_256: float = MIN_FP_AREA_AT_256,
) -> dict[str, Any]:
    """METRICS dict {"dsc", "precision", "recall", "per_class_dsc"} plus "n_images", "detection",
    "binary_dsc" and "per_class_dsc_present".

    ``preds`` and ``trues`` are label maps [N, H, W]. Per-class values are NaN for classes
    present nowhere (use :func:`to_json_safe` before writing JSON).
    """
    # the arrays are the whole set: no DDP sum over ranks (each rank may hold the same gathered set)
    m = SegmentationMetrics(num_classes, min_dsc, fp_area_at_256, sync_on_compute=False)
    m.update(torch.as_tensor(_as_numpy(preds)), torch.as_tensor(_as_numpy(trues)))
    return m.compute()


def to_json_safe(obj: Any) -> Any:
    """Replace NaN/inf floats by None (JSON null), recursively."""
    if isinstance(obj, dict):
        return {str(k): to_json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_json_safe(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def metrics_from_predictions(npz_path: str | Path, **kwargs: Any) -> dict[str, Any]:
    """Recompute METRICS from a ``predictions.npz`` written by the segmenter's test run."""
    path = Path(npz_path)
    if not path.is_file():
        raise FileNotFoundError(f"predictions file not found: {path}")
    with np.load(path, allow_pickle=False) as z:
        missing = {"pred", "true"} - set(z.files)
        if missing:
            raise ValueError(f"{path}: missing arrays {sorted(missing)} (has {z.files})")
        return compute_metrics(z["pred"], z["true"], **kwargs)


def write_metrics_json(metrics: dict[str, Any], path: str | Path) -> None:
    """Write metrics as strict JSON (NaN → null)."""
    Path(path).write_text(json.dumps(to_json_safe(metrics), indent=2) + "\n")


def _as_label_batch(preds: torch.Tensor, target: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Label maps [B, H, W] as numpy; logits [B, C, H, W] are arg-maxed, [H, W] gets a batch dim."""
    if preds.ndim == target.ndim + 1:
        preds = preds.argmax(dim=1)
    p, t = _as_numpy(preds), _as_numpy(target)
    if p.ndim == 2:
        p, t = p[None], t[None]
    _check_pair(p, t, 3)
    return p, t


class SegmentationMetrics(Metric):
    """DSC, per-class DSC and detection precision/recall of a set (definitions: module docstring).

    ``update(preds, target)`` takes predicted label maps [B, H, W] (or logits [B, C, H, W]) and
    true label maps [B, H, W]; ``compute()`` returns the METRICS dict
    {"dsc", "precision", "recall", "per_class_dsc": {"IPH", ..., "SDH"}} plus "n_images",
    "detection": {"tp", "fp", "fn"}, "binary_dsc" and "per_class_dsc_present": {"IPH", ...}.
    All states are sums, so DDP synchronisation is exact.
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = True
    # the states (add_state in __init__)
    dsc_sum: torch.Tensor
    n_images: torch.Tensor
    class_sum: torch.Tensor
    class_n: torch.Tensor
    counts: torch.Tensor
    binary_sum: torch.Tensor
    present_sum: torch.Tensor
    present_n: torch.Tensor

    def __init__(
        self,
        num_classes: int = NUM_CLASSES,
        min_dsc: float = MIN_DSC_FOR_TP,
        fp_area_at_256: float = MIN_FP_AREA_AT_256,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.min_dsc = min_dsc
        self.fp_area_at_256 = fp_area_at_256
        k = num_classes - 1
        self.add_state("dsc_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("n_images", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("class_sum", torch.zeros(k, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("class_n", torch.zeros(k, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("counts", torch.zeros(3, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("binary_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("present_sum", torch.zeros(k, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("present_n", torch.zeros(k, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        p, t = _as_label_batch(preds, target)
        _, height, width = t.shape  # [B, H, W] (_as_label_batch checks it)
        area = min_fp_area(height, width, at_256=self.fp_area_at_256)
        dsc_sum, class_sum = 0.0, np.zeros(self.num_classes - 1)
        class_n, counts = np.zeros(self.num_classes - 1, dtype=np.int64), np.zeros(3, np.int64)
        binary_sum, present_sum = 0.0, np.zeros(self.num_classes - 1)
        present_n = np.zeros(self.num_classes - 1, dtype=np.int64)
        for pi, ti in zip(p, t, strict=True):
            d = class_dice(pi, ti, self.num_classes)
            present = ~np.isnan(d)
            dsc_sum += dsc_of_class_dice(d)
            class_sum += np.where(present, d, 0.0)
            class_n += present
            counts += detection_counts(pi, ti, self.min_dsc, area)
            in_truth = truth_classes(ti, self.num_classes)
            present_sum += np.where(in_truth, d, 0.0)
            present_n += in_truth
            binary_sum += binary_dice(pi, ti)
        self.dsc_sum += dsc_sum
        self.n_images += len(p)
        self.class_sum += torch.as_tensor(class_sum, device=self.class_sum.device)
        self.class_n += torch.as_tensor(class_n, device=self.class_n.device)
        self.counts += torch.as_tensor(counts, device=self.counts.device)
        self.binary_sum += binary_sum
        self.present_sum += torch.as_tensor(present_sum, device=self.present_sum.device)
        self.present_n += torch.as_tensor(present_n, device=self.present_n.device)

    def compute(self) -> dict[str, Any]:
        n = int(self.n_images)
        class_n = self.class_n.cpu().numpy()
        class_sum = self.class_sum.cpu().numpy()
        per_class = [
            float(s / c) if c else float("nan") for s, c in zip(class_sum, class_n, strict=True)
        ]
        present = [
            float(s / c) if c else float("nan")
            for s, c in zip(
                self.present_sum.cpu().numpy(), self.present_n.cpu().numpy(), strict=True
            )
        ]
        tp, fp, fn = (int(v) for v in self.counts.cpu())
        precision, recall = precision_recall(tp, fp, fn)
        return {
            "dsc": float(self.dsc_sum) / n if n else float("nan"),
            "precision": precision,
            "recall": recall,
            "per_class_dsc": dict(zip(LESION_CLASSES, per_class, strict=False)),
            "n_images": n,
            "detection": {"tp": tp, "fp": fp, "fn": fn},
            "binary_dsc": float(self.binary_sum) / n if n else float("nan"),
            "per_class_dsc_present": dict(zip(LESION_CLASSES, present, strict=False)),
        }
