"""Report and results.json from hand-made run-dir files (no training)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from lcgan_lightning.constants import LESION_CLASSES
from lcgan_lightning.layout import RunLayout
from lcgan_lightning.metrics import compute_metrics, write_metrics_json
from lcgan_lightning.report import PAPER, write_report

FRACTIONS = ("0.025", "0.1")
VARIANT_DIRS = {"none": "original", "gan": "gan", "traditional": "traditional", "both": "both"}
N_PATIENTS, PER_PATIENT = 8, 2


def _truth() -> np.ndarray:
    true = np.zeros((N_PATIENTS * PER_PATIENT, 16, 16), np.uint8)
    for i in range(len(true)):
        true[i, 4:10, 3 + i % 4 : 9 + i % 4] = 1 + i % 5
    return true


def _prediction(aug: str, seed: int) -> np.ndarray:
    """gan: exact; none and traditional: shifted (worse); both: nothing predicted (worst)."""
    true = _truth()
    if aug == "gan":
        return true.copy()
    if aug == "both":
        return np.zeros_like(true)
    return np.roll(true, 2 + seed % 2, axis=2)


def _fake_run(run_dir: Path, seeds=(1, 2)) -> dict:
    """A run dir as the pipeline leaves it; returns the metrics written."""
    lay = RunLayout(run_dir)
    written: dict = {}
    lay.judge_dir.mkdir(parents=True)
    true = _truth()
    write_metrics_json(compute_metrics(true, true), lay.judge_dir / "test_metrics.json")
    patients = np.repeat([f"p{i}" for i in range(N_PATIENTS)], PER_PATIENT)
    for f in FRACTIONS:
        for aug, name in VARIANT_DIRS.items():
            for s in seeds:
                d = lay.seg_dir(float(f), aug, s)
                d.mkdir(parents=True)
                pred = _prediction(aug, s)
                m = compute_metrics(pred, true)
                write_metrics_json(m, d / "test_metrics.json")
                np.savez_compressed(d / "predictions.npz", pred=pred, true=true, patient=patients.astype(str),
                                    volume=patients.astype(str), slice=np.arange(len(true), dtype=np.int32))
                written.setdefault(f, {}).setdefault(name, []).append(m)
    for s in seeds:
        lay.select_dir(s).mkdir(parents=True)
        selected = {
            f: {"checkpoint": f"/x/{f}.ckpt", "epochs": 4, "fcn_score": 0.5, "sharpness": 0.01, "sharpness_ratio": 1.1,
                "ssim": 0.6, "fooled": 0.3, "reason": "best FCN score"}
            for f in FRACTIONS
        }
        lay.selected(s).write_text(json.dumps(selected))
        lay.scores(s).write_text(json.dumps({"candidates": [], "conventions": {"fcn_score": "higher is better"}}))
    lay.pipeline_config.write_text(
        f"seed: {seeds[0]}\nrepeats: {len(seeds)}\nbudget: steps\nfractions: [{', '.join(FRACTIONS)}]\n"
        "augments: [none, gan, traditional, both]\ndata:\n  image_size: 16\n"
    )
    lay.state.write_text(json.dumps({"stages": {"judge": {"status": "ran", "wall_s": 12.5}}, "last_invocation": {}}))
    return written


def _check_metrics_schema(m: dict) -> None:
    assert set(m) >= {"dsc", "binary_dsc", "precision", "recall", "per_class_dsc", "per_class_dsc_present"}
    assert all(isinstance(m[k], float) for k in ("dsc", "binary_dsc", "precision", "recall"))
    assert set(m["per_class_dsc"]) == set(LESION_CLASSES) == set(m["per_class_dsc_present"])


def test_results_json_schema_means_and_verdicts(tmp_path: Path) -> None:
    written = _fake_run(tmp_path)
    write_report(tmp_path, scale="smoke")
    results = json.loads((tmp_path / "results.json").read_text())
    assert {"scale", "image_size", "seed", "full", "fractions", "repeats", "budget", "statistics"} <= set(results)
    assert (results["scale"], results["image_size"], results["seed"], results["repeats"]) == ("smoke", 16, 1, 2)
    _check_metrics_schema(results["full"])
    assert set(results["fractions"]) == set(FRACTIONS)
    for f in FRACTIONS:
        block = results["fractions"][f]
        assert {"original", "gan", "traditional", "both", "selected", "selected_per_repeat"} <= set(block)
        assert block["selected"] == {"epochs": 4, "fcn_score": 0.5, "sharpness": 0.01, "sharpness_ratio": 1.1,
                                     "ssim": 0.6, "fooled": 0.3}
        for name in VARIANT_DIRS.values():
            _check_metrics_schema(block[name])
            runs = written[f][name]
            assert block[name]["dsc"] == pytest.approx(sum(r["dsc"] for r in runs) / len(runs))
        assert "vs_original" not in block["original"]
        # gan predicts the truth, traditional = original, both predicts nothing
        assert block["gan"]["vs_original"]["dsc"]["verdict"] == "better"
        assert block["gan"]["vs_original"]["dsc"]["diff"] == pytest.approx(
            block["gan"]["dsc"] - block["original"]["dsc"])
        assert block["traditional"]["vs_original"]["dsc"]["verdict"] == "no detectable change"
        assert block["traditional"]["vs_original"]["dsc"]["ci"] == [0.0, 0.0]
        assert block["both"]["vs_original"]["recall"]["verdict"] == "worse"
        assert block["gan"]["vs_original"]["per_class_dsc_present"]["IPH"]["verdict"] == "better"


def test_report_numbers_equal_the_files(tmp_path: Path) -> None:
    written = _fake_run(tmp_path, seeds=(1,))
    report = write_report(tmp_path, scale="smoke").read_text()
    table1 = report.split("**Binary lesion DSC**")[0]
    original_row = next(line for line in table1.splitlines() if line.startswith("| Selected (original)"))
    cells = [c.strip() for c in original_row.strip("|").split("|")[1:]]
    for f, cell in zip(FRACTIONS, cells, strict=True):
        ours, paper = (float(x) for x in cell.split(" / "))
        assert ours == pytest.approx(written[f]["original"][0]["dsc"], abs=5e-4)
        assert paper == PAPER["fractions"][f]["original"]["dsc"]
    change_rows = [line for line in table1.splitlines() if line.startswith("| ↳ Δ vs original")]
    assert len(change_rows) == 3 and "better" in change_rows[0] and "no detectable change" in change_rows[1]
    assert re.search(r"\+\d\.\d{3} \[\+\d\.\d{3}, \+\d\.\d{3}\] better", change_rows[0])
    assert "TRUTH holds the class" in report  # Table 3 says which per-class definition it uses
    assert "| judge | ran | 12.5 |" in report
    assert (tmp_path / "figures" / "fig7_improvement.png").stat().st_size > 1000


def test_report_shows_std_over_repeats(tmp_path: Path) -> None:
    _fake_run(tmp_path, seeds=(1, 2))
    report = write_report(tmp_path, scale="smoke").read_text()
    assert "mean ± std over repeats" in report and " ± " in report.split("## Table 2")[0]
    per_seed = json.loads((tmp_path / "results_per_seed.json").read_text())
    assert set(per_seed["per_seed"]["0.1"]["gan"]) == {"seed=1", "seed=2"}


def test_missing_run_is_an_error_naming_it(tmp_path: Path) -> None:
    _fake_run(tmp_path, seeds=(1, 2))
    (tmp_path / "seg" / "frac=0.1" / "aug=gan" / "seed=2" / "test_metrics.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"seg/frac=0.1/aug=gan/seed=2/test_metrics.json"):
        write_report(tmp_path, scale="smoke")


def test_selected_without_realism_gives_null_fooled(tmp_path: Path) -> None:
    _fake_run(tmp_path, seeds=(1,))
    lay = RunLayout(tmp_path)
    selected = json.loads(lay.selected(1).read_text())
    selected["0.1"]["fooled"] = None
    lay.selected(1).write_text(json.dumps(selected))
    write_report(tmp_path, scale="smoke")
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["fractions"]["0.1"]["selected"]["fooled"] is None
    assert results["fractions"]["0.025"]["selected"]["fooled"] == 0.3
