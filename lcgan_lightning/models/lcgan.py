"""LcGAN: lesion-conditional pix2pix GAN (paper §3.1, §4.2) as a LightningModule.

Reloading a trained generator and generating from it: `lcgan_lightning.models.generation`.

Objective (pix2pix): D minimises ½·[BCE(D(x,y),1) + BCE(D(x,G(x)),0)]; G minimises
BCE(D(x,G(x)),1) + λ·|y − G(x)|₁ with λ = 100. Adam(2e-4, β=(0.5, 0.999)) for both, one D step then
one G step per batch (manual optimisation). x = lesion mask (one-hot or palette RGB), y = CT slice in [-1,1].
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torchmetrics import MeanAbsoluteError
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from lcgan_lightning.batch import model_batch, speed_up
from lcgan_lightning.errors import ConfigError
from lcgan_lightning.layout import CHECKPOINTS
from lcgan_lightning.models.checkpointing import PaperEpochCheckpoint
from lcgan_lightning.models.discriminator import PatchDiscriminator
from lcgan_lightning.models.generator import (
    CONDITIONS,
    NORMS,
    UNetGenerator,
    condition_channels,
    encode_condition,
    init_pix2pix_weights,
    sample_images,
)
from lcgan_lightning.models.sample_panels import GANPanels

if TYPE_CHECKING:
    from pytorch_lightning.core.optimizer import LightningOptimizer
    from pytorch_lightning.utilities import AttributeDict
    from torch.optim.lr_scheduler import LRScheduler

LR_POLICIES = ("constant", "linear")
# logged as train/<name>_step (every log_every_n_steps) and train/<name>_epoch (epoch mean)
TRAIN_LOSSES = ("G_GAN", "G_L1", "D_real", "D_fake", "G_total")


def discriminator_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor):
    """pix2pix D loss ½·[BCE(D(x,y), 1) + BCE(D(x,G(x)), 0)] -> (loss, real term, fake term)."""
    d_real = F.binary_cross_entropy_with_logits(logits_real, torch.ones_like(logits_real))
    d_fake = F.binary_cross_entropy_with_logits(logits_fake, torch.zeros_like(logits_fake))
    return 0.5 * (d_real + d_fake), d_real, d_fake


def generator_loss(logits_fake: torch.Tensor, fake: torch.Tensor, real: torch.Tensor, lambda_l1: float):
    """pix2pix G loss BCE(D(x,G(x)), 1) + λ·mean|y − G(x)| -> (loss, GAN term, L1 term)."""
    g_gan = F.binary_cross_entropy_with_logits(logits_fake, torch.ones_like(logits_fake))
    g_l1 = F.l1_loss(fake, real)
    return g_gan + lambda_l1 * g_l1, g_gan, g_l1


def epoch_seed(seed: int, epoch: int) -> int:
    """Seed for the RNGs at the start of `epoch` (so a resumed run draws the same dropout masks and order)."""
    return (int(seed) * 1_000_003 + int(epoch) * 7_919 + 17) % (2**32)


class LcGAN(pl.LightningModule):
    """Lesion-conditional GAN. Batches are dicts with "mask_onehot" [B,6,H,W] and "image" [B,1,H,W] in [-1,1].

    Args:
        image_size: side of the square slices (power of two; sets the U-Net depth, 8 downs at 256).
        ngf, ndf: filters of the first generator / discriminator layer (paper: 64).
        n_layers_d: stride-2 layers of the PatchGAN (3 → 70x70 patches).
        norm: "batch" (pix2pix) or "instance".
        condition: "onehot" (6-channel mask) or "palette" (RGB label image, a fixed colour per class).
        dropout: generator dropout probability in the 3 innermost decoder blocks.
        lambda_l1: weight of the L1 term (100).
        lr, beta1, beta2: Adam settings for G and D.
        lr_policy: "constant" (paper) or "linear" (pix2pix: constant, then linear decay to 0 over
            `n_epochs_decay` final epochs; default half of trainer.max_epochs).
        save_epochs: epochs after which `checkpoints/epoch=EEE.ckpt` (generator only) is written.
        last_ckpt_every_n_epochs: the full `checkpoints/last.ckpt` (resumes the run) is written every
            this many epochs and after the final one.
        last_every_n_steps: also write `checkpoints/last.ckpt` every that many batches (mid-epoch), for
            resuming after a kill (null: at epoch ends only).
        n_panel: validation samples shown in the per-epoch image panel.
        sample_norm_stats: how validation and `load_generator` normalise at sampling time
            ("sample": per-image batch statistics as pix2pix at test time; "running": BatchNorm averages).
        seed: seeds dropout / data order at every epoch start and the validation samples.
        channels_last: NHWC memory format for both networks and the batch (faster convolutions).
        compile: `torch.compile` both networks (state_dict and checkpoints unchanged).
        fused_adam: PyTorch's fused Adam kernels (`Adam(fused=True)`, CPU and CUDA): the same update
            rule in one pass over each parameter instead of one per operation; not bit-identical to
            the default implementation, so off unless asked for.
    """

    # DDP: the D step's backward reaches no generator parameter (and the G step none of D's, which are
    # frozen by toggle_optimizer), so DDP must look for unused parameters; lcgan-train switches
    # `strategy: ddp` to `ddp_find_unused_parameters_true` for modules that set this
    DDP_FIND_UNUSED_PARAMETERS = True

    if TYPE_CHECKING:  # save_hyperparameters() stores an AttributeDict (Lightning types it more widely)

        @property
        def hparams(self) -> AttributeDict: ...

    def __init__(
        self,
        image_size: int = 256,
        ngf: int = 64,
        ndf: int = 64,
        n_layers_d: int = 3,
        norm: str = "batch",
        condition: str = "onehot",
        dropout: float = 0.5,
        lambda_l1: float = 100.0,
        lr: float = 2e-4,
        beta1: float = 0.5,
        beta2: float = 0.999,
        lr_policy: str = "constant",
        n_epochs_decay: int | None = None,
        save_epochs: Sequence[int] = (10, 50, 100, 200),
        last_ckpt_every_n_epochs: int = 1,
        n_panel: int = 4,
        sample_norm_stats: str = "sample",
        seed: int = 0,
        init_std: float = 0.02,
        channels_last: bool = False,
        compile: bool = False,
        last_every_n_steps: int | None = None,
        fused_adam: bool = False,
    ):
        super().__init__()
        if norm not in NORMS:
            raise ConfigError(f"model.norm={norm!r}: must be one of {NORMS}")
        if condition not in CONDITIONS:
            raise ConfigError(f"model.condition={condition!r}: must be one of {CONDITIONS}")
        if lr_policy not in LR_POLICIES:
            raise ConfigError(f"model.lr_policy={lr_policy!r}: must be one of {LR_POLICIES}")
        # plain Python values only, so the checkpoint reloads without OmegaConf/Hydra
        save_epochs = [int(e) for e in save_epochs]
        image_size, ngf, ndf, n_layers_d, n_panel, seed, last_ckpt_every_n_epochs = map(
            int, (image_size, ngf, ndf, n_layers_d, n_panel, seed, last_ckpt_every_n_epochs))
        dropout, lambda_l1, lr, beta1, beta2, init_std = map(float, (dropout, lambda_l1, lr, beta1, beta2, init_std))
        n_epochs_decay = None if n_epochs_decay is None else int(n_epochs_decay)
        last_every_n_steps = None if last_every_n_steps is None else int(last_every_n_steps)
        self.save_hyperparameters()
        self.automatic_optimization = False

        in_ch = condition_channels(condition)
        self.generator = UNetGenerator(in_ch, 1, image_size=image_size, ngf=ngf, norm=norm, dropout=dropout)
        self.discriminator = PatchDiscriminator(in_ch + 1, ndf=ndf, n_layers=n_layers_d, norm=norm)
        with torch.random.fork_rng(devices=[]):  # initial weights depend on `seed` only
            torch.manual_seed(seed)
            init_pix2pix_weights(self.generator, init_std)
            init_pix2pix_weights(self.discriminator, init_std)
        for net in (self.generator, self.discriminator):
            speed_up(net, bool(channels_last), bool(compile))

        # validation metrics: L1 on the [-1,1] scale; SSIM and PSNR on images rescaled to [0,1] (data_range 1)
        self.val_l1 = MeanAbsoluteError()
        self.val_ssim = StructuralSimilarityIndexMeasure(data_range=1.0)
        self.val_psnr = PeakSignalNoiseRatio(data_range=1.0, dim=(1, 2, 3))
        self._loss_sum: torch.Tensor | None = None
        self._loss_n = 0

    # ---- forward / helpers -------------------------------------------------------------
    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        """float32 image, int64 mask and the one-hot, built on this module's device."""
        return model_batch(batch, onehot=True, channels_last=bool(self.hparams.get("channels_last")))

    def condition(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return encode_condition(batch["mask_onehot"].float(), self.hparams.condition)

    def forward(self, condition: torch.Tensor) -> torch.Tensor:
        return self.generator(condition)

    def _d_logits(self, cond: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.discriminator(torch.cat([cond, image], dim=1))

    # ---- training ----------------------------------------------------------------------
    # Reproducible resume: the RNGs (dropout masks, shuffling) are reseeded from (seed, epoch) before each
    # epoch's first random draw. Lightning draws the first epoch's shuffle order of a fit before
    # `on_train_epoch_start`, so the reseed happens at the end of the previous epoch, at fit start,
    # and when a checkpoint is loaded (sanity validation runs under Lightning's isolate_rng).
    def _reseed(self, epoch: int) -> None:
        # + rank: DDP processes draw different dropout masks (rank 0 = the single-device stream)
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

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # from an epoch end the run continues with the next epoch; from a mid-epoch checkpoint the
        # training loader restores the RNG states it saved (lcgan_lightning.data.resumable)
        self._start_epoch = int(checkpoint.get("epoch", -1)) + 1
        self._reseed(self._start_epoch)
        sums = checkpoint.get("train_loss_sums") or {}
        self._loss_sum, self._loss_n = sums.get("sum"), int(sums.get("n", 0))

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        opt_g, opt_d = cast("list[LightningOptimizer]", self.optimizers())  # configure_optimizers: two
        cond = self.condition(batch)
        real = batch["image"].float()
        fake = self.generator(cond)

        # D: one step on real and (detached) fake pairs
        self.toggle_optimizer(opt_d)
        loss_d, d_real, d_fake = discriminator_loss(self._d_logits(cond, real), self._d_logits(cond, fake.detach()))
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(loss_d)
        opt_d.step()
        self.untoggle_optimizer(opt_d)

        # G: fool the updated D + λ·L1
        self.toggle_optimizer(opt_g)
        loss_g, g_gan, g_l1 = generator_loss(self._d_logits(cond, fake), fake, real, self.hparams.lambda_l1)
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(loss_g)
        opt_g.step()
        self.untoggle_optimizer(opt_g)

        # Lightning's self.log costs ~1 ms per metric and call on CPU: keep running sums here, hand the
        # step values to self.log only on the steps the loggers write (log_every_n_steps), and log the
        # epoch means in on_train_epoch_end -> train/<name>_step and train/<name>_epoch.
        losses = torch.stack([g_gan, g_l1, d_real, d_fake, loss_g]).detach()
        self._loss_sum = losses if self._loss_sum is None else self._loss_sum + losses
        self._loss_n += 1
        if self._logs_this_step():
            self.log_dict({f"train/{k}_step": v for k, v in zip(TRAIN_LOSSES, losses, strict=True)},
                          on_step=True, on_epoch=False, batch_size=real.shape[0])

    def _logs_this_step(self) -> bool:
        connector = getattr(self.trainer, "_logger_connector", None)
        return bool(getattr(connector, "should_update_logs", True))

    def on_train_epoch_start(self) -> None:
        self._loss_sum, self._loss_n = None, 0

    def on_train_epoch_end(self) -> None:
        if self._loss_n:
            assert self._loss_sum is not None  # set with _loss_n
            means = self._loss_sum / self._loss_n
            self.log_dict({f"train/{k}_epoch": v for k, v in zip(TRAIN_LOSSES, means, strict=True)},
                          on_step=False, on_epoch=True, sync_dist=True)
        self._loss_sum, self._loss_n = None, 0
        # configure_optimizers: two LambdaLRs, or none
        for sched in cast("list[LRScheduler] | None", self.lr_schedulers()) or []:
            sched.step()
        self._reseed(self.current_epoch + 1)

    def configure_optimizers(self):
        hp = self.hparams
        kw = dict(lr=hp.lr, betas=(hp.beta1, hp.beta2), **({"fused": True} if hp.get("fused_adam") else {}))
        opt_g = torch.optim.Adam(self.generator.parameters(), **kw)
        opt_d = torch.optim.Adam(self.discriminator.parameters(), **kw)
        factor = self._lr_factor_fn()
        return [opt_g, opt_d], [torch.optim.lr_scheduler.LambdaLR(opt_g, factor),
                                torch.optim.lr_scheduler.LambdaLR(opt_d, factor)]

    def _lr_factor_fn(self):
        if self.hparams.lr_policy == "constant":
            return lambda epoch: 1.0
        max_epochs = self.trainer.max_epochs if self._trainer is not None else None
        if max_epochs is None or max_epochs < 1:
            raise ConfigError("model.lr_policy=linear: needs trainer.max_epochs >= 1")
        n_decay = self.hparams.n_epochs_decay if self.hparams.n_epochs_decay is not None else max_epochs // 2
        n_const = max_epochs - n_decay
        # pix2pix: lr·(1 − max(0, e + 1 − n_const) / (n_decay + 1)) for 0-based epoch e
        return lambda epoch: 1.0 - max(0, epoch + 1 - n_const) / float(n_decay + 1)

    def configure_callbacks(self):
        root = Path(self.trainer.default_root_dir) if self._trainer is not None else Path.cwd()
        every = self.hparams.get("last_ckpt_every_n_epochs", 1)
        return [PaperEpochCheckpoint(root / CHECKPOINTS, self.hparams.save_epochs,
                                     last_every_n_steps=self.hparams.get("last_every_n_steps"),
                                     last_every_n_epochs=every),
                GANPanels(self.hparams.n_panel)]

    # ---- validation --------------------------------------------------------------------
    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        cond = self.condition(batch)
        real = batch["image"].float()
        fake = sample_images(self.generator, cond, seed=self.hparams.seed + batch_idx, dropout=True,
                             norm_stats=self.hparams.sample_norm_stats).float()
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
