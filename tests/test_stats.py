"""Per-patient tables and the paired patient bootstrap (lcgan_lightning/stats.py)."""

import math
import time

import numpy as np
import pytest

from lcgan_lightning.metrics import compute_metrics
from lcgan_lightning.stats import (
    PatientTable,
    bootstrap_replicates,
    load_patient_table,
    mean_std,
    paired_bootstrap,
    patient_table,
    table_metric,
    verdict,
)

ALL_METRICS = ("dsc", "binary_dsc", "precision", "recall", "dsc_IPH", "dsc_IVH", "dsc_SAH")


def random_run(seed: int, n: int = 24, size: int = 16, n_patients: int = 6, pred_seed=None):
    """Blob truths and noisy predictions with a patient id per image.

    ``seed`` fixes the test set (truth, patients); ``pred_seed`` (default ``seed``) the noise.
    """
    rng = np.random.default_rng(seed)
    true = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        for _ in range(rng.integers(1, 3)):
            y, x = rng.integers(0, size - 4, 2)
            true[i, y : y + rng.integers(2, 5), x : x + rng.integers(2, 5)] = rng.integers(1, 6)
    patients = np.array([f"P{rng.integers(0, n_patients):02d}" for _ in range(n)])
    rng = np.random.default_rng(seed if pred_seed is None else pred_seed)
    flip = rng.random(true.shape) < 0.1
    pred = np.where(flip, rng.integers(0, 6, true.shape), true).astype(np.uint8)
    return pred, true, patients


def dsc_table(values: np.ndarray, names: list[str] | None = None) -> PatientTable:
    """A table with one image per patient whose DSC is the given value (other sums trivial)."""
    p = len(values)
    ones = np.ones(p, np.int64)
    return PatientTable(
        patients=np.array(names or [f"P{i:02d}" for i in range(p)]),
        n_images=ones,
        dsc_sum=np.asarray(values, float),
        binary_dsc_sum=np.asarray(values, float),
        class_sum=np.zeros((p, 5)),
        class_n=np.zeros((p, 5), np.int64),
        tp=ones,
        fp=0 * ones,
        fn=0 * ones,
        class_names=("IPH", "IVH", "SAH", "EDH", "SDH"),
    )


def test_patient_table_by_hand():
    t = np.zeros((3, 4, 4), np.uint8)
    p = np.zeros((3, 4, 4), np.uint8)
    t[0, 0:2, 0:2] = 1  # patient b: IPH found exactly
    p[0, 0:2, 0:2] = 1
    t[1, 0, 0:2] = 2  # patient a: IVH 2 px, predicted 1 px -> Dice 2/3, TP
    p[1, 0, 0] = 2
    t[2, 3, 3] = 1  # patient b: IPH missed, IVH false alarm of 2 px -> FN, FP (>= 0.78 px)
    p[2, 0, 0:2] = 2
    table = patient_table(p, t, ["b", "a", "b"])
    assert table.patients.tolist() == ["a", "b"]
    assert table.n_images.tolist() == [1, 2]
    assert table.dsc_sum == pytest.approx([2 / 3, 1.0 + 0.0])
    assert table.binary_dsc_sum == pytest.approx([2 / 3, 1.0 + 0.0])
    assert table.class_n[:, :2].tolist() == [[0, 1], [2, 0]]  # IVH only predicted in b: not counted
    np.testing.assert_allclose(table.class_sum[:, :2], [[0, 2 / 3], [1.0, 0]])
    assert (table.tp.tolist(), table.fp.tolist(), table.fn.tolist()) == ([1, 1], [0, 1], [0, 1])
    assert table_metric(table, "dsc_IPH") == pytest.approx(0.5)
    assert table_metric(table, "dsc_IVH", [0, 0]) == pytest.approx(2 / 3)
    assert math.isnan(table_metric(table, "dsc_IVH", [1]))
    with pytest.raises(ValueError, match="patient ids are empty for 1"):
        patient_table(p, t, ["b", "", "b"])
    with pytest.raises(ValueError, match="one id per image"):
        patient_table(p, t, ["a", "b"])
    with pytest.raises(ValueError, match="unknown metric 'dsc_XYZ'"):
        table_metric(table, "dsc_XYZ")


def test_table_metric_equals_compute_metrics():
    pred, true, patients = random_run(0)
    table = patient_table(pred, true, patients)
    whole = compute_metrics(pred, true)
    expected = {
        "dsc": whole["dsc"],
        "binary_dsc": whole["binary_dsc"],
        "precision": whole["precision"],
        "recall": whole["recall"],
        **{f"dsc_{c}": v for c, v in whole["per_class_dsc_present"].items()},
    }
    for metric, value in expected.items():
        assert table_metric(table, metric) == pytest.approx(value, abs=1e-12, nan_ok=True), metric
    # a resample with repeated patients equals the metric of the images of the drawn patients
    idx = np.array([0, 0, 3, 5, 5, 5])
    rows = np.concatenate([np.flatnonzero(patients == table.patients[i]) for i in idx])
    again = compute_metrics(pred[rows], true[rows])
    assert table_metric(table, "dsc", idx) == pytest.approx(again["dsc"], abs=1e-12)
    assert table_metric(table, "recall", idx) == pytest.approx(again["recall"], abs=1e-12)
    assert table_metric(table, "dsc_IPH", idx) == pytest.approx(
        again["per_class_dsc_present"]["IPH"], abs=1e-12, nan_ok=True
    )


def test_identical_variant_and_original_is_no_change():
    tables = [patient_table(*random_run(1, pred_seed=s)) for s in (1, 2, 3)]
    for metric in ("dsc", "precision", "dsc_IPH"):
        out = paired_bootstrap(tables, tables, metric, n_boot=300)
        assert out["diff"] == 0.0
        assert out["ci"] == [0.0, 0.0]
        assert out["verdict"] == "no detectable change"
        assert (out["n_repeats"], out["n_boot"]) == (3, 300)
        assert out["n_patients"] == len(tables[0].patients)


def test_clear_improvement_is_better_and_the_reverse_is_worse():
    originals, variants = [], []
    for s in (4, 5):
        pred, true, patients = random_run(4, n_patients=8, pred_seed=s)
        rng = np.random.default_rng(s)
        # original: half of the lesion pixels erased; variant: a tenth erased
        worse = np.where(rng.random(true.shape) < 0.5, 0, true).astype(np.uint8)
        good = np.where(rng.random(true.shape) < 0.1, 0, true).astype(np.uint8)
        originals.append(patient_table(worse, true, patients))
        variants.append(patient_table(good, true, patients))
    assert all(
        (v.dsc_sum > o.dsc_sum).all() for v, o in zip(variants, originals, strict=True)
    )  # better on every patient
    out = paired_bootstrap(variants, originals, "dsc", n_boot=500)
    assert out["verdict"] == "better"
    assert 0 < out["ci"][0] <= out["diff"] <= out["ci"][1]
    back = paired_bootstrap(originals, variants, "dsc", n_boot=500)
    assert back["verdict"] == "worse"
    assert back["diff"] == pytest.approx(-out["diff"])
    assert back["ci"][1] < 0


def test_noisy_small_effect_has_ci_around_zero():
    rng = np.random.default_rng(6)
    base = rng.uniform(0.4, 0.8, 40)
    originals = [dsc_table(base + rng.normal(0, 0.02, 40)) for _ in range(3)]
    variants = [dsc_table(o.dsc_sum + 0.005 + rng.normal(0, 0.1, 40)) for o in originals]
    out = paired_bootstrap(variants, originals, "dsc", n_boot=2000, seed=1)
    lo, hi = out["ci"]
    assert lo < 0 < hi
    assert out["verdict"] == "no detectable change"
    assert abs(out["diff"]) < 0.05
    assert hi - lo > 0.02  # noise of 0.1 per patient over 40 patients: SE ~0.016 per repeat


def test_vectorised_replicates_match_a_plain_loop():
    runs = [random_run(7, n_patients=5, pred_seed=s) for s in (7, 8, 9)]
    originals = [patient_table(p, t, pt) for p, t, pt in runs]
    variants = [patient_table(np.roll(p, 1, axis=2), t, pt) for p, t, pt in runs]
    n_boot, n_pat, n_rep = 40, len(originals[0].patients), 3
    for metric in ("dsc", "precision", "dsc_IPH"):
        got = bootstrap_replicates(variants, originals, metric, n_boot=n_boot, seed=3)
        rng = np.random.default_rng(3)
        rows = rng.integers(0, n_pat, size=(n_boot, n_pat))
        reps = rng.integers(0, n_rep, size=(n_boot, n_rep))
        want = [
            np.mean(
                [
                    table_metric(variants[r], metric, rows[b])
                    - table_metric(originals[r], metric, rows[b])
                    for r in reps[b]
                ]
            )
            for b in range(n_boot)
        ]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_mismatched_patients_are_named():
    a = dsc_table(np.full(4, 0.5), ["P01", "P02", "P03", "P04"])
    b = dsc_table(np.full(4, 0.5), ["P01", "P02", "P03", "P09"])
    with pytest.raises(ValueError, match=r"only in variant\[1\]: \['P09'\].*\['P04'\]"):
        paired_bootstrap([a, b], [a, a], "dsc")
    c = dsc_table(np.full(4, 0.5))
    c = PatientTable(**{**c.__dict__, "patients": a.patients, "n_images": np.array([1, 2, 1, 1])})
    with pytest.raises(ValueError, match=r"other test images or truth.*\['P02'\]"):
        paired_bootstrap([c], [a], "dsc")
    with pytest.raises(ValueError, match="same number"):
        paired_bootstrap([a], [a, a], "dsc")
    with pytest.raises(ValueError, match="same number"):
        paired_bootstrap([], [], "dsc")


def test_seed_determinism():
    rng = np.random.default_rng(10)
    originals = [dsc_table(rng.uniform(0.3, 0.9, 20)) for _ in range(2)]
    variants = [dsc_table(o.dsc_sum + rng.normal(0.02, 0.05, 20)) for o in originals]
    first = paired_bootstrap(variants, originals, "dsc", n_boot=500, seed=5)
    assert paired_bootstrap(variants, originals, "dsc", n_boot=500, seed=5) == first
    other = paired_bootstrap(variants, originals, "dsc", n_boot=500, seed=6)
    assert other["ci"] != first["ci"]
    assert other["diff"] == first["diff"]  # the point estimate does not depend on the seed


def test_rare_class_replicates_are_dropped_and_absent_class_is_not_estimable():
    pred, true, patients = random_run(11, n_patients=5)
    true[true == 4] = 1  # no EDH anywhere in the truth
    pred[pred == 4] = 1
    others = (patients != patients[0])[:, None, None]
    true[others & (true == 2)] = 3  # IVH only in the first image's patient
    true[0, 0, 0] = 2
    table = patient_table(pred, true, patients)
    variant = patient_table(np.roll(pred, 1, axis=1), true, patients)
    out = paired_bootstrap([variant], [table], "dsc_IVH", n_boot=1000)
    # P(patient never drawn in 5 draws) = (4/5)^5 ~ 0.33
    assert 200 < out["n_dropped"] < 460
    assert f"{out['n_dropped']} replicates" in out["method"]
    assert not math.isnan(out["ci"][0])
    none = paired_bootstrap([variant], [table], "dsc_EDH", n_boot=100)
    assert math.isnan(none["diff"]) and none["n_dropped"] == 100
    assert none["verdict"] == "not estimable"


def test_speed_2000_replicates_40_patients_3_repeats():
    rng = np.random.default_rng(12)
    originals = [dsc_table(rng.uniform(0.3, 0.9, 40)) for _ in range(3)]
    variants = [dsc_table(rng.uniform(0.3, 0.9, 40)) for _ in range(3)]
    paired_bootstrap(variants, originals, "precision", n_boot=10)  # warm-up
    start = time.perf_counter()
    paired_bootstrap(variants, originals, "dsc", n_boot=2000)
    assert time.perf_counter() - start < 0.5


def test_verdict_and_mean_std():
    assert verdict(0.01, 0.2) == "better"
    assert verdict(-0.2, -0.01) == "worse"
    assert verdict(-0.1, 0.1) == "no detectable change"
    assert verdict(0.0, 0.0) == "no detectable change"
    assert verdict(float("nan"), float("nan")) == "not estimable"
    assert mean_std([1.0, None, 3.0]) == (2.0, pytest.approx(math.sqrt(2)))
    assert mean_std([0.7]) == (0.7, 0.0)
    assert mean_std([None, float("nan"), 2.0, 4.0]) == (3.0, pytest.approx(math.sqrt(2)))
    mean, std = mean_std([None])
    assert math.isnan(mean) and math.isnan(std)


def test_load_patient_table(tmp_path):
    pred, true, patients = random_run(13)
    np.savez_compressed(tmp_path / "predictions.npz", pred=pred, true=true, patient=patients)
    table = load_patient_table(tmp_path / "predictions.npz")
    assert table_metric(table, "dsc") == pytest.approx(compute_metrics(pred, true)["dsc"])
    np.savez_compressed(tmp_path / "old.npz", pred=pred, true=true)
    with pytest.raises(ValueError, match=r"missing arrays \['patient'\]"):
        load_patient_table(tmp_path / "old.npz")
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        load_patient_table(tmp_path / "nope.npz")


def test_repeats_with_their_own_test_patients_resample_within_each_repeat():
    """split_per_repeat: repeat r's variant and original share repeat r's patients only."""
    rng = np.random.default_rng(11)
    o1 = dsc_table(rng.uniform(0.3, 0.7, 10), [f"A{i}" for i in range(10)])
    o2 = dsc_table(rng.uniform(0.3, 0.7, 14), [f"B{i}" for i in range(14)])
    v1 = dsc_table(o1.dsc_sum + rng.uniform(0.05, 0.15, 10), list(o1.patients))
    v2 = dsc_table(o2.dsc_sum + rng.uniform(0.15, 0.25, 14), list(o2.patients))
    out = paired_bootstrap([v1, v2], [o1, o2], "dsc", n_boot=400, seed=2)
    want = np.mean([(v1.dsc_sum - o1.dsc_sum).mean(), (v2.dsc_sum - o2.dsc_sum).mean()])
    assert out["diff"] == pytest.approx(want)
    assert 0.05 <= out["ci"][0] < out["diff"] < out["ci"][1] <= 0.25 and out["verdict"] == "better"
    assert out["n_patients"] == 24 and "within each repeat" in out["method"]

    got = bootstrap_replicates([v1, v2], [o1, o2], "dsc", n_boot=30, seed=3)
    rng = np.random.default_rng(3)
    rows = [rng.integers(0, 10, size=(30, 10)), rng.integers(0, 14, size=(30, 14))]
    reps = rng.integers(0, 2, size=(30, 2))
    pairs = [(v1, o1), (v2, o2)]
    want = [np.mean([table_metric(pairs[r][0], "dsc", rows[r][b]) - table_metric(pairs[r][1], "dsc", rows[r][b])
                     for r in reps[b]]) for b in range(30)]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)

    with pytest.raises(ValueError, match=r"variant\[1\] covers other test patients than original\[1\]"):
        paired_bootstrap([v1, v1], [o1, o2], "dsc")
