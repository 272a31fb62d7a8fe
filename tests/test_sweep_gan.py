"""LcGAN sweeps: the paper-grid experiments, the Ray / SLURM launcher configs, multiruns end to end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from lcgan_lightning.paths import CONF_DIR

TINY = [
    "model=lcgan", "data=phantom", "data.image_size=32", "data.phantom.num_patients=12",
    "data.phantom.num_slices=8", "data.batch_size=1", "data.num_workers=0", "trainer=cpu",
    "logger=csv", "callbacks=none", "model.ngf=8", "model.ndf=8", "model.n_panel=2",
]


def _compose(overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=overrides, return_hydra_config=True)


def test_paper_grid_constant_lr_is_one_run_per_fraction():
    cfg = _compose(["experiment=gan_paper_grid"])
    assert cfg.model._target_ == "lcgan_lightning.models.lcgan.LcGAN"
    assert cfg.data.image_size == 256 and cfg.model.image_size == 256 and cfg.data.batch_size == 1
    assert cfg.trainer.max_epochs == 200 and cfg.model.lr_policy == "constant"
    assert list(cfg.model.save_epochs) == [10, 50, 100, 200]
    assert cfg.hydra.mode.name == "MULTIRUN"
    assert dict(cfg.hydra.sweeper.params) == {"data.fraction": "0.025,0.1,0.25"}
    assert (cfg.model.lr, cfg.model.beta1, cfg.model.lambda_l1, cfg.model.ngf) == (2e-4, 0.5, 100.0, 64)


def test_paper_grid_decay_is_one_job_per_fraction_and_epochs():
    cfg = _compose(["experiment=gan_paper_grid_decay", "trainer.max_epochs=50"])
    assert cfg.model.lr_policy == "linear"
    params = dict(cfg.hydra.sweeper.params)
    assert params == {"data.fraction": "0.025,0.1,0.25", "trainer.max_epochs": "10,50,100,200"}
    assert list(cfg.model.save_epochs) == [50]  # each job keeps its final epoch


def test_ray_launcher_config_one_gpu_per_job():
    cfg = _compose(["hydra/launcher=ray_gpus"])
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"
    assert launcher.ray.remote.num_gpus == 1 and launcher.ray.remote.max_calls == 1
    assert launcher.ray.init.address is None


def test_slurm_launcher_config():
    cfg = _compose(["hydra/launcher=slurm"])
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert launcher.gpus_per_node == 1 and launcher.tasks_per_node == 1 and launcher.nodes == 1
    assert launcher.partition is None and launcher.timeout_min == 1440


# ---- end to end (subprocesses; CPU-sized) ----------------------------------------------------
@pytest.fixture(scope="module")
def sweep_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep_root")
    env = dict(os.environ, LCGAN_ROOT=str(root), OMP_NUM_THREADS="1", WANDB_MODE="disabled",
               RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", HYDRA_FULL_ERROR="1")
    return root, env


def _train(args: list[str], env: dict, timeout: int = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "lcgan_lightning.cli.train", *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def _ckpt_names(run: Path) -> list[str]:
    return sorted(p.name for p in (run / "checkpoints").iterdir())


@pytest.mark.slow
def test_plain_multirun_fraction_by_epochs(sweep_env):
    root, env = sweep_env
    sweep = root / "plain"
    _train(["-m", *TINY, "data.fraction=0.1,0.25", "trainer.max_epochs=1,2", "model.save_epochs=[1,2]",
            f"hydra.sweep.dir={sweep}"], env)
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert len(jobs) == 4
    epochs = []
    for job in jobs:
        assert (job / "train_result.json").is_file()
        epochs.append(torch.load(job / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] + 1)
    assert sorted(epochs) == [1, 1, 2, 2]


@pytest.mark.slow
def test_paper_grid_experiment_keeps_the_epoch_checkpoints(sweep_env):
    root, env = sweep_env
    sweep = root / "grid"
    # the experiment sweeps data.fraction itself; a command-line value narrows it to one job
    _train(["experiment=gan_paper_grid", *TINY, "data.fraction=0.25", "trainer.max_epochs=2",
            "model.save_epochs=[1,2]", f"hydra.sweep.dir={sweep}"], env)
    run = sweep / "frac=0.25"
    assert _ckpt_names(run) == ["epoch=001.ckpt", "epoch=002.ckpt", "last.ckpt"]
    ck = torch.load(run / "checkpoints" / "epoch=001.ckpt", weights_only=True)
    assert ck["hyper_parameters"]["lr_policy"] == "constant" and ck["run_config"]["data"]["fraction"] == 0.25


@pytest.mark.slow
def test_ray_launcher_two_job_sweep_on_cpu(sweep_env):
    pytest.importorskip("hydra_plugins.hydra_ray_launcher.ray_launcher")
    root, env = sweep_env
    sweep = root / "ray"
    _train(["experiment=gan_paper_grid_decay", "hydra/launcher=ray_gpus", *TINY,
            "hydra.launcher.ray.remote.num_gpus=0", "+hydra.launcher.ray.init.num_cpus=2",
            "data.fraction=0.25", "trainer.max_epochs=1,2", f"hydra.sweep.dir={sweep}"], env, timeout=400)
    for epochs in (1, 2):
        run = sweep / "frac=0.25" / f"epochs={epochs}"
        assert _ckpt_names(run) == [f"epoch={epochs:03d}.ckpt", "last.ckpt"], run
        ck = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
        assert ck["hyper_parameters"]["lr_policy"] == "linear" and ck["epoch"] + 1 == epochs
