"""End to end with another generator family: the smallest real `lcgan-pipeline gan.model=spade` run
(one subset, one repeat, original and + GAN, 32²); the LcGAN's is tests/test_pipeline_e2e.py.

One family only: SPADE and diffusion together took 6 min here (2 busy cores; spade ~2.2 min after a
shared data + judge run of 0.7 min, diffusion ~3 min). `FAMILY=diffusion` in this file runs the other
(it passed once with the settings below). Without training: tests/test_pipeline_generators.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pipeline_helpers import TINY_DATA

from lcgan_lightning.layout import RunLayout
from lcgan_lightning.run_plan import RunPlan

TINY = [
    *TINY_DATA,
    "subset_counts=[2]",
    "repeats=1",
    "augments=[none,gan]",
    "judge.max_epochs=1",
    "seg.max_epochs=1",
    "gan.epochs=[1]",
    "seg.overrides=['model.width=0.125','data.batch_size=2']",
    "select.overrides=['max_images=4','realism.epochs=1']",
    # tiny networks, as tests/test_generators.py trains them
    "gan.family_overrides.spade=['model.channels=[8,16,16]','model.hidden=8','model.ndf=8','model.num_d=2',"
    "'model.n_layers_d=1','model.z_dim=4','model.n_panel=1']",
    "gan.family_overrides.diffusion=['model.channels=[8,16,16]','model.norm_num_groups=8',"
    "'model.num_head_channels=8','model.sample_steps=2','model.n_panel=1']",
]
FAMILY = "spade"
LABEL = {"spade": "+ GAN generated (SPADE)", "diffusion": "+ GAN generated (diffusion, DDIM 2)"}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_tiny_pipeline_with_another_generator_family(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "lcgan_lightning.cli.pipeline", *TINY, f"gan.model={FAMILY}",
           f"hydra.run.dir={run_dir}", f"paths.data_dir={tmp_path / 'data'}"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    lay = RunLayout(run_dir)
    [subset] = RunPlan.load(lay.run_plan).subsets
    gan_job = lay.gan_dir(subset.fraction, 42, 1)
    assert f"- model={FAMILY}" in (gan_job / ".hydra" / "overrides.yaml").read_text().splitlines()
    manifest = json.loads((lay.synthetic_dir(subset.fraction, 42) / "manifest.json").read_text())
    audit = json.loads(lay.audit(subset.fraction, 42).read_text())
    assert audit["n_synthetic"] == manifest["n"] == subset.slices

    results = json.loads(lay.results.read_text())
    assert results["gan_model"] == FAMILY
    assert results["gan_sample_steps"] == (2 if FAMILY == "diffusion" else None)
    report = lay.report.read_text()
    assert f"| {LABEL[FAMILY]} |" in report and f"{LABEL[FAMILY]} " in run.stdout  # report and console
