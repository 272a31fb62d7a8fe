"""What one pipeline run trains, as `run_plan.json`: seeds, training subsets, variants, GAN candidates.

The pipeline computes the plan once, after the data stage (`lcgan_lightning.pipeline.planning`),
writes it under the run dir and every stage reads it; so do the report and the console. The seed
rule lives here and nowhere else: repeat r uses `seed + r` for its GAN, selection, synthetic sets
and segmenters (with `split_per_repeat` also for its patient split and judge); the A/A calibration
arm (`calibrate`) trains the original variant again with the next seeds, `seed + R + r`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lcgan_lightning.atomic_io import write_json_atomic
from lcgan_lightning.layout import RunLayout, fraction_key
from lcgan_lightning.variants import Variant, variant

RUN_PLAN_VERSION = 1


def repeat_seeds(seed: int, repeats: int) -> list[int]:
    """The seeds of the repeats: seed, seed + 1, ..."""
    return [int(seed) + r for r in range(int(repeats))]


def subset_title(fkey: str, patients: int | None = None) -> str:
    """Column title of a subset: '2.5 %' or '8 patients (2.9 %)'."""
    pct = f"{float(fkey) * 100:.3g} %"
    if patients is None:
        return pct
    return f"{patients} patient{'' if patients == 1 else 's'} ({pct})"


@dataclass(frozen=True)
class Subset:
    """One training subset: its share of the training patients, what it holds, its GAN candidates."""

    fraction: float
    patients: int
    slices: int
    gan_epochs: tuple[int, ...]  # candidate generators after these many epochs

    @property
    def key(self) -> str:
        """The subset's JSON key, e.g. "0.1"."""
        return fraction_key(self.fraction)


@dataclass(frozen=True)
class RunPlan:
    """Everything a run trains; see the module docstring for the seed rule."""

    seed: int  # the split seed (and the judge's seed)
    repeats: int
    split_per_repeat: bool
    by_count: bool  # subsets given as patient counts (console labels say n=K)
    subsets: tuple[Subset, ...]
    variants: tuple[str, ...]  # pipeline augment names, as configured
    gan_lr_policy: str  # constant: one GAN run per subset, its epoch checkpoints are the candidates
    budget: str  # steps | epochs
    calibrate: bool  # train the original variant again with other seeds (A/A control)

    @property
    def seeds(self) -> list[int]:
        return repeat_seeds(self.seed, self.repeats)

    @property
    def calibration_seeds(self) -> list[int]:
        """Seeds of the A/A arm: the R seeds after the repeats' (empty unless `calibrate`)."""
        return repeat_seeds(self.seed + self.repeats, self.repeats) if self.calibrate else []

    @property
    def judge_seeds(self) -> list[int | None]:
        """One judge for the run (None), or one per repeat when every repeat has its own split."""
        return list(self.seeds) if self.split_per_repeat else [None]

    def judge_seed_of(self, seed: int) -> int | None:
        """The judge repeat `seed` uses (None: the run's one judge)."""
        return seed if self.split_per_repeat else None

    @property
    def fractions(self) -> list[float]:
        return [s.fraction for s in self.subsets]

    def subset(self, fraction: float) -> Subset:
        return next(s for s in self.subsets if s.key == fraction_key(fraction))

    @property
    def variant_list(self) -> list[Variant]:
        return [variant(v) for v in self.variants]

    def gan_run_epochs(self, subset: Subset) -> list[int]:
        """Epoch counts of the GAN runs: one run of the longest with a constant LR, else one per count."""
        return [max(subset.gan_epochs)] if self.gan_lr_policy == "constant" else list(subset.gan_epochs)

    def candidates(self, layout: RunLayout, seed: int) -> list[dict[str, Any]]:
        """Every candidate generator of one repeat: with a constant LR the epoch checkpoints of each
        subset's run, else the final checkpoint of each run."""
        out = []
        for s in self.subsets:
            for e in s.gan_epochs:
                run = max(s.gan_epochs) if self.gan_lr_policy == "constant" else e
                out.append({"checkpoint": str(layout.candidate_ckpt(s.fraction, seed, run, e)),
                            "fraction": s.fraction, "epochs": e})
        return out

    def per_mask_needed(self, novel: bool) -> int:
        """Largest k the variants read from the redraw set (novel=False; at least 1: the set is
        always made) or the new-mask set (0 = none needed). Sets are prefix-stable, so the largest
        serves every smaller k."""
        ks = [v.per_mask for v in self.variant_list
              if (v.augment.reads_novel if novel else v.augment.reads_synthetic)]
        return max(ks, default=0 if novel else 1)

    def label(self, fraction: float | None = None, seed: int | None = None, **more: object) -> str:
        """A job's console label: `frac=0.1 aug=gan` (`n=8` for patient counts; the seed only with
        several repeats)."""
        parts = []
        if fraction is not None:
            parts.append(f"n={self.subset(fraction).patients}" if self.by_count else f"frac={fraction_key(fraction)}")
        parts += [f"{k}={v}" for k, v in more.items()]
        if seed is not None and (self.repeats > 1 or self.calibrate):
            parts.append(f"seed={seed}")
        return " ".join(parts)

    # ---- run_plan.json
    def save(self, path: Path) -> None:
        """Write `run_plan.json` atomically (temp file + rename)."""
        write_json_atomic(path, {"version": RUN_PLAN_VERSION, **asdict(self), "seeds": self.seeds,
                                 "calibration_seeds": self.calibration_seeds})

    @classmethod
    def load(cls, path: Path) -> RunPlan:
        """The plan a pipeline run wrote (`RunLayout.run_plan`)."""
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: no run_plan.json (written by lcgan-pipeline after its data stage; run the "
                                    "same lcgan-pipeline command again: finished stages are skipped)")
        data = json.loads(Path(path).read_text())
        subsets = tuple(Subset(float(s["fraction"]), int(s["patients"]), int(s["slices"]),
                               tuple(int(e) for e in s["gan_epochs"])) for s in data["subsets"])
        return cls(seed=int(data["seed"]), repeats=int(data["repeats"]),
                   split_per_repeat=bool(data["split_per_repeat"]), by_count=bool(data["by_count"]),
                   subsets=subsets, variants=tuple(data["variants"]), gan_lr_policy=str(data["gan_lr_policy"]),
                   budget=str(data["budget"]), calibrate=bool(data.get("calibrate", False)))
