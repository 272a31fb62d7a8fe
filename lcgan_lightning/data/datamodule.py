"""`CTSliceDataModule`: slices of one CT dataset, patient-level splits, loaders for Lightning."""

from __future__ import annotations

import inspect
import json
import logging
import os
from collections.abc import Mapping, Sequence, Sized
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pytorch_lightning as pl
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset

from lcgan_lightning.config import to_plain
from lcgan_lightning.constants import LESION_CLASSES, NUM_CLASSES
from lcgan_lightning.data.augment_online import check_online_choice, online_augmentation
from lcgan_lightning.data.augment_sets import ImageSource
from lcgan_lightning.data.collate import collate_slices
from lcgan_lightning.data.dataset import SliceDataset
from lcgan_lightning.data.loading import load_slices
from lcgan_lightning.data.resumable import ResumableLoader, ResumableSampler, SeededSamples
from lcgan_lightning.data.slices import SliceSet
from lcgan_lightning.data.splits import (
    DEFAULT_SUBSETS,
    check_one_count,
    make_splits,
    training_subset,
    write_run_split,
)
from lcgan_lightning.data.validation import DataConfigError, DatasetError, check_known_keys
from lcgan_lightning.variants import AUGMENT_CHOICES

if TYPE_CHECKING:
    from pytorch_lightning.loops.progress import _ProcessedTracker

PHANTOM_KEYS = ("generate", "num_patients", "seed", "image_size", "num_slices")
SKIPPED_CASES = "skipped_cases.json"  # data.on_defect=skip: the defective cases left out, in the run dir

log = logging.getLogger(__name__)


def fixed_subset(dataset: Dataset, n: int | None) -> Dataset:
    """At most `n` rows, evenly spaced over the dataset (the same rows every epoch and run); None = all."""
    # (map-style datasets, with a length)
    if n is None or len(cast(Sized, dataset)) <= n:
        return dataset
    step = len(cast(Sized, dataset)) / n
    return Subset(dataset, [int(i * step) for i in range(n)])


def lean_view(dataset: Dataset) -> Dataset:
    """The same samples without the per-sample one-hot (SliceDatasets, also inside a ConcatDataset)."""
    if isinstance(dataset, SliceDataset) and dataset.onehot:
        return SliceDataset(dataset.slices, dataset.transform, onehot=False)
    if isinstance(dataset, ConcatDataset):
        return ConcatDataset([lean_view(d) for d in dataset.datasets])
    return dataset


class CTSliceDataModule(pl.LightningDataModule):
    """Slices of a CT hemorrhage dataset with patient-level train/val/test splits.

    After `setup()`: `.slices` (all), `.splits`, `.train_slices` (training patients of `fraction`),
    `.val_slices`, `.test_slices`; `.train_dataset` etc. yield {"image", "mask", "mask_onehot",
    "patient", "volume", "slice"}. The loaders read the same slices as lean samples and build the
    one-hot once per batch (`collate_slices`): same batches, several times faster at 256².
    Every input check runs in prepare_data/setup, i.e. before training starts.
    """

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        dataset_format: str = "bhsd",
        image_size: int = 256,
        fraction: float = 1.0,
        batch_size: int = 16,
        num_workers: int = 0,
        pin_memory: bool = False,
        window: str | Sequence[float] | Mapping[str, float] = "brain",
        lesion_only: bool = True,
        val_ratio: float = 0.15,
        test_ratio: float = 0.15,
        subsets: Sequence[float] = DEFAULT_SUBSETS,
        subset_counts: Sequence[int] = (),
        subset_patients: int | None = None,
        samples_per_epoch: str | int | None = None,
        seed: int = 0,
        sample_seed: int | None = None,
        augment: str = "none",
        synthetic_dir: str | None = None,
        generator_ckpt: str | None = None,
        synthetic_per_mask: int = 1,
        novel_dir: str | None = None,
        augment_online: bool | str = False,
        cache_dir: str | os.PathLike | None = None,
        splits_path: str | os.PathLike | None = None,
        label_map: Mapping | None = None,
        multi_label_slices: str = "skip",
        hu_offset: str | int = "auto",
        on_defect: str = "error",
        phantom: Mapping[str, Any] | None = None,
        eval_batch_size: int | None = None,
        val_samples: int | None = None,
        image_source: ImageSource | None = None,
        layout: str | None = None,
        **unknown: Any,
    ):
        super().__init__()
        valid = [p for p in inspect.signature(CTSliceDataModule.__init__).parameters
                 if p not in ("self", "unknown", "image_source", "layout")]
        check_known_keys(unknown, valid, "data")
        if root is None:
            raise DataConfigError("data.root: not set (the dataset folder)")
        phantom = to_plain(phantom)
        if phantom is not None:
            check_known_keys(phantom, PHANTOM_KEYS, "data.phantom")
        if not 0.0 < float(fraction) <= 1.0:
            raise DataConfigError(f"data.fraction={fraction}: fraction selects no patient (must be in (0, 1])")
        subset_patients = to_plain(subset_patients)
        check_one_count(subset_patients)
        if subset_patients is not None and float(fraction) != 1.0:
            raise DataConfigError(f"data.subset_patients={subset_patients} and data.fraction={fraction}: "
                               "set one of them (fraction 1.0 when subset_patients is set)")
        if augment not in AUGMENT_CHOICES:
            raise DataConfigError(f"data.augment: {augment!r} is not one of {AUGMENT_CHOICES}")
        self.root = Path(root)
        if layout is not None:  # the key's name until 2026-12 (configs and checkpoints written before)
            log.warning("data.layout is now data.dataset_format (the old name goes in the next release)")
            dataset_format = layout
        self.dataset_format = dataset_format  # bhsd | ctich | folder (data/formats.py)
        self.image_size = int(image_size)
        self.fraction = float(fraction)
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size or batch_size)
        self.num_workers = int(num_workers)
        self.pin_memory = bool(pin_memory)
        if val_samples is not None and int(val_samples) < 1:
            raise DatasetError(f"data.val_samples={val_samples}: null (every validation slice) or >= 1")
        self.val_samples = None if val_samples is None else int(val_samples)
        self.window = to_plain(window)
        self.lesion_only = bool(lesion_only)
        self.val_ratio, self.test_ratio = float(val_ratio), float(test_ratio)
        self.subsets = [float(f) for f in to_plain(subsets)]
        self.subset_counts = list(to_plain(subset_counts))
        self.subset_patients = subset_patients
        if samples_per_epoch not in (None, "original") and not (isinstance(samples_per_epoch, int) and samples_per_epoch > 0):
            raise DataConfigError(f"data.samples_per_epoch={samples_per_epoch!r}: null (every slice), 'original' "
                               "(as many as the original training slices) or a positive integer")
        self.samples_per_epoch = samples_per_epoch
        self.seed = int(seed)
        self.sample_seed = self.seed if sample_seed is None else int(sample_seed)
        self.augment = augment
        self.synthetic_dir = synthetic_dir
        self.generator_ckpt = generator_ckpt
        if not (isinstance(synthetic_per_mask, int) and synthetic_per_mask >= 1):
            raise DatasetError(f"data.synthetic_per_mask={synthetic_per_mask!r}: synthetic images per training "
                               "mask, an integer >= 1")
        self.synthetic_per_mask = int(synthetic_per_mask)
        self.novel_dir = novel_dir
        # generates GAN images from masks when there is no synthetic_dir (lcgan-train builds it from
        # generator_ckpt: the data layer itself never loads a model)
        self.image_source = image_source
        self.augment_online = check_online_choice(augment_online)  # false | true | nnunet
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.splits_path = None if splits_path is None else Path(splits_path)
        self.label_map = to_plain(label_map)
        self.multi_label_slices = multi_label_slices
        self.hu_offset = hu_offset
        if on_defect not in ("error", "skip"):
            raise DataConfigError(f"data.on_defect: {on_defect!r} is not one of ('error', 'skip')")
        self.on_defect = on_defect
        self.phantom = phantom
        self.num_classes = NUM_CLASSES
        # explicit dict, not a bare save_hyperparameters(): plain types only (checkpoints load with
        # weights_only=True) and the split seed as "split_seed" (the model's "seed" is the training seed)
        self.save_hyperparameters({k: to_plain(v) if not isinstance(v, Path) else str(v)
                                   for k, v in self._config().items()})
        self.slices: SliceSet | None = None
        self.splits: dict | None = None
        self.train_slices: SliceSet | None = None
        self.val_slices: SliceSet | None = None
        self.test_slices: SliceSet | None = None
        self.train_dataset: Dataset | None = None
        self.val_dataset: Dataset | None = None
        self.test_dataset: Dataset | None = None

    def _config(self) -> dict[str, Any]:
        return {"root": str(self.root), "dataset_format": self.dataset_format, "image_size": self.image_size,
                "fraction": self.fraction, "batch_size": self.batch_size, "num_workers": self.num_workers,
                "window": self.window, "lesion_only": self.lesion_only, "val_ratio": self.val_ratio,
                "test_ratio": self.test_ratio, "subsets": self.subsets, "subset_counts": self.subset_counts,
                "subset_patients": self.subset_patients, "samples_per_epoch": self.samples_per_epoch,
                "split_seed": self.seed,  # not "seed": the model's hparams hold the training seed
                "sample_seed": self.sample_seed, "eval_batch_size": self.eval_batch_size,
                "pin_memory": self.pin_memory, "val_samples": self.val_samples, "hu_offset": self.hu_offset,
                "cache_dir": None if self.cache_dir is None else str(self.cache_dir),
                "splits_path": None if self.splits_path is None else str(self.splits_path),
                "augment": self.augment, "synthetic_dir": self.synthetic_dir,
                "generator_ckpt": self.generator_ckpt, "synthetic_per_mask": self.synthetic_per_mask,
                "novel_dir": self.novel_dir, "augment_online": self.augment_online,
                "label_map": self.label_map, "multi_label_slices": self.multi_label_slices,
                "on_defect": self.on_defect, "phantom": self.phantom}

    def _load(self) -> SliceSet:
        if self.phantom is not None and self.phantom.get("generate"):
            from lcgan_lightning.data.phantom import ensure_phantom

            ensure_phantom(self.root, self.phantom)
        return load_slices(self.root, dataset_format=self.dataset_format, image_size=self.image_size,
                           window=self.window, lesion_only=self.lesion_only, cache_dir=self.cache_dir,
                           label_map=self.label_map, multi_label_slices=self.multi_label_slices,
                           hu_offset=self.hu_offset, on_defect=self.on_defect)

    def prepare_data(self) -> None:
        """Generate the phantom if needed and fill the slice cache (every input check runs here)."""
        self.slices = self._load()

    def setup(self, stage: str | None = None) -> None:
        """Slices (from the cache), splits (seeded; saved to splits_path), datasets."""
        if self.train_dataset is not None:
            return
        if self.slices is None:
            self.slices = self._load()
        if self.slices.defects:
            self._report_skipped_cases(self.slices.defects)
        self.splits = make_splits(self.slices.classes_per_patient(), self.val_ratio, self.test_ratio,
                                  self.subsets, self.seed, self.subset_counts)
        # raises (naming requested and available numbers) if it selects no patient or too many
        count = self.subset_patients
        _, train_ids = training_subset(self.splits, self.fraction if count is None else None, count)
        if self.splits_path is not None:
            write_run_split(self.splits_path, self.splits, f"data.seed={self.seed} gives for {self.root}",
                            write=self.trainer is None or self.trainer.is_global_zero)
        self.train_slices = self.slices.for_patients(train_ids)
        self.val_slices = self.slices.for_patients(self.splits["val"])
        self.test_slices = self.slices.for_patients(self.splits["test"])
        if len(self.train_slices) == 0:
            raise DatasetError(f"{self.root}: data.fraction={self.fraction} selects patients with no slice")
        transform = online_augmentation(self.augment_online, self.image_size)
        train: Dataset = SliceDataset(self.train_slices, transform=transform)
        if self.augment == "synthetic_only":  # train on synthetic, test on real (TSTR)
            from lcgan_lightning.data.augment_sets import gan_slices

            synthetic = gan_slices(self.train_slices, self.synthetic_dir, self.image_source, self.sample_seed,
                                   self.synthetic_per_mask)
            log.info("segmenter training set (augment=synthetic_only): %d synthetic slices, no original",
                     len(synthetic))
            train = SliceDataset(synthetic, transform=transform)
        elif self.augment != "none":
            from lcgan_lightning.data.augment_sets import build_extra_train_sets

            extras = build_extra_train_sets(self.augment, self.train_slices, self.synthetic_dir,
                                            self.image_source, self.sample_seed,
                                            per_mask=self.synthetic_per_mask, novel_dir=self.novel_dir)
            train = ConcatDataset([train, *extras])
        self.train_dataset = train
        self.val_dataset = fixed_subset(SliceDataset(self.val_slices), self.val_samples)
        self.test_dataset = SliceDataset(self.test_slices)

    def _report_skipped_cases(self, defects: list[dict]) -> None:
        """data.on_defect=skip: log the defective cases left out; list them in the run dir."""
        log.warning("data.on_defect=skip: %d defective case(s) left out: %s", len(defects),
                    "; ".join(f"{d['file']}: {d['defect']}" for d in defects))
        if self.trainer is not None and self.trainer.is_global_zero:
            path = Path(self.trainer.default_root_dir) / SKIPPED_CASES
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(defects, indent=2))
            tmp.replace(path)

    def _loader(self, dataset: Dataset, shuffle: bool, batch_size: int, sampler: ResumableSampler | None = None
                ) -> DataLoader:
        # The shuffle order comes from torch's global RNG, which lcgan-train seeds with the training seed;
        # the training loader is resumable mid-epoch (data/resumable.py).
        dataset = lean_view(dataset)
        kwargs: dict[str, Any] = dict(
            batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler,
            num_workers=self.num_workers, pin_memory=self.pin_memory, collate_fn=collate_slices,
            persistent_workers=self.num_workers > 0)
        if sampler is None:
            return DataLoader(dataset, **kwargs)
        if sampler.with_seeds:
            dataset = SeededSamples(dataset)
        return ResumableLoader(dataset, progress=self._train_progress, **kwargs)

    def _train_progress(self) -> tuple[int, int] | None:
        """(training batches consumed in this epoch, batches per epoch) from the trainer, if fitting."""
        trainer = self.trainer
        if trainer is None or trainer.state.fn != "fit":
            return None
        # Lightning declares `current` as the base tracker; batch progress holds a _ProcessedTracker
        current = cast("_ProcessedTracker", trainer.fit_loop.epoch_loop.batch_progress.current)
        return current.processed, int(trainer.num_training_batches)

    def epoch_samples(self) -> int:
        """Training samples drawn per epoch: every slice, or `samples_per_epoch` of them (a fresh random
        subset of originals + extras each epoch), so that every augmentation variant of one fraction
        takes the same number of optimiser steps."""
        assert self.train_dataset is not None and self.train_slices is not None, "setup() first"
        n = len(cast(Sized, self.train_dataset))
        if self.samples_per_epoch is None:
            return n
        want = len(self.train_slices) if self.samples_per_epoch == "original" else int(self.samples_per_epoch)
        return min(n, want)

    def train_dataloader(self) -> DataLoader:
        # RandomSampler's order (torch's global generator), n of the samples per epoch, resumable mid-epoch;
        # online augmentation is seeded per sample
        assert self.train_dataset is not None, "setup() first"
        sampler = ResumableSampler(len(cast(Sized, self.train_dataset)), self.epoch_samples(),
                                   with_seeds=bool(self.augment_online))
        return self._loader(self.train_dataset, True, self.batch_size, sampler)

    def val_dataloader(self) -> DataLoader:
        assert self.val_dataset is not None, "setup() first"
        return self._loader(self.val_dataset, False, self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        assert self.test_dataset is not None, "setup() first"
        return self._loader(self.test_dataset, False, self.eval_batch_size)

    def summary(self) -> dict[str, Any]:
        """The inspect.json content (schema in docs/data.md): counts, pixels per class, skipped, splits."""
        if self.slices is None or self.splits is None:
            self.setup()
        assert self.slices is not None  # setup() loads them
        counts = self.slices.pixel_counts()
        return {
            "patients": len(self.slices.patient_ids()),
            "slices": len(self.slices),
            "lesion_slices": int((counts[:, 1:].sum(axis=1) > 0).sum()),
            "pixels_per_class": {name: int(counts[:, i + 1].sum()) for i, name in enumerate(LESION_CLASSES)},
            "skipped": list(self.slices.skipped),
            "defects": list(self.slices.defects),
            "splits": self.splits,
        }


def open_datamodule(data_cfg: Any, stage: str = "fit", **overrides: Any) -> CTSliceDataModule:
    """Instantiate a data config (`_target_` mapping), fill its cache and set it up: every input check
    has run and `.slices`, `.splits`, `.train_slices`, `.val_slices`, `.test_slices` are ready.

    `overrides` replace config keys (e.g. `splits_path=...`, `augment="none"`).
    """
    from hydra.utils import instantiate

    dm = instantiate(data_cfg, **overrides)
    dm.prepare_data()
    dm.setup(stage)
    return dm
