"""The one-hot (and float32/int64 casts) built after the transfer give the same losses as the old
path, which built them per batch on the CPU in the DataLoader."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, default_collate

from lcgan_lightning.batch import model_batch, onehot_masks
from lcgan_lightning.data.collate import collate_slices
from lcgan_lightning.data.dataset import SliceDataset
from lcgan_lightning.data.slices import SliceSet
from lcgan_lightning.models.lcgan import LcGAN, discriminator_loss, generator_loss
from lcgan_lightning.models.segmenter import Segmenter


def _slices(n=8, size=32):
    rng = np.random.default_rng(0)
    masks = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        masks[i, 4:12 + i, 6:14] = 1 + i % 5
        masks[i, 20:24, 20:26] = 1 + (i + 2) % 5
    return SliceSet.from_arrays(rng.uniform(-1, 1, (n, size, size)).astype(np.float16), masks)


def _old_and_new_batches():
    s = _slices()
    old = default_collate([SliceDataset(s)[i] for i in range(len(s))])  # per-sample numpy one-hot, as before
    new = next(iter(DataLoader(SliceDataset(s, onehot=False), batch_size=len(s), collate_fn=collate_slices)))
    return old, new


@pytest.mark.parametrize("workers", [0, 1])
def test_collate_puts_image_mask_and_slice_in_one_storage(workers):
    s = _slices()
    s.slice_index[:] = np.arange(100, 108)
    ref = default_collate([SliceDataset(s, onehot=False)[i] for i in range(len(s))])
    got = next(iter(DataLoader(SliceDataset(s, onehot=False), batch_size=len(s), collate_fn=collate_slices,
                               num_workers=workers)))
    for key in ("image", "mask", "slice"):
        assert got[key].dtype == ref[key].dtype and torch.equal(got[key], ref[key]), key
    assert got["slice"].tolist() == list(range(100, 108)) and got["patient"] == ref["patient"]
    ptr = got["image"].untyped_storage().data_ptr()
    assert got["mask"].untyped_storage().data_ptr() == ptr == got["slice"].untyped_storage().data_ptr()


def test_collate_mixed_float32_and_float16_images_keeps_float32():
    s = _slices(n=2)
    lean = SliceDataset(s, onehot=False)
    augmented = dict(lean[1], image=lean[1]["image"].float() * 0.5)
    got = collate_slices([lean[0], augmented])
    assert got["image"].dtype == torch.float32
    assert torch.equal(got["image"][0], lean[0]["image"].float())
    assert torch.equal(got["image"][1], augmented["image"]) and torch.equal(got["mask"][1], lean[1]["mask"])


def test_device_batch_equals_the_old_cpu_batch():
    old, new = _old_and_new_batches()
    assert new["mask"].dtype == torch.uint8 and "mask_onehot" not in new
    got = model_batch(new, onehot=True)
    for key in ("image", "mask", "mask_onehot"):
        assert got[key].dtype == old[key].dtype and torch.equal(got[key], old[key]), key
    assert torch.equal(onehot_masks(torch.tensor([[[0, 5]]])), torch.tensor([[[[1.0, 0]], [[0, 0]], [[0, 0]],
                                                                              [[0, 0]], [[0, 0]], [[0, 1.0]]]]))


@pytest.mark.parametrize("condition", ["onehot", "palette"])
def test_lcgan_losses_unchanged(condition):
    old, new = _old_and_new_batches()
    model = LcGAN(image_size=32, ngf=8, ndf=8, condition=condition, save_epochs=[], seed=1)
    losses = []
    for batch in (old, model.on_after_batch_transfer(new, 0)):
        torch.manual_seed(0)
        cond, real = model.condition(batch), batch["image"].float()
        fake = model.generator(cond)
        d = discriminator_loss(model._d_logits(cond, real), model._d_logits(cond, fake.detach()))[0]
        g = generator_loss(model._d_logits(cond, fake), fake, real, 100.0)[0]
        losses.append((d.item(), g.item()))
    assert losses[0] == losses[1]


def test_segmenter_loss_unchanged():
    old, new = _old_and_new_batches()
    model = Segmenter(width=0.125, batch_norm=True, loss="ce", n_overlay=0).eval()
    batch = model.on_after_batch_transfer(new, 0)
    with torch.no_grad():
        a = model.loss_fn(model(old["image"]), old["mask"])
        b = model.loss_fn(model(batch["image"]), batch["mask"])
    assert a.item() == b.item()


def test_channels_last_and_compile_options_keep_checkpoints_and_losses():
    old, new = _old_and_new_batches()
    plain = LcGAN(image_size=32, ngf=8, ndf=8, save_epochs=[], seed=1)
    fast = LcGAN(image_size=32, ngf=8, ndf=8, save_epochs=[], seed=1, channels_last=True, compile=True)
    assert list(fast.state_dict()) == list(plain.state_dict())  # compiled in place: same checkpoint keys
    conv = next(m for m in fast.generator.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    batch = fast.on_after_batch_transfer(new, 0)
    assert batch["mask_onehot"].is_contiguous(memory_format=torch.channels_last)
    seg = Segmenter(width=0.125, batch_norm=True, n_overlay=0, channels_last=True).eval()
    ref = Segmenter(width=0.125, batch_norm=True, n_overlay=0).eval()
    ref.load_state_dict(seg.state_dict())
    with torch.no_grad():
        x = seg.on_after_batch_transfer(new, 0)["image"]
        torch.testing.assert_close(seg(x), ref(old["image"]), rtol=1e-4, atol=1e-4)


def test_fused_adam_option_makes_the_same_update():
    """model.fused_adam: both networks' Adam (and the segmenter's) use the fused kernels, and one step
    from the same weights and gradients moves every weight as the default Adam does."""
    torch.manual_seed(0)
    models = [LcGAN(image_size=32, ngf=8, ndf=8, save_epochs=[], seed=1, fused_adam=f) for f in (False, True)]
    (g0, d0), _ = models[0].configure_optimizers()
    (g1, d1), _ = models[1].configure_optimizers()
    assert not g0.defaults.get("fused") and g1.defaults["fused"] and d1.defaults["fused"]
    seg = Segmenter(width=0.125, n_overlay=0, fused_adam=True)
    assert seg.configure_optimizers().defaults["fused"]
    for (p0, p1) in zip(models[0].generator.parameters(), models[1].generator.parameters(), strict=True):
        p0.grad = torch.randn_like(p0)
        p1.grad = p0.grad.clone()
    before = next(models[1].generator.parameters()).detach().clone()
    for _ in range(3):
        g0.step(), g1.step()
    for p0, p1 in zip(models[0].generator.parameters(), models[1].generator.parameters(), strict=True):
        torch.testing.assert_close(p1, p0, rtol=1e-5, atol=1e-7)
    assert (next(models[1].generator.parameters()) - before).abs().max() > 1e-4  # the steps moved it
