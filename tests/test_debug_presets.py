"""conf/debug/*.yaml: each preset composes over an experiment and runs on a tiny phantom (CPU)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from lcgan_lightning.paths import CONF_DIR
from lcgan_lightning.training import train

TINY = [
    "model=fcn8s", "data=phantom", "data.image_size=32", "data.phantom.num_patients=12",
    "data.phantom.num_slices=8", "data.batch_size=4", "data.num_workers=0", "trainer=cpu",
    "callbacks=none", "model.width=0.125", "model.batch_norm=true", "model.lr=3e-3",
    "model.dropout=0.0", "model.n_overlay=0", "seed=0",
]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("debug_root")


def _compose(overrides: list[str], root: Path, run: str):
    GlobalHydra.instance().clear()
    base = [f"paths.root_dir={root}", f"paths.output_dir={root / run}"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=base + TINY + overrides)


def _train_losses(run_dir: Path) -> list[float]:
    with (run_dir / "csv" / "metrics.csv").open() as fh:
        return [float(r["train/loss_step"]) for r in csv.DictReader(fh) if r.get("train/loss_step")]


def test_debug_comes_after_experiment_and_wins(root):
    cfg = _compose(["debug=limit", "++trainer.max_steps=800"], root, "x")
    assert cfg.task_name == "debug" and cfg.trainer.max_epochs == 2
    assert cfg.trainer.max_steps == 800  # the command line still wins over the preset
    cfg = _compose(["experiment=seg_judge", "debug=overfit"], root, "x")
    assert cfg.task_name == "debug" and cfg.trainer.overfit_batches == 1 and cfg.test is False
    for name in ("fdr", "overfit", "limit", "profiler"):
        cfg = _compose([f"debug={name}", "logger=wandb"], root, "x")
        # the preset's logger override beats the primary default but not the command line
        assert "wandb" in cfg.logger


def test_fdr_runs_one_batch_and_writes_no_checkpoint(root):
    cfg = _compose(["debug=fdr"], root, "fdr")
    assert cfg.trainer.fast_dev_run is True and not cfg.logger
    summary = train(cfg)
    run = root / "fdr"
    assert "val/dsc" in summary["metrics"] and "test/dsc" in summary["metrics"]
    # no monitored checkpoint; Lightning 2.6's ModelCheckpoint.on_train_end still writes the
    # model's save_last file even under fast_dev_run, so last.ckpt is not checked here
    ckpts = list((run / "checkpoints").glob("*.ckpt")) if (run / "checkpoints").exists() else []
    assert summary["best_ckpt"] is None and all(p.name == "last.ckpt" for p in ckpts)
    saved = json.loads((run / "test_metrics.json").read_text())
    assert saved["n_images"] == 4  # fast_dev_run: exactly one test batch of data.batch_size


def test_overfit_one_batch_drives_the_loss_down(root):
    cfg = _compose(["debug=overfit", "trainer.max_epochs=15"], root, "overfit")
    summary = train(cfg)
    losses = _train_losses(root / "overfit")
    assert len(losses) == 15 and summary["epochs"] == 15  # one batch = one step per epoch
    assert losses[-1] < 0.5 * losses[0], losses
    assert "test/dsc" not in summary["metrics"]


def test_limit_runs_two_short_epochs_with_test(root):
    cfg = _compose(["debug=limit", "++trainer.max_steps=800"], root, "limit_steps")
    assert cfg.trainer.max_steps == 800
    cfg = _compose(["debug=limit"], root, "limit")
    summary = train(cfg)
    run = root / "limit"
    assert len(_train_losses(run)) == 2 * 3  # 2 epochs x limit_train_batches
    assert summary["epochs"] == 2 and (run / "checkpoints" / "last.ckpt").is_file()
    assert json.loads((run / "test_metrics.json").read_text())["n_images"] <= 2 * 4


def test_profiler_writes_the_report_to_the_run_dir(root):
    cfg = _compose(["debug=profiler", "+trainer.limit_train_batches=2",
                    "+trainer.limit_val_batches=1", "test=false"], root, "profiler")
    train(cfg)
    report = (root / "profiler" / "fit-profile.txt").read_text()
    assert "Profiler Report" in report and "run_training_epoch" in report
