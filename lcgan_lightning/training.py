"""Training stage: fit (and test, for segmenters) one configured model in one run dir.

`lcgan-train` (:mod:`lcgan_lightning.cli.train`) is its command line; sweeps and the pipeline call
the same `run_job`. Writes, in the run dir: config.yaml, checkpoints/, the CSV log (+ W&B),
train_result.json last (or failed.json), and the model callbacks' files.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only
from pytorch_lightning.utilities.model_helpers import is_overridden

from lcgan_lightning.checkpoint_io import UnsafeCheckpointError, load_checkpoint, warn_trusted
from lcgan_lightning.config import flatten, to_plain
from lcgan_lightning.config_tree import print_config_tree
from lcgan_lightning.devices import uses_cuda
from lcgan_lightning.layout import FAILED, GENERATOR_ONLY, last_ckpt, train_result
from lcgan_lightning.models.segmenter import coarse_output_note
from lcgan_lightning.quiet import capture_output

log = logging.getLogger(__name__)


def _image_source(data_cfg: DictConfig, trust: bool = False):
    """`data.generator_ckpt` as the datamodule's image source (None when the data needs no generator)."""
    ckpt = data_cfg.get("generator_ckpt")
    if not ckpt or data_cfg.get("synthetic_dir"):
        return None
    from lcgan_lightning.models.generation import checkpoint_image_source

    return checkpoint_image_source(ckpt, trust=trust)


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
    return [instantiate(node, _convert_="all") for node in group.values() if node is not None and "_target_" in node]


def trainer_adjustments(trainer_cfg: DictConfig, model: pl.LightningModule) -> dict[str, Any]:
    """Trainer arguments that replace the config's for this model on this machine (each one logged).

    * `strategy: ddp` with a model that sets `DDP_FIND_UNUSED_PARAMETERS` (the LcGAN: its D step
      leaves the generator without gradients) -> `ddp_find_unused_parameters_true`;
    * `sync_batchnorm: true` off CUDA -> false (SyncBatchNorm needs CUDA; CPU/gloo DDP runs without it).
    """
    out: dict[str, Any] = {}
    if trainer_cfg.get("strategy") == "ddp" and getattr(model, "DDP_FIND_UNUSED_PARAMETERS", False):
        out["strategy"] = "ddp_find_unused_parameters_true"
    if trainer_cfg.get("sync_batchnorm") and not uses_cuda(trainer_cfg):
        out["sync_batchnorm"] = False
    for key, value in out.items():
        log.info("trainer.%s=%s for %s on this machine (config: %s)", key, value, type(model).__name__,
                 trainer_cfg.get(key))
    return out


def _resolve_ckpt_path(
    ckpt_path: str | None, run_dir: Path, trust: bool = False
) -> tuple[str | None, bool]:
    """(resume checkpoint, weights_only for Lightning to read it with).

    `last` means this run dir's checkpoints/last.ckpt (None when absent: a fresh start). A SLURM job
    that was requeued (preempted or timed out: SLURM_RESTART_COUNT > 0) resumes from that last.ckpt
    whenever it exists, whatever `ckpt_path` says. The file
    is opened by `load_checkpoint` first, so that one holding pickled code stops with
    UnsafeCheckpointError before Lightning reads it; with `trust` it is read fully (with a warning).
    """
    if int(os.environ.get("SLURM_RESTART_COUNT") or 0) > 0 and last_ckpt(run_dir).exists():
        log.info("requeued SLURM job (SLURM_RESTART_COUNT=%s): resuming from %s",
                 os.environ["SLURM_RESTART_COUNT"], last_ckpt(run_dir))
        ckpt_path = "last"
    if ckpt_path == "last":
        last = last_ckpt(run_dir)
        if not last.exists():
            log.info("ckpt_path=last but %s does not exist: starting from scratch", last)
            return None, True
        ckpt_path = str(last)
    if not ckpt_path:
        return None, True
    try:
        ckpt = load_checkpoint(ckpt_path, map_location="cpu")
    except UnsafeCheckpointError as err:
        if not trust:
            raise
        warn_trusted(ckpt_path, err.refused)  # Lightning unpickles it (once) below
        return str(ckpt_path), False
    if isinstance(ckpt, dict) and ckpt.get(GENERATOR_ONLY):
        raise ValueError(f"{ckpt_path} holds the generator only (a candidate checkpoint for generating): "
                         "resume a run from its checkpoints/last.ckpt (ckpt_path=last)")
    return str(ckpt_path), True


def _peak_gpu_memory_mb() -> float | None:
    """Peak CUDA memory allocated by tensors of this process (rank), MiB; None without CUDA use."""
    import torch

    if not (torch.cuda.is_available() and torch.cuda.is_initialized()):
        return None
    return round(torch.cuda.max_memory_allocated() / 2**20, 1)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit (and test, for segmenters) the configured model; returns the final metrics."""
    started = time.time()
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(cfg.seed, workers=True)

    resolved = to_plain(cfg)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(resolved)))
    # (Lightning sets the `rank` attribute on the rank_zero_only function; its type does not declare it)
    if cfg.get("print_config") and rank_zero_only.rank == 0:  # type: ignore[attr-defined]
        print_config_tree(cfg, save_to=run_dir)

    trust = bool(cfg.get("trust_checkpoint", False))
    image_source = _image_source(cfg.data, trust)
    datamodule: pl.LightningDataModule = instantiate(cfg.data, image_source=image_source)
    model: pl.LightningModule = instantiate(cfg.model)
    note = coarse_output_note(cfg.model.get("arch"), cfg.data.get("image_size"), cfg.model.get("net"))
    if note:
        log.warning(note)

    callbacks = _instantiate_group(cfg.get("callbacks")) + [StoreRunConfig(resolved)]
    loggers = [pl.loggers.CSVLogger(save_dir=str(run_dir), name="csv", version="")]
    loggers += _instantiate_group(cfg.get("logger"))
    wandb_loggers = [lg for lg in loggers if isinstance(lg, pl.loggers.WandbLogger)]
    for lg in wandb_loggers:  # dotted keys: W&B's run table can group by data.fraction, data.augment
        lg.log_hyperparams(flatten({k: v for k, v in resolved.items() if k not in ("hydra", "logger")}))

    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers,
                                      **trainer_adjustments(cfg.trainer, model))
    # Lightning reads resume/test checkpoints itself: weights_only unless the user trusts them
    resume, weights_only = _resolve_ckpt_path(cfg.get("ckpt_path"), run_dir, trust)
    trainer.fit(model, datamodule=datamodule, ckpt_path=resume, weights_only=weights_only)

    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    if cfg.get("test") and is_overridden("test_step", model):
        checkpoint = trainer.checkpoint_callback  # a ModelCheckpoint (the models' callbacks), or None
        ckpt = checkpoint.best_model_path if isinstance(checkpoint, pl.callbacks.ModelCheckpoint) else None
        results = trainer.test(
            model, datamodule=datamodule, ckpt_path=ckpt or None, weights_only=weights_only
        )
        metrics.update({k: float(v) for k, v in (results[0] if results else {}).items()})

    summary = {
        "metrics": metrics,
        "best_ckpt": getattr(trainer.checkpoint_callback, "best_model_path", None) or None,
        "last_ckpt": str(last_ckpt(run_dir)) if last_ckpt(run_dir).exists() else None,
        "epochs": trainer.current_epoch,
        "wall_s": round(time.time() - started, 2),
        "peak_gpu_memory_mb": _peak_gpu_memory_mb(),
    }
    if trainer.is_global_zero:
        train_result(run_dir).write_text(json.dumps(summary, indent=2))
        for lg in wandb_loggers:  # final and test metrics in the run summary (W&B's comparison table)
            lg.experiment.summary.update(metrics)
    if wandb_loggers:
        import wandb

        wandb.finish()  # close the (offline) run so the next job of a sweep starts its own
    return summary


def run_job(cfg: DictConfig) -> dict[str, Any] | None:
    """One job of a (possibly pipelined) sweep.

    `skip_if_done`: a run dir holding `train_result.json` is complete and is not trained again.
    `catch_errors`: a failing job writes `failed.json` (error and traceback) instead of raising,
    so the other jobs of a multirun still run; the pipeline reports it by name.
    `stdout_log`: the job's stdout and stderr go to `<run dir>/stdout.log`, traceback included.
    """
    run_dir = Path(cfg.paths.output_dir)
    done = train_result(run_dir)
    if cfg.get("skip_if_done") and done.exists():
        log.info("%s is complete (train_result.json exists): skipped", run_dir)
        return json.loads(done.read_text())
    (run_dir / FAILED).unlink(missing_ok=True)
    with capture_output(run_dir / "stdout.log" if cfg.get("stdout_log") else None) as captured:
        try:
            return train(cfg)
        except Exception as err:
            if not cfg.get("catch_errors"):
                raise
            import traceback

            run_dir.mkdir(parents=True, exist_ok=True)
            failure = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}
            (run_dir / FAILED).write_text(json.dumps(failure, indent=2))
            if captured:  # the log ends with the traceback (the pipeline prints its tail)
                print(failure["traceback"], file=sys.stderr, flush=True)
            log.error("job in %s failed: %s", run_dir, failure["error"])
            return None
