"""Per-patient tables (lcgan_lightning/stats.py) and the paired t comparison built on them
(lcgan_lightning/inference.py), with hand-computed values. Calibration: tests/test_inference.py."""

import math

import numpy as np
import pytest
from scipy import stats as st

from lcgan_lightning.inference import (
    adjust_family,
    anova_components,
    calibration_summary,
    detectable_effect,
    holm,
    paired_comparison,
    pseudo_values,
)
from lcgan_lightning.metrics import compute_metrics
from lcgan_lightning.stats import (
    PatientTable,
    load_patient_table,
    mean_std,
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


def test_pseudo_values_by_hand_and_their_mean_is_the_set_metric():
    t = dsc_table([0.75, 0.4, 2 / 3])
    t = PatientTable(**{**t.__dict__, "n_images": np.array([2, 1, 3]), "dsc_sum": np.array([1.5, 0.4, 2.0])})
    value, u = pseudo_values(t, "dsc")  # M = 3.9 / 6; u = M + (N - M n) / mean(n), mean(n) = 2
    assert value == pytest.approx(0.65)
    np.testing.assert_allclose(u, [0.75, 0.525, 0.675])
    table = patient_table(*random_run(0))
    for metric in ALL_METRICS:
        value, u = pseudo_values(table, metric)
        assert value == pytest.approx(table_metric(table, metric), abs=1e-12)
        assert u.mean() == pytest.approx(value, abs=1e-12), metric
    # no TP + FP anywhere: precision's 0/0 rule for every patient (0 when a lesion was missed, else 1)
    zero = np.zeros(3, np.int64)
    missed = PatientTable(**{**t.__dict__, "tp": zero, "fp": zero, "fn": np.array([0, 2, 0])})
    assert pseudo_values(missed, "precision")[1].tolist() == [0.0, 0.0, 0.0]
    assert pseudo_values(missed, "recall")[1].tolist() == [0.0, 0.0, 0.0]  # 0 / 2
    empty = PatientTable(**{**t.__dict__, "tp": zero, "fp": zero, "fn": zero})
    assert pseudo_values(empty, "precision")[1].tolist() == [1.0, 1.0, 1.0]
    assert pseudo_values(empty, "recall")[1].tolist() == [1.0, 1.0, 1.0]
    absent = pseudo_values(t, "dsc_EDH")
    assert math.isnan(absent[0]) and np.isnan(absent[1]).all()


def _pair(d: np.ndarray, base: float = 0.5) -> tuple[list[PatientTable], list[PatientTable]]:
    """Tables (one image per patient, so u_p = the patient's DSC) whose differences are the matrix d."""
    d = np.asarray(d, float)
    ref = [dsc_table(np.full(d.shape[1], base)) for _ in d]
    return [dsc_table(base + row) for row in d], ref


def test_crossed_anova_by_hand_2x3_with_a_patient_component():
    d = np.array([[0.1, 0.2, 0.3], [0.3, 0.2, 0.4]])
    # grand 0.25; repeat means 0.2, 0.3; patient means 0.2, 0.2, 0.35; residuals ±0.05 (four) and 0
    comp = anova_components(d)
    assert comp["ms_rep"] == pytest.approx(0.015)  # 3 * (0.05^2 + 0.05^2) / 1
    assert comp["ms_pat"] == pytest.approx(0.015)  # 2 * (0.05^2 + 0.05^2 + 0.1^2) / 2
    assert comp["ms_err"] == pytest.approx(0.005)  # 4 * 0.05^2 / 2
    assert comp["var"] == pytest.approx((0.015 + 0.010) / 6)
    assert comp["seed_var"] == pytest.approx(0.005) and comp["patient_var"] == pytest.approx(0.005)
    assert comp["df"] == pytest.approx(0.025**2 / (0.015**2 / 1 + 0.015**2 / 2 + 0.005**2 / 2))  # 1.786
    out = paired_comparison(*_pair(d), "dsc")
    se, df = math.sqrt(0.025 / 6), comp["df"]
    q = st.t.ppf(0.975, df)
    assert out["diff"] == pytest.approx(0.25)
    assert out["se"] == pytest.approx(se) and out["df"] == pytest.approx(df)
    assert out["ci"] == pytest.approx([0.25 - q * se, 0.25 + q * se])
    assert out["p_value"] == pytest.approx(2 * st.t.sf(0.25 / se, df))
    assert out["detectable"] == pytest.approx((q + st.t.ppf(0.8, df)) * se)
    assert out["verdict"] == ("better" if 0.25 - q * se > 0 else "no detectable change")
    assert (out["n_repeats"], out["n_patients"], out["level"]) == (2, 3, 0.95)
    assert "reason" not in out and "crossed ANOVA" in out["method"]


def test_crossed_anova_by_hand_without_a_patient_component():
    d = np.array([[0.1, 0.3, 0.2], [0.4, 0.2, 0.3]])  # patient means all 0.25: MS_pat 0 < MS_err 0.02
    comp = anova_components(d)
    assert (comp["ms_pat"], comp["ms_err"]) == (pytest.approx(0.0), pytest.approx(0.02))
    assert comp["patient_var"] == 0.0 and comp["df"] == 1.0
    out = paired_comparison(*_pair(d), "dsc")
    # Var = MS_rep / (R P) = var_r(d_r) / R = var([0.2, 0.3]) / 2 = 0.0025
    assert out["se"] == pytest.approx(0.05) and out["seed_var"] == pytest.approx(0.005)
    assert out["ci"] == pytest.approx([0.25 - 12.7062047 * 0.05, 0.25 + 12.7062047 * 0.05])
    assert out["verdict"] == "no detectable change"


def test_own_test_patients_per_repeat_by_hand():
    """split_per_repeat: Var = var_r(d_r) / R on R - 1 df, d_r = 0.1, 0.2, 0.3."""
    rng = np.random.default_rng(11)
    variants, refs = [], []
    for r, shift in enumerate((0.1, 0.2, 0.3)):
        base = rng.uniform(0.3, 0.6, 5 + r)
        names = [f"R{r}P{i}" for i in range(5 + r)]
        refs.append(dsc_table(base, names))
        variants.append(dsc_table(base + shift, names))
    out = paired_comparison(variants, refs, "dsc")
    se = math.sqrt(0.01 / 3)
    assert out["diff"] == pytest.approx(0.2) and out["se"] == pytest.approx(se) and out["df"] == 2
    assert out["ci"] == pytest.approx([0.2 - 4.30265273 * se, 0.2 + 4.30265273 * se])  # [-0.048, 0.448]
    assert out["p_value"] == pytest.approx(2 * st.t.sf(0.2 / se, 2))  # 0.074
    assert out["detectable"] == pytest.approx((4.30265273 + 1.06066017) * se)  # 0.310
    assert out["verdict"] == "no detectable change" and out["patient_var"] is None
    assert out["n_patients"] == 5 + 6 + 7 and "own test patients" in out["method"]
    with pytest.raises(ValueError, match=r"variant\[1\] covers other test patients than original\[1\]"):
        paired_comparison([variants[0], variants[0], variants[2]], refs, "dsc")


def test_one_run_per_arm_is_not_estimable_but_gives_the_difference():
    out = paired_comparison(*_pair([[0.1, 0.2, 0.3]]), "dsc")
    assert out["verdict"] == "not estimable" and out["reason"] == "one training run per arm"
    assert out["diff"] == pytest.approx(0.2)
    assert out["ci"] == [None, None] and out["p_value"] is None and out["detectable"] is None
    assert out["n_repeats"] == 1


def test_absent_class_is_not_estimable_and_a_repeat_without_it_is_left_out():
    table = dsc_table(np.full(3, 0.5))
    out = paired_comparison([table, table], [table, table], "dsc_EDH")
    assert out["verdict"] == "not estimable" and out["reason"] == "class EDH is in no test image"
    assert out["diff"] is None and out["ci"] == [None, None]
    # own patients per repeat: repeat 0 has IPH, repeat 1 none, repeat 2 has it -> repeats 0 and 2
    cls = []
    for r, (n, s) in enumerate(((1, 0.5), (0, 0.0), (2, 0.8))):
        t = dsc_table(np.full(2, 0.5), [f"R{r}a", f"R{r}b"])
        class_n, class_sum = np.zeros((2, 5), np.int64), np.zeros((2, 5))
        class_n[0, 0], class_sum[0, 0] = n, s * n
        cls.append(PatientTable(**{**t.__dict__, "class_n": class_n, "class_sum": class_sum}))
    better = [PatientTable(**{**t.__dict__, "class_sum": t.class_sum * 1.1}) for t in cls]
    out = paired_comparison(better, cls, "dsc_IPH")
    assert out["repeats_left_out"] == 1 and out["n_repeats"] == 2
    assert out["diff"] == pytest.approx((0.05 + 0.08) / 2)


def test_zero_spread_gives_no_nan():
    tables = [patient_table(*random_run(1, pred_seed=s)) for s in (1, 2, 3)]
    for metric in ("dsc", "precision", "dsc_IPH"):
        out = paired_comparison(tables, tables, metric)
        assert out["diff"] == 0.0 and out["ci"] == [0.0, 0.0] and out["se"] == 0.0
        assert out["p_value"] == 1.0 and out["verdict"] == "no detectable change"
        assert out["n_patients"] == len(tables[0].patients)
    shifted = paired_comparison(*_pair(np.full((3, 4), 0.1)), "dsc")  # the same gain on every patient
    assert shifted["verdict"] == "better" and shifted["p_value"] == 0.0 and shifted["detectable"] == 0.0


def test_clear_improvement_is_better_and_the_reverse_is_worse():
    originals, variants = [], []
    for s in (4, 5, 6):
        pred, true, patients = random_run(4, n_patients=8, pred_seed=s)
        rng = np.random.default_rng(s)
        # original: half of the lesion pixels erased; variant: a tenth erased
        worse = np.where(rng.random(true.shape) < 0.5, 0, true).astype(np.uint8)
        good = np.where(rng.random(true.shape) < 0.1, 0, true).astype(np.uint8)
        originals.append(patient_table(worse, true, patients))
        variants.append(patient_table(good, true, patients))
    out = paired_comparison(variants, originals, "dsc")
    assert out["verdict"] == "better" and out["p_value"] < 0.05
    assert 0 < out["ci"][0] <= out["diff"] <= out["ci"][1]
    back = paired_comparison(originals, variants, "dsc")
    assert back["verdict"] == "worse" and back["ci"][1] < 0
    assert back["diff"] == pytest.approx(-out["diff"]) and back["se"] == pytest.approx(out["se"])


def test_mismatched_patients_are_named():
    a = dsc_table(np.full(4, 0.5), ["P01", "P02", "P03", "P04"])
    b = dsc_table(np.full(4, 0.5), ["P01", "P02", "P03", "P09"])
    with pytest.raises(ValueError, match=r"only in variant\[1\]: \['P09'\].*\['P04'\]"):
        paired_comparison([a, b], [a, a], "dsc")
    c = dsc_table(np.full(4, 0.5))
    c = PatientTable(**{**c.__dict__, "patients": a.patients, "n_images": np.array([1, 2, 1, 1])})
    with pytest.raises(ValueError, match=r"other test images or truth.*\['P02'\]"):
        paired_comparison([c], [a], "dsc")
    with pytest.raises(ValueError, match="same number"):
        paired_comparison([a], [a, a], "dsc")
    with pytest.raises(ValueError, match="same number"):
        paired_comparison([], [], "dsc")
    with pytest.raises(ValueError, match="level"):
        paired_comparison([a], [a], "dsc", level=95)


def test_holm_and_family_verdicts_by_hand():
    # valid p sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 -> max(0.06, 0.04) = 0.06
    assert holm([0.01, 0.04, None, 0.03, 0.005]) == pytest.approx([0.03, 0.06, None, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0]) and holm([]) == []
    family = [{"diff": 0.1, "p_value": 0.01, "verdict": "better"},
              {"diff": -0.2, "p_value": 0.001, "verdict": "worse"},
              {"diff": 0.05, "p_value": 0.04, "verdict": "better"},
              {"diff": 0.0, "p_value": None, "verdict": "not estimable"}]
    out = adjust_family(family)
    assert [c["p_adjusted"] for c in out] == pytest.approx([0.02, 0.003, 0.04, None])
    assert [c["verdict_adjusted"] for c in out] == ["better", "worse", "better", "not estimable"]
    out = adjust_family(family + [{"diff": 0.01, "p_value": 0.5, "verdict": "no detectable change"}])
    assert [c["verdict_adjusted"] for c in out] == ["better", "worse", "no detectable change",
                                                     "not estimable", "no detectable change"]
    assert [c["verdict"] for c in out][:3] == ["better", "worse", "better"]  # raw verdicts kept


def test_calibration_summary_by_hand():
    calls = ["better", "worse", "better"] + ["no detectable change"] * 17 + ["not estimable"] * 2
    out = calibration_summary([{"verdict": v} for v in calls])
    # P(X >= 3 | 20, 0.05) = 1 - 0.95^20 - 20 * 0.05 * 0.95^19 - 190 * 0.05^2 * 0.95^18
    want = 1 - 0.95**20 - 20 * 0.05 * 0.95**19 - 190 * 0.05**2 * 0.95**18
    assert out == {"comparisons": 20, "called_difference": 3, "rate": 0.15, "nominal": pytest.approx(0.05),
                   "p_value": pytest.approx(want), "excess": False, "identical": 0}
    # arms that agree exactly (SE 0, Δ 0: both never predict a class) cannot call anything: left out
    same = {"verdict": "no detectable change", "se": 0.0, "diff": 0.0}
    out = calibration_summary([{"verdict": v} for v in calls] + [same] * 4)
    assert (out["comparisons"], out["identical"], out["rate"]) == (20, 4, 0.15)
    assert calibration_summary([{"verdict": "better"}] * 5)["excess"] is True
    assert calibration_summary([])["rate"] is None


def test_detectable_effect_by_hand():
    # SE = 0.02 / sqrt(5); (t_0.975,4 + t_0.8,4) * SE = (2.7764 + 0.9410) * 0.008944
    assert detectable_effect(0.02, 0.0, 5, 30) == pytest.approx((2.776445 + 0.940965) * 0.02 / math.sqrt(5))
    both = detectable_effect(0.02, 0.003, 3, 30)
    assert both == pytest.approx((4.302653 + 1.060660) * math.sqrt(0.02**2 / 3 + 0.003 / 30))
    assert detectable_effect(0.02, 0.0, 1, 30) is None
    assert detectable_effect(0.02, 0.0, 10, 30) < detectable_effect(0.02, 0.0, 5, 30)


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


