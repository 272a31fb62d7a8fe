"""SPADE GAN (Park et al., CVPR 2019): MONAI's SPADENet generator + multi-scale PatchGAN, as a
LightningModule (`model=spade`), and its trained generator for `load_generator`.

Objective (SPADE / pix2pixHD, no perceptual loss): D minimises adv(D(x,y), real) + adv(D(x,G(x,z)),
fake) with MONAI's `PatchAdversarialLoss` (hinge or least squares) averaged over the discriminators;
G minimises adv(D(x,G(x,z)), real) + λ_fm·FM + λ_kld·KL (VAE mode only), FM = the L1 distance between
D's intermediate features of the generated and the real pair, summed over layers, averaged over the
discriminators. Adam with SPADE's two time-scale rates (G 1e-4, D 4e-4, β = (0, 0.9)); one D step,
then one G step per batch (manual optimisation). x = the 6-channel one-hot mask, y = CT slice in [-1,1].

What is random: the noise z (N(0, I), `model.z_dim` values per image) in training and generation;
in generation z is drawn from the seed alone. `model.z_dim=0` (and no VAE) makes G deterministic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import torch
import torch.nn.functional as F
from monai.losses import PatchAdversarialLoss
from monai.networks.nets import MultiScalePatchDiscriminator
from torch import nn

from lcgan_lightning.batch import speed_up
from lcgan_lightning.constants import NUM_CLASSES
from lcgan_lightning.errors import ConfigError
from lcgan_lightning.models.generator_module import MaskToImageModule
from lcgan_lightning.models.mask_generator import MaskGenerator, seeded_normal
from lcgan_lightning.models.spade_generator import SPADEGenerator

if TYPE_CHECKING:
    from pytorch_lightning.core.optimizer import LightningOptimizer

GAN_LOSSES = ("hinge", "least_squares")


def build_spade_generator(hp: Mapping[str, Any]) -> SPADEGenerator:
    """The generator network a SpadeGAN's hyper-parameters describe."""
    return SPADEGenerator(int(hp["image_size"]), hp["channels"], z_dim=int(hp["z_dim"]), vae=bool(hp["vae"]),
                          hidden=int(hp["hidden"]), norm=str(hp["norm"]))


@torch.no_grad()
def sample_spade(generator: SPADEGenerator, onehot: torch.Tensor, seed: int) -> torch.Tensor:
    """Images for one-hot masks [B,6,H,W]: z [B,z_dim] drawn from `seed` alone, each row generated on
    its own (row 0 of any batch is bit for bit the image a one-mask call with the same seed makes);
    the global RNG is untouched."""
    n = onehot.shape[0]
    z = seeded_normal((n, generator.z_dim), seed, onehot.device) if generator.z_dim else None
    return torch.cat([generator(onehot[i : i + 1], None if z is None else z[i : i + 1]) for i in range(n)])


def feature_matching(fake: Sequence[Sequence[torch.Tensor]], real: Sequence[Sequence[torch.Tensor]]) -> torch.Tensor:
    """pix2pixHD's feature-matching loss: L1 between D's features of the fake and the (detached) real
    pair, summed over layers, averaged over the discriminators."""
    total = fake[0][0].new_zeros(())
    for f_d, r_d in zip(fake, real, strict=True):
        for f, r in zip(f_d, r_d, strict=True):
            total = total + F.l1_loss(f, r.detach())
    return total / len(fake)


class SpadeSampler(MaskGenerator):
    """A trained SPADE generator: lesion masks -> CT slices; the seed draws z (`dropout` is unused)."""

    kind = "spade"

    @staticmethod
    def build(hp: Mapping[str, Any]) -> nn.Module:
        return build_spade_generator(hp)
    generator: SPADEGenerator

    def generate(self, masks: torch.Tensor, seed: int, dropout: bool = True) -> torch.Tensor:
        return sample_spade(self.generator, self.onehot(masks), seed)


class SpadeGAN(MaskToImageModule):
    """SPADE GAN on one-hot lesion masks (`model=spade`).

    Args:
        image_size: side of the square slices (divisible by 2 ** len(channels)).
        channels: SPADENet widths (the decoder runs them in reverse, widest first).
        z_dim: noise values per image (0 and `vae=False`: deterministic generator).
        vae: GauGAN's VAE mode (image encoder + KL term weighted `lambda_kld`).
        hidden: channels inside each SPADE normalisation (SPADE: 128).
        norm: the parameter-free normalisation SPADE modulates (MONAI name).
        ndf, num_d, n_layers_d, d_norm: MONAI's multi-scale PatchGAN: base width, number of
            discriminators (discriminator i has n_layers_d·(i+1) stride-2 layers: coarser patches),
            stride-2 layers of the first, norm.
        gan_loss: "hinge" (SPADE) or "least_squares" (MONAI's PatchAdversarialLoss criterion).
        lambda_fm, lambda_kld: weights of feature matching (10) and of the KL term (0.05).
        lr_g, lr_d, beta1, beta2: Adam for G and D (SPADE: 1e-4, 4e-4, 0, 0.9).
        save_epochs, last_ckpt_every_n_epochs, last_every_n_steps, n_panel, seed, channels_last:
            as for the LcGAN (candidate checkpoints, resume, panels, reseeding).
    """

    GENERATOR_KIND = "spade"
    TRAIN_LOSSES = ("G_GAN", "G_FM", "G_KLD", "D_real", "D_fake", "G_total")
    generator: SPADEGenerator

    def __init__(
        self,
        image_size: int = 256,
        channels: Sequence[int] = (32, 64, 128, 256, 256),
        z_dim: int = 16,
        vae: bool = False,
        hidden: int = 128,
        norm: str = "INSTANCE",
        ndf: int = 64,
        num_d: int = 2,
        n_layers_d: int = 2,
        d_norm: str = "INSTANCE",
        gan_loss: str = "hinge",
        lambda_fm: float = 10.0,
        lambda_kld: float = 0.05,
        lr_g: float = 1e-4,
        lr_d: float = 4e-4,
        beta1: float = 0.0,
        beta2: float = 0.9,
        save_epochs: Sequence[int] = (10, 50, 100, 200),
        last_ckpt_every_n_epochs: int = 1,
        last_every_n_steps: int | None = None,
        n_panel: int = 4,
        seed: int = 0,
        channels_last: bool = False,
    ):
        super().__init__()
        if gan_loss not in GAN_LOSSES:
            raise ConfigError(f"model.gan_loss={gan_loss!r}: must be one of {GAN_LOSSES}")
        if int(image_size) // 2 ** (int(n_layers_d) * int(num_d)) < 4:
            raise ConfigError(f"model.num_d={num_d}, model.n_layers_d={n_layers_d}: the deepest discriminator "
                              f"(n_layers_d·num_d = {int(n_layers_d) * int(num_d)} stride-2 layers) would shrink "
                              f"{image_size}² below 4×4", hint="lower model.num_d or model.n_layers_d")
        self._save_plain_hyperparameters()
        self.automatic_optimization = False

        with torch.random.fork_rng(devices=[]):  # initial weights depend on `seed` only
            torch.manual_seed(seed)
            self.generator = build_spade_generator(self.hparams)
            self.discriminator = MultiScalePatchDiscriminator(
                num_d=num_d, num_layers_d=n_layers_d, spatial_dims=2, channels=ndf, in_channels=NUM_CLASSES + 1,
                out_channels=1, norm=d_norm, minimum_size_im=image_size)
        for net in (self.generator, self.discriminator):
            speed_up(net, channels_last, False)
        self.adversarial = PatchAdversarialLoss(criterion=gan_loss, reduction="mean")
        self._init_shared()  # validation metrics, loss sums

    def _d(self, onehot: torch.Tensor, image: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        return self.discriminator(torch.cat([onehot, image], dim=1))

    def _latent(self, real: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Training noise z (from the global RNG, reseeded every epoch) and the KL term (0 without VAE)."""
        kld = real.new_zeros(())
        if self.hparams.vae:
            mu, logvar = self.generator.encode(real)
            kld = -0.5 * torch.mean(torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1))
            return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar), kld
        if not self.hparams.z_dim:
            return None, kld
        return torch.randn(real.shape[0], self.hparams.z_dim, device=real.device), kld

    def _d_loss(self, onehot: torch.Tensor, real: torch.Tensor, fake: torch.Tensor):
        d_real = cast(torch.Tensor, self.adversarial(self._d(onehot, real)[0], True, True))
        d_fake = cast(torch.Tensor, self.adversarial(self._d(onehot, fake)[0], False, True))
        return d_real + d_fake, d_real, d_fake

    def _g_loss(self, onehot: torch.Tensor, real: torch.Tensor, fake: torch.Tensor, kld: torch.Tensor):
        logits, feats_fake = self._d(onehot, fake)
        with torch.no_grad():
            feats_real = self._d(onehot, real)[1]
        g_gan = cast(torch.Tensor, self.adversarial(logits, True, False))
        g_fm = feature_matching(feats_fake, feats_real)
        hp = self.hparams
        return g_gan + hp.lambda_fm * g_fm + hp.lambda_kld * kld, g_gan, g_fm

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        opt_g, opt_d = cast("list[LightningOptimizer]", self.optimizers())  # configure_optimizers: two
        onehot, real = batch["mask_onehot"].float(), batch["image"].float()
        z, kld = self._latent(real)
        fake = self.generator(onehot, z)
        _, d_real, d_fake = self._optimise(opt_d, lambda: self._d_loss(onehot, real, fake.detach()))
        loss_g, g_gan, g_fm = self._optimise(opt_g, lambda: self._g_loss(onehot, real, fake, kld))
        self._record_losses(torch.stack([g_gan, g_fm, kld.detach(), d_real, d_fake, loss_g]), real.shape[0])

    def configure_optimizers(self):
        hp = self.hparams
        betas = (hp.beta1, hp.beta2)
        return [torch.optim.Adam(self.generator.parameters(), lr=hp.lr_g, betas=betas),
                torch.optim.Adam(self.discriminator.parameters(), lr=hp.lr_d, betas=betas)]

    def sample_batch(self, batch: dict[str, torch.Tensor], seed: int) -> torch.Tensor:
        return sample_spade(self.generator, batch["mask_onehot"].float(), seed)
