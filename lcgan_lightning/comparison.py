"""Paired comparison of every augmentation variant with "original", per training subset.

For each subset and variant the paired difference from the original training set, with its 95 %
bootstrap CI over test patients and a verdict word (:mod:`lcgan_lightning.stats`), for the overall
metrics (DSC, binary lesion DSC, precision, recall) and the per-class DSC over the images whose
truth holds the class. Reads each segmentation run's `predictions.npz`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lcgan_lightning.constants import LESION_CLASSES
from lcgan_lightning.layout import PREDICTIONS, RunLayout
from lcgan_lightning.metrics import to_json_safe
from lcgan_lightning.stats import BASE_METRICS, load_patient_table, paired_bootstrap

METHOD = (
    "Paired difference variant − original on the same test patients, averaged over the repeats "
    "(repeat r of the variant against repeat r of the original). 95 % percentile bootstrap CI: each "
    "replicate resamples the test patients (the same for both arms) and the repeats with replacement. "
    "Verdict: better if the whole CI is above 0, worse if below 0, else no detectable change "
    "(not estimable when a class is in no test image)."
)


def _brief(result: dict[str, Any]) -> dict[str, Any]:
    return {k: result[k] for k in ("diff", "ci", "verdict", "n_dropped")}


def compare_to_original(
    layout: RunLayout,
    fraction: float,
    augments: Sequence[str],
    seeds: Sequence[int],
    names: dict[str, str],
    n_boot: int = 2000,
    level: float = 0.95,
    boot_seed: int = 0,
    reference: str = "none",
) -> dict[str, dict[str, Any]]:
    """{variant name: {"dsc": {diff, ci, verdict, n_dropped}, ..., "per_class_dsc_present": {class: {...}}}}.

    ``reference`` is the augment every other one is compared with ("none" = original; "gan" for
    the new-mask and k > 1 variants: do new masks or more images per mask beat one redraw per mask?).
    """
    if reference not in augments:
        return {}
    tables = {a: [load_patient_table(layout.seg_dir(fraction, a, s) / PREDICTIONS) for s in seeds] for a in augments}
    out: dict[str, dict[str, Any]] = {}
    for aug in augments:
        if aug == reference:
            continue
        block: dict[str, Any] = {
            m: _brief(paired_bootstrap(tables[aug], tables[reference], m, n_boot, boot_seed, level))
            for m in BASE_METRICS
        }
        block["per_class_dsc_present"] = {
            c: _brief(paired_bootstrap(tables[aug], tables[reference], f"dsc_{c}", n_boot, boot_seed, level))
            for c in LESION_CLASSES
        }
        out[names[aug]] = to_json_safe(block)
    return out


def compared_with_gan(augments: Sequence[str]) -> list[str]:
    """The augments compared with "gan" (one synthetic CT per training mask): the new-mask variants
    and every k > 1 variant, plus "gan" itself as the reference; empty without "gan" or such a variant."""
    others = [a for a in augments if a != "gan" and (a.startswith(("gan_novel", "both_novel")) or "-k" in a)]
    return ["gan", *others] if "gan" in augments and others else []


def fmt_change(result: dict[str, Any] | None) -> str:
    """'+0.021 [+0.004, +0.040] better' (or '—')."""
    if not result or result.get("diff") is None:
        return "—"
    lo, hi = result["ci"]
    if lo is None or hi is None:
        return f"{result['diff']:+.3f} {result['verdict']}"
    return f"{result['diff']:+.3f} [{lo:+.3f}, {hi:+.3f}] {result['verdict']}"
