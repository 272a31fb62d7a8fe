"""Mask-conditioned diffusion model (SegGuidedDiff's design, Konz et al. MICCAI 2024) as a
LightningModule (`model=diffusion`), and its trained sampler for `load_generator`.

Network: MONAI's `DiffusionModelUNet` (2-D) whose input is the noisy image concatenated with the
6-channel one-hot mask (7 channels in, one channel out). Two noising processes (`scheduler`):
- `ddpm` (default): MONAI's `DDPMScheduler` (`train_timesteps`, default 1000) adds noise at a uniform
  random timestep, the loss is the MSE between the predicted and the added noise (`DiffusionInferer`,
  concat mode); sampling is DDIM (η = 0, MONAI's `DDIMScheduler`, same beta schedule).
- `rflow`: rectified flow (MONAI's `RFlowScheduler`, as MAISI): x_t = (1 − t/T)·x_0 + (t/T)·noise, the
  network predicts the velocity x_0 − noise (MSE); sampling takes Euler steps from t = T to 0.
Either samples in `sample_steps` steps.

What is random: the starting noise x_T of a sample, drawn from the seed alone; DDIM with η = 0 and
the RFlow Euler steps are then deterministic, so the seed fixes the image. Training draws noise and timesteps from the global
RNG (reseeded every epoch).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from monai.inferers import DiffusionInferer
from monai.networks.nets import DiffusionModelUNet
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler, RFlowScheduler
from torch import nn

from lcgan_lightning.batch import speed_up
from lcgan_lightning.constants import NUM_CLASSES
from lcgan_lightning.errors import ConfigError
from lcgan_lightning.models.generator_module import MaskToImageModule
from lcgan_lightning.models.mask_generator import MaskGenerator, seeded_normal

SCHEDULERS = ("ddpm", "rflow")  # the noising process the model is trained with
SAMPLERS = {"ddpm": "ddim", "rflow": "rflow"}  # ... and the sampler that goes with it
BETA_SCHEDULES = ("linear_beta", "scaled_linear_beta", "sigmoid_beta", "cosine")


def build_unet(hp: Mapping[str, Any]) -> DiffusionModelUNet:
    """The noise-predicting U-Net a MaskDiffusion's hyper-parameters describe (image + one-hot in)."""
    return DiffusionModelUNet(spatial_dims=2, in_channels=1 + NUM_CLASSES, out_channels=1,
                              channels=tuple(int(c) for c in hp["channels"]),
                              attention_levels=tuple(bool(a) for a in hp["attention_levels"]),
                              num_res_blocks=int(hp["num_res_blocks"]), norm_num_groups=int(hp["norm_num_groups"]),
                              num_head_channels=int(hp["num_head_channels"]))


def rflow_scheduler(train_timesteps: int) -> RFlowScheduler:
    """The rectified-flow schedule for 2-D slices: uniform training times, no resolution shift."""
    return RFlowScheduler(num_train_timesteps=int(train_timesteps), use_discrete_timesteps=True,
                          sample_method="uniform", spatial_dim=2)


@torch.no_grad()
def sample_diffusion(unet: DiffusionModelUNet, onehot: torch.Tensor, seed: int, steps: int,
                     train_timesteps: int = 1000, beta_schedule: str = "linear_beta",
                     scheduler_kind: str = "ddpm") -> torch.Tensor:
    """Images [B,1,H,W] in [-1,1] for one-hot masks [B,6,H,W] in `steps` steps (DDIM η = 0 for a
    `ddpm` model, Euler steps for an `rflow` one), x_T [B,1,H,W] drawn from `seed` alone, each row
    sampled on its own (row 0 of any batch is bit for bit the image a one-mask call with the same seed
    makes)."""
    if not 1 <= int(steps) <= int(train_timesteps):
        raise ConfigError(f"model.sample_steps={steps}: must be in [1, {train_timesteps}]")
    scheduler: DDIMScheduler | RFlowScheduler
    if scheduler_kind == "rflow":
        scheduler = rflow_scheduler(train_timesteps)
    else:
        scheduler = DDIMScheduler(num_train_timesteps=int(train_timesteps), schedule=beta_schedule, clip_sample=True)
    scheduler.set_timesteps(int(steps), device=onehot.device)
    noise = seeded_normal((onehot.shape[0], 1, *onehot.shape[-2:]), seed, onehot.device)
    inferer = DiffusionInferer(scheduler)
    rows = [inferer.sample(input_noise=noise[i : i + 1], diffusion_model=unet, scheduler=scheduler,
                           conditioning=onehot[i : i + 1], mode="concat", verbose=False)
            for i in range(onehot.shape[0])]  # each row on its own: batch-independent bit for bit
    return torch.cat([cast(torch.Tensor, r) for r in rows]).clamp(-1, 1)


class DiffusionSampler(MaskGenerator):
    """A trained mask-conditioned diffusion model: masks -> CT slices; the seed draws x_T.

    `sample_steps` (the checkpoint's `model.sample_steps` unless changed) sets the DDIM steps;
    `dropout` is unused.
    """

    kind = "diffusion"

    @staticmethod
    def build(hp: Mapping[str, Any]) -> nn.Module:
        return build_unet(hp)
    generator: DiffusionModelUNet

    def __init__(self, unet: DiffusionModelUNet, image_size: int, hparams: dict | None = None):
        super().__init__(unet, image_size, hparams)
        self.sample_steps = int(self.hparams.get("sample_steps", 20))

    def generate(self, masks: torch.Tensor, seed: int, dropout: bool = True) -> torch.Tensor:
        hp = self.hparams
        return sample_diffusion(self.generator, self.onehot(masks), seed, self.sample_steps,
                                hp.get("train_timesteps", 1000), hp.get("beta_schedule", "linear_beta"),
                                hp.get("scheduler", "ddpm"))


class MaskDiffusion(MaskToImageModule):
    """Mask-conditioned DDPM (`model=diffusion`); the U-Net is `self.generator`.

    Args:
        image_size: side of the square slices (divisible by 2 ** (len(channels) - 1)).
        channels, attention_levels, num_res_blocks, norm_num_groups, num_head_channels: MONAI
            DiffusionModelUNet (attention only where `attention_levels` is true: keep it off at
            full resolution on CPUs).
        train_timesteps, beta_schedule: the noise schedule (1000, "linear_beta"; the beta schedule is DDPM's).
        scheduler: the noising process, "ddpm" or "rflow" (rectified flow).
        sampler: null (the scheduler's: "ddim" for ddpm, "rflow" for rflow) or that name.
        sample_steps: sampling steps in validation and synthesis.
        lr: AdamW learning rate.
        save_epochs, last_ckpt_every_n_epochs, last_every_n_steps, n_panel, seed, channels_last:
            as for the LcGAN (candidate checkpoints, resume, panels, reseeding).
    """

    GENERATOR_KIND = "diffusion"
    TRAIN_LOSSES = ("MSE",)
    DDP_FIND_UNUSED_PARAMETERS = False
    generator: DiffusionModelUNet

    def __init__(
        self,
        image_size: int = 256,
        channels: Sequence[int] = (32, 64, 64),
        attention_levels: Sequence[bool] = (False, False, True),
        num_res_blocks: int = 1,
        norm_num_groups: int = 32,
        num_head_channels: int = 32,
        train_timesteps: int = 1000,
        beta_schedule: str = "linear_beta",
        scheduler: str = "ddpm",
        sampler: str | None = None,
        sample_steps: int = 20,
        lr: float = 1e-4,
        save_epochs: Sequence[int] = (10, 50, 100, 200),
        last_ckpt_every_n_epochs: int = 1,
        last_every_n_steps: int | None = None,
        n_panel: int = 4,
        seed: int = 0,
        channels_last: bool = False,
    ):
        super().__init__()
        if scheduler not in SCHEDULERS:
            raise ConfigError(f"model.scheduler={scheduler!r}: must be one of {SCHEDULERS}")
        if sampler not in (None, SAMPLERS[scheduler]):
            raise ConfigError(f"model.sampler={sampler!r}: a model.scheduler={scheduler} model samples with "
                              f"{SAMPLERS[scheduler]!r} (or null)")
        if beta_schedule not in BETA_SCHEDULES:
            raise ConfigError(f"model.beta_schedule={beta_schedule!r}: must be one of {BETA_SCHEDULES}")
        if len(attention_levels) != len(channels):
            raise ConfigError("model.attention_levels: one entry per model.channels level")
        if not 1 <= int(sample_steps) <= int(train_timesteps):
            raise ConfigError(f"model.sample_steps={sample_steps}: must be in [1, {train_timesteps}]")
        self._save_plain_hyperparameters()
        self.hparams.sampler = SAMPLERS[scheduler]

        with torch.random.fork_rng(devices=[]):  # initial weights depend on `seed` only
            torch.manual_seed(seed)
            self.generator = build_unet(self.hparams)
        speed_up(self.generator, channels_last, False)
        if scheduler == "rflow":  # kept out of the module tree: MONAI's RFlowScheduler has no state_dict
            self.inferer = DiffusionInferer(rflow_scheduler(train_timesteps))
        else:
            self.train_scheduler = DDPMScheduler(num_train_timesteps=train_timesteps, schedule=beta_schedule)
            self.inferer = DiffusionInferer(self.train_scheduler)
        self._init_shared()  # validation metrics, loss sums

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        onehot, real = batch["mask_onehot"].float(), batch["image"].float()
        noise = torch.randn_like(real)
        if isinstance(rflow := self.inferer.scheduler, RFlowScheduler):
            t = rflow.sample_timesteps(real)
            target = real - noise  # the velocity the Euler steps follow from noise (t = T) to image (t = 0)
        else:
            t = torch.randint(0, self.hparams.train_timesteps, (real.shape[0],), device=real.device).long()
            target = noise
        pred = self.inferer(inputs=real, diffusion_model=self.generator, noise=noise, timesteps=t,
                            condition=onehot, mode="concat")
        loss = F.mse_loss(pred.float(), target)
        self._record_losses(loss.reshape(1), real.shape[0])
        return loss

    def configure_optimizers(self):
        return torch.optim.AdamW(self.generator.parameters(), lr=self.hparams.lr)

    def sample_batch(self, batch: dict[str, torch.Tensor], seed: int) -> torch.Tensor:
        hp = self.hparams
        return sample_diffusion(self.generator, batch["mask_onehot"].float(), seed, hp.sample_steps,
                                hp.train_timesteps, hp.beta_schedule, hp.scheduler)
