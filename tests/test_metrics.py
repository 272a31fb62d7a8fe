"""Metric values on hand-computed cases (definitions in lcgan_lightning/metrics.py)."""

import json
import math

import numpy as np
import pytest
import torch

from lcgan_lightning.metrics import (
    SegmentationMetrics,
    binary_dice,
    class_dice,
    compute_metrics,
    detection_counts,
    image_dsc,
    metrics_from_predictions,
    min_fp_area,
    precision_recall,
    to_json_safe,
    truth_classes,
    truth_present_dice,
    write_metrics_json,
)


def blank(n: int = 32) -> np.ndarray:
    return np.zeros((n, n), dtype=np.uint8)


def test_empty_masks():
    p, t = blank(), blank()
    assert np.isnan(class_dice(p, t)).all()
    assert image_dsc(p, t) == 1.0
    assert detection_counts(p, t) == (0, 0, 0)
    assert precision_recall(0, 0, 0) == (1.0, 1.0)


def test_zero_division_rules():
    assert precision_recall(0, 0, 3) == (0.0, 0.0)  # nothing predicted, lesions missed
    assert precision_recall(0, 2, 0) == (0.0, 0.0)  # only false alarms, nothing to find
    assert precision_recall(3, 1, 1) == (0.75, 0.75)


def test_single_pixel_lesion_found_and_missed():
    t = blank()
    t[5, 5] = 2
    assert image_dsc(t.copy(), t) == 1.0
    assert detection_counts(t.copy(), t) == (1, 0, 0)
    # missed: class 2 present in truth only -> Dice 0; one FN
    assert image_dsc(blank(), t) == 0.0
    assert detection_counts(blank(), t) == (0, 0, 1)
    # wrong class at the right place: DSC 0 (class-matched), detection still TP (class-agnostic)
    p = blank()
    p[5, 5] = 3
    assert image_dsc(p, t) == 0.0
    assert detection_counts(p, t) == (1, 0, 0)


def test_two_classes_in_one_image():
    t, p = blank(8), blank(8)
    t[0:2, 0:2] = 1  # IPH 4 px
    t[6, 6:8] = 3  # SAH 2 px
    p[0:2, 0] = 1  # IPH 2 px, all inside truth -> 2*2/(2+4) = 2/3
    p[6, 6:8] = 3
    p[7, 7] = 3  # SAH 3 px, 2 overlap -> 2*2/(3+2) = 0.8
    d = class_dice(p, t)
    assert d[0] == pytest.approx(2 / 3)
    assert d[2] == pytest.approx(0.8)
    assert np.isnan(d[[1, 3, 4]]).all()
    assert image_dsc(p, t) == pytest.approx((2 / 3 + 0.8) / 2)
    # a class predicted but absent in truth enters the image mean with Dice 0
    p[3, 4] = 5
    assert image_dsc(p, t) == pytest.approx((2 / 3 + 0.8 + 0.0) / 3)


def test_small_false_positive_below_threshold_is_ignored():
    assert min_fp_area(256, 256) == 200
    assert min_fp_area(64, 64) == 12.5
    assert min_fp_area(32, 32) == 3.125
    t = blank(32)
    t[4:8, 4:8] = 1  # 16 px
    p = t.copy()
    p[20, 20:23] = 1  # 3 px < 3.125: noise
    assert detection_counts(p, t) == (1, 0, 0)
    # DSC still sees those pixels: 2*16 / (19 + 16)
    assert image_dsc(p, t) == pytest.approx(32 / 35)
    p[21, 20] = 1  # now 4 px >= 3.125: a false positive
    assert detection_counts(p, t) == (1, 1, 0)
    # at 256² the same 4-px blob would be noise
    assert detection_counts(p, t, fp_area=200) == (1, 0, 0)


def test_poor_overlap_below_quarter_is_fn_not_fp():
    t = blank(32)
    t[0:4, 0:4] = 1  # 16 px
    p = blank(32)
    p[3, 2:12] = 1  # 10 px, 2 overlap -> Dice 4/26 = 0.154
    assert detection_counts(p, t) == (0, 0, 1)
    p = blank(32)
    p[3:7, 0:4] = 1  # 16 px, 4 overlap -> Dice 8/32 = 0.25 exactly -> TP
    assert detection_counts(p, t) == (1, 0, 0)


def test_components_are_eight_connected_and_fragments_are_merged():
    t = blank(16)
    t[0, 0] = 1
    t[1, 1] = 1  # diagonal neighbours: one true lesion
    p = blank(16)
    p[0, 0] = 1
    assert detection_counts(p, t) == (1, 0, 0)  # Dice 2*1/(2+1) = 0.67
    # two predicted fragments on one true lesion: union matched, neither is an FP
    t = blank(16)
    t[2:4, 2:10] = 1  # 16 px
    p = blank(16)
    p[2:4, 2:4] = 1
    p[2:4, 8:10] = 1  # 8 px in two components, Dice 2*8/(8+16) = 0.67
    assert detection_counts(p, t) == (1, 0, 0)


def test_set_metrics_per_class_and_dsc():
    a_t, a_p = blank(16), blank(16)
    a_t[0:2, 0:2] = 1
    a_p[0:2, 0:2] = 1  # IPH Dice 1
    b_t, b_p = blank(16), blank(16)
    b_t[0:2, 0:2] = 1  # 4 px
    b_p[0:2, 0] = 1  # 2 px -> Dice 2/3
    b_t[10, 10] = 2  # IVH missed -> 0
    m = compute_metrics(np.stack([a_p, b_p]), np.stack([a_t, b_t]))
    assert m["dsc"] == pytest.approx((1.0 + (2 / 3) / 2) / 2)
    assert m["per_class_dsc"]["IPH"] == pytest.approx((1 + 2 / 3) / 2)
    assert m["per_class_dsc"]["IVH"] == 0.0
    assert all(math.isnan(m["per_class_dsc"][k]) for k in ("SAH", "EDH", "SDH"))
    assert m["detection"] == {"tp": 2, "fp": 0, "fn": 1}
    assert m["precision"] == 1.0
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["n_images"] == 2


def test_metric_class_accumulates_over_batches_and_takes_logits():
    rng = np.random.default_rng(0)
    t = rng.integers(0, 6, size=(6, 16, 16)).astype(np.int64)
    p = np.where(rng.random((6, 16, 16)) < 0.7, t, rng.integers(0, 6, size=(6, 16, 16)))
    whole = compute_metrics(p, t)
    m = SegmentationMetrics()
    m.update(torch.as_tensor(p[:2]), torch.as_tensor(t[:2]))
    logits = torch.nn.functional.one_hot(torch.as_tensor(p[2:]), 6).permute(0, 3, 1, 2).float()
    m.update(logits, torch.as_tensor(t[2:]))
    got = m.compute()
    assert got["dsc"] == pytest.approx(whole["dsc"], abs=1e-12)
    assert got["per_class_dsc"] == pytest.approx(whole["per_class_dsc"], abs=1e-12)
    assert (got["precision"], got["recall"], got["detection"]) == (
        whole["precision"],
        whole["recall"],
        whole["detection"],
    )
    m.reset()
    assert m.compute()["n_images"] == 0


def test_predictions_file_roundtrip(tmp_path):
    t = np.zeros((2, 16, 16), np.uint8)
    t[:, 2:6, 2:6] = 4
    p = t.copy()
    p[1, 2:6, 2:4] = 0
    np.savez(tmp_path / "predictions.npz", pred=p, true=t)
    m = metrics_from_predictions(tmp_path / "predictions.npz")
    assert m["dsc"] == pytest.approx((1 + 16 / 24) / 2)
    write_metrics_json(m, tmp_path / "m.json")
    loaded = json.loads((tmp_path / "m.json").read_text())
    assert loaded["per_class_dsc"]["IPH"] is None
    assert loaded["per_class_dsc"]["EDH"] == pytest.approx(m["per_class_dsc"]["EDH"])
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        metrics_from_predictions(tmp_path / "nope.npz")
    np.savez(tmp_path / "bad.npz", pred=p)
    with pytest.raises(ValueError, match="missing arrays"):
        metrics_from_predictions(tmp_path / "bad.npz")


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="same shape"):
        image_dsc(blank(8), blank(16))


def four_images() -> tuple[np.ndarray, np.ndarray]:
    """Hand-made 4x4 cases for binary and truth-present DSC (values worked out in the test)."""
    t = np.zeros((4, 4, 4), np.uint8)
    p = np.zeros((4, 4, 4), np.uint8)
    # A: IPH 4 px truth, 3 px predicted inside; IVH 1 px truth, 2 px predicted (1 overlap)
    t[0, 0:2, 0:2] = 1
    t[0, 2, 3] = 2
    p[0, 0:2, 0:2] = 1
    p[0, 1, 1] = 0
    p[0, 2, 2:4] = 2
    # B: IPH 2 px truth, missed; SAH 1 px predicted elsewhere (false alarm of a class)
    t[1, 0, 0:2] = 1
    p[1, 3, 3] = 3
    # C: both empty.  D: truth empty, IVH 1 px predicted
    p[3, 2, 2] = 2
    return p, t


def test_binary_and_truth_present_dice_by_hand():
    p, t = four_images()
    # A: binary |P| = 3 + 2, |T| = 4 + 1, overlap 3 + 1 -> 8/10
    assert binary_dice(p[0], t[0]) == pytest.approx(0.8)
    assert binary_dice(p[1], t[1]) == 0.0
    assert binary_dice(p[2], t[2]) == 1.0
    assert binary_dice(p[3], t[3]) == 0.0
    # lesion type is ignored by the binary score
    assert binary_dice(np.where(t[0] > 0, 5, 0), t[0]) == 1.0
    assert truth_classes(t[0]).tolist() == [True, True, False, False, False]
    d = truth_present_dice(p[0], t[0])
    assert d[:2] == pytest.approx([6 / 7, 2 / 3])
    assert np.isnan(d[2:]).all()
    d = truth_present_dice(p[1], t[1])
    assert d[0] == 0.0
    assert np.isnan(d[1:]).all()  # SAH only predicted: left out (class_dice gives it 0)
    assert class_dice(p[1], t[1])[2] == 0.0
    assert np.isnan(truth_present_dice(p[3], t[3])).all()


def test_set_binary_and_truth_present_dsc():
    p, t = four_images()
    m = compute_metrics(p, t)
    assert m["binary_dsc"] == pytest.approx((0.8 + 0 + 1 + 0) / 4)
    present = m["per_class_dsc_present"]
    assert present["IPH"] == pytest.approx((6 / 7 + 0) / 2)
    assert present["IVH"] == pytest.approx(2 / 3)  # D's predicted-only IVH is left out
    assert all(math.isnan(present[k]) for k in ("SAH", "EDH", "SDH"))
    # the existing truth-or-prediction definition is unchanged: D's IVH and B's SAH count as 0
    assert m["per_class_dsc"]["IVH"] == pytest.approx((2 / 3 + 0) / 2)
    assert m["per_class_dsc"]["SAH"] == 0.0
    # batched accumulation gives the same sums
    metric = SegmentationMetrics()
    metric.update(torch.as_tensor(p[:1]), torch.as_tensor(t[:1]))
    metric.update(torch.as_tensor(p[1:]), torch.as_tensor(t[1:]))
    got = metric.compute()
    assert got["binary_dsc"] == pytest.approx(m["binary_dsc"], abs=1e-12)
    assert got["per_class_dsc_present"] == pytest.approx(present, abs=1e-12, nan_ok=True)
    loaded = json.loads(json.dumps(to_json_safe(m)))
    assert loaded["per_class_dsc_present"]["SAH"] is None
