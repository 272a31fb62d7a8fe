"""conf/hparams_search/seg_optuna.yaml: an Optuna TPE study over the segmenter (needs the
hydra-optuna-sweeper plugin; skipped without it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from lcgan_lightning.paths import CONF_DIR, REPO_ROOT

pytest.importorskip("hydra_plugins.hydra_optuna_sweeper.optuna_sweeper")
optuna = pytest.importorskip("optuna")

TINY = [
    "data=phantom", "data.image_size=32", "data.phantom.num_patients=12",
    "data.phantom.num_slices=8", "data.batch_size=4", "data.num_workers=0", "trainer=cpu",
    "callbacks=none", "logger=csv", "model.batch_norm=true", "model.n_overlay=0",
    "trainer.max_epochs=1", "+trainer.limit_train_batches=3", "+trainer.limit_val_batches=2",
    "test=false", "print_config=false",
    "model.width=0.125",  # a fixed value leaves the search space (keeps checkpoints small)
]


def test_search_space_and_study_settings(tmp_path):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["hparams_search=seg_optuna", "seed=7"],
                      return_hydra_config=True)
    assert cfg.model.arch == "fcn8s" and cfg.optimized_metric == "val/dsc"
    assert cfg.catch_errors is True and cfg.failed_metric_value == 0.0
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "maximize"
    assert sweeper.sampler._target_ == "optuna.samplers.TPESampler" and sweeper.sampler.seed == 7
    assert dict(sweeper.params) == {
        "model.lr": "tag(log, interval(1e-4, 1e-2))",
        "model.loss": "choice(ce, dice_ce)",
        "model.width": "choice(0.125, 0.25, 0.5)",
        "model.dropout": "interval(0.0, 0.5)",
    }
    # the study's storage is in its own sweep dir, which is named after the study
    assert sweeper.storage == "sqlite:///./multirun/seg_optuna/seg_optuna/optuna.db"
    assert cfg.hydra.callbacks.make_sweep_dir._target_.endswith("MakeSweepDir")


def _search(root: Path, args: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, LCGAN_ROOT=str(root), OMP_NUM_THREADS="1", WANDB_MODE="disabled",
               HYDRA_FULL_ERROR="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, "-m", "lcgan_lightning.cli.train", "hparams_search=seg_optuna", *TINY,
           "hydra.sweeper.study_name=tiny", *args]
    proc = subprocess.run(cmd, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


@pytest.mark.slow
def test_three_trial_study_resumes_and_scores_a_failure_as_zero(tmp_path):
    sweep = tmp_path / "multirun" / "seg_optuna" / "tiny"
    storage = f"sqlite:///{sweep / 'optuna.db'}"

    _search(tmp_path, ["hydra.sweeper.n_trials=2"])
    study = optuna.load_study(study_name="tiny", storage=storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    first = [t.params for t in study.trials]
    for t in study.trials:
        assert 1e-4 <= t.params["model.lr"] <= 1e-2 and t.params["model.loss"] in ("ce", "dice_ce")
        assert 0.0 <= t.params["model.dropout"] <= 0.5 and "model.width" not in t.params
        assert 0.0 <= t.value <= 1.0

    # resume: same study name = same sweep dir and storage; this trial fails (unknown loss)
    _search(tmp_path, ["hydra.sweeper.n_trials=1", "model.loss=focal"])
    study = optuna.load_study(study_name="tiny", storage=storage)
    assert len(study.trials) == 3 and [t.params for t in study.trials[:2]] == first
    assert study.trials[2].state.name == "COMPLETE" and study.trials[2].value == 0.0

    runs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert len(runs) == 3  # the resumed job 0 did not overwrite the first launch's job 0
    assert sum((r / "train_result.json").is_file() for r in runs) == 2
    (failed,) = [r for r in runs if (r / "failed.json").is_file()]
    assert "loss must be" in (failed / "failed.json").read_text()
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_value"] == max(t.value for t in study.trials)
