"""End to end: a tiny `lcgan-pipeline` run, its results.json and report, then a second run that skips.

The kill-and-resume test is tests/test_pipeline_resume.py (its own smaller run: the two files run in
parallel); the driver's rules are tested without training in tests/test_pipeline_driver.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pipeline_helpers import TINY_DATA

from lcgan_lightning.constants import LESION_CLASSES
from lcgan_lightning.data.splits import fraction_key
from lcgan_lightning.layout import RunLayout
from lcgan_lightning.pipeline import quoted
from lcgan_lightning.run_plan import RunPlan

TINY = [
    *TINY_DATA,
    "subset_counts=[2,4]",
    "repeats=2",
    "augments=[none,gan,synthetic_only]",
    "calibrate=true",  # the A/A arm: original again with seeds 44, 45
    "judge.max_epochs=1",
    "seg.max_epochs=1",
    "gan.epochs=[1,2]",
    "gan.overrides=['model.ngf=8','model.ndf=8']",
    "seg.overrides=['model.width=0.125','data.batch_size=2']",  # one epoch, validated once
    "select.overrides=['max_images=8','realism.epochs=1']",
]


def _pipeline_cmd(run_dir: Path, data_dir: Path, extra: tuple[str, ...] = ()) -> list[str]:
    return [sys.executable, "-m", "lcgan_lightning.cli.pipeline", *TINY, *extra,
            f"hydra.run.dir={run_dir}", f"paths.data_dir={data_dir}"]


def _pipeline(run_dir: Path, data_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(_pipeline_cmd(run_dir, data_dir), capture_output=True, text=True, timeout=2400)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[Path, Path, subprocess.CompletedProcess, str]:
    """One uninterrupted tiny pipeline: (run dir, data dir, the process, its results.json text)."""
    root = tmp_path_factory.mktemp("tiny")
    run_dir, data_dir = root / "run", root / "data"
    first = _pipeline(run_dir, data_dir)
    results = (run_dir / "results.json").read_text() if (run_dir / "results.json").exists() else ""
    return run_dir, data_dir, first, results


def test_quoting_and_keys() -> None:
    assert quoted("/a/frac=0.1/x") == "'/a/frac=0.1/x'"
    assert (fraction_key(0.025), fraction_key(0.1), fraction_key(1)) == ("0.025", "0.1", "1.0")


STAGES = ("data", "judge", "gan", "select", "synthesize", "audit", "seg", "calibrate", "report")
NOISE = ("💡 Tip", "litlogger", "LeafSpec", "configure_callbacks` will override", "Trainable params", "$ ")


def _console_is_quiet_and_complete(run: subprocess.CompletedProcess) -> None:
    """Captured (not a terminal): one line per stage event and per job, no library noise, the summary."""
    events = [line.split("] ", 1)[1] for line in run.stdout.splitlines() if line.startswith("[")]
    for stage in STAGES:
        assert any(e.startswith(f"{stage}: done in ") for e in events), (stage, events)
    # jobs of the multi-job stages: 2 subsets x 2 repeats (x 3 variants for seg)
    for stage, n in (("gan", 4), ("select", 2), ("synthesize", 4), ("audit", 4), ("seg", 12), ("calibrate", 4)):
        done = [e for e in events if e.startswith(f"{stage} ")]
        assert [e.split(":")[0] for e in done] == [f"{stage} {k}/{n}" for k in range(1, n + 1)], done
    assert "seg 12/12: n=4 aug=synthetic_only seed=43 done in" in run.stdout
    assert "calibrate 4/4: n=4 aug=none seed=45 done in" in run.stdout
    for text in NOISE:
        assert text not in run.stdout + run.stderr, text
    assert "Table 1 — test DSC" in run.stdout and "Selected generator per subset" in run.stdout
    assert "A/A calibration: " in run.stdout  # the calibrate stage's verdict on the verdicts
    assert run.stdout.rstrip().splitlines()[-1].startswith("Report: ")
    assert len(run.stdout.splitlines()) < 100


def _metric_schema(m: dict) -> None:
    assert {"dsc", "binary_dsc", "precision", "recall", "per_class_dsc", "per_class_dsc_present"} <= set(m)
    for k in ("dsc", "binary_dsc", "precision", "recall"):
        assert isinstance(m[k], float) and 0.0 <= m[k] <= 1.0
    assert set(m["per_class_dsc"]) == set(LESION_CLASSES) == set(m["per_class_dsc_present"])
    assert all(v is None or 0.0 <= v <= 1.0 for v in m["per_class_dsc"].values())


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_tiny_pipeline_end_to_end_and_resume(tiny_run) -> None:
    run_dir, data_dir, first, _ = tiny_run
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert f"Report: {(run_dir / 'report.md').resolve()}" in first.stdout
    _console_is_quiet_and_complete(first)

    # every stage's fixed output: 2 subsets (2 and 4 of the 8 training patients) x 2 repeats (seeds 42, 43)
    lay = RunLayout(run_dir)
    plan = RunPlan.load(lay.run_plan)
    assert [s.patients for s in plan.subsets] == [2, 4] and plan.seeds == [42, 43]
    assert plan.calibration_seeds == [44, 45]
    fracs = plan.fractions
    assert fracs == [2 / 8, 4 / 8]
    for seed in (42, 43):
        for f in fracs:
            manifest = json.loads((lay.synthetic_dir(f, seed) / "manifest.json").read_text())
            for aug in ("none", "gan", "synthetic_only"):
                assert (lay.seg_dir(f, aug, seed) / "test_metrics.json").exists()
            assert (lay.seg_dir(f, "none", seed + 2) / "test_metrics.json").exists()  # the A/A arm
            # the audit stage: one audit.json per set, made from this set with the run's judge
            audit = json.loads(lay.audit(f, seed).read_text())
            assert audit["n_synthetic"] == manifest["n"] == plan.subset(f).slices == audit["n_real"]
            assert audit["set"]["fraction"] == f and audit["set"]["seed"] == seed
            judge = json.loads((run_dir / "judge/train_result.json").read_text())
            assert audit["judge_ckpt"] == str(Path(judge["best_ckpt"] or judge["last_ckpt"]).resolve())
            for space in ("feature", "pixel"):
                assert 0.0 <= audit["memorisation"][space]["copy_rate"] <= 1.0
                assert (lay.synthetic_dir(f, seed) / audit["figures"][space]).is_file()
            assert 0.0 <= audit["diversity"]["mean_pairwise_ssim"] <= 1.0
            assert audit["diversity"]["n_masks"] == min(16, manifest["n"])
    splits = json.loads((run_dir / "splits.json").read_text())
    assert not set(splits["train"]) & set(splits["val"]) and not set(splits["train"]) & set(splits["test"])
    assert {"n=2", "n=4"} <= set(splits["subsets"])

    # results.json against the documented schema
    results = json.loads((run_dir / "results.json").read_text())
    assert {"scale", "image_size", "seed", "full", "fractions", "repeats", "budget", "statistics"} <= set(results)
    assert (results["scale"], results["image_size"], results["seed"], results["repeats"]) == ("smoke", 32, 42, 2)
    _metric_schema(results["full"])
    assert set(results["fractions"]) == {fraction_key(f) for f in fracs}
    # the A/A control: original (seeds 42, 43) against original with seeds 44, 45, by the same method
    cal = results["calibration"]
    assert cal["enabled"] and cal["seeds"] == [44, 45] and cal["paired_with"] == [42, 43]
    assert 0 <= cal["called_difference"] <= cal["comparisons"] <= 2 * 9 and cal["nominal"] == pytest.approx(0.05)
    assert set(results["statistics"]["families"]) >= {"Table 1, strict DSC", "Table 3, per-class DSC"}
    selected = json.loads(lay.selected(42).read_text())
    for f, block in results["fractions"].items():
        assert {"original", "gan", "synthetic_only", "selected", "selected_per_repeat", "patients"} <= set(block)
        for variant in ("original", "gan"):
            _metric_schema(block[variant])
        for variant in ("gan", "synthetic_only"):
            vs = block[variant]["vs_original"]["dsc"]
            assert vs["verdict"] in ("better", "no detectable change", "worse")  # two repeats: estimable
            assert vs["ci"][0] <= vs["diff"] <= vs["ci"][1] and vs["df"] >= 1
            assert vs["verdict_adjusted"] in ("better", "no detectable change", "worse")
        assert block["selected"]["epochs"] == selected[f]["epochs"] in (1, 2)
        so, orig = block["synthetic_only"], block["original"]
        _metric_schema(so)
        assert so["tstr_trtr"]["dsc"] == (pytest.approx(so["dsc"] / orig["dsc"]) if orig["dsc"] else None)
        assert so["vs_original"]["dsc"]["verdict"] in ("better", "no detectable change", "worse")
        audits = [json.loads(lay.audit(float(f), s).read_text()) for s in (42, 43)]
        assert block["audit"]["fid"] == pytest.approx(sum(a["mifid"]["fid"] for a in audits) / 2)
        assert block["audit"]["recall"] == pytest.approx(
            sum(a["precision_recall"]["recall"] for a in audits) / 2)

    # the report's numbers are the files' numbers (means over the two repeats)
    report = (run_dir / "report.md").read_text()
    table1 = report.split("**Binary lesion DSC**")[0].splitlines()
    judge = json.loads((run_dir / "judge" / "test_metrics.json").read_text())
    full_row = next(line for line in table1 if line.startswith("| Entire dataset"))
    assert f"{judge['dsc']:.3f} / 0.628" in full_row
    for aug, label in (("none", "Selected (original)"), ("gan", "+ GAN generated"),
                       ("synthetic_only", "Synthetic only (TSTR)")):
        row = next(line for line in table1 if line.startswith(f"| {label}"))
        cells = [c.strip() for c in row.strip("|").split("|")[1:]]
        for f, cell in zip(fracs, cells, strict=True):
            dscs = [json.loads((lay.seg_dir(f, aug, s) / "test_metrics.json").read_text())["dsc"] for s in (42, 43)]
            assert cell.split(" ± ")[0].split(" / ")[0] == f"{sum(dscs) / 2:.3f}"
            assert results["fractions"][fraction_key(f)][{"none": "original"}.get(aug, aug)]["dsc"] == pytest.approx(
                sum(dscs) / 2)

    section = report.split("## Synthetic-set audit")[1].split("**Mask fidelity**")[0]
    assert len([line for line in section.splitlines() if line.startswith("| 2 patients (25 %) | 4")]) == 2
    assert (run_dir / "figures" / f"audit_closest_frac={fraction_key(fracs[0])}.png").is_file()
    assert any(line.startswith("| ↳ TSTR / TRTR |") for line in table1)

    # a second run skips every completed stage and trains nothing
    stamps = {p: p.stat().st_mtime_ns for p in [*run_dir.rglob("train_result.json"), *run_dir.rglob("audit.json")]}
    second = _pipeline(run_dir, data_dir)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    state = json.loads((run_dir / "pipeline_state.json").read_text())
    assert state["last_invocation"] == {
        "data": "skipped", "judge": "skipped", "gan": "skipped", "select": "skipped",
        "synthesize": "skipped", "audit": "skipped", "seg": "skipped", "calibrate": "skipped", "report": "ran",
    }
    assert {p: p.stat().st_mtime_ns for p in [*run_dir.rglob("train_result.json"), *run_dir.rglob("audit.json")]
            } == stamps
    assert all(f"{s}: skipped (outputs exist)" in second.stdout for s in STAGES[:-1])
    # each job's full output is in its run dir, a sweep's own lines in the sweep dir
    job_log = (lay.seg_dir(fracs[0], "gan", 42) / "stdout.log").read_text()
    assert "test metrics: dsc" in job_log and "Tip" not in job_log
    assert "Launching 12 jobs locally" in (run_dir / "seg" / "stdout.log").read_text()
    assert state["stages"]["gan"]["status"] == "ran" and state["stages"]["gan"]["wall_s"] > 0
