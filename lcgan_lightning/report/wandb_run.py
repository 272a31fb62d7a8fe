"""The report as one W&B run: Tables 1–3, the selection and the audit as `wandb.Table`s, plus the figures.

The pipeline's report stage calls `log_report_run` when its logger is W&B: one run named `report`
(job type `report`) in the pipeline's group, beside the judge, GAN and segmentation runs, so the
variants of one run and two pipeline runs can be compared side by side in the W&B UI. Offline by
default (`WANDB_MODE` wins); `make wandb-sync` uploads it with the rest.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lcgan_lightning.constants import LESION_CLASSES
from lcgan_lightning.layout import RunLayout
from lcgan_lightning.report.results import METRIC_KEYS
from lcgan_lightning.run_plan import subset_title
from lcgan_lightning.variants import variants_in

Table = tuple[list[str], list[list[Any]]]


def _ci(vs: dict[str, Any] | None) -> list[Any]:
    vs = vs or {}
    lo, hi = vs.get("ci") or (None, None)
    return [vs.get("diff"), lo, hi, vs.get("verdict")]


def _variants(results: dict[str, Any]):
    """(subset key, subset block, variant key, its metrics) for every variant the run has."""
    for fkey, block in results["fractions"].items():
        for v in variants_in(block):
            if block.get(v.key):
                yield fkey, block, v.key, block[v.key]


def metric_table(results: dict[str, Any], std: dict[str, Any], metric: str) -> Table:
    """Tables 1–2 as rows: one per subset and variant (+ the entire-dataset row), with the paired
    difference from original, its bootstrap CI and the verdict."""
    cols = ["subset", "patients", "variant", metric, "std", "diff_vs_original", "ci_low", "ci_high", "verdict"]
    rows = [[subset_title(fkey, block.get("patients")), block.get("patients"), key, ours[metric],
             std.get(fkey, {}).get(key, {}).get(metric), *_ci(ours.get("vs_original", {}).get(metric))]
            for fkey, block, key, ours in _variants(results)]
    rows.append(["entire dataset", None, "full", results["full"][metric], None, None, None, None, None])
    return cols, rows


def per_class_table(results: dict[str, Any]) -> Table:
    """Table 3: truth-present per-class DSC per subset and variant, and each class's verdict."""
    cols = ["subset", "variant", *LESION_CLASSES, *(f"{c}_verdict" for c in LESION_CLASSES)]
    rows = []
    for fkey, block, key, ours in _variants(results):
        vs = ours.get("vs_original", {}).get("per_class_dsc_present", {})
        rows.append([subset_title(fkey, block.get("patients")), key, *(ours["per_class_dsc_present"][c] for c in LESION_CLASSES),
                     *((vs.get(c) or {}).get("verdict") for c in LESION_CLASSES)])
    full = results["full"]["per_class_dsc_present"]
    rows.append(["entire dataset", "full", *(full[c] for c in LESION_CLASSES), *([None] * len(LESION_CLASSES))])
    return cols, rows


def selection_table(results: dict[str, Any]) -> Table:
    """The selected generator of every subset (and repeat)."""
    cols = ["subset", "repeat", "epochs", "fcn_score", "sharpness_ratio", "ssim", "fooled"]
    rows = []
    for fkey, block in results["fractions"].items():
        per_repeat = block.get("selected_per_repeat") or {"first": block["selected"]}
        for repeat, sel in per_repeat.items():
            rows.append([subset_title(fkey, block.get("patients")), repeat, *(sel.get(k) for k in cols[2:])])
    return cols, rows


def _scalars(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_scalars(v, f"{prefix}{k}."))
        elif isinstance(v, (int, float, str, bool)) or v is None:
            out[f"{prefix}{k}"] = v
    return out


def audit_table(audit: dict[str, Any]) -> Table:
    """Audit numbers, one row per audited set (key: subset / repeat), scalar values flattened."""
    flat = {name: _scalars(entry) for name, entry in audit.items() if isinstance(entry, dict)}
    cols = sorted({k for entry in flat.values() for k in entry})
    return ["set", *cols], [[name, *(entry.get(k) for k in cols)] for name, entry in flat.items()]


def report_tables(results: dict[str, Any], std: dict[str, Any]) -> dict[str, Table]:
    """Every table the report run logs, by W&B key."""
    tables = {f"table/{m}": metric_table(results, std, m) for m in METRIC_KEYS}
    tables["table/per_class_dsc_present"] = per_class_table(results)
    tables["table/selection"] = selection_table(results)
    if isinstance(results.get("audit"), dict) and results["audit"]:
        tables["table/audit"] = audit_table(results["audit"])
    return tables


def log_report_run(run_dir: Path, group: str | None = None, project: str = "lcgan_lightning") -> Path:
    """One `report` W&B run from a written report (results.json, results_per_seed.json, figures/):
    the tables, the figures and the headline numbers in its summary. Returns the run's local folder."""
    import json

    import wandb

    layout = RunLayout(run_dir)
    results = json.loads(layout.results.read_text())
    std = json.loads(layout.results_per_seed.read_text()).get("std", {})
    scale = results.get("scale", "custom")
    run = wandb.init(
        project=project, group=group or os.environ.get("WANDB_RUN_GROUP") or f"pipeline-{Path(run_dir).name}",
        name="report", job_type="report", tags=[f"scale={scale}", "task=report"], dir=str(run_dir),
        mode=os.environ.get("WANDB_MODE", "offline"),  # type: ignore[arg-type]  # validated by wandb.init
        reinit="finish_previous",
        config={k: results.get(k) for k in ("scale", "image_size", "repeats", "budget", "seed")},
    )
    try:
        payload: dict[str, Any] = {key: wandb.Table(columns=list[str | int](cols), data=rows)
                                   for key, (cols, rows) in report_tables(results, std).items()}
        payload.update({f"figure/{p.stem}": wandb.Image(str(p)) for p in sorted(layout.figures_dir.glob("*.png"))})
        run.log(payload)
        run.summary.update({"full/dsc": results["full"]["dsc"],
                            **{f"{fkey}/{key}/dsc": ours["dsc"] for fkey, _, key, ours in _variants(results)}})
        return Path(run.dir).parent
    finally:
        run.finish()
