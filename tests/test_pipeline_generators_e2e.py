"""End to end with every generator family: the smallest real `lcgan-pipeline gan.model=lcgan|spade|diffusion`
runs (one subset, one repeat, original and + GAN, 32²), the later two in copies of the first run dir
(its data, split, judge and original segmenter reused, as docs/generators.md tells users), then
`report.families` over the three. tests/test_pipeline_e2e.py covers the LcGAN pipeline in depth;
tests/test_pipeline_generators.py the commands, refusals and labels without training."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pipeline_helpers import TINY_DATA

from lcgan_lightning.layout import RunLayout
from lcgan_lightning.report import families
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
    "gan.family_overrides.lcgan=['model.ngf=8','model.ndf=8']",
    "gan.family_overrides.spade=['model.channels=[8,16,16]','model.hidden=8','model.ndf=8','model.num_d=2',"
    "'model.n_layers_d=1','model.z_dim=4','model.n_panel=1']",
    "gan.family_overrides.diffusion=['model.channels=[8,16,16]','model.norm_num_groups=8',"
    "'model.num_head_channels=8','model.sample_steps=2','model.n_panel=1']",
]
LABEL = {"lcgan": "+ GAN generated", "spade": "+ GAN generated (SPADE)",
         "diffusion": "+ GAN generated (diffusion, DDIM 2)"}
NAME = {"lcgan": "LcGAN", "spade": "SPADE", "diffusion": "diffusion (DDIM 2)"}
NOT_COPIED = ("gan", "select", "synthetic*", "results*.json", "report.md", "figures", "pipeline_state.json")


def _pipeline(run_dir: Path, data_dir: Path, family: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "lcgan_lightning.cli.pipeline", *TINY, f"gan.model={family}",
           f"hydra.run.dir={run_dir}", f"paths.data_dir={data_dir}"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900)


def _copy_without_generators(src: Path, dst: Path) -> None:
    """The documented reuse: everything but the GAN's outputs and the segmenters that read them."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(*NOT_COPIED))
    for seg in (dst / "seg").glob("frac=*/aug=*"):
        if seg.name != "aug=none":
            shutil.rmtree(seg)


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_tiny_pipeline_with_every_generator_family(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    runs = {family: tmp_path / family for family in ("lcgan", "spade", "diffusion")}
    for family, run_dir in runs.items():
        if family != "lcgan":
            _copy_without_generators(runs["lcgan"], run_dir)
        run = _pipeline(run_dir, data_dir, family)
        assert run.returncode == 0, family + run.stdout[-3000:] + run.stderr[-3000:]
        if family != "lcgan":  # data, judge and the original segmenter came with the copy
            assert "judge: skipped" in run.stdout and "seg: running (2 jobs, 1 already done)" in run.stdout, run.stdout[-2000:]

        lay = RunLayout(run_dir)
        [subset] = RunPlan.load(lay.run_plan).subsets
        gan_job = lay.gan_dir(subset.fraction, 42, 1)
        assert f"- model={family}" in (gan_job / ".hydra" / "overrides.yaml").read_text().splitlines()
        manifest = json.loads((lay.synthetic_dir(subset.fraction, 42) / "manifest.json").read_text())
        audit = json.loads(lay.audit(subset.fraction, 42).read_text())
        assert audit["n_synthetic"] == manifest["n"] == subset.slices

        results = json.loads(lay.results.read_text())
        assert results.get("gan_model", "lcgan") == family
        assert results.get("gan_sample_steps") == (2 if family == "diffusion" else None)
        assert f"| {LABEL[family]} |" in lay.report.read_text() and f"{LABEL[family]} " in run.stdout

    out = tmp_path / "families"
    families.main([*map(str, runs.values()), "--reference", str(runs["lcgan"]), "--out", str(out),
                   "--time-images", "2", "--sheet-images", "2"])
    rows = json.loads((out / "families.json").read_text())
    assert [r["family"] for r in rows] == [NAME[f] for f in runs]
    for row, run_dir in zip(rows, runs.values(), strict=True):
        results = json.loads(RunLayout(run_dir).results.read_text())
        block = results["fractions"][str(row["fraction"])]
        assert row["patients"] == 2 and row["selected_epochs"] == [1] and row["images_per_s"] > 0
        assert row["fcn_score_selection"] == block["selected"]["fcn_score"]
        assert row["copy_rate_pixel"] == block["audit"]["copy_rate_pixel"]
        assert row["variants"]["gan"]["dsc"] == block["gan"]["dsc"]
        ref = row["variants"]["gan"].get("vs_reference_gan")
        if run_dir == runs["lcgan"]:
            assert ref is None  # the reference is not compared with itself
        else:  # one repeat per arm: the difference, no verdict word
            assert ref["n_repeats"] == 1 and ref["verdict"] == "not estimable" and ref["diff"] is not None
    assert (out / "families_samples_2p.png").stat().st_size > 0
    assert "| SPADE | 2 | gan |" in (out / "families.md").read_text()
