"""Extra training sets for augment=none|gan|traditional|both (sizes, sources, errors)."""

import json

import numpy as np
import pytest
import torch
from torch.utils.data import ConcatDataset

import lcgan_lightning.models.generation as generation_module
from lcgan_lightning.data.augment_sets import build_extra_train_sets
from lcgan_lightning.data.dataset import SliceDataset
from lcgan_lightning.data.slices import SliceSet
from lcgan_lightning.data.synthetic_set import (
    SyntheticSetError,
    read_synthetic_set,
    write_synthetic_set,
)


def make_slices(n: int = 6, size: int = 32, seed: int = 0) -> SliceSet:
    rng = np.random.default_rng(seed)
    images = rng.uniform(-1, 1, (n, size, size)).astype(np.float16)
    masks = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        masks[i, 8:16, 8 + i : 16 + i] = 1 + i % 5
    return SliceSet(
        images,
        masks,
        np.array([f"p{i // 2}" for i in range(n)]),
        np.array([f"p{i // 2}_v" for i in range(n)]),
        np.arange(n) % 2,
    )


def fake_synthetic_images(slices: SliceSet) -> np.ndarray:
    return (slices.masks.astype(np.float32) / 5.0 - 0.5).astype(np.float16)


def test_none_and_unknown():
    assert build_extra_train_sets("none", make_slices()) == []
    with pytest.raises(ValueError, match="augment='flip'"):
        build_extra_train_sets("flip", make_slices())


def test_traditional_doubles_with_transformed_copies():
    s = make_slices()
    extras = build_extra_train_sets("traditional", s, seed=3)
    assert len(extras) == 1 and len(extras[0]) == len(s)
    total = ConcatDataset([SliceDataset(s), *extras])
    assert len(total) == 2 * len(s)
    a, b = extras[0][0], build_extra_train_sets("traditional", s, seed=3)[0][0]
    assert torch.equal(a["image"], b["image"])  # same seed -> same set
    assert a["patient"] == "p0" and a["slice"] == 0
    assert set(a) == {"image", "mask", "mask_onehot", "patient", "volume", "slice"}
    assert not torch.equal(a["image"], SliceDataset(s)[0]["image"])


def test_gan_from_disk_reorders_to_training_order_and_both_triples(tmp_path):
    s = make_slices()
    rev = s.select(np.arange(len(s))[::-1])
    write_synthetic_set(tmp_path / "syn", fake_synthetic_images(rev), rev.masks, rev, seed=1)
    manifest = json.loads((tmp_path / "syn" / "manifest.json").read_text())
    assert manifest["n"] == 6 and manifest["source"][0] == {
        "patient": "p2",
        "volume": "p2_v",
        "slice": 1,
        "copy": 0,
    }
    (gan,) = build_extra_train_sets("gan", s, synthetic_dir=tmp_path / "syn")
    assert len(gan) == len(s)
    for i in range(len(s)):
        assert torch.equal(gan[i]["mask"], torch.as_tensor(s.masks[i], dtype=torch.int64))
        expected = torch.as_tensor(fake_synthetic_images(s)[i].astype(np.float32))
        assert torch.equal(gan[i]["image"][0], expected)
    both = build_extra_train_sets("both", s, synthetic_dir=tmp_path / "syn", seed=0)
    assert len(ConcatDataset([SliceDataset(s), *both])) == 3 * len(s)


def test_gan_set_must_cover_exactly_the_training_masks(tmp_path):
    s = make_slices()
    write_synthetic_set(
        tmp_path / "small", fake_synthetic_images(s)[:4], s.masks[:4], s.select(np.arange(4))
    )
    with pytest.raises(
        SyntheticSetError, match=r"2 training slices have no synthetic image.*p2/p2_v/slice 0"
    ):
        build_extra_train_sets("gan", s, synthetic_dir=tmp_path / "small")
    with pytest.raises(SyntheticSetError, match="2 synthetic rows are not training slices"):
        build_extra_train_sets("gan", s.select(np.arange(4)), synthetic_dir=_full(tmp_path, s))
    bad = s.masks.copy()
    bad[1, 0, 0] = 3
    write_synthetic_set(tmp_path / "stale", fake_synthetic_images(s), bad, s)
    with pytest.raises(SyntheticSetError, match="1 synthetic masks differ.*p0/p0_v/slice 1"):
        build_extra_train_sets("gan", s, synthetic_dir=tmp_path / "stale")


def _full(tmp_path, s):
    return write_synthetic_set(tmp_path / "full", fake_synthetic_images(s), s.masks, s)


def test_gan_set_format_errors(tmp_path):
    s = make_slices()
    with pytest.raises(SyntheticSetError, match="nowhere: synthetic set not found"):
        build_extra_train_sets("gan", s, synthetic_dir=tmp_path / "nowhere")
    with pytest.raises(SyntheticSetError, match="synthetic_dir.*generator_ckpt"):
        build_extra_train_sets("gan", s)
    d = _full(tmp_path, s)
    (d / "manifest.json").unlink()
    with pytest.raises(SyntheticSetError, match=r"missing \['manifest.json'\]"):
        read_synthetic_set(d)
    d = _full(tmp_path, s)
    np.save(d / "images.npy", np.zeros((6, 32, 32), np.float32))
    with pytest.raises(SyntheticSetError, match="float16"):
        read_synthetic_set(d)
    d = _full(tmp_path, s)
    (d / "manifest.json").write_text('{"source": [{"patient": "p0"}]}')
    with pytest.raises(SyntheticSetError, match="malformed manifest"):
        read_synthetic_set(d)
    small = make_slices(size=16)
    d = write_synthetic_set(tmp_path / "s16", fake_synthetic_images(small), small.masks, small)
    with pytest.raises(SyntheticSetError, match="another data.image_size"):
        build_extra_train_sets("gan", s, synthetic_dir=d)


class FakeGenerator:
    image_size = 32

    def __init__(self):
        self.calls = []

    def generate(self, masks, seed, dropout=True):
        self.calls.append((masks.shape[0], seed, dropout))
        return masks[:, None].float() / 5.0 - 0.5


def test_gan_generated_in_memory_from_checkpoint(monkeypatch, tmp_path):
    from lcgan_lightning.models.generation import checkpoint_image_source, row_seed

    s = make_slices(n=5)
    fake = FakeGenerator()
    monkeypatch.setattr(
        generation_module, "load_generator", lambda path, map_location="cpu", trust=False: fake
    )
    source = checkpoint_image_source(tmp_path / "g.ckpt")
    (gan,) = build_extra_train_sets("gan", s, image_source=source, seed=7)
    # one mask per call with lcgan-synthesize's per-row seeds, dropout on
    assert fake.calls == [(1, row_seed(7, i), True) for i in range(5)]
    assert len(gan) == 5
    expected = torch.as_tensor(fake_synthetic_images(s)[3].astype(np.float32))
    assert torch.equal(gan[3]["image"][0], expected)
    assert not list(tmp_path.iterdir())  # nothing written
    fake.image_size = 64
    with pytest.raises(ValueError, match="generator makes 64² images"):
        build_extra_train_sets("gan", s, image_source=source)


def test_gan_generated_from_a_real_lcgan_checkpoint(tmp_path):
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader

    from lcgan_lightning.models.lcgan import LcGAN

    s = make_slices(n=4)
    gan = LcGAN(image_size=32, ngf=4, ndf=4, save_epochs=[], n_panel=0)
    trainer = pl.Trainer(
        max_steps=1,
        limit_val_batches=0,
        default_root_dir=str(tmp_path),
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    trainer.fit(gan, DataLoader(SliceDataset(s), batch_size=2))
    ckpt = tmp_path / "gan.ckpt"
    trainer.save_checkpoint(ckpt)
    from lcgan_lightning.models.generation import (
        checkpoint_image_source,
        generate_set,
        load_generator,
    )

    (a,) = build_extra_train_sets("gan", s, image_source=checkpoint_image_source(ckpt), seed=5)
    (b,) = build_extra_train_sets("gan", s, image_source=checkpoint_image_source(ckpt), seed=5)
    assert len(a) == 4
    img = a[0]["image"]
    assert img.shape == (1, 32, 32) and img.min() >= -1 and img.max() <= 1
    assert torch.equal(img, b[0]["image"])  # same seed -> same synthetic set
    assert torch.equal(a[3]["mask"], torch.as_tensor(s.masks[3], dtype=torch.int64))
    # in memory == what lcgan-synthesize writes for the same checkpoint and seed
    on_disk = generate_set(load_generator(ckpt), s.masks, 5)
    assert np.array_equal(a.slices.images, on_disk)


def test_gan_reads_k_copies_per_mask_and_prefixes_and_version1_sets(tmp_path):
    s = make_slices()
    img = fake_synthetic_images(s)
    rev = np.arange(len(s))[::-1]  # rows in any order within a copy
    rows = s.select(np.concatenate([rev, rev]))
    write_synthetic_set(tmp_path / "k2", np.concatenate([img[rev], -img[rev]]), rows.masks, rows,
                        copies=np.repeat([0, 1], len(s)))
    assert json.loads((tmp_path / "k2/manifest.json").read_text())["per_mask"] == 2
    (two,) = build_extra_train_sets("gan", s, synthetic_dir=tmp_path / "k2", per_mask=2)
    assert len(two) == 12 and np.array_equal(two.slices.images, np.concatenate([img, -img]))
    assert np.array_equal(two.slices.masks, np.concatenate([s.masks, s.masks]))
    (one,) = build_extra_train_sets("gan", s, synthetic_dir=tmp_path / "k2", per_mask=1)
    assert np.array_equal(one.slices.images, img)  # the first copy = the k=1 set
    with pytest.raises(SyntheticSetError, match=r"k2/manifest.json: holds 2 .*synthetic_per_mask=3"):
        build_extra_train_sets("gan", s, synthetic_dir=tmp_path / "k2", per_mask=3)
    # a version-1 manifest (no kind, per_mask, copy) is still read, as one copy
    d = _full(tmp_path, s)
    m = json.loads((d / "manifest.json").read_text())
    m.update(version=1, source=[{k: v for k, v in r.items() if k != "copy"} for r in m["source"]])
    del m["kind"], m["per_mask"]
    (d / "manifest.json").write_text(json.dumps(m))
    (old,) = build_extra_train_sets("gan", s, synthetic_dir=d)
    assert np.array_equal(old.slices.images, img)
    with pytest.raises(SyntheticSetError, match="holds 1 synthetic"):
        build_extra_train_sets("gan", s, synthetic_dir=d, per_mask=2)
    # a redraw set may not have rows without a source slice
    m["source"][0] = None
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(SyntheticSetError, match="malformed manifest.*novel sets only"):
        read_synthetic_set(d)


def test_gan_in_memory_k_copies_match_the_disk_seeds(monkeypatch, tmp_path):
    from lcgan_lightning.models.generation import checkpoint_image_source, row_seed

    s = make_slices(n=3)
    fake = FakeGenerator()
    monkeypatch.setattr(
        generation_module, "load_generator", lambda path, map_location="cpu", trust=False: fake
    )
    (gan,) = build_extra_train_sets("gan", s, image_source=checkpoint_image_source(tmp_path / "g"), seed=7,
                                    per_mask=2)
    assert len(gan) == 6
    assert [c[1] for c in fake.calls] == [row_seed(7, i, c) for c in range(2) for i in range(3)]
    assert row_seed(7, 1, 0) == row_seed(7, 1) and len({row_seed(7, 1, c) for c in range(4)}) == 4
