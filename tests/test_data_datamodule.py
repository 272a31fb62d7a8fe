"""CTSliceDataModule: batches, splits, fraction, augmentation hooks, phantom, Hydra configs."""

import json
import sys
import types

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from data_helpers import bhsd_cases, write_bhsd
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from lcgan_lightning.batch import model_batch
from lcgan_lightning.data.datamodule import CTSliceDataModule
from lcgan_lightning.data.dataset import SliceDataset
from lcgan_lightning.paths import CONF_DIR


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_bhsd(tmp_path_factory.mktemp("ds") / "bhsd", bhsd_cases(20, studies=2))


def _dm(root, tmp_path, **kw):
    args = dict(root=root, image_size=32, batch_size=4, cache_dir=tmp_path / "cache",
                splits_path=tmp_path / "run" / "splits.json", seed=5)
    args.update(kw)
    dm = CTSliceDataModule(**args)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def test_batches_keys_shapes_dtypes(root, tmp_path):
    dm = _dm(root, tmp_path)
    batch = next(iter(dm.train_dataloader()))
    # slices as stored; the models convert them (and build the one-hot) on their device
    assert set(batch) == {"image", "mask", "patient", "volume", "slice"}
    assert batch["image"].shape == (4, 1, 32, 32) and batch["image"].dtype == torch.float16
    assert batch["mask"].shape == (4, 32, 32) and batch["mask"].dtype == torch.uint8
    model = model_batch(batch, onehot=True)
    assert model["image"].dtype == torch.float32 and model["mask"].dtype == torch.int64
    assert model["mask_onehot"].shape == (4, 6, 32, 32) and model["mask_onehot"].dtype == torch.float32
    assert torch.all(model["mask_onehot"].sum(1) == 1)
    assert torch.equal(model["mask_onehot"].argmax(1), model["mask"])
    assert batch["image"].min() >= -1 and batch["image"].max() <= 1
    assert isinstance(batch["patient"][0], str) and batch["slice"].dtype == torch.int64
    assert all(p in dm.splits["train"] for p in batch["patient"])
    assert len(next(iter(dm.val_dataloader()))["image"]) <= 4


def test_splits_written_and_parts_disjoint(root, tmp_path):
    dm = _dm(root, tmp_path)
    assert json.loads((tmp_path / "run" / "splits.json").read_text()) == dm.splits
    parts = [set(dm.train_slices.patients), set(dm.val_slices.patients), set(dm.test_slices.patients)]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert len(dm.train_slices) + len(dm.val_slices) + len(dm.test_slices) == len(dm.slices)
    # 20 patients: 3 val, 3 test, 14 train; 0.25 * 14 = 3.5 -> 4 patients
    assert [len(dm.splits[p]) for p in ("train", "val", "test")] == [14, 3, 3]
    small = _dm(root, tmp_path, fraction=0.25)
    assert set(small.train_slices.patients) == set(dm.splits["subsets"]["0.25"])
    assert len(set(small.train_slices.patients)) == 4
    assert small.splits == dm.splits  # fraction does not change the split


def test_online_augmentation(root, tmp_path):
    dm = _dm(root, tmp_path, augment_online=True, num_workers=1)  # worker: pickling + shared memory
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].dtype == torch.float32 and batch["image"].shape == (4, 1, 32, 32)
    assert torch.all(model_batch(batch, onehot=True)["mask_onehot"].sum(1) == 1)


def test_augment_hook_concatenates(root, tmp_path, monkeypatch):
    calls = []

    def build_extra_train_sets(augment, train_slices, synthetic_dir, image_source, seed, per_mask, novel_dir):
        calls.append((augment, len(train_slices), synthetic_dir, image_source, seed, per_mask, novel_dir))
        return [SliceDataset(train_slices)]

    fake = types.ModuleType("lcgan_lightning.data.augment_sets")
    fake.build_extra_train_sets = build_extra_train_sets
    monkeypatch.setitem(sys.modules, "lcgan_lightning.data.augment_sets", fake)
    dm = _dm(root, tmp_path, augment="traditional", synthetic_dir="S", generator_ckpt="G")
    n = len(dm.train_slices)
    assert calls == [("traditional", n, "S", None, 5, 1, None)]  # no model loaded by the data layer
    assert len(dm.train_dataset) == 2 * n


def test_phantom_generated_when_root_missing(tmp_path, monkeypatch):
    calls = []

    def generate_phantom(out_dir, num_patients, seed, image_size, num_slices=24):
        calls.append((num_patients, seed, image_size, num_slices))
        write_bhsd(out_dir, bhsd_cases(num_patients, seed))

    monkeypatch.setattr("lcgan_lightning.data.phantom.generate.generate_phantom", generate_phantom)
    phantom = {"generate": True, "num_patients": 8, "seed": 1, "image_size": 32, "num_slices": 6}
    dm = _dm(tmp_path / "data" / "phantom", tmp_path, phantom=phantom)
    assert calls == [(8, 1, 32, 6)] and len(dm.slices.patient_ids()) == 8
    _dm(tmp_path / "data" / "phantom", tmp_path, phantom=phantom)
    assert len(calls) == 1  # second use: already there
    assert not [p for p in (tmp_path / "data").iterdir() if p.name.startswith(".tmp")]


class _TinyModel(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 6, 1)

    def on_after_batch_transfer(self, batch, dataloader_idx):
        return model_batch(batch)  # float16 / uint8 as stored -> float32 / int64, as our models do

    def training_step(self, batch, _):
        return torch.nn.functional.cross_entropy(self.conv(batch["image"]), batch["mask"])

    def validation_step(self, batch, _):
        self.log("val_loss", torch.nn.functional.cross_entropy(self.conv(batch["image"]), batch["mask"]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_works_with_lightning_trainer(root, tmp_path):
    dm = CTSliceDataModule(root=root, image_size=32, batch_size=4, cache_dir=tmp_path / "cache")
    trainer = pl.Trainer(fast_dev_run=2, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False)
    model = _TinyModel()
    before = model.conv.weight.detach().clone()
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 2  # two training batches went through the datamodule's loader
    assert not torch.equal(before, model.conv.weight)
    assert "val_loss" in trainer.callback_metrics


@pytest.mark.parametrize("name", ["bhsd", "ctich", "folder", "phantom"])
def test_hydra_data_configs(name, root, tmp_path):
    overrides = [f"data={name}", f"paths.root_dir={tmp_path}", "data.splits_path=null"]
    if name == "folder":
        overrides.append("+data.label_map={1: IPH}")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("inspect", overrides=overrides)
    assert cfg.data._target_ == "lcgan_lightning.data.datamodule.CTSliceDataModule"
    dm = instantiate(cfg.data)
    assert dm.seed == 42 and dm.fraction == 1.0 and dm.cache_dir == tmp_path / "data" / "cache"
    assert dm.image_size == (128 if name == "phantom" else 256)
    if name == "phantom":
        assert dm.phantom == {"generate": True, "num_patients": 40, "seed": 0, "image_size": 128, "num_slices": 24}
        assert str(dm.root).endswith("phantom_n40_s0_128px_z24")


def test_hydra_unknown_key_lists_valid_keys(tmp_path):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("inspect", overrides=["data=bhsd", f"paths.root_dir={tmp_path}", "+data.foo=1",
                                            "data.splits_path=null"])
    with pytest.raises(Exception, match=r"unknown config key\(s\) \['foo'\]; valid keys: .*'fraction'"):
        instantiate(cfg.data)


def test_slice_set_select_and_for_patients(root, tmp_path):
    dm = _dm(root, tmp_path)
    s = dm.slices
    sub = s.for_patients(["ID_p03"])
    assert set(sub.patients) == {"ID_p03"} and len(sub) == int((s.patients == "ID_p03").sum())
    np.testing.assert_array_equal(s.select(np.arange(3)).masks, s.masks[:3])


def test_loader_batches_equal_default_collate_of_dataset(root, tmp_path):
    from torch.utils.data import default_collate

    dm = _dm(root, tmp_path)
    batch = model_batch(next(iter(dm.val_dataloader())), onehot=True)
    expected = default_collate([dm.val_dataset[i] for i in range(len(batch["image"]))])
    assert set(batch) == set(expected)
    for key in ("image", "mask", "mask_onehot", "slice"):
        assert batch[key].dtype == expected[key].dtype and torch.equal(batch[key], expected[key])
    assert batch["patient"] == expected["patient"] and batch["volume"] == expected["volume"]


def test_make_splits_from_slice_set_matches_datamodule(root, tmp_path):
    from lcgan_lightning.data.splits import make_splits

    dm = _dm(root, tmp_path)
    assert make_splits(dm.slices, 0.15, 0.15, seed=5) == dm.splits


def test_existing_splits_file_must_match(root, tmp_path):
    _dm(root, tmp_path)  # writes run/splits.json for seed 5
    _dm(root, tmp_path)  # same split: fine
    with pytest.raises(Exception, match=r"splits.json: holds a different split than data.seed=6"):
        _dm(root, tmp_path, seed=6)


def test_existing_splits_file_gains_a_new_subset_count(root, tmp_path):
    """Another data.subset_counts in the same run dir: same split, the file gains the subset."""
    first = _dm(root, tmp_path, subsets=(), subset_counts=(2,))
    second = _dm(root, tmp_path, subsets=(), subset_counts=(2, 4))
    saved = json.loads((tmp_path / "run" / "splits.json").read_text())
    assert saved["train"] == first.splits["train"] == second.splits["train"]
    assert saved["subsets"] == {"n=2": first.splits["subsets"]["n=2"], "n=4": second.splits["subsets"]["n=4"]}
    _dm(root, tmp_path, subsets=(), subset_counts=(4,))  # a subset of those: nothing rewritten
    assert json.loads((tmp_path / "run" / "splits.json").read_text()) == saved


def test_phantom_settings_on_real_data_do_not_generate(tmp_path):
    """Experiment presets set data.phantom.* for every data=; only data=phantom (generate: true) writes."""
    from lcgan_lightning.data.validation import DatasetError

    with pytest.raises(DatasetError) as err:
        _dm(tmp_path / "my_ctich", tmp_path, phantom={"num_patients": 300, "image_size": 256})
    assert str(err.value).endswith("my_ctich: dataset root not found")
    assert not (tmp_path / "my_ctich" / "dataset.json").exists()


def test_shuffle_follows_the_training_seed_not_the_split_seed(root, tmp_path):
    """The split seed is frozen across a pipeline's seeds; the sample order must follow torch's
    global RNG (seeded by lcgan-train, reseeded per epoch by the LcGAN so a resume replays it)."""
    dm = _dm(root, tmp_path)

    def order(torch_seed: int) -> list[str]:
        torch.manual_seed(torch_seed)
        return [f"{v}:{s}" for b in dm.train_dataloader() for v, s in zip(b["volume"], b["slice"].tolist(), strict=True)]

    assert order(1) == order(1)
    assert order(1) != order(2)
    assert sorted(order(1)) == sorted(order(2))
    assert dm.sample_seed == dm.seed == 5 and _dm(root, tmp_path, sample_seed=7).sample_seed == 7


def test_samples_per_epoch_gives_every_variant_the_same_steps(root, tmp_path):
    """budget=steps: an augmented set is sampled down to the original size per epoch (a new subset
    each epoch, from torch's seeded generator), so original and +traditional take the same steps."""
    import torch

    plain = _dm(root, tmp_path, augment="none", samples_per_epoch="original")
    doubled = _dm(root, tmp_path, augment="traditional", samples_per_epoch="original")
    n = len(plain.train_slices)
    assert len(doubled.train_dataset) == 2 * n and doubled.epoch_samples() == n
    assert len(plain.train_dataloader()) == len(doubled.train_dataloader())
    torch.manual_seed(0)
    first = torch.cat([b["image"] for b in doubled.train_dataloader()])
    second = torch.cat([b["image"] for b in doubled.train_dataloader()])
    assert len(first) == len(second) == n and not torch.equal(first, second)  # a fresh subset each epoch
    full = _dm(root, tmp_path, augment="traditional")  # budget=epochs: every slice, every epoch
    assert full.epoch_samples() == 2 * n
    from lcgan_lightning.data.validation import DatasetError

    with pytest.raises(DatasetError, match="samples_per_epoch"):
        _dm(root, tmp_path, samples_per_epoch="half")


def test_synthetic_only_trains_on_the_synthetic_pairs_alone(root, tmp_path):
    """augment=synthetic_only (train on synthetic, test on real): the training set is the synthetic
    set in training-slice order, nothing original; validation and test stay real."""
    from lcgan_lightning.data.synthetic_set import SyntheticSetError, write_synthetic_set

    plain = _dm(root, tmp_path, fraction=0.5)
    train = plain.train_slices
    fake = (np.asarray(train.masks, np.float32) / 5.0 - 0.75).astype(np.float16)
    rev = np.arange(len(train))[::-1]
    syn = write_synthetic_set(tmp_path / "syn", fake[rev], np.asarray(train.masks)[rev], train.select(rev))
    dm = _dm(root, tmp_path, fraction=0.5, augment="synthetic_only", synthetic_dir=str(syn),
             samples_per_epoch="original")
    assert len(dm.train_dataset) == len(train) == dm.epoch_samples()
    for i in (0, len(train) - 1):
        sample = dm.train_dataset[i]
        assert torch.equal(sample["image"][0], torch.as_tensor(fake[i].astype(np.float32)))
        assert torch.equal(sample["mask"], torch.as_tensor(train.masks[i], dtype=torch.int64))
        assert sample["patient"] == train.patients[i]
    assert np.array_equal(np.asarray(dm.test_slices.images), np.asarray(plain.test_slices.images))
    with pytest.raises(SyntheticSetError, match="synthetic_dir.*generator_ckpt"):
        _dm(root, tmp_path, fraction=0.5, augment="synthetic_only")
    with pytest.raises(SyntheticSetError, match="training slices have no synthetic image"):
        _dm(root, tmp_path, fraction=1.0, augment="synthetic_only", synthetic_dir=str(syn))
