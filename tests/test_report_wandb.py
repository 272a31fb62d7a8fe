"""The report as one offline W&B run: Tables 1–3, selection and figures, read back with wandb's reader."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from test_wandb_names import _records

from lcgan_lightning.constants import LESION_CLASSES
from lcgan_lightning.report.wandb_run import (
    log_report_run,
    metric_table,
    per_class_table,
    report_tables,
)


def _block(dsc: float, vs: dict | None = None) -> dict:
    per_class = dict.fromkeys(LESION_CLASSES, 0.5)
    out = {"dsc": dsc, "binary_dsc": dsc + 0.1, "precision": 0.4, "recall": 0.3,
           "per_class_dsc": per_class, "per_class_dsc_present": per_class}
    if vs is not None:
        out["vs_original"] = {m: vs for m in ("dsc", "binary_dsc", "precision", "recall")}
        out["vs_original"]["per_class_dsc_present"] = dict.fromkeys(LESION_CLASSES, vs)
    return out


RESULTS = {
    "scale": "smoke", "image_size": 64, "seed": 42, "repeats": 2, "budget": "steps",
    "full": _block(0.6),
    "fractions": {"0.25": {
        "patients": 8, "slices": 40,
        "original": _block(0.2),
        "gan": _block(0.25, {"diff": 0.05, "ci": [0.01, 0.09], "verdict": "better", "n_dropped": 0}),
        "selected": {"epochs": 20, "fcn_score": 0.3, "sharpness": 0.01, "sharpness_ratio": 0.9, "ssim": 0.6,
                     "fooled": 0.2},
    }},
}
STD = {"0.25": {"original": {"dsc": 0.01}, "gan": {"dsc": 0.02}}}


def test_table_rows_carry_means_cis_and_verdicts():
    cols, rows = metric_table(RESULTS, STD, "dsc")
    assert cols[:4] == ["subset", "patients", "variant", "dsc"]
    by_variant = {r[2]: dict(zip(cols, r, strict=True)) for r in rows}
    assert by_variant["gan"] == {"subset": "8 patients (25 %)", "patients": 8, "variant": "gan", "dsc": 0.25,
                                 "std": 0.02, "diff_vs_original": 0.05, "ci_low": 0.01, "ci_high": 0.09,
                                 "verdict": "better"}
    assert by_variant["original"]["verdict"] is None and by_variant["full"]["dsc"] == 0.6
    cols, rows = per_class_table(RESULTS)
    gan = dict(zip(cols, rows[1], strict=True))
    assert gan["IPH"] == 0.5 and gan["IPH_verdict"] == "better"
    assert set(report_tables(RESULTS, STD)) == {"table/dsc", "table/binary_dsc", "table/precision",
                                                "table/recall", "table/per_class_dsc_present", "table/selection"}
    with_audit = {**RESULTS, "audit": {"0.25/seed=42": {"copy_rate": {"cosine": 0.05}, "fid": 12.0}}}
    cols, rows = report_tables(with_audit, STD)["table/audit"]
    assert cols == ["set", "copy_rate.cosine", "fid"] and rows == [["0.25/seed=42", 0.05, 12.0]]


def test_offline_report_run_read_back(tmp_path: Path, monkeypatch):
    import wandb
    from PIL import Image

    monkeypatch.delenv("WANDB_MODE", raising=False)
    wandb.finish()
    run_dir = tmp_path / "run"
    (run_dir / "figures").mkdir(parents=True)
    (run_dir / "results.json").write_text(json.dumps(RESULTS))
    (run_dir / "results_per_seed.json").write_text(json.dumps({"per_seed": {}, "std": STD}))
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(run_dir / "figures" / "fig7_improvement.png")
    folder = log_report_run(run_dir)
    (wandb_file,) = folder.glob("run-*.wandb")
    records = _records(wandb_file)
    (run,) = [r["run"] for r in records if r["type"] == "run"]
    assert run["display_name"] == "report" and run["job_type"] == "report"
    assert run["run_group"] == "pipeline-run" and run["tags"] == ["scale=smoke", "task=report"]
    # logged objects appear as flattened keys: "table/dsc._type" = "table-file", ".path", ...
    history = {k.split(".")[0]: v for r in records if r["type"] == "history"
               for k, v in r["history"]["item"].items() if k.endswith("._type")}
    assert {"table/dsc", "table/per_class_dsc_present", "table/selection", "figure/fig7_improvement"} <= set(history)
    assert history["table/dsc"] == "table-file" and history["figure/fig7_improvement"] == "image-file"
    summary = {k: v for r in records if r["type"] == "summary" for k, v in r["summary"]["update"].items()}
    assert summary["full/dsc"] == 0.6 and summary["0.25/gan/dsc"] == 0.25
