"""Is a variant better than its reference? Inference with the training run as the unit of replication.

Method, in plain words (``docs/verdicts.md`` has the why, the references and the simulations).
Each arm (variant, reference) is trained R times with R seeds; repeat r of the variant is paired with
repeat r of the reference, and both are tested on the same test patients. Per patient, every set
metric is *linearised*: a ratio metric M = Σ_p N_p / Σ_p D_p (e.g. DSC = Σ per-image DSC / Σ images,
precision = TP / (TP + FP)) gets the pseudo-value u_p = M + (N_p − M·D_p) / mean_p(D_p), whose mean
over the patients is exactly M. The per-patient paired differences d_rp = u^variant_rp − u^reference_rp
average to the estimate Δ̂ = mean_r (M^variant_r − M^reference_r).

Its uncertainty has two sources: which seeds were drawn (a retrained model differs) and which
patients were drawn (the treatment effect differs between patients). With one test split for all
repeats, the R × P matrix d is split by a two-way crossed random-effects ANOVA into a repeat mean
square MS_rep, a patient mean square MS_pat and a residual MS_err; Var(Δ̂) = [MS_rep + max(0,
MS_pat − MS_err)] / (R·P), with Satterthwaite's degrees of freedom (R − 1 when the patient part is
0). When every repeat has its own test patients (``split_per_repeat``), each repeat's difference
d_r already holds both sources and Var(Δ̂) = var_r(d_r) / R on R − 1 degrees of freedom. The
interval is Δ̂ ± t·SE (Student t), the verdict "better" / "worse" when it excludes 0, else
"no detectable change"; with one run per arm the seed variation cannot be estimated and the
verdict is "not estimable". ``detectable`` is the smallest |Δ| found with 80 % power.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats as st

from lcgan_lightning.metrics import to_json_safe
from lcgan_lightning.stats import (
    NOT_ESTIMABLE,
    PatientTable,
    _columns,
    _from_sums,
    check_pairing,
    shared_patients,
    verdict,
)

NO_CHANGE = "no detectable change"
POWER = 0.8
METHOD_TEXT = (
    "The training run is the unit of replication: repeat r of the variant (training seed r) is paired "
    "with repeat r of the reference, both tested on the same test patients. Each set metric is "
    "linearised per patient (pseudo-values that average exactly to the set metric), and the paired "
    "per-patient differences are averaged into the estimate (the mean over repeats of the set-level "
    "differences). Its standard error adds the seed-to-seed variation of the difference and the "
    "patient-to-patient variation of the effect (two-way crossed random-effects ANOVA, repeats × "
    "patients, Satterthwaite degrees of freedom); when each repeat has its own test patients, the "
    "spread of the R per-repeat differences holds both (R − 1 degrees of freedom). Interval: estimate "
    "± Student t quantile × SE; verdict better/worse when it excludes 0, else no detectable change "
    "(detectable = smallest effect found with 80 % power); one run per arm: not estimable. "
    "verdict_adjusted: Holm's step-down adjustment over the family of comparisons named with it."
)


def _ratio_parts(table: PatientTable, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-patient numerator N_p and denominator D_p of a ratio metric (M = ΣN / ΣD)."""
    cols = _columns(table, metric)
    if metric == "precision":
        return cols[:, 0], cols[:, 0] + cols[:, 1]
    if metric == "recall":
        return cols[:, 0], cols[:, 0] + cols[:, 2]
    return cols[:, 0], cols[:, 1]


def pseudo_values(table: PatientTable, metric: str) -> tuple[float, np.ndarray]:
    """(set metric M, per-patient pseudo-values u_p with mean_p u_p = M).

    u_p = M + (N_p − M·D_p) / mean_p(D_p); when mean_p(D_p) = 0 the metric's 0/0 rule gives M and
    u_p = M for every patient (M NaN for a class no test image holds).
    """
    value = float(_from_sums(_columns(table, metric).sum(axis=0), metric))
    num, den = _ratio_parts(table, metric)
    mean_den = float(den.mean())
    if mean_den == 0 or math.isnan(value):
        return value, np.full(len(num), value)
    return value, value + (num - value * den) / mean_den


def _t(q: float, df: float) -> float:
    return float(st.t.ppf(q, df))


def _not_estimable(diff: float, reason: str, n_pat: int, n_rep: int, level: float) -> dict[str, Any]:
    return {"diff": diff, "ci": [None, None], "p_value": None, "verdict": NOT_ESTIMABLE, "reason": reason,
            "se": None, "df": None, "seed_var": None, "patient_var": None, "detectable": None,
            "n_patients": n_pat, "n_repeats": n_rep, "level": level, "method": "none"}


def anova_components(d: np.ndarray) -> dict[str, float]:
    """Two-way crossed random-effects ANOVA (no replication) of an R × P difference matrix.

    Returns {"ms_rep", "ms_pat", "ms_err", "var", "df", "seed_var", "patient_var"}: var = Var(Δ̂) =
    [MS_rep + max(0, MS_pat − MS_err)] / (R·P); seed_var = MS_rep / P (= var_r of the repeats' mean
    differences); patient_var = max(0, MS_pat − MS_err) / R (between-patient variance of the effect);
    df = R − 1 when patient_var is 0, else Satterthwaite's on MS_rep + MS_pat − MS_err.
    """
    d = np.asarray(d, dtype=np.float64)
    n_rep, n_pat = d.shape
    if n_rep < 2:
        raise ValueError(f"anova_components needs >= 2 repeats, got {n_rep}")
    grand = d.mean()
    rows, cols = d.mean(axis=1), d.mean(axis=0)
    ms_rep = n_pat * float(np.sum((rows - grand) ** 2)) / (n_rep - 1)
    if n_pat < 2:  # one patient: no patient component to estimate
        ms_pat = ms_err = 0.0
    else:
        ms_pat = n_rep * float(np.sum((cols - grand) ** 2)) / (n_pat - 1)
        resid = d - rows[:, None] - cols[None, :] + grand
        ms_err = float(np.sum(resid**2)) / ((n_rep - 1) * (n_pat - 1))
    excess = max(0.0, ms_pat - ms_err)
    combo = ms_rep + excess
    if excess == 0.0 or combo == 0.0:
        df = float(n_rep - 1)
    else:
        df = combo**2 / (ms_rep**2 / (n_rep - 1) + ms_pat**2 / (n_pat - 1)
                         + ms_err**2 / ((n_rep - 1) * (n_pat - 1)))
    return {"ms_rep": ms_rep, "ms_pat": ms_pat, "ms_err": ms_err, "var": combo / (n_rep * n_pat),
            "df": float(df), "seed_var": ms_rep / n_pat, "patient_var": excess / n_rep}


def t_interval(diff: float, se: float, df: float, level: float = 0.95,
               power: float = POWER) -> dict[str, Any]:
    """{"ci", "p_value", "verdict", "detectable"} of the estimate ``diff`` ± t quantile × ``se``.

    se = 0: the interval is the point; p = 0 when diff ≠ 0, else 1 (no NaN).
    """
    q = _t((1 + level) / 2, df)
    lo, hi = diff - q * se, diff + q * se
    if se > 0:
        p = float(2 * st.t.sf(abs(diff) / se, df))
    else:
        p = 0.0 if diff != 0 else 1.0
    return {"ci": [lo, hi], "p_value": p, "verdict": verdict(lo, hi), "detectable": (q + _t(power, df)) * se}


def _defined_repeats(d_rep: np.ndarray, metric: str) -> tuple[np.ndarray, str]:
    keep = ~np.isnan(d_rep)
    what = f"class {metric[4:]}" if metric.startswith("dsc_") else metric
    return keep, f"{what} is in no test image" if not keep.any() else ""


def paired_comparison(
    variant: Sequence[PatientTable],
    reference: Sequence[PatientTable],
    metric: str,
    level: float = 0.95,
    power: float = POWER,
) -> dict[str, Any]:
    """Paired difference variant − reference of ``metric`` with its t interval (module docstring).

    ``variant[r]`` and ``reference[r]`` are the tables of repeat r (same training seed role, same test
    patients). Returns {"diff", "ci": [lo, hi], "p_value", "verdict", "reason" (only when not
    estimable), "se", "df", "seed_var", "patient_var", "detectable", "n_patients", "n_repeats",
    "level", "method"}, JSON-safe (NaN -> None). ``seed_var``: variance over seeds of one run pair's
    set-level difference; ``patient_var``: between-patient variance of the effect (shared test
    patients only, else None). A repeat whose test patients hold no image of the class (own split per
    repeat) is left out: "n_repeats" counts the repeats used, "repeats_left_out" (only then) the others.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if not 0.0 < power < 1.0:
        raise ValueError(f"power must be in (0, 1), got {power}")
    check_pairing(variant, reference)
    shared = shared_patients(reference)
    pairs = [(pseudo_values(v, metric), pseudo_values(o, metric)) for v, o in zip(variant, reference, strict=True)]
    d_rep = np.array([mv - mo for (mv, _), (mo, _) in pairs])
    n_pat = len(reference[0].patients) if shared else sum(len(o.patients) for o in reference)
    keep, reason = _defined_repeats(d_rep, metric)
    if reason:
        return to_json_safe(_not_estimable(float("nan"), reason, n_pat, len(reference), level))
    left_out = int((~keep).sum())
    d_rep = d_rep[keep]
    n_rep = len(d_rep)
    diff = float(d_rep.mean())
    if n_rep < 2:
        why = "one training run per arm" if len(reference) == 1 else "one repeat holds the class"
        out = _not_estimable(diff, why, n_pat, n_rep, level)
    elif shared:
        d = np.stack([uv - uo for (_, uv), (_, uo) in pairs])
        comp = anova_components(d)
        se = math.sqrt(comp["var"])
        out = {"diff": diff, **t_interval(diff, se, comp["df"], level, power), "se": se, "df": comp["df"],
               "seed_var": comp["seed_var"], "patient_var": comp["patient_var"], "n_patients": n_pat,
               "n_repeats": n_rep, "level": level,
               "method": f"crossed ANOVA repeats × patients, t on {comp['df']:.1f} df"}
    else:
        seed_var = float(d_rep.var(ddof=1))
        se = math.sqrt(seed_var / n_rep)
        df = float(n_rep - 1)
        out = {"diff": diff, **t_interval(diff, se, df, level, power), "se": se, "df": df, "seed_var": seed_var,
               "patient_var": None, "n_patients": n_pat, "n_repeats": n_rep, "level": level,
               "method": f"own test patients per repeat, t over repeats on {n_rep - 1} df"}
    if left_out:
        out["repeats_left_out"] = left_out
    return to_json_safe(out)


def detectable_effect(seed_sd: float, patient_var: float, n_repeats: int, n_patients: int,
                      level: float = 0.95, power: float = POWER) -> float | None:
    """Smallest |Δ| found with probability ``power`` by a comparison of ``n_repeats`` runs per arm.

    ``seed_sd``: SD over seeds of one run pair's set-level difference (``sqrt(seed_var)`` of a
    comparison; from the SD σ₁ of ONE arm's metric across seeds, about √2·σ₁). ``patient_var``: the
    between-patient variance of the effect (``patient_var`` of a comparison; 0 when unknown or when
    every repeat has its own test patients, whose variation ``seed_sd`` then holds). Uses R − 1
    degrees of freedom (conservative); None for fewer than 2 repeats.
    """
    if n_repeats < 2:
        return None
    if n_patients < 1 or seed_sd < 0 or patient_var < 0:
        raise ValueError("need n_patients >= 1, seed_sd >= 0 and patient_var >= 0")
    se = math.sqrt(seed_sd**2 / n_repeats + patient_var / n_patients)
    df = n_repeats - 1
    return (_t((1 + level) / 2, df) + _t(power, df)) * se


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values (same order); None/NaN entries stay None and do not count."""
    idx = [i for i, p in enumerate(p_values) if p is not None and not math.isnan(float(p))]
    order = sorted(idx, key=lambda i: float(p_values[i]))  # type: ignore[arg-type]
    out: list[float | None] = [None] * len(p_values)
    running, m = 0.0, len(order)
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * float(p_values[i])))  # type: ignore[arg-type]
        out[i] = running
    return out


def adjust_family(comparisons: Sequence[dict[str, Any]], level: float = 0.95) -> list[dict[str, Any]]:
    """Copies of the comparisons with "p_adjusted" (Holm over this family) and "verdict_adjusted"
    (better/worse where p_adjusted < 1 − level, by the sign of diff; not-estimable entries keep their
    verdict). The raw "verdict" is kept."""
    adjusted = holm([c.get("p_value") for c in comparisons])
    out = []
    for c, p in zip(comparisons, adjusted, strict=True):
        if p is None:
            word = c.get("verdict", NOT_ESTIMABLE)
        elif p < 1 - level and c["diff"] != 0:
            word = "better" if c["diff"] > 0 else "worse"
        else:
            word = NO_CHANGE
        out.append({**c, "p_adjusted": p, "verdict_adjusted": word})
    return out


def calibration_summary(comparisons: Sequence[dict[str, Any]], level: float = 0.95) -> dict[str, Any]:
    """How often A/A comparisons (no true difference) call one, against the nominal 1 − level.

    {"comparisons": n, "called_difference": k (raw verdict better/worse), "rate": k/n, "nominal",
    "p_value": one-sided binomial P(X >= k | n, nominal), "excess": p_value < 0.05, "identical": m}.
    n counts the estimable comparisons whose arms differ somewhere; the m comparisons with identical
    arms (SE 0 and Δ 0, e.g. both arms never predict a class) cannot call anything and are left out of
    the rate. Comparisons of several metrics of the same runs are correlated, so the binomial check is
    approximate (it treats them as independent).
    """
    estimable = [c for c in comparisons if c.get("verdict") not in (None, NOT_ESTIMABLE)]
    done = [c for c in estimable if not (c.get("se") == 0 and c.get("diff") == 0)]
    n = len(done)
    k = sum(c["verdict"] != NO_CHANGE for c in done)
    alpha = 1 - level
    p = float(st.binom.sf(k - 1, n, alpha)) if n else None
    return {"comparisons": n, "called_difference": k, "rate": k / n if n else None,
            "nominal": alpha, "p_value": p, "excess": bool(p is not None and p < 0.05),
            "identical": len(estimable) - n}
