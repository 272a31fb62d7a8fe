"""Checkpoint callbacks: the LcGAN's epoch checkpoints and the segmenter's top-k + resumable `last.ckpt`.

* `PaperEpochCheckpoint` (LcGAN): `checkpoints/epoch=EEE.ckpt` (generator only) after the listed epochs
  + the full `last.ckpt` every N epochs; it writes through public API (`Trainer.save_checkpoint`,
  `Logger.after_save_checkpoint`, `on_train_end`);
* `ResumableModelCheckpoint` (segmenter): Lightning's top-k ModelCheckpoint that also keeps `last.ckpt`
  current after every validation.

Lightning internals used here (pytorch_lightning 2.6), and why:
`Trainer._checkpoint_connector.dump_checkpoint` is the only way to get the checkpoint dict without
writing the full file (the generator-only checkpoint keeps part of it).
`ModelCheckpoint._save_last_checkpoint` is the one place every `last.ckpt` write of ModelCheckpoint
passes through (validation end, epoch end, step and time triggers, exception, train end), so
`ResumableModelCheckpoint` overrides it to hold back a mid-epoch one that would not resume exactly;
its other private calls (`_monitor_candidates`, `_should_skip_saving_checkpoint`,
`_should_save_on_train_epoch_end`) repeat ModelCheckpoint's own decisions. Doing this with public
hooks alone would mean re-implementing ModelCheckpoint's top-k and `last.ckpt` logic.
`tests/test_resume.py` and `tests/test_lcgan.py` fail if any of them changes meaning.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from weakref import proxy

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from lcgan_lightning.layout import GENERATOR_ONLY, epoch_ckpt_name

if TYPE_CHECKING:
    from pytorch_lightning.loops.progress import _ProcessedTracker, _ReadyCompletedTracker

# what a candidate (generator-only) checkpoint keeps of Lightning's full one
GENERATOR_CKPT_KEYS = ("epoch", "global_step", "pytorch-lightning_version", "hyper_parameters", "hparams_name",
                       "datamodule_hyper_parameters", "datamodule_hparams_name", "run_config",
                       "generator_kind")


def resumes_mid_epoch(trainer: pl.Trainer) -> bool:
    """Whether a checkpoint written now, mid-epoch, resumes exactly: one process and a training loader
    that saves its position and the RNG states (`exact_resume`, lcgan_lightning.data.resumable)."""
    loader = trainer.train_dataloader
    return trainer.world_size == 1 and bool(getattr(loader, "exact_resume", False))


def in_mid_epoch(trainer: pl.Trainer) -> bool:
    """Whether the training loop stands between two batches of an epoch (not at its end)."""
    done = _processed(trainer.fit_loop.epoch_loop.batch_progress.current)
    return 0 < done < trainer.num_training_batches


def _processed(tracker: _ReadyCompletedTracker) -> int:
    """Batches processed, from the fit loop's batch progress `current` or `total` (declared as the base
    tracker class; the batch progress holds _ProcessedTrackers)."""
    return cast("_ProcessedTracker", tracker).processed


def _fast_dev_run(trainer: pl.Trainer) -> bool:
    """Whether the trainer runs with `fast_dev_run`."""
    # Lightning sets Trainer.fast_dev_run in _init_debugging_flags; the class does not declare it
    return bool(trainer.fast_dev_run)  # type: ignore[attr-defined]


class PaperEpochCheckpoint(ModelCheckpoint):
    """Writes `epoch=EEE.ckpt` after exactly the listed epochs (EEE = epochs trained, 1-based) and the full
    `last.ckpt` every `last_every_n_epochs` epochs and after the final one, into `dirpath`. No metric
    monitoring (GAN losses do not rank models).

    `epoch=EEE.ckpt` holds what generating needs (generator weights, hyper-parameters, run config,
    `generator_only: true`), not the discriminator or optimiser state: at 256² about 1/3 of the bytes
    of `last.ckpt`, which alone resumes a run.

    `last_every_n_steps`: also `last.ckpt` every that many training batches (mid-epoch), when such a
    checkpoint resumes exactly (`resumes_mid_epoch`); else only at epoch ends.
    """

    def __init__(self, dirpath: str | Path, save_epochs: Sequence[int], last_every_n_steps: int | None = None,
                 last_every_n_epochs: int = 1):
        super().__init__(dirpath=str(dirpath), save_last=True, save_top_k=-1, save_on_train_epoch_end=True,
                         enable_version_counter=False)
        self.save_epochs = sorted({int(e) for e in save_epochs})
        self.last_every_n_steps = int(last_every_n_steps or 0)
        self.last_every_n_epochs = max(1, int(last_every_n_epochs))
        self._saved_last = False  # a last.ckpt written by this fit

    @property
    def _dir(self) -> Path:
        assert self.dirpath is not None  # __init__ always passes one
        return Path(self.dirpath)

    @property
    def state_key(self) -> str:
        return self._generate_state_key(dirpath=self.dirpath, save_epochs=self.save_epochs)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or _fast_dev_run(trainer):
            return
        done = trainer.current_epoch + 1
        if done in self.save_epochs:
            path = str(self._dir / epoch_ckpt_name(done))
            self.best_model_path = path
            self._save_generator_only(trainer, path)
        if done % self.last_every_n_epochs == 0 or done >= (trainer.max_epochs or 0) or trainer.should_stop:
            self._save_last(trainer)

    def _save_last(self, trainer: pl.Trainer) -> None:
        """The full `last.ckpt` (what ModelCheckpoint's own save does, through public API)."""
        self.last_model_path = str(self._dir / f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}")
        trainer.save_checkpoint(self.last_model_path)
        self._saved_last = True
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(proxy(self))

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # as ModelCheckpoint(save_last=True): a fit that wrote no last.ckpt (e.g. one resumed from a
        # finished run) writes it at its end
        if not self._saved_last:
            self._save_last(trainer)

    @staticmethod
    def _save_generator_only(trainer: pl.Trainer, path: str) -> None:
        full = trainer._checkpoint_connector.dump_checkpoint(weights_only=False)  # runs the on_save hooks
        slim = {k: full[k] for k in GENERATOR_CKPT_KEYS if k in full}
        slim["state_dict"] = {k: v for k, v in full["state_dict"].items() if k.startswith("generator.")}
        slim[GENERATOR_ONLY] = True
        if trainer.is_global_zero:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(path).with_suffix(".ckpt.tmp")
            torch.save(slim, tmp)
            os.replace(tmp, path)
        trainer.strategy.barrier("PaperEpochCheckpoint")

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        return

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        n = self.last_every_n_steps
        if (n <= 0 or trainer.sanity_checking or _fast_dev_run(trainer)
                or _processed(trainer.fit_loop.epoch_loop.batch_progress.total) % n
                or not in_mid_epoch(trainer) or not resumes_mid_epoch(trainer)):
            return
        self._save_last(trainer)


class ResumableModelCheckpoint(ModelCheckpoint):
    """ModelCheckpoint (top-k by the monitored metric) that also writes `last.ckpt` after every validation
    (Lightning writes it only with a new top-k file), mid-epoch (`val_check_interval`) only where that
    resumes exactly (`resumes_mid_epoch`); where it does not, `last.ckpt` is written at epoch ends."""

    _last_step: int | None = None

    def _save_last_checkpoint(self, trainer: pl.Trainer, monitor_candidates: dict[str, Any]) -> None:
        if in_mid_epoch(trainer) and not resumes_mid_epoch(trainer):
            return
        super()._save_last_checkpoint(trainer, monitor_candidates)
        self._last_step = trainer.global_step

    def _ensure_last(self, trainer: pl.Trainer) -> None:
        if self.save_last and self._last_step != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        skip = self._should_skip_saving_checkpoint(trainer) or self._should_save_on_train_epoch_end(trainer)
        super().on_validation_end(trainer, pl_module)
        if not skip:
            self._ensure_last(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if (not trainer.sanity_checking and not _fast_dev_run(trainer)
                and (self._should_save_on_train_epoch_end(trainer) or not resumes_mid_epoch(trainer))):
            self._ensure_last(trainer)
