"""What the mask-to-CT LightningModules share (LcGAN, SPADE, diffusion): epoch reseeding, loss sums,
candidate checkpoints, sample panels and the validation metrics.

A subclass sets `GENERATOR_KIND` (written into every checkpoint as ``generator_kind``: how
`models.generation.load_generator` rebuilds it) and `TRAIN_LOSSES`, keeps its generator network in
``self.generator`` (candidate checkpoints keep the ``generator.*`` weights), calls `_record_losses`
once per training step and implements `sample_batch` (validation images, seeded).
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytorch_lightning as pl
import torch
from torchmetrics import MeanAbsoluteError
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from lcgan_lightning.batch import model_batch
from lcgan_lightning.layout import CHECKPOINTS
from lcgan_lightning.models.checkpointing import PaperEpochCheckpoint
from lcgan_lightning.models.sample_panels import GANPanels

if TYPE_CHECKING:
    from pytorch_lightning.utilities import AttributeDict

# checkpoint key naming the generator family; absent (older LcGAN checkpoints) means "lcgan"
GENERATOR_KIND_KEY = "generator_kind"


def epoch_seed(seed: int, epoch: int) -> int:
    """Seed for the RNGs at the start of `epoch` (so a resumed run draws the same dropout masks and order)."""
    return (int(seed) * 1_000_003 + int(epoch) * 7_919 + 17) % (2**32)


class MaskToImageModule(pl.LightningModule):
    """Base of the generator LightningModules. Batches are dicts with "mask_onehot" [B,6,H,W] and
    "image" [B,1,H,W] in [-1,1]; hparams must hold `seed`, `save_epochs` and `n_panel`."""

    GENERATOR_KIND = "lcgan"
    TRAIN_LOSSES: tuple[str, ...] = ()
    # DDP: a D step's backward reaches no generator parameter: DDP must look for unused parameters
    DDP_FIND_UNUSED_PARAMETERS = True

    if TYPE_CHECKING:  # save_hyperparameters() stores an AttributeDict (Lightning types it more widely)

        @property
        def hparams(self) -> AttributeDict: ...

    generator: torch.nn.Module

    def _save_plain_hyperparameters(self) -> None:
        """`save_hyperparameters()` with every value plain Python (lists for sequences, OmegaConf containers
        resolved), so a checkpoint reloads without OmegaConf/Hydra through the weights-only loader."""
        from omegaconf import DictConfig, ListConfig, OmegaConf

        self.save_hyperparameters(frame=inspect.currentframe().f_back)  # type: ignore[union-attr]

        def plain(value: Any) -> Any:
            if isinstance(value, (DictConfig, ListConfig)):
                value = OmegaConf.to_container(value, resolve=True)
            if isinstance(value, (list, tuple)):
                return [plain(v) for v in value]
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            return value.item() if isinstance(value, np.generic) else value

        for key in list(self.hparams):
            self.hparams[key] = plain(self.hparams[key])

    def _init_shared(self) -> None:
        """Validation metrics (L1 on [-1,1]; SSIM, PSNR on [0,1]) and the running loss sums."""
        self.val_l1 = MeanAbsoluteError()
        self.val_ssim = StructuralSimilarityIndexMeasure(data_range=1.0)
        self.val_psnr = PeakSignalNoiseRatio(data_range=1.0, dim=(1, 2, 3))
        self._loss_sum: torch.Tensor | None = None
        self._loss_n = 0

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        """float32 image, int64 mask and the one-hot, built on this module's device."""
        return model_batch(batch, onehot=True, channels_last=bool(self.hparams.get("channels_last")))

    def sample_batch(self, batch: dict[str, torch.Tensor], seed: int) -> torch.Tensor:
        """Images [B,1,H,W] in [-1,1] for the batch's masks, the way synthesis makes them."""
        raise NotImplementedError

    # ---- reproducible resume -------------------------------------------------------------
    # The RNGs (noise, dropout masks, shuffling) are reseeded from (seed, epoch) before each epoch's
    # first random draw. Lightning draws the first epoch's shuffle order of a fit before
    # `on_train_epoch_start`, so the reseed happens at the end of the previous epoch, at fit start,
    # and when a checkpoint is loaded (sanity validation runs under Lightning's isolate_rng).
    def _reseed(self, epoch: int) -> None:
        # + rank: DDP processes draw different noise (rank 0 = the single-device stream)
        rank = self.global_rank if self._trainer is not None else 0
        s = (epoch_seed(self.hparams.seed, epoch) + rank) % (2**32)
        torch.manual_seed(s)
        np.random.seed(s)
        random.seed(s)

    def on_fit_start(self) -> None:
        self._reseed(getattr(self, "_start_epoch", 0))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # the epoch's running loss sums (train/<name>_epoch), for a checkpoint written mid-epoch
        checkpoint["train_loss_sums"] = {"sum": self._loss_sum, "n": self._loss_n}
        checkpoint[GENERATOR_KIND_KEY] = self.GENERATOR_KIND

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # from an epoch end the run continues with the next epoch; from a mid-epoch checkpoint the
        # training loader restores the RNG states it saved (lcgan_lightning.data.resumable)
        self._start_epoch = int(checkpoint.get("epoch", -1)) + 1
        self._reseed(self._start_epoch)
        sums = checkpoint.get("train_loss_sums") or {}
        self._loss_sum, self._loss_n = sums.get("sum"), int(sums.get("n", 0))

    def _optimise(self, opt: Any, compute: Callable[[], tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
        """One manual step of `opt` (its parameters alone trainable while `compute` builds the loss):
        returns `compute()`, whose first element is the loss minimised."""
        self.toggle_optimizer(opt)
        out = compute()
        opt.zero_grad(set_to_none=True)
        self.manual_backward(out[0])
        opt.step()
        self.untoggle_optimizer(opt)
        return out

    # ---- loss logging ----------------------------------------------------------------------
    # Lightning's self.log costs ~1 ms per metric and call on CPU: keep running sums here, hand the
    # step values to self.log only on the steps the loggers write (log_every_n_steps), and log the
    # epoch means in on_train_epoch_end -> train/<name>_step and train/<name>_epoch.
    def _record_losses(self, losses: torch.Tensor, batch_size: int) -> None:
        """One training step's losses, in the order of `TRAIN_LOSSES`."""
        losses = losses.detach()
        self._loss_sum = losses if self._loss_sum is None else self._loss_sum + losses
        self._loss_n += 1
        if self._logs_this_step():
            self.log_dict({f"train/{k}_step": v for k, v in zip(self.TRAIN_LOSSES, losses, strict=True)},
                          on_step=True, on_epoch=False, batch_size=batch_size)

    def _logs_this_step(self) -> bool:
        connector = getattr(self.trainer, "_logger_connector", None)
        return bool(getattr(connector, "should_update_logs", True))

    def on_train_epoch_start(self) -> None:
        self._loss_sum, self._loss_n = None, 0

    def on_train_epoch_end(self) -> None:
        if self._loss_n:
            assert self._loss_sum is not None  # set with _loss_n
            means = self._loss_sum / self._loss_n
            self.log_dict({f"train/{k}_epoch": v for k, v in zip(self.TRAIN_LOSSES, means, strict=True)},
                          on_step=False, on_epoch=True, sync_dist=True)
        self._loss_sum, self._loss_n = None, 0
        if not self.automatic_optimization:  # manual optimisation steps its LR schedulers here
            scheds = self.lr_schedulers()  # the GANs' LambdaLRs step once per epoch, without a metric
            for sched in scheds if isinstance(scheds, list) else [scheds] if scheds is not None else []:
                sched.step()  # type: ignore[call-arg]
        self._reseed(self.current_epoch + 1)

    def configure_callbacks(self):
        root = Path(self.trainer.default_root_dir) if self._trainer is not None else Path.cwd()
        every = self.hparams.get("last_ckpt_every_n_epochs", 1)
        return [PaperEpochCheckpoint(root / CHECKPOINTS, self.hparams.save_epochs,
                                     last_every_n_steps=self.hparams.get("last_every_n_steps"),
                                     last_every_n_epochs=every),
                GANPanels(self.hparams.n_panel)]

    # ---- validation --------------------------------------------------------------------
    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        real = batch["image"].float()
        fake = self.sample_batch(batch, seed=self.hparams.seed + batch_idx).float()
        # metrics in fp32 outside autocast: bf16 runs (trainer=gpu_bf16) score like fp32 ones
        with torch.autocast(self.device.type, enabled=False):
            self.val_l1.update(fake, real)
            fake01, real01 = (fake + 1) / 2, (real + 1) / 2
            self.val_ssim.update(fake01, real01)
            self.val_psnr.update(fake01, real01)
        bs = real.shape[0]
        self.log("val/L1", self.val_l1, on_epoch=True, batch_size=bs)
        self.log("val/SSIM", self.val_ssim, on_epoch=True, prog_bar=True, batch_size=bs)
        self.log("val/PSNR", self.val_psnr, on_epoch=True, batch_size=bs)
        return {"fake": fake.detach()}
