"""Paired comparisons of segmentation runs: a variant against its reference, metric by metric.

Two entry points share one computation (:func:`compare_tables`, method in
:mod:`lcgan_lightning.inference` and ``docs/verdicts.md``):

* :func:`compare_to_original` — the pipeline report: per training subset, every augmentation variant
  against "original" (or "gan"), repeats paired by seed;
* :func:`compare_run_dirs` — ``lcgan-compare``: any two equal-length lists of segmentation run dirs
  (each holding ``predictions.npz``), paired by position.

Per comparison: the overall metrics (DSC, binary lesion DSC, precision, recall) and the per-class DSC
over the images whose truth holds the class, each with its difference, t interval, p-value, verdict,
Holm-adjusted p-value and verdict over the comparisons of the call (the family), and the smallest
effect the comparison detects with 80 % power.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lcgan_lightning.constants import NUM_CLASSES
from lcgan_lightning.errors import UserError
from lcgan_lightning.inference import METHOD_TEXT, NO_CHANGE, adjust_family, paired_comparison
from lcgan_lightning.layout import PREDICTIONS, RunLayout
from lcgan_lightning.metrics import to_json_safe
from lcgan_lightning.stats import (
    BASE_METRICS,
    PatientTable,
    check_pairing,
    load_patient_table,
    shared_patients,
)

METHOD = METHOD_TEXT
PER_CLASS = "per_class_dsc_present"
# what a report keeps of each comparison (the level and the method text are stated once per file)
KEPT = ("diff", "ci", "p_value", "verdict", "reason", "se", "df", "detectable", "seed_var", "patient_var",
        "n_patients", "n_repeats", "repeats_left_out", "p_adjusted", "verdict_adjusted")


class ComparisonError(UserError, ValueError):
    """Run dirs that cannot be compared: no predictions, other test patients, groups that do not pair."""

    hint = ("give two equally long lists of segmentation run dirs (each with predictions.npz) tested on "
            "the same test patients, paired by position: variant=[A1,A2,...] reference=[B1,B2,...]")


def _leaves(block: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """(parent dict, key) of every comparison in a block (the base metrics, then the classes)."""
    out = [(block, m) for m in BASE_METRICS if m in block]
    out += [(block[PER_CLASS], c) for c in block.get(PER_CLASS, {})]
    return out


def compare_tables(variant: Sequence[PatientTable], reference: Sequence[PatientTable],
                   level: float = 0.95) -> dict[str, Any]:
    """{"dsc": result, "binary_dsc", "precision", "recall", "per_class_dsc_present": {class: result}}
    with each result of :func:`lcgan_lightning.inference.paired_comparison` (not yet adjusted)."""
    block: dict[str, Any] = {m: paired_comparison(variant, reference, m, level) for m in BASE_METRICS}
    names = reference[0].class_names
    block[PER_CLASS] = {c: paired_comparison(variant, reference, f"dsc_{c}", level) for c in names}
    return block


def adjust_blocks(blocks: Sequence[dict[str, Any]], level: float = 0.95) -> int:
    """Holm over every comparison of ``blocks`` (one family), in place: adds "p_adjusted" and
    "verdict_adjusted" to each; returns the family size (estimable comparisons)."""
    leaves = [leaf for block in blocks for leaf in _leaves(block)]
    adjusted = adjust_family([parent[key] for parent, key in leaves], level)
    for (parent, key), result in zip(leaves, adjusted, strict=True):
        parent[key] = result
    return sum(r["p_adjusted"] is not None for r in adjusted)


def _brief(block: dict[str, Any]) -> dict[str, Any]:
    for parent, key in _leaves(block):
        parent[key] = {k: parent[key][k] for k in KEPT if k in parent[key]}
    return block


def compare_to_original(
    layout: RunLayout,
    fraction: float,
    augments: Sequence[str],
    seeds: Sequence[int],
    names: dict[str, str],
    level: float = 0.95,
    reference: str = "none",
) -> dict[str, dict[str, Any]]:
    """{variant name: {"dsc": {diff, ci, p_value, verdict, ...}, ..., "per_class_dsc_present": {class: {...}}}}.

    ``reference`` is the augment every other one is compared with ("none" = original; "gan" for
    the new-mask and k > 1 variants: do new masks or more images per mask beat one redraw per mask?).
    Not adjusted for many comparisons: the report adjusts within each of its tables
    (:mod:`lcgan_lightning.report.verdicts`).
    """
    if reference not in augments:
        return {}
    tables = {a: [load_patient_table(layout.seg_dir(fraction, a, s) / PREDICTIONS) for s in seeds] for a in augments}
    return {names[a]: to_json_safe(_brief(compare_tables(tables[a], tables[reference], level)))
            for a in augments if a != reference}


def _truth_digest(npz_path: Path) -> str:
    """A fingerprint of a test run's truth: its label maps (shape, type, values) and patient ids."""
    with np.load(npz_path, allow_pickle=False) as z:
        true, patients = np.ascontiguousarray(z["true"]), np.asarray(z["patient"]).astype(str)
    h = hashlib.sha256(f"{true.shape}{true.dtype}".encode())
    h.update(true.tobytes())
    h.update("\n".join(patients.tolist()).encode())
    return h.hexdigest()


def _load_group(name: str, dirs: Sequence[str | Path], num_classes: int) -> tuple[list[PatientTable], list[str]]:
    """The patient tables and truth fingerprints of a group of run dirs (ComparisonError naming a bad dir)."""
    if not dirs:
        raise ComparisonError(f"{name}: the group is empty; give at least one run dir")
    tables, digests = [], []
    for d in map(Path, dirs):
        path = d / PREDICTIONS
        if not d.is_dir():
            raise ComparisonError(f"{d}: no such run dir ({name} group)")
        if not path.is_file():
            raise ComparisonError(f"{d}: no {PREDICTIONS} ({name} group): not a segmentation run's test output")
        try:
            tables.append(load_patient_table(path, num_classes))
            digests.append(_truth_digest(path))
        except (ValueError, OSError, KeyError) as err:
            raise ComparisonError(f"{path}: unreadable ({name} group): {err}") from err
    return tables, digests


def _check_truth(variant: Sequence[str | Path], reference: Sequence[str | Path], v_digests: list[str],
                 r_digests: list[str], shared: bool) -> None:
    """Paired runs (with one test split: every run) must hold the same test label maps."""
    pairs = [(variant[r], v, reference[r], o) for r, (v, o) in enumerate(zip(v_digests, r_digests, strict=True))]
    if shared:
        pairs = [(d, dig, reference[0], r_digests[0]) for d, dig in [*zip(reference, r_digests, strict=True),
                                                                      *zip(variant, v_digests, strict=True)]]
    for d, dig, ref, ref_dig in pairs:
        if dig != ref_dig:
            raise ComparisonError(f"{d} has other test truth (label maps) than {ref}: not the same test images")


def compare_run_dirs(variant: Sequence[str | Path], reference: Sequence[str | Path], level: float = 0.95,
                     num_classes: int = NUM_CLASSES) -> dict[str, Any]:
    """Compare two groups of segmentation run dirs, paired by position (variant[r] with reference[r]).

    Returns {"variant": [dirs], "reference": [dirs], "level", "n_repeats", "n_patients",
    "shared_test_patients", "family", "family_size", "method", "metrics": {"dsc": {...}, "binary_dsc",
    "precision", "recall", "per_class_dsc_present": {class: {...}}}}, each metric's dict as
    :func:`lcgan_lightning.inference.paired_comparison` returns it plus "p_adjusted" and
    "verdict_adjusted" (JSON-safe). Raises :class:`ComparisonError` naming the run dir at fault.
    """
    if not 0.0 < level < 1.0:
        raise ComparisonError(f"level: must be in (0, 1), got {level}", "e.g. level=0.95")
    v_tables, v_digests = _load_group("variant", variant, num_classes)
    r_tables, r_digests = _load_group("reference", reference, num_classes)
    if len(v_tables) != len(r_tables):
        raise ComparisonError(
            f"variant has {len(v_tables)} run dirs and reference {len(r_tables)}: runs are paired by "
            "position, so the groups need the same size")
    try:
        check_pairing(v_tables, r_tables, [str(d) for d in variant], [str(d) for d in reference])
    except ValueError as err:
        raise ComparisonError(str(err)) from err
    shared = shared_patients(r_tables)
    _check_truth(variant, reference, v_digests, r_digests, shared)
    block = compare_tables(v_tables, r_tables, level)
    size = adjust_blocks([block], level)
    return to_json_safe({
        "variant": [str(d) for d in variant],
        "reference": [str(d) for d in reference],
        "level": level,
        "n_repeats": len(r_tables),
        "n_patients": len(r_tables[0].patients) if shared else sum(len(t.patients) for t in r_tables),
        "shared_test_patients": shared,
        "family": "Holm over the comparisons of this file: dsc, binary_dsc, precision, recall and the "
                  f"per-class DSC of {', '.join(r_tables[0].class_names)}",
        "family_size": size,
        "method": METHOD,
        "metrics": block,
    })


def compared_with_gan(augments: Sequence[str]) -> list[str]:
    """The augments compared with "gan" (one synthetic CT per training mask): the new-mask variants
    and every k > 1 variant, plus "gan" itself as the reference; empty without "gan" or such a variant."""
    others = [a for a in augments if a != "gan" and (a.startswith(("gan_novel", "both_novel")) or "-k" in a)]
    return ["gan", *others] if "gan" in augments and others else []


def fmt_change(result: dict[str, Any] | None, adjusted: bool = True) -> str:
    """One comparison in words: '+0.021 [+0.004, +0.040] better', '+0.003 [−0.02, +0.03] no detectable
    change (80 % power at ±0.031)', '+0.021 not estimable (one training run per arm)', or '—'; with
    `adjusted`, Holm's verdict where it differs ('better; Holm: no detectable change')."""
    if not result or result.get("diff") is None:
        return "—"
    diff = f"{result['diff']:+.3f}"
    lo, hi = result.get("ci") or (None, None)
    if lo is None or hi is None:
        reason = f" ({result['reason']})" if result.get("reason") else ""
        return f"{diff} {result['verdict']}{reason}"
    text = f"{diff} [{lo:+.3f}, {hi:+.3f}] {result['verdict']}"
    if result["verdict"] == NO_CHANGE and result.get("detectable") is not None:
        text += f" (80 % power at ±{result['detectable']:.3f})"
    if adjusted and result.get("verdict_adjusted") not in (None, result["verdict"]):
        text += f"; Holm: {result['verdict_adjusted']}"
    return text
