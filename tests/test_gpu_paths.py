"""GPU paths checked on a CPU machine: trainer configs per purpose, the fail-fast checks (pipeline,
Ray launcher, make gpu-check), the commands the pipeline builds for SLURM, candidate checkpoint size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf
from pipeline_helpers import RecordingLauncher, plan

from lcgan_lightning.devices import NoGPUError, requested_gpus, visible_gpus
from lcgan_lightning.launch_check import check_launcher
from lcgan_lightning.paths import CONF_DIR
from lcgan_lightning.pipeline import PipelineContext, PipelineError, run_pipeline
from lcgan_lightning.pipeline.args import HydraArgs
from lcgan_lightning.pipeline.preflight import check_gpus
from lcgan_lightning.pipeline.stages.gan import GanStage
from lcgan_lightning.pipeline.stages.judge import JudgeStage
from lcgan_lightning.pipeline.stages.select import SelectStage
from lcgan_lightning.pipeline.stages.synthesize import SynthesizeStage

no_gpu = pytest.mark.skipif(visible_gpus() > 0, reason="checks the behaviour without a GPU")


def _compose(name: str, overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name=name, overrides=overrides, return_hydra_config=True)


def test_trainer_configs_per_purpose():
    gpu = _compose("train", ["trainer=gpu"])
    assert (gpu.trainer.accelerator, gpu.trainer.benchmark, gpu.trainer.deterministic) == ("gpu", True, False)
    assert (gpu.data.num_workers, gpu.data.pin_memory) == (4, True)
    det = _compose("train", ["trainer=gpu_deterministic"]).trainer
    assert (det.benchmark, det.deterministic) == (False, "warn")  # CUDA cross-entropy has no deterministic kernel
    assert _compose("train", ["trainer=gpu_bf16"]).trainer.precision == "bf16-mixed"
    ddp = _compose("train", ["trainer=ddp"]).trainer
    assert (ddp.strategy, ddp.devices, ddp.sync_batchnorm) == ("ddp", -1, True)
    assert requested_gpus(ddp) == 1 and requested_gpus(det) == 1
    cli = _compose("train", ["trainer=gpu", "data.num_workers=0"])
    assert cli.data.num_workers == 0  # the command line wins over the trainer config
    cpu = _compose("train", ["trainer=cpu"])
    assert requested_gpus(cpu.trainer) == 0 and cpu.data.num_workers == 0


def _pipeline_cfg(overrides: list[str], trainer: str = "default"):
    return _compose("pipeline", ["fractions=[0.1]", "gan.epochs=[1]", f"job_trainer={trainer}", *overrides])


@no_gpu
def test_pipeline_with_a_gpu_trainer_stops_before_any_work(tmp_path):
    launcher = RecordingLauncher(on_launch=lambda *a: pytest.fail("a stage was started"))
    cfg = _pipeline_cfg([], "gpu")
    with pytest.raises(PipelineError, match=r"trainer=gpu asks for 1 GPU\(s\), but"):
        run_pipeline(cfg, tmp_path / "run", launcher=launcher)
    assert not (tmp_path / "run").exists()
    check_gpus(_pipeline_cfg(["launcher=slurm"], "gpu"))  # jobs run elsewhere
    check_gpus(_pipeline_cfg([], "cpu"))


def _context(overrides: list[str], trainer: str, run_dir, launcher):
    return PipelineContext.create(_pipeline_cfg(overrides, trainer), run_dir, launcher, plan=plan(seed=42))


def test_slurm_pipeline_submits_judge_select_synthesize_through_the_launcher(tmp_path):
    launcher = RecordingLauncher()
    calls = launcher.calls
    pipe = _context(["launcher=slurm"], "gpu", tmp_path, launcher)
    lay = pipe.layout
    ckpt = str(lay.candidate_ckpt(0.1, 42, 1, 1))
    lay.judge_dir.mkdir(parents=True)
    (lay.judge_dir / "train_result.json").write_text(json.dumps({"best_ckpt": "j.ckpt", "last_ckpt": None}))
    for stage in (JudgeStage(), GanStage(), SelectStage()):
        stage.run(pipe)
    lay.selected(42).parent.mkdir(parents=True, exist_ok=True)
    lay.selected(42).write_text(json.dumps({"0.1": {"checkpoint": ckpt}}))
    SynthesizeStage().run(pipe)
    assert [c[0] for c in calls] == ["train", "train", "select", "synthesize"]
    for app, args, multirun in calls:
        assert multirun and "hydra/launcher=slurm" in args, app
        assert not any(a.startswith("hydra.run.dir=") for a in args), app
    judge_args = calls[0][1]
    assert f"hydra.sweep.dir='{lay.judge_dir}'" in judge_args and "hydra.sweep.subdir=." in judge_args
    # the run's loader settings win over the GPU trainer config's
    assert "data.num_workers=0" in judge_args and "data.pin_memory=false" in judge_args
    gan_args = calls[1][1]
    assert {"model.last_ckpt_every_n_epochs=1", "data.val_samples=null", "trainer.check_val_every_n_epoch=1"} <= set(gan_args)
    # short_stages_on_launcher=false: the synthesize multirun stays on this machine
    calls.clear()
    SynthesizeStage().run(_context(["launcher=slurm", "short_stages_on_launcher=false"], "gpu", tmp_path, launcher))
    assert "hydra/launcher=basic" in calls[0][1] and "hydra/launcher=slurm" not in calls[0][1]
    # basic launcher: the short stages stay plain runs in their run dirs
    calls.clear()
    JudgeStage().run(_context([], "default", tmp_path, launcher))
    assert calls[0][2] is False and f"hydra.run.dir='{lay.judge_dir}'" in calls[0][1]


def test_ray_pipeline_jobs_hold_fractional_gpus_and_their_cpus(tmp_path):
    args = HydraArgs(_pipeline_cfg(["launcher=ray_gpus", "gpus_per_job=0.25", "data.num_workers=3"]))
    assert args.launcher == ["hydra/launcher=ray_gpus", "hydra.launcher.ray.remote.num_gpus=0.25",
                                     "hydra.launcher.ray.remote.num_cpus=4"]


def _ray(overrides: list[str]):
    return _compose("train", ["hydra/launcher=ray_gpus", *overrides]).hydra.launcher


@no_gpu
def test_ray_launcher_check_without_gpu():
    with pytest.raises(NoGPUError, match=r"num_gpus=0.25 per job\) asks for 0.25 GPU\(s\)"):
        check_launcher(_ray(["hydra.launcher.ray.remote.num_gpus=0.25"]))
    check_launcher(_ray(["hydra.launcher.ray.remote.num_gpus=0"]))  # CPU jobs run
    check_launcher(_ray(["hydra.launcher.ray.init.address=auto"]))  # a remote cluster is not checked here
    with pytest.raises(ValueError, match="num_cpus=64.0 per job but Ray has 2 CPUs"):
        check_launcher(_ray(["hydra.launcher.ray.remote.num_gpus=0", "hydra.launcher.ray.remote.num_cpus=64",
                             "+hydra.launcher.ray.init.num_cpus=2"]))


@no_gpu
@pytest.mark.slow
def test_ray_sweep_without_gpu_fails_at_once_instead_of_waiting(tmp_path):
    env = dict(os.environ, LCGAN_ROOT=str(tmp_path), OMP_NUM_THREADS="1", WANDB_MODE="disabled")
    cmd = [sys.executable, "-m", "lcgan_lightning.cli.train", "-m", "hydra/launcher=ray_gpus", "model=lcgan",
           "data.fraction=0.1,0.25", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "hydra/launcher=ray (hydra.launcher.ray.remote.num_gpus=1 per job) asks for 1 GPU(s)" in proc.stderr
    assert not (tmp_path / "sweep").exists()


@no_gpu
def test_gpu_check_says_clearly_that_there_is_no_gpu(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "lcgan_lightning.gpu_check", "--out", str(tmp_path / "g.json")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "gpu-check needs a CUDA GPU" in proc.stderr and not (tmp_path / "g.json").exists()


def test_candidate_checkpoints_hold_the_generator_only(tmp_path):
    """epoch=EEE.ckpt: generator weights + hparams + run config, ~1/3 of last.ckpt (no D, no Adam state)."""
    import pytorch_lightning as pl

    from lcgan_lightning.models.generation import load_generator
    from lcgan_lightning.models.lcgan import LcGAN
    from lcgan_lightning.selection.candidates import parse_candidates
    from lcgan_lightning.training import StoreRunConfig, _resolve_ckpt_path

    class Pairs(torch.utils.data.Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            mask = torch.zeros(32, 32, dtype=torch.long)
            mask[8:16, 8:16] = 1 + i
            return {"mask_onehot": torch.nn.functional.one_hot(mask, 6).permute(2, 0, 1).float(),
                    "image": torch.rand(1, 32, 32) * 2 - 1}

    loader = torch.utils.data.DataLoader(Pairs(), batch_size=1)
    model = LcGAN(image_size=32, ngf=8, ndf=8, save_epochs=[1, 3], last_ckpt_every_n_epochs=2, n_panel=0)
    trainer = pl.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=str(tmp_path), num_sanity_val_steps=0,
                         callbacks=[StoreRunConfig({"data": {"fraction": 0.1}})])
    saved = []
    orig = pl.Trainer.save_checkpoint  # every full checkpoint file goes through it
    trainer_fit_saves = lambda tr, path, *a, **k: (saved.append((tr.current_epoch + 1, Path(path).name)),  # noqa: E731
                                                   orig(tr, path, *a, **k))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pl.Trainer, "save_checkpoint", trainer_fit_saves)
        trainer.fit(model, loader, loader)
    assert saved == [(2, "last.ckpt"), (3, "last.ckpt")]  # every 2 epochs and after the final one
    ckpts = tmp_path / "checkpoints"
    slim, full = ckpts / "epoch=001.ckpt", ckpts / "last.ckpt"
    n_gen = sum(p.numel() for p in model.generator.parameters())
    n_all = sum(p.numel() for p in model.parameters())
    # float32 weights + pickle/zip overhead; last.ckpt adds D and two Adam states (2 moments each)
    assert 4 * n_gen < slim.stat().st_size < 4 * n_gen * 1.05 + 40_000
    assert full.stat().st_size > 4 * (3 * n_all) and full.stat().st_size > 2.5 * slim.stat().st_size
    ck = torch.load(slim, weights_only=True)
    assert ck["generator_only"] is True and ck["run_config"] == {"data": {"fraction": 0.1}}
    assert all(k.startswith("generator.") for k in ck["state_dict"]) and "optimizer_states" not in ck
    assert load_generator(slim).image_size == 32 and load_generator(full).image_size == 32
    assert [(c.fraction, c.epochs) for c in parse_candidates([str(slim), str(ckpts / "epoch=003.ckpt")])] == \
        [(0.1, 1), (0.1, 3)]
    with pytest.raises(ValueError, match="holds the generator only.*ckpt_path=last"):
        _resolve_ckpt_path(str(slim), tmp_path)
    assert OmegaConf.create(ck["hyper_parameters"]).last_ckpt_every_n_epochs == 2


def test_val_samples_is_a_fixed_evenly_spread_subset():
    from lcgan_lightning.data.datamodule import fixed_subset

    data = list(range(10))
    sub = fixed_subset(data, 4)
    assert [sub[i] for i in range(len(sub))] == [0, 2, 5, 7]
    assert fixed_subset(data, None) is data and fixed_subset(data, 20) is data
