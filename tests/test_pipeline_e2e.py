"""End to end: a tiny `lcgan-pipeline` run, its results.json and report, then a resume that skips."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lcgan_lightning.constants import LESION_CLASSES
from lcgan_lightning.data.splits import fraction_key
from lcgan_lightning.layout import RunLayout
from lcgan_lightning.pipeline import Pipeline, quoted

TINY = [
    "scale=smoke",
    "data.image_size=32",
    "data.phantom.image_size=32",
    "data.phantom.num_patients=12",
    "data.phantom.num_slices=8",
    "subset_patients=[2,4]",
    "repeats=2",
    "judge.max_epochs=1",
    "seg.max_epochs=1",
    "gan.epochs=[1,2]",
    "gan.overrides=['model.ngf=8','model.ndf=8']",
    # batches of 2, validation and last.ckpt every 2 steps: mid-epoch checkpoints (the kill test needs them)
    "seg.overrides=['model.width=0.125','data.batch_size=2','trainer.check_val_every_n_epoch=null',"
    "'++trainer.val_check_interval=2']",
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


STAGES = ("data", "judge", "gan", "select", "synthesize", "audit", "seg", "report")
NOISE = ("💡 Tip", "litlogger", "LeafSpec", "configure_callbacks` will override", "Trainable params", "$ ")


def _console_is_quiet_and_complete(run: subprocess.CompletedProcess) -> None:
    """Captured (not a terminal): one line per stage event and per job, no library noise, the summary."""
    events = [line.split("] ", 1)[1] for line in run.stdout.splitlines() if line.startswith("[")]
    for stage in STAGES:
        assert any(e.startswith(f"{stage}: done in ") for e in events), (stage, events)
    # jobs of the multi-job stages: 2 subsets x 2 repeats (x 5 variants for seg)
    for stage, n in (("gan", 4), ("select", 2), ("synthesize", 4), ("audit", 4), ("seg", 20)):
        done = [e for e in events if e.startswith(f"{stage} ")]
        assert [e.split(":")[0] for e in done] == [f"{stage} {k}/{n}" for k in range(1, n + 1)], done
    assert "seg 20/20: n=4 aug=synthetic_only seed=43 done in" in run.stdout
    for text in NOISE:
        assert text not in run.stdout + run.stderr, text
    assert "Table 1 — test DSC" in run.stdout and "Selected generator per subset" in run.stdout
    assert run.stdout.rstrip().splitlines()[-1].startswith("Report: ")
    assert len(run.stdout.splitlines()) < 80


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
    subsets = json.loads(lay.subsets.read_text())
    assert [v["patients"] for v in subsets.values()] == [2, 4]
    fracs = [v["fraction"] for v in subsets.values()]
    assert fracs == [2 / 8, 4 / 8]
    for seed in (42, 43):
        for f in fracs:
            manifest = json.loads((lay.synthetic_dir(f, seed) / "manifest.json").read_text())
            for aug in ("none", "gan", "traditional", "both", "synthetic_only"):
                assert (lay.seg_dir(f, aug, seed) / "test_metrics.json").exists()
            # the audit stage: one audit.json per set, made from this set with the run's judge
            audit = json.loads(lay.audit(f, seed).read_text())
            assert audit["n_synthetic"] == manifest["n"] == subsets[fraction_key(f)]["slices"] == audit["n_real"]
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
    selected = json.loads(lay.selected(42).read_text())
    for f, block in results["fractions"].items():
        assert {"original", "gan", "traditional", "both", "selected", "selected_per_repeat", "patients"} <= set(block)
        for variant in ("original", "gan", "traditional", "both"):
            _metric_schema(block[variant])
        for variant in ("gan", "traditional", "both"):
            vs = block[variant]["vs_original"]["dsc"]
            assert vs["verdict"] in ("better", "no detectable change", "worse")
            assert vs["ci"][0] <= vs["diff"] <= vs["ci"][1]
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
    for aug, label in (("none", "Selected (original)"), ("gan", "+ GAN generated"), ("both", "+ both")):
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
        "synthesize": "skipped", "audit": "skipped", "seg": "skipped", "report": "ran",
    }
    assert {p: p.stat().st_mtime_ns for p in [*run_dir.rglob("train_result.json"), *run_dir.rglob("audit.json")]
            } == stamps
    assert all(f"{s}: skipped (outputs exist)" in second.stdout for s in STAGES[:-1])
    # each job's full output is in its run dir, a sweep's own lines in the sweep dir
    job_log = (lay.seg_dir(fracs[0], "gan", 42) / "stdout.log").read_text()
    assert "test metrics: dsc" in job_log and "Tip" not in job_log
    assert "Launching 20 jobs locally" in (run_dir / "seg" / "stdout.log").read_text()
    assert state["stages"]["gan"]["status"] == "ran" and state["stages"]["gan"]["wall_s"] > 0


def _mid_epoch_seg_job(run_dir: Path) -> Path | None:
    """A segmentation job that has written a mid-epoch last.ckpt and not finished, if any."""
    import torch

    for last in (run_dir / "seg").glob("*/*/*/checkpoints/last.ckpt"):
        job = last.parents[1]
        try:
            state = torch.load(last, map_location="cpu", weights_only=True)["loops"]["fit_loop"]["state_dict"]
        except (RuntimeError, EOFError, KeyError, OSError):
            continue  # being replaced
        if "seed" in state["combined_loader"][0] and not (job / "train_result.json").exists():
            return job
    return None


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_pipeline_killed_during_segmentation_gives_the_uninterrupted_results(tiny_run, tmp_path: Path) -> None:
    """SIGKILL to the whole pipeline (process group) once a segmentation job has a mid-epoch last.ckpt;
    the same command again finishes with the results.json of the uninterrupted run, number for number."""
    first_dir, data_dir, first, reference = tiny_run
    assert first.returncode == 0 and reference
    # the stages before seg are the uninterrupted run's (copied: this test is about the seg stage)
    run_dir = tmp_path / "run"
    shutil.copytree(first_dir, run_dir, ignore=shutil.ignore_patterns("seg", "figures", "results*.json", "report.md"))
    # the killed invocation sleeps after every training batch, so the kill lands inside a job
    tests = str(Path(__file__).parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (tests, os.environ.get("PYTHONPATH")) if p)}
    seg = TINY[[t.startswith("seg.overrides=") for t in TINY].index(True)]
    throttled = seg[:-1] + ",'+callbacks.throttle._target_=resume_helpers.Throttle','+callbacks.throttle.seconds=0.5']"
    proc = subprocess.Popen(_pipeline_cmd(run_dir, data_dir, (throttled,)), env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, job = time.monotonic() + 2400, None
    while proc.poll() is None and time.monotonic() < deadline:
        if (run_dir / "seg").is_dir() and (job := _mid_epoch_seg_job(run_dir)) is not None:
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.1)
    assert proc.wait() == -signal.SIGKILL, "the pipeline ended before it was killed"
    assert job is not None and not (job / "train_result.json").exists()

    again = _pipeline(run_dir, data_dir)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    state = json.loads((run_dir / "pipeline_state.json").read_text())
    assert state["last_invocation"]["seg"] == "ran"
    assert json.loads((run_dir / "results.json").read_text()) == json.loads(reference)


def test_failed_job_is_reported_by_name(tmp_path: Path, capsys) -> None:
    """...with the last 20 lines of its log and the log's path on the console."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"stages": ["gan"], "seed": 3, "fractions": [0.1, 0.25],
                            "gan": {"epochs": [1, 2], "lr_policy": "constant"}})
    pipe = Pipeline(cfg, tmp_path)
    ok, bad = pipe.gan_dirs()
    ok.mkdir(parents=True)
    (ok / "train_result.json").write_text("{}")
    bad.mkdir(parents=True)
    (bad / "failed.json").write_text(json.dumps({"error": "RuntimeError: CUDA out of memory"}))
    (bad / "stdout.log").write_text("".join(f"log line {i}\n" for i in range(1, 31)))
    assert pipe._collect("gan", [ok, bad]) == [bad]
    assert pipe.failures == ["gan: gan/frac=0.25/seed=3/epochs=2: RuntimeError: CUDA out of memory"]
    out = capsys.readouterr().out
    assert "✗ gan: gan/frac=0.25/seed=3/epochs=2 failed: RuntimeError: CUDA out of memory" in out
    shown = [line.split("│ ", 1)[1] for line in out.splitlines() if "│ " in line]
    assert shown == [f"log line {i}" for i in range(11, 31)]
    assert f"log: {bad / 'stdout.log'}" in out


def test_paper_settings_without_vgg_weights_stop_before_training(tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    from lcgan_lightning.pipeline import PipelineError

    cfg = OmegaConf.create({"seed": 1, "fractions": [0.1], "seg": {"model": "fcn8s_paper", "pretrained_vgg16": None}})
    with pytest.raises(PipelineError, match=r"seg.pretrained_vgg16=/path/to/vgg16-397923af.pth.*seg.model=fcn8s"):
        Pipeline(cfg, tmp_path / "run").run()
    assert not (tmp_path / "run").exists()  # nothing was started
    cfg.seg.pretrained_vgg16 = str(tmp_path / "missing.pth")
    with pytest.raises(PipelineError, match="missing.pth: no such file"):
        Pipeline(cfg, tmp_path / "run").run()


def test_subset_counts_become_exact_fractions(tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    from lcgan_lightning.data.splits import subset_size
    from lcgan_lightning.pipeline import PipelineError

    pipe = Pipeline(OmegaConf.create({"seed": 0, "subset_patients": [53, 212, 529]}), tmp_path)
    fracs = pipe._fractions(2117)
    assert [subset_size(f, 2117) for f in fracs] == [53, 212, 529]  # the paper's sizes
    with pytest.raises(PipelineError, match=r"\[600\] outside 1..500 \(the training split holds 500 patients\)"):
        Pipeline(OmegaConf.create({"seed": 0, "subset_patients": [10, 600]}), tmp_path)._fractions(500)


def test_gan_update_budget_becomes_epochs_per_subset(tmp_path: Path) -> None:
    """gan.updates: small subsets get more epochs for the same number of generator updates."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"seed": 0, "fractions": [0.1, 0.5], "gan": {"updates": [100, 400], "batch_size": 4,
                                                                         "lr_policy": "constant"}})
    pipe = Pipeline(cfg, tmp_path)
    pipe._facts = {"fractions": [0.1, 0.5], "slices": {"0.1": 40, "0.5": 200}, "patients": {}, "n_train": 0}
    assert pipe.gan_epochs(0.1) == [10, 40]  # 10 updates per epoch
    assert pipe.gan_epochs(0.5) == [2, 8]  # 50 updates per epoch
    assert pipe.gan_run_epochs(0.1) == [40]
    assert [c["epochs"] for c in pipe.candidates(seed=0)] == [10, 40, 2, 8]
    assert pipe.candidates(seed=0)[1]["checkpoint"].endswith("gan/frac=0.1/seed=0/epochs=40/checkpoints/epoch=040.ckpt")
