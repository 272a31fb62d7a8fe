"""The generator family as a pipeline setting (`gan.model`), without training: the GAN stage's command
per family, the preflight stops, a run dir of another family refused, the report and console naming it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pipeline_helpers import RecordingLauncher, plan
from test_pipeline_driver import _cfg
from test_report import _console_text, _fake_run

from lcgan_lightning.layout import RunLayout
from lcgan_lightning.pipeline import PipelineContext, PipelineError, run_pipeline
from lcgan_lightning.pipeline.stages.gan import GanStage
from lcgan_lightning.report import write_report

LCGAN_ONLY = ("model.lr_policy", "model.ngf", "model.ndf")


def _gan_args(tmp_path: Path, *overrides: str) -> list[str]:
    """The one lcgan-train multirun the GAN stage starts for a one-subset plan."""
    launcher = RecordingLauncher()
    ctx = PipelineContext.create(_cfg("scale=smoke", *overrides), tmp_path, launcher, plan=plan(gan_epochs=(1, 2)))
    GanStage().run(ctx)
    [(app, args, multirun)] = launcher.calls
    assert app == "train" and multirun
    return args


@pytest.mark.parametrize("family", ["spade", "diffusion"])
def test_gan_stage_trains_the_family_without_lcgan_only_arguments(tmp_path: Path, family: str) -> None:
    own = {"spade": "model.z_dim=4", "diffusion": "model.sample_steps=5"}[family]
    args = _gan_args(tmp_path, f"gan.model={family}", f"gan.family_overrides.{family}=['{own}']",
                     "gan.overrides=['++trainer.limit_val_batches=2']")
    assert args[0] == f"model={family}" and "model=lcgan" not in args
    assert not [a for a in args if a.startswith(LCGAN_ONLY)], args  # smoke's model.ngf=16 is lcgan's only
    assert {"model.save_epochs=[1,2]", "trainer.max_epochs=2", "model.last_ckpt_every_n_epochs=1",
            "data.batch_size=4"} <= set(args)
    assert args[-2:] == [own, "++trainer.limit_val_batches=2"]  # the family's own, then every family's


def test_gan_stage_keeps_the_lcgan_command(tmp_path: Path) -> None:
    args = _gan_args(tmp_path, "gan.family_overrides.spade=['model.z_dim=4']")
    assert args[0] == "model=lcgan" and "model.lr_policy=constant" in args
    assert args[-2:] == ["model.ngf=16", "model.ndf=16"] and "model.z_dim=4" not in args  # smoke's lcgan widths
    args = _gan_args(tmp_path, "gan.overrides=['model.ngf=8']")  # the command line wins over the preset
    assert args[-3:] == ["model.ngf=16", "model.ndf=16", "model.ngf=8"]


@pytest.mark.parametrize(("overrides", "message"), [
    (["gan.model=stylegan"], r"gan.model='stylegan' is not a generator family: use one of lcgan, spade, diffusion"),
    (["gan.model=spade", "gan.overrides=['model.ngf=32']"], r"gan.model=spade: \['model.ngf=32'\] set keys that "
                                                         r"conf/model/spade.yaml does not have"),
    (["gan.model=diffusion", "gan.lr_policy=linear"], r"gan.lr_policy=linear: the LcGAN's linear decay"),
], ids=["unknown-family", "key-of-another-family", "linear-lr"])
def test_a_family_that_cannot_run_stops_before_any_work(tmp_path: Path, overrides: list[str], message: str) -> None:
    launcher = RecordingLauncher()
    with pytest.raises(PipelineError, match=message):
        run_pipeline(_cfg(*overrides), tmp_path / "run", launcher=launcher)
    assert not (tmp_path / "run").exists() and launcher.calls == []


def test_finished_gans_of_another_family_stop_the_run_by_name(tmp_path: Path) -> None:
    """gan/ folders do not name the family: a finished LcGAN must not count as a SPADE candidate."""
    lay = RunLayout(tmp_path)
    done = lay.gan_dir(0.1, 0, 1)
    (done / ".hydra").mkdir(parents=True)
    (done / ".hydra" / "overrides.yaml").write_text("- model=lcgan\n- data.fraction=0.1\n- seed=0\n")
    (done / "train_result.json").write_text("{}")

    def current(family: str) -> bool:
        ctx = PipelineContext.create(_cfg(f"gan.model={family}"), tmp_path, RecordingLauncher(), plan=plan())
        return GanStage().is_current(ctx)

    assert current("lcgan")  # the same family: done
    with pytest.raises(PipelineError, match=r"gan/frac=0.1/seed=0/epochs=1: trained with model=lcgan, but this run "
                                            r"asks for gan.model=spade") as err:
        current("spade")
    assert "new run dir" in err.value.hint and "without gan/" in err.value.hint


def test_report_and_console_name_a_non_lcgan_generator(tmp_path: Path) -> None:
    _fake_run(tmp_path, seeds=(1,))
    lay = RunLayout(tmp_path)
    lay.pipeline_config.write_text("seed: 1\nrepeats: 1\ndata:\n  image_size: 16\ngan:\n  model: spade\n")
    report = write_report(tmp_path, scale="smoke").read_text()
    results = json.loads(lay.results.read_text())
    assert (results["gan_model"], results["gan_sample_steps"], results["gan_sampler"]) == ("spade", None, None)
    table1 = report.split("**Binary lesion DSC**")[0]
    assert "| + GAN generated (SPADE) |" in table1 and "| + both (SPADE) |" in table1
    assert "| + traditional aug. |" in table1 and "| Selected (original) |" in table1
    assert "8 patients (10 %) + GAN generated (SPADE) |" in report  # Table 3
    assert "## Generator selection — generator: SPADE" in report
    console = _console_text(results)
    assert "+ GAN generated (SPADE)" in console and "Selected SPADE generator per subset (first repeat)" in console

    lay.pipeline_config.write_text("seed: 1\nrepeats: 1\ndata:\n  image_size: 16\ngan:\n  model: diffusion\n"
                                   "  overrides: []\n  family_overrides:\n    diffusion: [model.sample_steps=7]\n")
    report = write_report(tmp_path, scale="smoke").read_text()
    results = json.loads(lay.results.read_text())
    assert (results["gan_model"], results["gan_sample_steps"]) == ("diffusion", 7)
    assert "| + GAN generated (diffusion, DDIM 7) |" in report
    assert "+ GAN generated (diffusion, DDIM 7)" in _console_text(results)
    assert results["gan_sampler"] == "ddim"

    lay.pipeline_config.write_text("seed: 1\nrepeats: 1\ndata:\n  image_size: 16\ngan:\n  model: diffusion\n"
                                   "  overrides: [model.scheduler=rflow]\n  family_overrides:\n"
                                   "    diffusion: [model.sample_steps=7]\n")
    report = write_report(tmp_path, scale="smoke").read_text()
    assert json.loads(lay.results.read_text())["gan_sampler"] == "rflow"
    assert "| + GAN generated (diffusion, RFlow 7) |" in report

    lay.pipeline_config.write_text("seed: 1\nrepeats: 1\ndata:\n  image_size: 16\ngan:\n  model: lcgan\n")
    report = write_report(tmp_path, scale="smoke").read_text()
    assert json.loads(lay.results.read_text())["gan_model"] == "lcgan"
    assert "| + GAN generated |" in report and "generator: " not in report  # the paper's labels, unchanged
