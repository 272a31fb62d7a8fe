"""Computes a run's `RunPlan` from the pipeline config and its data (after the data stage), once."""

from __future__ import annotations

import logging
import math
from typing import Any

from omegaconf import DictConfig, OmegaConf

from lcgan_lightning.layout import RunLayout
from lcgan_lightning.pipeline.launcher import PipelineError
from lcgan_lightning.run_plan import RunPlan, Subset

log = logging.getLogger(__name__)


def subset_counts(cfg: DictConfig) -> list[int] | None:
    """The configured subset sizes in patients (`subset_counts`), or None for `fractions`.

    `subset_patients`, the name of this list before, still works for one release, with a warning."""
    counts, old = cfg.get("subset_counts"), cfg.get("subset_patients")
    if old and counts:
        raise PipelineError(f"subset_patients={list(old)} and subset_counts={list(counts)}: set subset_counts only "
                            "(subset_patients is its old name)")
    if old:
        log.warning("subset_patients is now called subset_counts (the old name goes in the next release)")
        counts = old
    return [int(k) for k in counts] if counts else None


def subset_fractions(cfg: DictConfig, n_train: int) -> list[float]:
    """The subsets as fractions of the `n_train` training patients: `fractions`, or each count K of
    `subset_counts` as K / n_train (which the prefix rule of the split turns into exactly K patients)."""
    counts = subset_counts(cfg)
    if not counts:
        return [float(f) for f in cfg.fractions]
    too_big = [k for k in counts if not 1 <= k <= n_train]
    if too_big:
        raise PipelineError(f"subset_counts={counts}: {too_big} outside 1..{n_train} "
                            f"(the training split holds {n_train} patients)")
    return [k / n_train for k in counts]


def gan_epochs(gan: DictConfig, slices: int) -> tuple[int, ...]:
    """Candidate epoch counts of one subset: `gan.epochs`, or `gan.updates` generator updates
    converted with the subset's training slices and the GAN batch size (at least 1 epoch)."""
    updates = gan.get("updates")
    if not updates:
        return tuple(sorted(int(e) for e in gan.epochs))
    per_epoch = math.ceil(slices / int(gan.batch_size))
    return tuple(sorted({max(1, math.ceil(int(u) / per_epoch)) for u in updates}))


def data_facts(cfg: DictConfig, layout: RunLayout) -> dict[str, Any]:
    """Training patients and, per subset, its patients and training slices (reads the split)."""
    from lcgan_lightning.data.datamodule import open_datamodule
    from lcgan_lightning.data.splits import training_patients

    data = OmegaConf.load(layout.data_config)
    data.sample_seed = 0  # `${seed}` of the training jobs; reading slices does not sample
    if cfg.get("split_per_repeat"):  # patient and slice counts of the first repeat's split
        data.seed = int(cfg.seed)
    dm = open_datamodule(data, augment="none", fraction=1.0)
    assert dm.splits is not None and dm.slices is not None  # open_datamodule sets them up
    n_train = len(dm.splits["train"])
    fractions = subset_fractions(cfg, n_train)
    return {"n_train": n_train, "subsets": [
        (f, len(patients := training_patients(dm.splits, f)), len(dm.slices.for_patients(patients)))
        for f in fractions]}


def make_plan(cfg: DictConfig, facts: dict[str, Any]) -> RunPlan:
    """The run's plan from its config and `data_facts`."""
    subsets = tuple(Subset(f, patients, slices, gan_epochs(cfg.gan, slices))
                    for f, patients, slices in facts["subsets"])
    return RunPlan(seed=int(cfg.seed), repeats=int(cfg.get("repeats", 1)),
                split_per_repeat=bool(cfg.get("split_per_repeat", False)), by_count=bool(subset_counts(cfg)),
                subsets=subsets, variants=tuple(str(a) for a in cfg.augments), gan_lr_policy=str(cfg.gan.lr_policy),
                budget=str(cfg.get("budget", "steps")), calibrate=bool(cfg.get("calibrate", False)))
