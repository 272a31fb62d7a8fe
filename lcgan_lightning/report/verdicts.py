"""The verdicts of a run's report beyond one comparison: Holm families, the A/A calibration, and the
smallest effect each subset's design detects.

- **Families** (Holm's step-down adjustment, `inference.adjust_family`): one per table — Table 1's
  strict DSC and binary lesion DSC, Table 2's precision and recall, Table 3's per-class DSC — each over
  every variant and subset of the run; the comparisons with "+ GAN" (new masks, k > 1) form families
  of their own per metric. Every comparison keeps its raw verdict and gains `p_adjusted` and
  `verdict_adjusted`.
- **Calibration** (`calibrate: true`): the original variant trained again with the seeds after the
  repeats' (`RunPlan.calibration_seeds`), A/A run r paired with original repeat r, compared by the same
  method for every subset and metric. Nothing differs but the seed, so every difference it calls is
  a false call; their share should be near the nominal 1 − level.
- **Design**: per subset, the SD over repeats of the original's strict DSC and the smallest
  difference in strict DSC the comparisons detect with 80 % power (the median over the variants).
"""

from __future__ import annotations

import statistics
from typing import Any

from lcgan_lightning.comparison import PER_CLASS, compare_tables
from lcgan_lightning.inference import NO_CHANGE, adjust_family, calibration_summary
from lcgan_lightning.layout import PREDICTIONS, RunLayout
from lcgan_lightning.metrics import to_json_safe
from lcgan_lightning.run_plan import RunPlan
from lcgan_lightning.stats import BASE_METRICS, load_patient_table
from lcgan_lightning.variants import ORIGINAL

TABLE_FAMILIES = {  # family name -> the metric of every variant's comparisons it holds
    "Table 1, strict DSC": "dsc",
    "Table 1, binary lesion DSC": "binary_dsc",
    "Table 2, precision": "precision",
    "Table 2, recall": "recall",
    "Table 3, per-class DSC": PER_CLASS,
}
REFERENCES = {"vs_original": "", "vs_gan": " vs + GAN"}


def _leaves(results: dict[str, Any], ref_key: str, metric: str) -> list[tuple[dict[str, Any], str]]:
    """(parent dict, key) of every comparison of `metric` against `ref_key` in results.json."""
    out: list[tuple[dict[str, Any], str]] = []
    for block in results["fractions"].values():
        for value in block.values():
            vs = value.get(ref_key) if isinstance(value, dict) else None
            if not vs or metric not in vs:
                continue
            out += [(vs[metric], c) for c in vs[metric]] if metric == PER_CLASS else [(vs, metric)]
    return out


def adjust_families(results: dict[str, Any], level: float) -> dict[str, int]:
    """Holm within each family, in place; returns {family name: its estimable comparisons}."""
    sizes = {}
    for ref_key, suffix in REFERENCES.items():
        for name, metric in TABLE_FAMILIES.items():
            leaves = _leaves(results, ref_key, metric)
            if not leaves:
                continue
            adjusted = adjust_family([parent[key] for parent, key in leaves], level)
            for (parent, key), result in zip(leaves, adjusted, strict=True):
                parent[key] = result
            sizes[name + suffix] = sum(r["p_adjusted"] is not None for r in adjusted)
    return sizes


def calibration(layout: RunLayout, plan: RunPlan, level: float) -> dict[str, Any]:
    """The `calibration` block of results.json (see the module docstring)."""
    if not plan.calibrate:
        return {"enabled": False, "reason": "calibrate=false: no A/A runs (set calibrate=true to train them)"}
    per_subset, every = {}, []
    for subset in plan.subsets:
        def tables(seeds: list[int], f: float = subset.fraction) -> list:
            return [load_patient_table(layout.seg_dir(f, ORIGINAL, s) / PREDICTIONS) for s in seeds]

        block = compare_tables(tables(plan.calibration_seeds), tables(plan.seeds), level)
        comparisons = [block[m] for m in BASE_METRICS] + list(block[PER_CLASS].values())
        every += comparisons
        per_subset[subset.key] = {
            "summary": calibration_summary(comparisons, level),
            **{m: _brief(block[m]) for m in BASE_METRICS},
            PER_CLASS: {c: _brief(r) for c, r in block[PER_CLASS].items()},
        }
    return to_json_safe({"enabled": True, "seeds": plan.calibration_seeds, "paired_with": plan.seeds,
                         **calibration_summary(every, level), "per_subset": per_subset})


def _brief(result: dict[str, Any]) -> dict[str, Any]:
    return {k: result.get(k) for k in ("diff", "ci", "p_value", "verdict", "reason", "detectable")
            if k in result}


def design(results: dict[str, Any], std: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """Per subset: {"seed_sd_dsc": SD of the original's strict DSC over repeats (None for one
    repeat), "detectable_dsc": median smallest Δ strict DSC detected with 80 % power}."""
    out = {}
    for fkey, block in results["fractions"].items():
        detectable = [v["vs_original"]["dsc"].get("detectable") for v in block.values()
                      if isinstance(v, dict) and "vs_original" in v]
        detectable = [d for d in detectable if d is not None]
        sd = (std.get(fkey, {}).get("original") or {}).get("dsc") if results.get("repeats", 1) > 1 else None
        out[fkey] = {"seed_sd_dsc": sd, "detectable_dsc": statistics.median(detectable) if detectable else None}
    return out


def verdict_counts(results: dict[str, Any], key: str = "verdict") -> dict[str, int]:
    """How many comparisons of strict DSC vs original got each verdict word."""
    counts: dict[str, int] = {}
    for parent, k in _leaves(results, "vs_original", "dsc"):
        word = parent[k].get(key)
        counts[word] = counts.get(word, 0) + 1
    return counts


__all__ = ["NO_CHANGE", "adjust_families", "calibration", "design", "verdict_counts"]
