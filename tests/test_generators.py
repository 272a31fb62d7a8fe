"""The generator families behind one interface: LcGAN, SPADE (model=spade), diffusion (model=diffusion).

Each maps one-hot masks to seeded images in [-1, 1] through `load_generator`; tiny runs of
`lcgan-train model=spade|diffusion` write candidates that `lcgan-select` scores and `lcgan-synthesize`
turns into a set the segmenter's `data.augment=gan` reader accepts; crafted checkpoints are refused.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.networks.schedulers import DDPMScheduler
from test_safe_loading import TouchOnUnpickle, non_plain

from lcgan_lightning.checkpoint_io import UnsafeCheckpointError
from lcgan_lightning.errors import CheckpointReadError, ConfigError
from lcgan_lightning.models.diffusion_gen import DiffusionSampler, MaskDiffusion, sample_diffusion
from lcgan_lightning.models.generation import (
    MaskToCT,
    checkpoint_image_source,
    generate_set,
    load_generator,
)
from lcgan_lightning.models.lcgan import LcGAN
from lcgan_lightning.models.spade_gan import SpadeGAN, SpadeSampler

SIZE = 32
TINY_SPADE = dict(image_size=SIZE, channels=[8, 16, 16], hidden=8, ndf=8, num_d=2, n_layers_d=1, z_dim=4)
TINY_DIFFUSION = dict(image_size=SIZE, channels=[8, 16, 16], norm_num_groups=8, num_head_channels=8,
                      sample_steps=3)
MODULES = {
    "lcgan": lambda: LcGAN(image_size=SIZE, ngf=8, ndf=8),
    "spade": lambda: SpadeGAN(**TINY_SPADE),
    "spade_vae": lambda: SpadeGAN(**TINY_SPADE, vae=True),
    "diffusion": lambda: MaskDiffusion(**TINY_DIFFUSION),
    "diffusion_rflow": lambda: MaskDiffusion(**TINY_DIFFUSION, scheduler="rflow"),
}
SAMPLERS = {"lcgan": MaskToCT, "spade": SpadeSampler, "spade_vae": SpadeSampler, "diffusion": DiffusionSampler,
            "diffusion_rflow": DiffusionSampler}


def masks(n: int = 3) -> torch.Tensor:
    m = torch.zeros(n, SIZE, SIZE, dtype=torch.long)
    for i in range(n):
        m[i, 8:20, 6 + 2 * i : 18 + 2 * i] = 1 + i % 5
    return m


def save_module(module, path: Path, kind: str | None) -> Path:
    """A checkpoint as Lightning writes it (weights, hparams, generator_kind unless None)."""
    ck = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams), "epoch": 0}
    if kind:
        ck["generator_kind"] = kind
    torch.save(ck, path)
    return path


@pytest.mark.parametrize("name", list(MODULES))
def test_each_generator_maps_masks_to_seeded_images(tmp_path, name):
    module = MODULES[name]()
    kind = None if name == "lcgan" else module.GENERATOR_KIND  # an old LcGAN checkpoint names no kind
    gen = load_generator(save_module(module, tmp_path / "g.ckpt", kind))
    assert type(gen) is SAMPLERS[name] and gen.image_size == SIZE and gen.device == torch.device("cpu")
    assert gen.hparams["image_size"] == SIZE and not gen.training
    m = masks()
    a, b, c = gen.generate(m, seed=5), gen.generate(m, seed=5), gen.generate(m, seed=6)
    assert a.shape == (3, 1, SIZE, SIZE) and a.dtype == torch.float32
    assert torch.isfinite(a).all() and a.min() >= -1 and a.max() <= 1 and a.std() > 1e-3
    assert torch.equal(a, b)  # same seed: bit for bit on CPU
    assert (a - c).abs().max() > 1e-3  # another seed: another sample
    assert torch.equal(gen.generate(m[:1], seed=5), a[:1])  # a row does not depend on the batch
    with pytest.raises(ValueError, match=f"masks must be \\[B,{SIZE},{SIZE}\\]"):
        gen.generate(torch.zeros(1, 16, 16, dtype=torch.long), seed=0)
    # the generic set path (one mask per call, row seeds) and the data.generator_ckpt source agree
    s = generate_set(gen, m.numpy(), seed=2)
    assert s.shape == (3, SIZE, SIZE) and s.dtype == np.float16
    assert np.array_equal(checkpoint_image_source(tmp_path / "g.ckpt", device="cpu")(m.numpy(), 2), s)


def test_spade_without_noise_is_deterministic_and_the_vae_encodes():
    module = SpadeGAN(**{**TINY_SPADE, "z_dim": 0})
    gen = SpadeSampler(module.generator, SIZE, dict(module.hparams)).eval()
    assert torch.equal(gen.generate(masks(), seed=1), gen.generate(masks(), seed=2))
    vae = SpadeGAN(**TINY_SPADE, vae=True)
    z, kld = vae._latent(torch.zeros(2, 1, SIZE, SIZE))
    assert z is not None and z.shape == (2, 4) and kld.item() >= 0


@pytest.mark.parametrize("scheduler", ["ddpm", "rflow"])
def test_diffusion_sampler_with_one_and_ten_steps(scheduler):
    module = MaskDiffusion(**TINY_DIFFUSION, scheduler=scheduler).eval()
    with torch.no_grad():  # MONAI zero-initialises the output layer: an untrained rflow model would return x_T
        torch.manual_seed(0)
        for p in module.generator.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    onehot = torch.nn.functional.one_hot(masks(2), 6).permute(0, 3, 1, 2).float()
    one = sample_diffusion(module.generator, onehot, seed=3, steps=1, scheduler_kind=scheduler)
    ten = sample_diffusion(module.generator, onehot, seed=3, steps=10, scheduler_kind=scheduler)
    for x in (one, ten):
        assert x.shape == (2, 1, SIZE, SIZE) and torch.isfinite(x).all() and x.abs().max() <= 1
    assert (one - ten).abs().max() > 1e-3  # the steps change the sample, the seed fixes x_T
    assert torch.equal(ten, sample_diffusion(module.generator, onehot, seed=3, steps=10, scheduler_kind=scheduler))
    with pytest.raises(ConfigError, match="sample_steps=0"):
        sample_diffusion(module.generator, onehot, seed=3, steps=0, scheduler_kind=scheduler)
    gen = DiffusionSampler(module.generator, SIZE, dict(module.hparams))
    gen.sample_steps = 1
    assert torch.equal(gen.generate(masks(2), seed=3), one)  # the checkpoint's hparams pick the sampler
    assert gen.hparams["sampler"] == {"ddpm": "ddim", "rflow": "rflow"}[scheduler]


class _Oracle(torch.nn.Module):
    """Predicts exactly what a perfectly trained model would for one known clean image x0: the noise
    in x_t (ddpm) or the velocity x0 − noise (rflow)."""

    def __init__(self, x0: torch.Tensor, scheduler: str):
        super().__init__()
        self.x0, self.scheduler = x0, scheduler
        self.alphas = DDPMScheduler(num_train_timesteps=1000, schedule="linear_beta").alphas_cumprod

    def forward(self, x, timesteps, context=None):
        x_t, t = x[:, :1], int(timesteps[0])
        if self.scheduler == "ddpm":
            a = self.alphas[t]
            return (x_t - a.sqrt() * self.x0) / (1 - a).sqrt()
        s = t / 1000  # rflow: x_t = (1 - s)·x0 + s·noise
        noise = (x_t - (1 - s) * self.x0) / s
        return self.x0 - noise


@pytest.mark.parametrize("scheduler", ["ddpm", "rflow"])
@pytest.mark.parametrize("steps", [1, 10])
def test_diffusion_sampler_recovers_the_image_an_exact_model_points_to(scheduler, steps):
    """The sampling arithmetic (timesteps, DDIM η = 0 update, RFlow Euler step) on a model that knows the
    answer: any number of steps must land on x0."""
    x0 = torch.linspace(-0.9, 0.9, SIZE * SIZE).reshape(1, 1, SIZE, SIZE)
    onehot = torch.nn.functional.one_hot(masks(1), 6).permute(0, 3, 1, 2).float()
    out = sample_diffusion(_Oracle(x0, scheduler), onehot, seed=4, steps=steps, scheduler_kind=scheduler)
    assert (out - x0).abs().max() < 1e-3


class _Zero(torch.nn.Module):
    """A 'network' that predicts 0: the training loss is then the mean square of the target."""

    def forward(self, x, timesteps, context=None):
        return torch.zeros_like(x[:, :1])


@pytest.mark.parametrize("scheduler", ["ddpm", "rflow"])
def test_diffusion_training_target(scheduler):
    """ddpm regresses the added noise; rflow the velocity image − noise (MONAI RFlowScheduler, MAISI)."""
    module = MaskDiffusion(**TINY_DIFFUSION, scheduler=scheduler)
    module.generator = _Zero()
    module._record_losses = lambda losses, batch_size: None  # logging needs a Trainer
    real = torch.rand(2, 1, SIZE, SIZE) * 2 - 1
    batch = {"image": real, "mask_onehot": torch.nn.functional.one_hot(masks(2), 6).permute(0, 3, 1, 2)}
    torch.manual_seed(0)
    loss = module.training_step(batch, 0)
    torch.manual_seed(0)
    noise = torch.randn_like(real)  # the step's first draw
    target = noise if scheduler == "ddpm" else real - noise
    assert loss.item() == pytest.approx(target.pow(2).mean().item(), rel=1e-6)


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="model.gan_loss"):
        SpadeGAN(**TINY_SPADE, gan_loss="wgan")
    with pytest.raises(ConfigError, match="model.num_d"):
        SpadeGAN(**{**TINY_SPADE, "n_layers_d": 2})  # 32² / 2**(2*2) < 4
    with pytest.raises(ConfigError, match="model.channels"):
        SpadeGAN(**{**TINY_SPADE, "image_size": 36})
    with pytest.raises(ConfigError, match="model.sampler"):
        MaskDiffusion(**TINY_DIFFUSION, sampler="rflow")  # a ddpm model samples with DDIM
    with pytest.raises(ConfigError, match="model.sampler='ddim': a model.scheduler=rflow"):
        MaskDiffusion(**TINY_DIFFUSION, scheduler="rflow", sampler="ddim")
    with pytest.raises(ConfigError, match="model.scheduler"):
        MaskDiffusion(**TINY_DIFFUSION, scheduler="euler")


@pytest.mark.parametrize("kind", ["spade", "diffusion"])
def test_crafted_checkpoint_of_each_kind_is_refused(tmp_path, kind):
    marker = tmp_path / "marker"
    module = MODULES[kind]()
    path = tmp_path / f"{kind}.ckpt"
    torch.save({"state_dict": module.state_dict(), "generator_kind": kind,
                "hyper_parameters": {**module.hparams, "payload": TouchOnUnpickle(marker)}}, path)
    for call in (lambda: load_generator(path), lambda: checkpoint_image_source(path)(masks(1).numpy(), 0)):
        with pytest.raises(UnsafeCheckpointError, match="trust_checkpoint=true"):
            call()
    assert not marker.exists()
    # an unknown kind is a user error naming it, not a wrong network
    torch.save({"state_dict": {}, "generator_kind": "vqgan", "hyper_parameters": {"image_size": SIZE}}, path)
    with pytest.raises(CheckpointReadError, match="unknown generator_kind 'vqgan'"):
        load_generator(path)


# ---- lcgan-train -> lcgan-select -> lcgan-synthesize -> data.augment=gan ------------------------------
DATA = ["data=phantom", f"data.image_size={SIZE}", "data.phantom.num_patients=12", "data.phantom.num_slices=8",
        "data.num_workers=0", "seed=3"]
TRAIN = [*DATA, "data.fraction=0.25", "data.batch_size=2", "trainer=cpu", "logger=csv", "callbacks=none",
         "print_config=false", "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=1",
         "+trainer.enable_progress_bar=false", "model.save_epochs=[1]", "model.n_panel=1"]
MODEL = {
    "spade": ["model=spade", "model.channels=[8,16,16]", "model.hidden=8", "model.ndf=8", "model.n_layers_d=1",
              "model.z_dim=4"],
    "diffusion": ["model=diffusion", "model.channels=[8,16,16]", "model.norm_num_groups=8",
                  "model.num_head_channels=8", "model.sample_steps=2"],
}


def _compose(name: str, tmp_path: Path, out: str, overrides: list[str]):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from lcgan_lightning.paths import CONF_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose(name, overrides=[f"paths.root_dir='{tmp_path}'", f"paths.output_dir='{tmp_path / out}'",
                                        *overrides])


@pytest.mark.parametrize("kind", ["spade", "diffusion"])
def test_train_resume_select_synthesize(tmp_path, kind):
    import pytorch_lightning as pl

    from lcgan_lightning.cli.select import select_generators
    from lcgan_lightning.cli.synthesize import synthesize_from_config
    from lcgan_lightning.data.synthetic_set import match_synthetic_set, read_synthetic_set
    from lcgan_lightning.models.segmenter import Segmenter
    from lcgan_lightning.training import train

    run = "gan/frac=0.25/epochs=2"
    summary = train(_compose("train", tmp_path, run, [*TRAIN, *MODEL[kind], "trainer.max_epochs=1"]))
    assert summary["epochs"] == 1
    ckpts = tmp_path / run / "checkpoints"
    cand = torch.load(ckpts / "epoch=001.ckpt", weights_only=True)
    assert cand["generator_kind"] == kind and cand["generator_only"] is True
    assert cand["state_dict"] and all(k.startswith("generator.") for k in cand["state_dict"])
    assert not non_plain(cand["hyper_parameters"]) and not non_plain(cand["run_config"])
    assert (tmp_path / run / "panels/epoch=001.png").is_file()
    header = (tmp_path / run / "csv/metrics.csv").read_text().splitlines()[0]
    assert ("train/G_FM_epoch" if kind == "spade" else "train/MSE_epoch") in header and "val/SSIM" in header
    # resume from last.ckpt: the second epoch of a resumed run equals that of an uninterrupted run
    train(_compose("train", tmp_path, run, [*TRAIN, *MODEL[kind], "trainer.max_epochs=2", "ckpt_path=last"]))
    train(_compose("train", tmp_path, "straight", [*TRAIN, *MODEL[kind], "trainer.max_epochs=2"]))
    resumed = torch.load(ckpts / "last.ckpt", weights_only=True)["state_dict"]
    straight = torch.load(tmp_path / "straight/checkpoints/last.ckpt", weights_only=True)["state_dict"]
    assert resumed.keys() == straight.keys() and all(torch.equal(resumed[k], straight[k]) for k in resumed)

    judge = Segmenter(arch="basicunet", width=0.125)
    judge_ckpt = tmp_path / "judge.ckpt"
    torch.save({"state_dict": judge.state_dict(), "hyper_parameters": dict(judge.hparams),
                "pytorch-lightning_version": pl.__version__}, judge_ckpt)
    selected = select_generators(_compose("select", tmp_path, "select", [
        *DATA, f"candidates_dir='{tmp_path / 'gan'}'", f"judge_ckpt='{judge_ckpt}'", "max_images=4",
        "realism.epochs=1", "realism.width=4", "sheet_columns=2", "fid=false"]))
    assert list(selected) == ["0.25"] and selected["0.25"]["epochs"] == 1  # epoch=001.ckpt, the candidate
    scores = json.loads((tmp_path / "select/scores.json").read_text())["candidates"]
    assert len(scores) == 1 and 0.0 <= scores[0]["fcn_score"] <= 1.0 and scores[0]["sharpness"] > 0

    manifest = synthesize_from_config(_compose("synthesize", tmp_path, "syn", [
        *DATA, f"selected_json='{tmp_path / 'select/selected.json'}'", "data.fraction=0.25",
        f"out_dir='{tmp_path / 'syn'}'", "previews=0"]))
    syn = read_synthetic_set(tmp_path / "syn")  # what data.augment=gan reads
    images = np.asarray(syn.images, dtype=np.float32)
    assert manifest["n"] == len(images) > 0 and images.shape[1:] == (SIZE, SIZE)
    assert np.isfinite(images).all() and images.min() >= -1 and images.max() <= 1 and images.std() > 1e-3
    order = np.arange(len(images))[::-1]
    assert np.array_equal(np.asarray(match_synthetic_set(syn, syn.select(order), "test").images),
                          np.asarray(syn.images)[order])


def test_progress_bar_is_opt_in_off_a_terminal(monkeypatch):
    from lcgan_lightning.models.generation import PROGRESS_MIN_ROWS, show_progress

    gen = MaskToCT(LcGAN(image_size=SIZE, ngf=8, ndf=8).generator, "onehot", SIZE).eval()
    m = masks(2).numpy()
    assert np.array_equal(generate_set(gen, m, 1, progress=True), generate_set(gen, m, 1, progress=False))
    assert show_progress(10**6, None) is False  # pytest's stderr is not a terminal
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    assert show_progress(PROGRESS_MIN_ROWS, None) and not show_progress(PROGRESS_MIN_ROWS - 1, None)
    monkeypatch.setenv("LCGAN_NO_PROGRESS", "1")
    assert not show_progress(10**6, None) and show_progress(1, True)
