"""End to end: a tiny `lcgan-pipeline` run, its results.json and report, then a resume that skips."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lcgan_lightning.constants import LESION_CLASSES
from lcgan_lightning.data.splits import fraction_key
from lcgan_lightning.pipeline import Pipeline, quoted

TINY = [
    "scale=smoke",
    "data.image_size=32",
    "data.phantom.image_size=32",
    "data.phantom.num_patients=12",
    "data.phantom.num_slices=8",
    "fractions=[0.1,0.25]",
    "judge.max_epochs=1",
    "seg.max_epochs=1",
    "gan.epochs=[1,2]",
    "gan.overrides=['model.ngf=8','model.ndf=8','data.batch_size=4']",
    "seg.overrides=['model.width=0.125']",
    "select.overrides=['max_images=8','realism.epochs=1']",
]


def _pipeline(run_dir: Path, data_dir: Path) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable, "-m", "lcgan_lightning.cli.pipeline", *TINY,
        f"hydra.run.dir={run_dir}", f"paths.data_dir={data_dir}",
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900)


def test_quoting_and_keys() -> None:
    assert quoted("/a/frac=0.1/x") == "'/a/frac=0.1/x'"
    assert (fraction_key(0.025), fraction_key(0.1), fraction_key(1)) == ("0.025", "0.1", "1.0")


def _metric_schema(m: dict) -> None:
    assert set(m) == {"dsc", "precision", "recall", "per_class_dsc"}
    for k in ("dsc", "precision", "recall"):
        assert isinstance(m[k], float) and 0.0 <= m[k] <= 1.0
    assert set(m["per_class_dsc"]) == set(LESION_CLASSES)
    assert all(v is None or 0.0 <= v <= 1.0 for v in m["per_class_dsc"].values())


@pytest.mark.slow
def test_tiny_pipeline_end_to_end_and_resume(tmp_path: Path) -> None:
    run_dir, data_dir = tmp_path / "run", tmp_path / "data"
    first = _pipeline(run_dir, data_dir)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert f"Report: {(run_dir / 'report.md').resolve()}" in first.stdout

    # every stage's fixed output
    for f in ("0.1", "0.25"):
        assert (run_dir / "synthetic" / f"frac={f}" / "manifest.json").exists()
        for aug in ("none", "gan", "traditional", "both"):
            assert (run_dir / "seg" / f"frac={f}" / f"aug={aug}" / "seed=42" / "test_metrics.json").exists()
    splits = json.loads((run_dir / "splits.json").read_text())
    assert not set(splits["train"]) & set(splits["val"]) and not set(splits["train"]) & set(splits["test"])

    # results.json against the documented schema
    results = json.loads((run_dir / "results.json").read_text())
    assert set(results) == {"scale", "image_size", "seed", "full", "fractions"}
    assert (results["scale"], results["image_size"], results["seed"]) == ("smoke", 32, 42)
    _metric_schema(results["full"])
    assert set(results["fractions"]) == {"0.1", "0.25"}
    selected = json.loads((run_dir / "selected.json").read_text())
    for f, block in results["fractions"].items():
        assert set(block) == {"original", "gan", "traditional", "both", "selected"}
        for variant in ("original", "gan", "traditional", "both"):
            _metric_schema(block[variant])
        assert set(block["selected"]) == {"epochs", "fcn_score", "sharpness", "fooled"}
        assert block["selected"]["epochs"] == selected[f]["epochs"] in (1, 2)

    # the report's numbers are the files' numbers
    report = (run_dir / "report.md").read_text()
    table1 = report.split("## Table 2")[0].splitlines()
    judge = json.loads((run_dir / "judge" / "test_metrics.json").read_text())
    full_row = next(line for line in table1 if line.startswith("| Entire dataset"))
    assert f"{judge['dsc']:.3f} / 0.628" in full_row
    for aug, label in (("none", "Selected (original)"), ("gan", "+ GAN generated"), ("both", "+ both")):
        row = next(line for line in table1 if line.startswith(f"| {label}"))
        cells = [c.strip() for c in row.strip("|").split("|")[1:]]
        for f, cell in zip(("0.1", "0.25"), cells, strict=True):
            seg = json.loads((run_dir / "seg" / f"frac={f}" / f"aug={aug}" / "seed=42" / "test_metrics.json").read_text())
            assert cell.split(" / ")[0] == f"{seg['dsc']:.3f}"
            assert results["fractions"][f][{"none": "original"}.get(aug, aug)]["dsc"] == pytest.approx(seg["dsc"])

    # a second run skips every completed stage and trains nothing
    stamps = {p: p.stat().st_mtime_ns for p in run_dir.rglob("train_result.json")}
    second = _pipeline(run_dir, data_dir)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    state = json.loads((run_dir / "pipeline_state.json").read_text())
    assert state["last_invocation"] == {
        "data": "skipped", "judge": "skipped", "gan": "skipped", "select": "skipped",
        "synthesize": "skipped", "seg": "skipped", "report": "ran",
    }
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("train_result.json")} == stamps
    assert state["stages"]["gan"]["status"] == "ran" and state["stages"]["gan"]["wall_s"] > 0


def test_failed_job_is_reported_by_name(tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"stages": ["gan"], "fractions": [0.1, 0.25], "gan": {"epochs": [1, 2], "lr_policy": "constant"}})
    pipe = Pipeline(cfg, tmp_path)
    ok, bad = pipe.gan_dirs()
    ok.mkdir(parents=True)
    (ok / "train_result.json").write_text("{}")
    bad.mkdir(parents=True)
    (bad / "failed.json").write_text(json.dumps({"error": "RuntimeError: CUDA out of memory"}))
    assert pipe._collect("gan", [ok, bad]) == [bad]
    assert pipe.failures == ["gan: gan/frac=0.25/epochs=2: RuntimeError: CUDA out of memory"]
