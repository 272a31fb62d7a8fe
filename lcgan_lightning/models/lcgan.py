"""LcGAN: lesion-conditional pix2pix GAN (paper §3.1, §4.2) as a LightningModule.

Reloading a trained generator and generating from it: `lcgan_lightning.models.generation`.

Objective (pix2pix): D minimises ½·[BCE(D(x,y),1) + BCE(D(x,G(x)),0)]; G minimises
BCE(D(x,G(x)),1) + λ·|y − G(x)|₁ with λ = 100. Adam(2e-4, β=(0.5, 0.999)) for both, one D step then
one G step per batch (manual optimisation). x = lesion mask (one-hot or palette RGB), y = CT slice in [-1,1].
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

import torch
import torch.nn.functional as F

from lcgan_lightning.batch import speed_up
from lcgan_lightning.errors import ConfigError
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
from lcgan_lightning.models.generator_module import MaskToImageModule, epoch_seed

if TYPE_CHECKING:
    from pytorch_lightning.core.optimizer import LightningOptimizer

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


__all__ = ["LcGAN", "discriminator_loss", "epoch_seed", "generator_loss"]


class LcGAN(MaskToImageModule):
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

    GENERATOR_KIND = "lcgan"
    TRAIN_LOSSES = TRAIN_LOSSES
    generator: UNetGenerator

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

        self._init_shared()  # validation metrics, loss sums

    # ---- forward / helpers -------------------------------------------------------------

    def condition(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return encode_condition(batch["mask_onehot"].float(), self.hparams.condition)

    def forward(self, condition: torch.Tensor) -> torch.Tensor:
        return self.generator(condition)

    def _d_logits(self, cond: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.discriminator(torch.cat([cond, image], dim=1))

    # ---- training ----------------------------------------------------------------------
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        opt_g, opt_d = cast("list[LightningOptimizer]", self.optimizers())  # configure_optimizers: two
        cond = self.condition(batch)
        real = batch["image"].float()
        fake = self.generator(cond)

        # D: one step on real and (detached) fake pairs
        _, d_real, d_fake = self._optimise(
            opt_d, lambda: discriminator_loss(self._d_logits(cond, real), self._d_logits(cond, fake.detach())))
        # G: fool the updated D + λ·L1
        loss_g, g_gan, g_l1 = self._optimise(
            opt_g, lambda: generator_loss(self._d_logits(cond, fake), fake, real, self.hparams.lambda_l1))
        self._record_losses(torch.stack([g_gan, g_l1, d_real, d_fake, loss_g]), real.shape[0])

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

    def sample_batch(self, batch: dict[str, torch.Tensor], seed: int) -> torch.Tensor:
        return sample_images(self.generator, self.condition(batch), seed=seed, dropout=True,
                             norm_stats=self.hparams.sample_norm_stats)
