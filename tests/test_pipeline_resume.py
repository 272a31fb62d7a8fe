"""Kill a pipeline during its segmentation stage, run the same command again: the segmenters end
with the numbers of an uninterrupted run (exact resume from a mid-epoch last.ckpt)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

SMALL = [  # data and seg only: the seg stage needs no judge, GAN or synthetic set for augments=[none]
    "scale=smoke",
    "stages=[data,seg]",
    "augments=[none]",
    "data.image_size=32",
    "data.phantom.image_size=32",
    "data.phantom.num_patients=12",
    "data.phantom.num_slices=8",
    "subset_counts=[4]",
    "seg.max_epochs=1",
]
# batches of 2, validation and last.ckpt every 2 steps: mid-epoch checkpoints (the kill needs them)
SEG = ("seg.overrides=['model.width=0.125','data.batch_size=2','trainer.check_val_every_n_epoch=null',"
       "'++trainer.val_check_interval=2'")


def _cmd(run_dir: Path, data_dir: Path, seg: str) -> list[str]:
    return [sys.executable, "-m", "lcgan_lightning.cli.pipeline", *SMALL, seg + "]",
            f"hydra.run.dir={run_dir}", f"paths.data_dir={data_dir}"]


def _seg_results(run_dir: Path) -> dict[str, object]:
    """Every segmentation job's test metrics and predicted label maps, by run dir."""
    out: dict[str, object] = {}
    for metrics in sorted(run_dir.glob("seg/*/*/*/test_metrics.json")):
        with np.load(metrics.parent / "predictions.npz") as z:
            pred = z["pred"].tobytes()
        out[str(metrics.parent.relative_to(run_dir))] = (json.loads(metrics.read_text()), pred)
    return out


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
@pytest.mark.timeout(1800)
def test_pipeline_killed_during_segmentation_gives_the_uninterrupted_results(tmp_path: Path) -> None:
    """SIGKILL to the whole pipeline (process group) once a segmentation job has a mid-epoch last.ckpt;
    the same command again finishes with the test metrics and predictions of the uninterrupted run."""
    data_dir, reference_dir, run_dir = tmp_path / "data", tmp_path / "reference", tmp_path / "run"
    first = subprocess.run(_cmd(reference_dir, data_dir, SEG), capture_output=True, text=True, timeout=1200)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    reference = _seg_results(reference_dir)
    assert len(reference) == 1  # 1 subset x augments=[none] x 1 repeat
    shutil.copytree(reference_dir, run_dir, ignore=shutil.ignore_patterns("seg"))

    # the killed invocation sleeps after every training batch, so the kill lands inside a job
    tests = str(Path(__file__).parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (tests, os.environ.get("PYTHONPATH")) if p)}
    throttled = SEG + ",'+callbacks.throttle._target_=resume_helpers.Throttle','+callbacks.throttle.seconds=0.5'"
    proc = subprocess.Popen(_cmd(run_dir, data_dir, throttled), env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, job = time.monotonic() + 1200, None
    while proc.poll() is None and time.monotonic() < deadline:
        if (run_dir / "seg").is_dir() and (job := _mid_epoch_seg_job(run_dir)) is not None:
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.1)
    assert proc.wait() == -signal.SIGKILL, "the pipeline ended before it was killed"
    assert job is not None and not (job / "train_result.json").exists()

    again = subprocess.run(_cmd(run_dir, data_dir, SEG), capture_output=True, text=True, timeout=1200)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "data: skipped (outputs exist)" in again.stdout
    assert _seg_results(run_dir) == reference
