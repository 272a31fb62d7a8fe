"""`lcgan-train`: train one model (`model=lcgan|fcn8s|basicunet`) on one data fraction.

Everything comes from `conf/train.yaml` and its groups; see the README for examples.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities.model_helpers import is_overridden

from lcgan_lightning.config import register_resolvers, to_plain
from lcgan_lightning.paths import CONF_DIR

log = logging.getLogger(__name__)

register_resolvers()


class StoreRunConfig(pl.Callback):
    """Put the resolved run config into every checkpoint (`checkpoint["run_config"]`)."""

    def __init__(self, run_config: dict[str, Any]) -> None:
        self.run_config = run_config

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:  # noqa: D102
        checkpoint["run_config"] = self.run_config


def _instantiate_group(group: DictConfig | None) -> list[Any]:
    """Instantiate every `_target_` entry of a config group dict (callbacks, loggers)."""
    if not group:
        return []
    return [instantiate(node) for node in group.values() if node is not None and "_target_" in node]


def _resolve_ckpt_path(ckpt_path: str | None, run_dir: Path) -> str | None:
    """`last` means this run dir's checkpoints/last.ckpt (None when absent: a fresh start)."""
    if ckpt_path != "last":
        return ckpt_path
    last = run_dir / "checkpoints" / "last.ckpt"
    if last.exists():
        return str(last)
    log.info("ckpt_path=last but %s does not exist: starting from scratch", last)
    return None


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit (and test, for segmenters) the configured model; returns the final metrics."""
    started = time.time()
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(cfg.seed, workers=True)

    resolved = to_plain(cfg)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(resolved)))

    datamodule: pl.LightningDataModule = instantiate(cfg.data)
    model: pl.LightningModule = instantiate(cfg.model)

    callbacks = _instantiate_group(cfg.get("callbacks")) + [StoreRunConfig(resolved)]
    loggers = [pl.loggers.CSVLogger(save_dir=str(run_dir), name="csv", version="")]
    loggers += _instantiate_group(cfg.get("logger"))

    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers)
    trainer.fit(model, datamodule=datamodule, ckpt_path=_resolve_ckpt_path(cfg.get("ckpt_path"), run_dir))

    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    if cfg.get("test") and is_overridden("test_step", model):
        ckpt = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else None
        results = trainer.test(model, datamodule=datamodule, ckpt_path=ckpt or None)
        metrics.update({k: float(v) for k, v in (results[0] if results else {}).items()})

    summary = {
        "metrics": metrics,
        "best_ckpt": getattr(trainer.checkpoint_callback, "best_model_path", None) or None,
        "last_ckpt": str(run_dir / "checkpoints" / "last.ckpt")
        if (run_dir / "checkpoints" / "last.ckpt").exists()
        else None,
        "epochs": trainer.current_epoch,
        "wall_s": round(time.time() - started, 2),
    }
    if trainer.is_global_zero:
        (run_dir / "train_result.json").write_text(json.dumps(summary, indent=2))
    if any(isinstance(lg, pl.loggers.WandbLogger) for lg in loggers):
        import wandb

        wandb.finish()  # close the (offline) run so the next job of a sweep starts its own
    return summary


def run_job(cfg: DictConfig) -> dict[str, Any] | None:
    """One job of a (possibly pipelined) sweep.

    `skip_if_done`: a run dir holding `train_result.json` is complete and is not trained again.
    `catch_errors`: a failing job writes `failed.json` (error and traceback) instead of raising,
    so the other jobs of a multirun still run; the pipeline reports it by name.
    """
    run_dir = Path(cfg.paths.output_dir)
    done = run_dir / "train_result.json"
    if cfg.get("skip_if_done") and done.exists():
        log.info("%s is complete (train_result.json exists): skipped", run_dir)
        return json.loads(done.read_text())
    (run_dir / "failed.json").unlink(missing_ok=True)
    try:
        return train(cfg)
    except Exception as err:
        if not cfg.get("catch_errors"):
            raise
        import traceback

        run_dir.mkdir(parents=True, exist_ok=True)
        failure = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}
        (run_dir / "failed.json").write_text(json.dumps(failure, indent=2))
        log.error("job in %s failed: %s", run_dir, failure["error"])
        return None


@hydra.main(config_path=str(CONF_DIR), config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns `optimized_metric` (if configured) for hyper-parameter sweepers."""
    summary = run_job(cfg)
    key = cfg.get("optimized_metric")
    if summary is None:  # failed under catch_errors: a sweeper scores it instead of stopping
        return cfg.get("failed_metric_value") if key else None
    return summary["metrics"].get(key) if key else None


if __name__ == "__main__":
    main()
