"""Selection rule: one generator per data fraction from its candidates' scores (paper §3.2, §5).

Every criterion is "higher is better":

* ``fcn_score``  - the judge segmenter's mean lesion Dice on the candidate's generated images;
* ``sharpness``  - mean variance of the Laplacian (higher = sharper = less blurry);
* ``fooled``     - share of held-out generated images the realism CNN calls real at p(real) >= 0.1
                   (the paper's threshold; the same number as ``fooled_0.1`` in scores.json).

``weights`` may name any other higher-is-better figure of a candidate row too (e.g. ``fft_mean``).

Rules (``rule.name``):

* ``mean_rank`` (default): rank the candidates of one fraction on each criterion (1 = best; ties
  share the average rank), take the weighted mean of the ranks, pick the lowest mean rank.
* ``weighted``: z-score each criterion across the fraction's candidates (a criterion with zero
  spread contributes 0), pick the largest weighted sum.
* ``fcn_score``: the highest FCN score only.

Ties on the rule's figure are broken by higher FCN score, then fewer epochs, then checkpoint path.
A criterion missing (None/NaN) for some candidate is dropped for the whole fraction, and the
reason says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.stats import rankdata

RULES = ("mean_rank", "weighted", "fcn_score")
DEFAULT_WEIGHTS: dict[str, float] = {"fcn_score": 1.0, "sharpness": 1.0, "fooled": 1.0}

RULE_CONVENTION = (
    "Selection per fraction. Criteria, all higher-is-better: fcn_score (judge Dice on generated "
    "images), sharpness (Laplacian variance), fooled (=fooled_0.1: share of held-out generated images called "
    "real at p(real)>=0.1). mean_rank: rank on each criterion (1=best, ties share the average rank), "
    "weighted mean of ranks, lowest wins. weighted: weighted sum of z-scores, highest wins. "
    "fcn_score: highest FCN score. Ties: higher fcn_score, then fewer epochs, then checkpoint path."
)


def _value(c: Mapping[str, Any], key: str) -> float:
    v = c.get(key)
    return float("nan") if v is None else float(v)


def select(
    candidates: Sequence[Mapping[str, Any]],
    rule: str = "mean_rank",
    weights: Mapping[str, float] | None = None,
) -> tuple[int, str, list[float]]:
    """Pick one candidate. Returns (index of the winner, human-readable reason, rule figure per candidate).

    Each candidate maps criterion name -> float plus "epochs" (int) and optionally "checkpoint".
    For mean_rank the figure is the mean rank (lower is better); for weighted the z-sum and for
    fcn_score the FCN score (higher is better).
    """
    if not candidates:
        raise ValueError("select: no candidates to choose from")
    if rule not in RULES:
        raise ValueError(f"selection rule {rule!r} is unknown; choose one of {RULES}")
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
