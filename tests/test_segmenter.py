"""FCN-8s shapes and ImageNet loading, the Segmenter's training/test outputs, checkpoint reload."""

import json

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

import lcgan_lightning.models.fcn8s as fcn8s_module
from lcgan_lightning.metrics import metrics_from_predictions
from lcgan_lightning.models.basicunet import BasicUNetSeg
from lcgan_lightning.models.fcn8s import VGG16_CONV_INDICES, FCN8s, load_vgg16_imagenet
from lcgan_lightning.models.segmenter import Segmenter, load_segmenter


class ToySlices(Dataset):
    """Square lesions whose class sets their brightness: trivially learnable."""

    def __init__(self, n: int, size: int = 32, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.items = []
        for i in range(n):
            mask = np.zeros((size, size), np.int64)
            r, c = rng.integers(2, size - 12, 2)
            mask[r : r + 10, c : c + 10] = 1 + i % 5
            image = np.where(mask > 0, 0.2 * mask, -0.6).astype(np.float32)
            image += 0.05 * rng.standard_normal((size, size)).astype(np.float32)
            m = torch.from_numpy(mask)
            self.items.append(
                {
                    "image": torch.from_numpy(image)[None],
                    "mask": m,
                    "mask_onehot": F.one_hot(m, 6).permute(2, 0, 1).float(),
                    "patient": f"p{i % 3}",
                    "volume": f"p{i % 3}_v",
                    "slice": i,
                }
            )

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


@pytest.mark.parametrize("size,bn", [(32, False), (64, False), (256, False), (40, True)])
def test_fcn8s_output_matches_input_size(size, bn):
    net = FCN8s(width=0.125, batch_norm=bn).eval()
    x = torch.randn(2, 1, size, size)
    with torch.no_grad():
        assert net(x).shape == (2, 6, size, size)
        assert net.encode(x).shape == (2, 64)


def test_fcn8s_fc6_kernel_sets_the_fc6_weights():
    # width 0.125: fc6 maps 64 channels to 512 with a k x k kernel (+ 512 biases)
    for k in (7, 3, 1):
        net = FCN8s(width=0.125, fc6_kernel=k)
        assert net.fc6.weight.shape == (512, 64, k, k)
        assert sum(p.numel() for p in net.fc6.parameters()) == 512 * 64 * k * k + 512
        with torch.no_grad():
            assert net.eval()(torch.randn(1, 1, 64, 64)).shape == (1, 6, 64, 64)
    with pytest.raises(ValueError, match="odd number"):
        FCN8s(fc6_kernel=4)


def test_basicunet_shapes():
    net = BasicUNetSeg(width=0.25).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 1, 40, 40)).shape == (1, 6, 40, 40)
        assert net.encode(torch.randn(1, 1, 32, 32)).shape == (1, 64)


def fake_vgg16_state(width_channels, fc, wrong: dict | None = None, bn: bool = False) -> dict:
    """torchvision vgg16() (vgg16_bn() if bn) state_dict layout with random tensors."""
    state, prev = {}, 3
    chans = [c for c, n in zip(width_channels, (2, 2, 3, 3, 3), strict=True) for _ in range(n)]
    idx = 0
    for i, c in enumerate(chans):
        if not bn:
            assert idx == VGG16_CONV_INDICES[i]
        state[f"features.{idx}.weight"] = torch.randn(c, prev, 3, 3)
        state[f"features.{idx}.bias"] = torch.randn(c)
        if bn:
            for name in ("weight", "bias", "running_mean"):
                state[f"features.{idx + 1}.{name}"] = torch.randn(c)
            state[f"features.{idx + 1}.running_var"] = torch.rand(c) + 0.5
            state[f"features.{idx + 1}.num_batches_tracked"] = torch.tensor(5)
        idx += 3 if bn else 2
        if i in (1, 3, 6, 9, 12):
            idx += 1  # max-pool
        prev = c
    state["classifier.0.weight"] = torch.randn(fc, prev * 7 * 7)
    state["classifier.0.bias"] = torch.randn(fc)
    state["classifier.3.weight"] = torch.randn(fc, fc)
    state["classifier.3.bias"] = torch.randn(fc)
    state["classifier.6.weight"] = torch.randn(1000, fc)
    state["classifier.6.bias"] = torch.randn(1000)
    state.update(wrong or {})
    return state


@pytest.fixture
def small_vgg(monkeypatch):
    """Shrink the VGG-16 constants so width=1.0 is test-sized (the loader reads shapes from the model)."""
    monkeypatch.setattr(fcn8s_module, "VGG16_CHANNELS", (4, 8, 8, 16, 16))
    monkeypatch.setattr(fcn8s_module, "FC_CHANNELS", 32)
    return (4, 8, 8, 16, 16), 32


def test_pretrained_vgg16_is_loaded(tmp_path, small_vgg):
    chans, fc = small_vgg
    state = fake_vgg16_state(chans, fc)
    path = tmp_path / "vgg16-397923af.pth"
    torch.save(state, path)
    net = FCN8s(width=1.0)
    load_vgg16_imagenet(net, path)
    # conv1_1 on the grey image == the RGB kernel on the grey image replicated to 3 channels
    x = torch.randn(1, 1, 8, 8)
    ours = F.conv2d(x, net.features[0].weight, net.features[0].bias, padding=1)
    rgb = F.conv2d(
        x.repeat(1, 3, 1, 1), state["features.0.weight"], state["features.0.bias"], padding=1
    )
    assert torch.allclose(ours, rgb, atol=1e-5)
    assert torch.equal(net.features[28].weight, state["features.28.weight"])
    assert torch.equal(net.fc6.weight, state["classifier.0.weight"].reshape(fc, 16, 7, 7))
    assert torch.equal(net.fc7.weight[:, :, 0, 0], state["classifier.3.weight"])
    assert torch.equal(net.fc7.bias, state["classifier.3.bias"])
    # through the LightningModule config key
    seg = Segmenter(pretrained_vgg16=str(path), width=1.0)
    assert torch.equal(seg.net.fc6.bias, state["classifier.0.bias"])


def test_pretrained_vgg16_bn_is_loaded(tmp_path, small_vgg):
    chans, fc = small_vgg
    state = fake_vgg16_state(chans, fc, bn=True)
    path = tmp_path / "vgg16_bn-6c64b313.pth"
    torch.save(state, path)
    net = FCN8s(width=1.0, batch_norm=True)
    load_vgg16_imagenet(net, path)
    assert torch.equal(net.features[41].running_var, state["features.41.running_var"])
    assert torch.equal(net.features[40].weight, state["features.40.weight"])
    assert torch.equal(net.fc6.weight, state["classifier.0.weight"].reshape(fc, 16, 7, 7))
    plain = tmp_path / "vgg16.pth"
    torch.save(fake_vgg16_state(chans, fc), plain)
    with pytest.raises(
        ValueError,
        match="plain vgg16 file needs batch_norm=false.*missing key features.1.running_mean",
    ):
        load_vgg16_imagenet(net, plain)


def test_pretrained_vgg16_errors(tmp_path, small_vgg):
    chans, fc = small_vgg
    net = FCN8s(width=1.0)
    with pytest.raises(FileNotFoundError, match="missing-vgg.pth"):
        load_vgg16_imagenet(net, tmp_path / "missing-vgg.pth")
    bad = tmp_path / "bad.pth"
    torch.save(fake_vgg16_state(chans, fc, {"features.10.weight": torch.randn(8, 8, 5, 5)}), bad)
    with pytest.raises(
        ValueError,
        match=r"bad.pth.*features.10.weight: shape \(8, 8, 5, 5\) does not fit \(8, 8, 3, 3\)",
    ):
        load_vgg16_imagenet(net, bad)
    state = fake_vgg16_state(chans, fc)
    del state["classifier.3.bias"]
    torch.save(state, bad)
    with pytest.raises(ValueError, match="missing key classifier.3.bias"):
        load_vgg16_imagenet(net, bad)
    torch.save([1, 2, 3], bad)
    with pytest.raises(ValueError, match="not a state dict"):
        load_vgg16_imagenet(net, bad)
    with pytest.raises(ValueError, match="need width=1.0"):
        load_vgg16_imagenet(FCN8s(width=0.5), bad)
    with pytest.raises(ValueError, match="need fc6_kernel=7"):
        load_vgg16_imagenet(FCN8s(width=1.0, fc6_kernel=3), bad)
    with pytest.raises(ValueError, match="arch=fcn8s only"):
        Segmenter(arch="basicunet", pretrained_vgg16=str(bad))


@pytest.mark.parametrize(
    "arch,loss,bn",
    [
        ("fcn8s", "ce", False),
        ("fcn8s", "dice_ce", False),
        ("fcn8s", "ce", True),
        ("basicunet", "ce", False),
    ],
)
def test_one_training_step_reduces_loss(arch, loss, bn):
    model = Segmenter(
        arch=arch,
        width=0.125 if arch == "fcn8s" else 0.25,
        dropout=0.0,
        loss=loss,
        lr=1e-3,
        batch_norm=bn,
    )
    batch = next(iter(DataLoader(ToySlices(8), batch_size=8)))
    opt = model.configure_optimizers()
    losses = []
    for _ in range(2):
        opt.zero_grad()
        loss_value = model.loss_fn(model(batch["image"]), batch["mask"])
        loss_value.backward()
        opt.step()
        losses.append(loss_value.item())
    with torch.no_grad():
        after = float(model.loss_fn(model(batch["image"]), batch["mask"]))
    assert after < losses[0]


def test_bad_config_values():
    with pytest.raises(ValueError, match="unknown segmenter arch 'vit'"):
        Segmenter(arch="vit")
    with pytest.raises(ValueError, match="loss must be"):
        Segmenter(width=0.125, loss="focal")
    with pytest.raises(ValueError, match="class_weights needs 6"):
        Segmenter(width=0.125, class_weights=[1.0, 2.0])


def test_fit_test_files_and_reload(tmp_path):
    pl.seed_everything(0)
    model = Segmenter(width=0.125, lr=1e-3, n_overlay=3)
    trainer = pl.Trainer(
        max_epochs=2,
        default_root_dir=str(tmp_path),
        accelerator="cpu",
        logger=pl.loggers.CSVLogger(str(tmp_path), name="csv", version=""),
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
        deterministic=True,
    )
    trainer.fit(
        model,
        DataLoader(ToySlices(12), batch_size=4, shuffle=True),
        DataLoader(ToySlices(6, seed=1), batch_size=3),
    )
    best = trainer.checkpoint_callback.best_model_path
    assert best.startswith(str(tmp_path / "checkpoints" / "epoch="))
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert trainer.checkpoint_callback.monitor == "val/dsc"
    assert sorted(p.name for p in (tmp_path / "csv" / "overlays").iterdir()) == [
        "epoch=000.png",
        "epoch=001.png",
    ]

    results = trainer.test(model, DataLoader(ToySlices(7, seed=2), batch_size=3), ckpt_path="best")[
        0
    ]
    saved = json.loads((tmp_path / "test_metrics.json").read_text())
    assert set(saved) >= {
        "dsc",
        "precision",
        "recall",
        "per_class_dsc",
        "n_images",
        "train_set_size",
    }
    assert saved["n_images"] == 7 and saved["train_set_size"] == 12
    assert set(saved["per_class_dsc"]) == {"IPH", "IVH", "SAH", "EDH", "SDH"}
    with np.load(tmp_path / "predictions.npz") as z:
        assert z["pred"].shape == z["true"].shape == (7, 32, 32) and z["pred"].dtype == np.uint8
        assert list(z["patient"][:3]) == ["p0", "p1", "p2"] and list(z["slice"]) == list(range(7))
        assert list(z["volume"][:1]) == ["p0_v"]
    again = metrics_from_predictions(tmp_path / "predictions.npz")
    assert again["dsc"] == pytest.approx(results["test/dsc"], abs=1e-6)
    assert again["precision"] == pytest.approx(results["test/precision"], abs=1e-6)
    assert again["recall"] == pytest.approx(results["test/recall"], abs=1e-6)
    assert again["dsc"] == saved["dsc"]

    loaded = load_segmenter(best)
    assert not loaded.training and loaded.train_set_size == 12
    images = torch.stack([ToySlices(7, seed=2)[i]["image"] for i in range(7)])
    with np.load(tmp_path / "predictions.npz") as z:
        assert np.array_equal(loaded.predict_masks(images).numpy(), z["pred"])
    assert loaded.encoder_features(images).shape == (7, 64)
    with pytest.raises(FileNotFoundError, match="nope.ckpt"):
        load_segmenter(tmp_path / "nope.ckpt")


def test_wandb_overlays_use_wandb_image(tmp_path, monkeypatch):
    import wandb

    logged = []
    model = Segmenter(width=0.125, n_overlay=2)
    logger = pl.loggers.WandbLogger(save_dir=str(tmp_path), mode="disabled")
    monkeypatch.setattr(
        type(logger.experiment), "log", lambda self, d, *a, **k: logged.append(d), raising=False
    )
    trainer = pl.Trainer(
        max_epochs=1,
        limit_train_batches=1,
        limit_val_batches=1,
        default_root_dir=str(tmp_path),
        logger=logger,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(
        model, DataLoader(ToySlices(4), batch_size=4), DataLoader(ToySlices(2), batch_size=2)
    )
    pictures = [d["val/overlays"] for d in logged if "val/overlays" in d]
    assert len(pictures) == 1 and len(pictures[0]) == 2
    assert isinstance(pictures[0][0], wandb.Image)
    assert set(pictures[0][0]._masks) == {"prediction", "ground_truth"}


def test_custom_net_from_target_dict():
    from omegaconf import OmegaConf

    net_cfg = OmegaConf.create(
        {"_target_": "lcgan_lightning.models.segmenter.BasicUNetSeg", "width": 0.25}
    )
    model = Segmenter(net=net_cfg)
    assert isinstance(model.net, BasicUNetSeg)
    assert model.hparams.net == {
        "_target_": "lcgan_lightning.models.segmenter.BasicUNetSeg",
        "width": 0.25,
    }


def test_cosine_lr_schedule_decays_to_zero_over_the_run_steps():
    import math
    from types import SimpleNamespace

    from lcgan_lightning.errors import ConfigError

    model = Segmenter(arch="fcn8s", width=0.125, lr=1e-2, lr_schedule="cosine")
    trainer = SimpleNamespace(estimated_stepping_batches=10)
    model._trainer = trainer  # what the Trainer sets when it attaches; only the step count is read
    conf = model.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    assert conf["lr_scheduler"]["interval"] == "step"  # stepped per batch, not per epoch
    lrs = []
    for _ in range(11):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(1e-2)
    assert lrs[5] == pytest.approx(1e-2 * (1 + math.cos(math.pi * 5 / 10)) / 2)
    assert lrs[10] == pytest.approx(0.0, abs=1e-12)
    constant = Segmenter(arch="fcn8s", width=0.125, lr=1e-2)
    assert isinstance(constant.configure_optimizers(), torch.optim.Adam)  # constant: no scheduler
    with pytest.raises(ConfigError, match="model.lr_schedule='step'"):
        Segmenter(arch="fcn8s", width=0.125, lr_schedule="step")
