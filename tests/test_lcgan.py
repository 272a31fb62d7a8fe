"""LcGAN: architecture (pix2pix U-Net, 70x70 PatchGAN), training step, checkpoints, resume, reload."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lcgan_lightning.models.discriminator import PatchDiscriminator, patch_receptive_field
from lcgan_lightning.models.generation import load_generator
from lcgan_lightning.models.generator import (
    PALETTE_RGB,
    UNetGenerator,
    encode_condition,
    masks_to_onehot,
    sample_images,
)
from lcgan_lightning.models.lcgan import LcGAN, discriminator_loss, generator_loss
from lcgan_lightning.models.sample_panels import make_panel
from lcgan_lightning.training import StoreRunConfig


class TinyLesionSet(Dataset):
    """Deterministic 32² slices: a bright disc (label 1..5) on a darker head-shaped ellipse."""

    def __init__(self, n: int = 4, size: int = 32, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
        self.items = []
        for i in range(n):
            cy, cx = (torch.randint(10, size - 10, (2,), generator=g)).tolist()
            lesion = ((yy - cy) ** 2 + (xx - cx) ** 2) <= 9
            head = ((yy - size / 2) / (0.45 * size)) ** 2 + ((xx - size / 2) / (0.4 * size)) ** 2 <= 1
            mask = torch.zeros(size, size, dtype=torch.long)
            mask[lesion & head] = 1 + i % 5
            image = torch.full((1, size, size), -1.0)
            image[0, head] = -0.2
            image[0, mask > 0] = 0.6
            onehot = torch.nn.functional.one_hot(mask, 6).permute(2, 0, 1).float()
            self.items.append({"image": image, "mask": mask, "mask_onehot": onehot})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


def small_gan(**kw) -> LcGAN:
    args = dict(image_size=32, ngf=8, ndf=8, save_epochs=[1], n_panel=2, seed=3)
    args.update(kw)
    return LcGAN(**args)


def fit(root: Path, model: LcGAN, epochs: int, ckpt_path: str | None = None, **trainer_kw) -> pl.Trainer:
    pl.seed_everything(0, verbose=False)
    ds = TinyLesionSet()
    trainer = pl.Trainer(
        default_root_dir=str(root), max_epochs=epochs, accelerator="cpu", devices=1, logger=False,
        enable_progress_bar=False, enable_model_summary=False, deterministic=True,
        num_sanity_val_steps=0, **trainer_kw,
    )
    trainer.fit(
        model,
        train_dataloaders=DataLoader(ds, batch_size=1, shuffle=True),
        val_dataloaders=DataLoader(ds, batch_size=2),
        ckpt_path=ckpt_path,
        weights_only=True,  # resume reads last.ckpt as tensors + plain data only
    )
    return trainer


# ---- generator -------------------------------------------------------------------------------
@pytest.mark.parametrize("size,downs", [(32, 5), (64, 6), (256, 8)])
def test_generator_shapes_depth_and_widths(size, downs):
    g = UNetGenerator(6, 1, image_size=size, ngf=4)
    out = g(torch.randn(2, 6, size, size))
    assert out.shape == (2, 1, size, size)
    assert out.abs().max() <= 1.0  # tanh
    assert len(g.encoders) == downs and len(g.decoders) == downs
    widths = [blk[-1].out_channels if isinstance(blk[-1], nn.Conv2d) else blk[-2].out_channels for blk in g.encoders]
    assert widths == [4, 8, 16, 32, 32, 32, 32, 32][:downs]  # C64-C128-C256-C512-C512... at ngf=64
    # bottleneck is 1x1
    h = torch.randn(1, 6, size, size)
    for enc in g.encoders:
        h = enc(h)
    assert h.shape[-2:] == (1, 1)


def test_generator_norm_placement_and_activations():
    g = UNetGenerator(6, 1, image_size=64, ngf=4, norm="batch")
    norms = [any(isinstance(m, nn.BatchNorm2d) for m in blk) for blk in g.encoders]
    assert norms == [False, True, True, True, True, False]  # none on first layer and 1x1 bottleneck
    assert not any(isinstance(m, nn.LeakyReLU) for m in g.encoders[0])
    assert all(isinstance(blk[0], nn.LeakyReLU) and blk[0].negative_slope == 0.2 for blk in g.encoders[1:])
    assert all(isinstance(blk[0], nn.ReLU) for blk in g.decoders)
    assert isinstance(g.decoders[-1][-1], nn.Tanh)
    gi = UNetGenerator(6, 1, image_size=64, ngf=4, norm="instance")
    assert sum(isinstance(m, nn.InstanceNorm2d) for m in gi.modules()) == 4 + 5  # 4 encoder + 5 decoder


@pytest.mark.parametrize("size", [32, 64, 256])
def test_dropout_only_in_three_innermost_decoder_blocks(size):
    g = UNetGenerator(6, 1, image_size=size, ngf=4)
    with_dropout = [j for j, blk in enumerate(g.decoders) if any(isinstance(m, nn.Dropout) for m in blk)]
    assert with_dropout == [0, 1, 2]
    assert all(m.p == 0.5 for m in g.modules() if isinstance(m, nn.Dropout))
    assert not any(isinstance(m, nn.Dropout) for m in g.encoders.modules())


def test_full_size_parameter_counts():
    # hand count at 256², ngf=ndf=64, 6-channel condition, 1 output channel:
    # encoders 6208 + 131328 + 524800 + 2098176 + 3·4195328 + 4194816 (biased 1x1 bottleneck) = 19,541,312
    # decoders 4195328 + 3·8389632 + 4194816 + 1048832 + 262272 + 2049 (tanh layer) = 34,872,193
    g = UNetGenerator(6, 1, image_size=256, ngf=64)
    assert sum(p.numel() for p in g.parameters()) == 54_413_505
    # D: 7·64·16+64 + 64·128·16+256 + 128·256·16+512 + 256·512·16+1024 + 512·16+1
    d = PatchDiscriminator(7, ndf=64, n_layers=3)
    assert sum(p.numel() for p in d.parameters()) == 2_769_729


def test_palette_condition_colours():
    masks = torch.tensor([[[0, 1, 2], [3, 4, 5]]])
    pal = encode_condition(masks_to_onehot(masks), "palette")
    assert pal.shape == (1, 3, 2, 3)
    expected = torch.tensor(PALETTE_RGB, dtype=torch.float32) / 127.5 - 1
    got = pal[0].permute(1, 2, 0).reshape(6, 3)
    assert torch.allclose(got, expected)
    assert pal[0, :, 0, 1].tolist() == [1.0, -1.0, -1.0]  # IPH = red
    with pytest.raises(ValueError, match="class ids"):
        masks_to_onehot(torch.tensor([[[0, 6]]]))


# ---- discriminator ---------------------------------------------------------------------------
def test_patchgan_output_30x30_and_receptive_field_70():
    d = PatchDiscriminator(7, ndf=4, n_layers=3).eval()  # eval: BatchNorm is a per-pixel affine map
    x = torch.randn(1, 7, 256, 256, requires_grad=True)
    out = d(x)
    assert out.shape == (1, 1, 30, 30)
    assert patch_receptive_field(3) == 70 and d.receptive_field == 70
    out[0, 0, 15, 15].backward()
    nz = x.grad.abs().sum(dim=(0, 1)) > 0
    rows = torch.nonzero(nz.any(dim=1)).flatten()
    cols = torch.nonzero(nz.any(dim=0)).flatten()
    # output i sees input [8i - 23, 8i + 46] (strides 2,2,2,1,1, padding 1 each): 97..166 for i = 15
    assert (rows.min().item(), rows.max().item()) == (97, 166)
    assert (cols.min().item(), cols.max().item()) == (97, 166)
    assert nz[97:167, 97:167].all()  # every pixel of the 70x70 patch contributes
    assert PatchDiscriminator(7, ndf=4, n_layers=3)(torch.randn(1, 7, 32, 32)).shape == (1, 1, 2, 2)
    first = d.model[0:2]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in first)


# ---- objective / training --------------------------------------------------------------------
def test_one_training_step_updates_generator_and_discriminator(tmp_path):
    model = small_gan()
    g0 = [p.detach().clone() for p in model.generator.parameters()]
    d0 = [p.detach().clone() for p in model.discriminator.parameters()]
    trainer = fit(tmp_path, model, epochs=1, limit_train_batches=1, limit_val_batches=0, log_every_n_steps=1)
    assert any(not torch.equal(a, b) for a, b in zip(g0, model.generator.parameters(), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(d0, model.discriminator.parameters(), strict=True))
    m = trainer.callback_metrics
    for key in ("G_GAN", "G_L1", "D_real", "D_fake", "G_total"):
        assert torch.isfinite(m[f"train/{key}_epoch"]) and torch.isfinite(m[f"train/{key}_step"])
    # one step: epoch mean = step value; G_total = G_GAN + 100·G_L1
    assert m["train/G_L1_epoch"].item() == pytest.approx(m["train/G_L1_step"].item())
    assert m["train/G_total_epoch"].item() == pytest.approx(
        m["train/G_GAN_epoch"].item() + 100 * m["train/G_L1_epoch"].item(), rel=1e-5)
    opt_g, opt_d = model.optimizers(use_pl_optimizer=False)
    assert opt_g.defaults["lr"] == 2e-4 and opt_g.defaults["betas"] == (0.5, 0.999)
    assert {id(p) for g in opt_d.param_groups for p in g["params"]} == {id(p) for p in model.discriminator.parameters()}


def test_loss_functions_hand_computed():
    zeros = torch.zeros(1, 1, 2, 2)
    d, d_real, d_fake = discriminator_loss(zeros, zeros)
    assert d_real.item() == pytest.approx(np.log(2)) and d_fake.item() == pytest.approx(np.log(2))
    assert d.item() == pytest.approx(np.log(2))  # ½·(ln2 + ln2): D loss halved
    big = torch.full((1, 1, 2, 2), 3.0)
    d, d_real, d_fake = discriminator_loss(big, -big)  # confident and right
    assert d.item() == pytest.approx(np.log1p(np.exp(-3.0)), rel=1e-5)  # 0.04859
    fake, real = torch.zeros(1, 1, 2, 2), torch.full((1, 1, 2, 2), 0.5)
    g, g_gan, g_l1 = generator_loss(zeros, fake, real, lambda_l1=100.0)
    assert g_gan.item() == pytest.approx(np.log(2)) and g_l1.item() == pytest.approx(0.5)
    assert g.item() == pytest.approx(np.log(2) + 50.0)


def test_weight_init_follows_pix2pix():
    torch.manual_seed(0)
    model = LcGAN(image_size=64, ngf=16, ndf=16)
    w = torch.cat([m.weight.flatten() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))])
    bn = torch.cat([m.weight.flatten() for m in model.modules() if isinstance(m, nn.BatchNorm2d)])
    assert abs(w.mean().item()) < 1e-3 and abs(w.std().item() - 0.02) < 1e-3
    assert abs(bn.mean().item() - 1.0) < 5e-3 and abs(bn.std().item() - 0.02) < 5e-3


def test_linear_lr_policy_factors():
    model = small_gan(lr_policy="linear", n_epochs_decay=2)
    model._trainer = SimpleNamespace(max_epochs=4)
    f = model._lr_factor_fn()
    # pix2pix: 1 - max(0, e + 1 - n_const) / (n_decay + 1), n_const = 2
    assert [round(f(e), 4) for e in range(4)] == [1.0, 1.0, round(2 / 3, 4), round(1 / 3, 4)]
    model = small_gan(lr_policy="constant")
    assert model._lr_factor_fn()(150) == 1.0
    with pytest.raises(ValueError, match="lr_policy"):
        small_gan(lr_policy="cosine")


class CrashAtEpoch(pl.Callback):
    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise RuntimeError("simulated crash")


def test_resume_equals_uninterrupted_and_checkpoint_layout(tmp_path):
    a = small_gan(lr_policy="linear", n_epochs_decay=2)
    fit(tmp_path / "a", a, epochs=3)
    ckpts = tmp_path / "a" / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["epoch=001.ckpt", "last.ckpt"]
    panels = sorted(p.name for p in (tmp_path / "a" / "panels").iterdir())
    assert panels == ["epoch=001.png", "epoch=002.png", "epoch=003.png"]

    b = small_gan(lr_policy="linear", n_epochs_decay=2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(tmp_path / "b", b, epochs=3, callbacks=[CrashAtEpoch(1)])
    b2 = small_gan(lr_policy="linear", n_epochs_decay=2)
    trainer = fit(tmp_path / "b", b2, epochs=3, ckpt_path="last")
    assert trainer.current_epoch == 3
    sa, sb = a.state_dict(), b2.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    # linear decay over the last 2 epochs (factors 1, 2/3, 1/3): after the 3rd epoch's step lr = 0
    assert b2.lr_schedulers()[0].last_epoch == 3
    assert b2.optimizers()[0].param_groups[0]["lr"] == pytest.approx(0.0)
    ck = torch.load(ckpts / "epoch=001.ckpt", map_location="cpu", weights_only=True)
    assert ck["epoch"] == 0 and ck["hyper_parameters"]["save_epochs"] == [1]


def test_validation_metrics_and_panel(tmp_path):
    model = small_gan()
    trainer = fit(tmp_path, model, epochs=1, limit_train_batches=1)
    m = trainer.callback_metrics
    assert 0.0 < m["val/L1"].item() <= 2.0
    assert -1.0 <= m["val/SSIM"].item() <= 1.0
    assert m["val/PSNR"].item() > 0
    from PIL import Image

    png = np.asarray(Image.open(tmp_path / "panels" / "epoch=001.png"))
    # 2 samples · 32 px upscaled ×4 + 2 px gap; 3 tiles + 2 gaps
    assert png.shape == (2 * 128 + 2, 3 * 128 + 4, 3)


def test_make_panel_colours():
    mask = torch.zeros(4, 4, dtype=torch.long)
    mask[0, 0] = 5
    real = torch.full((4, 4), -1.0)
    fake = torch.ones(4, 4)
    p = make_panel([(mask, real, fake)], min_tile=4)
    assert p.shape == (4, 12 + 4, 3)
    assert p[0, 0].tolist() == list(PALETTE_RGB[5]) and p[1, 1].tolist() == [0, 0, 0]
    assert p[0, 6].tolist() == [0, 0, 0] and p[0, 12].tolist() == [255, 255, 255]


# ---- reuse -----------------------------------------------------------------------------------
def test_load_generator_from_lone_checkpoint_and_seeded_generation(tmp_path, monkeypatch):
    model = small_gan(condition="palette")
    fit(tmp_path / "run", model, epochs=1, limit_train_batches=2, limit_val_batches=0)
    lone = tmp_path / "empty"
    lone.mkdir()
    shutil.copy(tmp_path / "run" / "checkpoints" / "last.ckpt", lone / "g.ckpt")
    monkeypatch.chdir(lone)
    gen = load_generator(lone / "g.ckpt", map_location="cpu")
    assert gen.image_size == 32 and gen.condition == "palette"

    masks = torch.stack([TinyLesionSet()[i]["mask"] for i in range(3)])
    state = torch.random.get_rng_state()
    a = gen.generate(masks, seed=7)
    assert torch.equal(state, torch.random.get_rng_state())  # global RNG untouched
    b = gen.generate(masks, seed=7)
    c = gen.generate(masks, seed=8)
    assert a.shape == (3, 1, 32, 32) and a.dtype == torch.float32
    assert a.min() >= -1 and a.max() <= 1
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 1e-4
    d1 = gen.generate(masks, seed=7, dropout=False)
    d2 = gen.generate(masks, seed=8, dropout=False)
    assert torch.equal(d1, d2)  # without dropout the generator is deterministic
    # per-sample normalisation: an image does not depend on the rest of the batch
    single = gen.generate(masks[:1], seed=7)
    assert torch.allclose(single[0], a[0], atol=1e-5)  # equal up to float rounding
    # matches the trained module's generator
    ref = sample_images(model.generator, encode_condition(masks_to_onehot(masks), "palette"), seed=7)
    assert torch.equal(ref, a)
    with pytest.raises(ValueError, match=r"\[B,32,32\]"):
        gen.generate(torch.zeros(1, 64, 64, dtype=torch.long), seed=0)
    with pytest.raises(FileNotFoundError):
        load_generator(lone / "missing.ckpt")


def test_run_config_stored_in_checkpoint(tmp_path):
    model = small_gan()
    fit(tmp_path, model, epochs=1, limit_train_batches=1, limit_val_batches=0,
        callbacks=[StoreRunConfig({"seed": 5, "model": {"ngf": 8}})])
    ck = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ck["run_config"] == {"seed": 5, "model": {"ngf": 8}}
    hp = ck["hyper_parameters"]
    assert hp["image_size"] == 32 and hp["ngf"] == 8 and hp["lambda_l1"] == 100.0
    assert all(type(v) in (int, float, str, bool, list, type(None)) for v in hp.values())


def test_wandb_panel_has_mask_overlays(tmp_path, monkeypatch):
    from pytorch_lightning.loggers import WandbLogger

    calls = []
    monkeypatch.setattr(WandbLogger, "log_image", lambda self, key, images, **kw: calls.append((key, images, kw)))
    logger = WandbLogger(save_dir=str(tmp_path), mode="disabled")
    ds = TinyLesionSet()
    trainer = pl.Trainer(default_root_dir=str(tmp_path), max_epochs=1, accelerator="cpu", logger=logger,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         limit_train_batches=1)
    trainer.fit(small_gan(), DataLoader(ds, batch_size=1), DataLoader(ds, batch_size=2))
    assert len(calls) == 1
    key, images, kw = calls[0]
    assert key == "val/panel" and len(images) == 4  # 2 samples x (real, generated)
    gt = kw["masks"][0]["ground_truth"]
    assert gt["class_labels"] == {0: "background", 1: "IPH", 2: "IVH", 3: "SAH", 4: "EDH", 5: "SDH"}
    assert np.array_equal(gt["mask_data"], ds[0]["mask"].numpy().astype(np.uint8))
    assert images[0].dtype == np.uint8 and images[0].shape == (32, 32)
    assert (tmp_path / "panels" / "epoch=001.png").is_file()  # PNG saved as well
