"""Selection rule: one generator per data fraction from its candidates' scores (paper §3.2, §5).

The paper scores candidates by FCN score ("the most important"), blurriness and a realism
classifier but gives no rule to combine them. ``fcn_first`` (the default in ``conf/select.yaml``)
is OUR reading of it; the other rules stay available for a paper-agnostic comparison.

Criteria of a candidate row:

* ``fcn_score``  - the judge segmenter's mean lesion Dice on the candidate's generated images;
* ``sharpness``  - mean variance of the Laplacian of the whole image (the paper's figure; higher =
                   sharper, but noise scores high too);
* ``sharpness_ratio`` - in-head Laplacian variance / that of the real slices of the same masks
                   (1 = as sharp as real, noise far above 1, blur below; see ``quality``);
* ``fooled``     - share of held-out generated images the realism CNN calls real at p(real) >= 0.1
                   (the paper's threshold; the same number as ``fooled_0.1`` in scores.json).

Rules (``rule.name``):

* ``fcn_first``: (a) quality gate: a candidate whose ``sharpness_ratio`` lies outside
  [sharpness_ratio_min, sharpness_ratio_max] (default [0.5, 2]) is excluded; if every candidate
  fails, the one with the smallest ``|ln sharpness_ratio|`` is taken and the reason says so.
  (b) Among the rest the highest FCN score wins; candidates within ``fcn_tolerance`` (absolute,
  default 0.01) of the best are tied, and the tie goes to higher ``fooled``, then smaller
  ``|ln sharpness_ratio|``, then fewer epochs, then checkpoint path. Its figure is the FCN score of
  the candidates that pass the gate, NaN (null in scores.json) for the excluded ones.
* ``mean_rank``: rank the candidates of one fraction on each criterion in ``weights`` (1 = best;
  ties share the average rank), take the weighted mean of the ranks, pick the lowest mean rank.
* ``weighted``: z-score each criterion across the fraction's candidates (a criterion with zero
  spread contributes 0), pick the largest weighted sum.
* ``fcn_score``: the highest FCN score only.

``weights`` (mean_rank, weighted) may name any higher-is-better figure of a candidate row (e.g.
``fft_mean``, ``sharpness_match``). For those three rules ties on the rule's figure are broken by
higher FCN score, then fewer epochs, then checkpoint path, and a criterion missing (None/NaN) for
some candidate is dropped for the whole fraction. In ``fcn_first`` a missing ``sharpness_ratio``
(or ``fooled``) for some candidate drops the gate and that tie-break for the fraction; a missing
FCN score is an error. The reason always says which criteria decided.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.stats import rankdata

RULES = ("fcn_first", "mean_rank", "weighted", "fcn_score")
DEFAULT_RULE = "fcn_first"
DEFAULT_WEIGHTS: dict[str, float] = {"fcn_score": 1.0, "sharpness": 1.0, "fooled": 1.0}
# fcn_first's parameters (conf/select.yaml rule.*), keyword arguments of `select`
DEFAULT_PARAMS: dict[str, float] = {
    "sharpness_ratio_min": 0.5,
    "sharpness_ratio_max": 2.0,
    "fcn_tolerance": 0.01,
}

RULE_CONVENTION = (
    "Selection per fraction; the paper gives no rule, fcn_first is our reading of it. "
    "fcn_first: (a) quality gate: candidates with sharpness_ratio (in-head Laplacian variance / "
    "the real slices' of the same masks) outside [sharpness_ratio_min, sharpness_ratio_max] "
    "(default [0.5, 2]) are excluded; if all fail, the smallest |ln sharpness_ratio| is taken; "
    "(b) highest fcn_score (judge Dice on generated images) wins; candidates within fcn_tolerance "
    "(default 0.01, absolute) of the best are tied, broken by higher fooled (=fooled_0.1: share "
    "of held-out generated images called real at p(real)>=0.1), then smaller |ln "
    "sharpness_ratio|, then fewer epochs, then checkpoint path; rule_figure = fcn_score of the "
    "candidates passing the gate, null for excluded ones. Other rules, criteria "
    "higher-is-better, sharpness = whole-image Laplacian variance: mean_rank: rank on each "
    "weighted criterion (1=best, ties share the average rank), weighted mean of ranks, lowest "
    "wins. weighted: weighted sum of z-scores, highest wins. fcn_score: highest FCN score. "
    "Ties there: higher fcn_score, then fewer epochs, then checkpoint path."
)


def _value(c: Mapping[str, Any], key: str) -> float:
    v = c.get(key)
    return float("nan") if v is None else float(v)


def rule_kwargs(rule_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments of `select` from the ``rule:`` config block (name, weights, parameters)."""
    known = {"name", "weights", *DEFAULT_PARAMS}
    unknown = sorted(set(rule_cfg) - known)
    if unknown:
        raise ValueError(f"rule config: unknown key(s) {unknown}; known: {sorted(known)}")
    out: dict[str, Any] = {"rule": str(rule_cfg.get("name", DEFAULT_RULE))}
    if rule_cfg.get("weights") is not None:
        out["weights"] = {str(k): float(v) for k, v in dict(rule_cfg["weights"]).items()}
    out.update({k: float(rule_cfg[k]) for k in DEFAULT_PARAMS if rule_cfg.get(k) is not None})
    return out


def select(
    candidates: Sequence[Mapping[str, Any]],
    rule: str = "mean_rank",
    weights: Mapping[str, float] | None = None,
    *,
    sharpness_ratio_min: float = DEFAULT_PARAMS["sharpness_ratio_min"],
    sharpness_ratio_max: float = DEFAULT_PARAMS["sharpness_ratio_max"],
    fcn_tolerance: float = DEFAULT_PARAMS["fcn_tolerance"],
) -> tuple[int, str, list[float]]:
    """Pick one candidate. Returns (index of the winner, human-readable reason, rule figure per candidate).

    Each candidate maps criterion name -> float plus "epochs" (int) and optionally "checkpoint".
    For mean_rank the figure is the mean rank (lower is better); for weighted the z-sum, for
    fcn_score the FCN score and for fcn_first the FCN score of the candidates passing the
    sharpness gate, NaN for the others (higher is better). `weights` is used by mean_rank and
    weighted; the keyword parameters by fcn_first (see the module docstring).
    """
    if not candidates:
        raise ValueError("select: no candidates to choose from")
    if rule not in RULES:
        raise ValueError(f"selection rule {rule!r} is unknown; choose one of {RULES}")
    if rule == "fcn_first":
        return _fcn_first(candidates, sharpness_ratio_min, sharpness_ratio_max, fcn_tolerance)
    weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
    if rule == "fcn_score":
        weights = {"fcn_score": 1.0}
    weights = {k: float(w) for k, w in weights.items() if float(w) != 0.0}
    if not weights:
        raise ValueError("select: every criterion weight is 0")

    dropped = [k for k in weights if any(math.isnan(_value(c, k)) for c in candidates)]
    used = {k: w for k, w in weights.items() if k not in dropped}
    if not used:
        raise ValueError(f"select: no criterion is available for every candidate (missing: {dropped})")
    table = np.array([[_value(c, k) for k in used] for c in candidates], dtype=float)  # [C, K]
    w = np.array(list(used.values()))

    if rule == "mean_rank":
        ranks = np.stack([rankdata(-table[:, j], method="average") for j in range(table.shape[1])], 1)
        figure = (ranks * w).sum(1) / w.sum()
        primary = -figure  # larger is better for sorting
    elif rule == "weighted":
        std = table.std(0)
        z = np.where(std > 0, (table - table.mean(0)) / np.where(std > 0, std, 1.0), 0.0)
        figure = (z * w).sum(1)
        primary = figure
    else:
        figure = table[:, 0]
        primary = figure

    def key(i: int) -> tuple:
        c = candidates[i]
        return (
            -round(float(primary[i]), 12),
            -_value(c, "fcn_score") if not math.isnan(_value(c, "fcn_score")) else 0.0,
            int(c.get("epochs", 0)),
            str(c.get("checkpoint", "")),
        )

    order = sorted(range(len(candidates)), key=key)
    best = order[0]
    tied = [i for i in order[1:] if round(float(primary[i]), 12) == round(float(primary[best]), 12)]
    crit = ", ".join(f"{k}={table[best, j]:.4g}" for j, k in enumerate(used))
    label = {"mean_rank": "mean rank", "weighted": "weighted z-sum", "fcn_score": "FCN score"}[rule]
    reason = f"{rule}: best {label} {figure[best]:.4g} of {len(candidates)} candidates ({crit})"
    if tied:
        reason += f"; tie with {len(tied)} other(s) broken by FCN score, then fewer epochs"
    if dropped:
        reason += f"; criteria missing for some candidates and ignored: {dropped}"
    return best, reason, [float(f) for f in figure]


def _label(c: Mapping[str, Any], i: int) -> str:
    return f"epochs={int(c['epochs'])}" if c.get("epochs") is not None else f"#{i}"


def _fcn_first(
    candidates: Sequence[Mapping[str, Any]], ratio_min: float, ratio_max: float, tolerance: float
) -> tuple[int, str, list[float]]:
    """The fcn_first rule (module docstring): sharpness gate, then FCN score, then tie-breaks."""
    if not 0.0 < ratio_min <= 1.0 <= ratio_max:
        raise ValueError(
            f"fcn_first: the sharpness gate [{ratio_min}, {ratio_max}] must satisfy "
            "0 < min <= 1 <= max"
        )
    if not tolerance >= 0.0:
        raise ValueError(f"fcn_first: fcn_tolerance must be >= 0, got {tolerance}")
    n = len(candidates)
    fcn = np.array([_value(c, "fcn_score") for c in candidates])
    if np.isnan(fcn).any():
        missing = [_label(candidates[i], i) for i in np.flatnonzero(np.isnan(fcn)).tolist()]
        raise ValueError(f"fcn_first: fcn_score missing for {missing}")
    ratio = np.array([_value(c, "sharpness_ratio") for c in candidates])
    have_ratio = bool(np.all(np.isfinite(ratio) & (ratio >= 0)))
    with np.errstate(divide="ignore"):  # ratio 0 (a flat head): infinitely far from real
        log_dev = np.abs(np.log(ratio)) if have_ratio else np.zeros(n)
    fooled = np.array([_value(c, "fooled") for c in candidates])
    have_fooled = not np.isnan(fooled).any()
    parts: list[str] = []  # the reason, in the order the rule applies its steps

    def tail(i: int) -> tuple:
        c = candidates[i]
        return int(c.get("epochs", 0)), str(c.get("checkpoint", ""))

    def describe(i: int) -> str:
        figs = [f"fcn_score={fcn[i]:.4g}"]
        if have_ratio:
            figs.append(f"sharpness_ratio={ratio[i]:.3g}")
        if have_fooled:
            figs.append(f"fooled={fooled[i]:.3g}")
        return f"{_label(candidates[i], i)} ({', '.join(figs)})"

    gate = f"{ratio_min:g} <= sharpness_ratio <= {ratio_max:g}"
    if not have_ratio:
        passing = list(range(n))
        parts.append(
            "no sharpness gate, no sharpness tie-break (sharpness_ratio missing for some candidate)"
        )
    else:
        passing = [i for i in range(n) if ratio_min <= ratio[i] <= ratio_max]
        excluded = [f"{_label(candidates[i], i)} (ratio {ratio[i]:.3g})"
                    for i in range(n) if i not in passing]
        if not passing:
            best = min(range(n), key=lambda i: (round(float(log_dev[i]), 12), -fcn[i], *tail(i)))
            reason = (
                f"fcn_first: no candidate of {n} passes the sharpness gate {gate} "
                f"({', '.join(excluded)}); fell back to the one closest to real sharpness "
                f"(smallest |ln sharpness_ratio|): {describe(best)}"
            )
            return best, reason, [float("nan")] * n
        parts.append(f"sharpness gate {gate}: {len(passing)} of {n} pass"
                     + (f", excluded {', '.join(excluded)}" if excluded else ""))
    if not have_fooled:
        parts.append("no realism tie-break (fooled missing for some candidate)")

    top = max(fcn[i] for i in passing)
    tied = [i for i in passing if fcn[i] >= top - tolerance - 1e-12]

    def key(i: int) -> tuple:
        return (
            -round(float(fooled[i]), 12) if have_fooled else 0.0,
            round(float(log_dev[i]), 12),
            *tail(i),
        )

    order = sorted(tied, key=key)
    best = order[0]
    if len(tied) == 1:
        parts.append(f"decided by FCN score: {describe(best)}")
    else:
        runner = order[1]
        levels = [
            ("realism (higher fooled)", f"{fooled[best]:.3g} vs {fooled[runner]:.3g}"),
            ("closeness to real sharpness (smaller |ln sharpness_ratio|)",
             f"{log_dev[best]:.3g} vs {log_dev[runner]:.3g}"),
            ("fewer epochs", f"{tail(best)[0]} vs {tail(runner)[0]}"),
            ("checkpoint path", f"{tail(best)[1]} vs {tail(runner)[1]}"),
        ]
        k_best, k_runner = key(best), key(runner)
        # key has 4 parts: fooled, |ln ratio|, epochs, checkpoint -> the first that differs decided
        level = next((j for j in range(4) if k_best[j] != k_runner[j]), 3)
        what, values = levels[level]
        parts.append(
            f"{len(tied)} within {tolerance:g} of the best FCN score {top:.4g}, tie broken by "
            f"{what} ({values}): {describe(best)}"
        )
    reason = "fcn_first: " + "; ".join(parts)
    figure = [float(fcn[i]) if i in passing else float("nan") for i in range(n)]
    return best, reason, figure
