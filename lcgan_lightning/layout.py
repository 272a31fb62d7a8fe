"""Where everything of one pipeline run lives: the single definition of the run-folder layout.

    <run>/pipeline.yaml, pipeline_state.json    the resolved pipeline config, stage states
    <run>/run_plan.json                         seeds, subsets, variants, GAN candidates (`run_plan.RunPlan`)
    <run>/conf/data/pipeline.yaml               the frozen data config every stage reads (data=pipeline)
    <run>/data/inspect.json, <run>/splits.json  data summary and the patient split
    <run>/splits/seed=S.json                    the split of repeat S (split_per_repeat=true only)
    <run>/judge/                                segmenter on 100 % of train (FCN-score judge, "full" row)
    <run>/judge/seed=S/                         the judge of repeat S's split (split_per_repeat=true only)
    <run>/gan/frac=F/seed=S/epochs=E/checkpoints/  LcGAN sweep; epoch=EEE.ckpt are the candidates
    <run>/select/seed=S/                        candidates.json, scores.json, selected.json, contact sheets
    <run>/synthetic/seed=S/frac=F/              synthetic set of the selected generator, its audit.json
    <run>/synthetic_novel/seed=S/frac=F/        its set of NEW masks (augments gan_novel|both_novel)
    <run>/seg/frac=F/aug=A/seed=S/              segmentation sweep (A = a variant's name: augment, or
                                                augment-kK for data.synthetic_per_mask=K, `variants`)
    <run>/report.md, results.json, figures/     report

S is a repeat's seed (the seed rule is in `lcgan_lightning.run_plan`). Inside every training run
dir: config.yaml, train_result.json (written last: the job is done),
failed.json (the job failed), checkpoints/, test_metrics.json and predictions.npz (segmenters).
The pipeline, the report and the command-line apps all go through `RunLayout`; nothing else spells
these names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# Hydra sweep sub-dirs of the two training sweeps (interpolated by Hydra per job).
GAN_SUBDIR = "frac=${data.fraction}/seed=${seed}/epochs=${trainer.max_epochs}"
SEG_SUBDIR = "frac=${data.fraction}/aug=${data.augment}/seed=${seed}"


def seg_subdir(per_mask: int = 1) -> str:
    """SEG_SUBDIR of a sweep with data.synthetic_per_mask=k: aug=A-kK for k > 1 (`variants.Variant.name`)."""
    return SEG_SUBDIR if per_mask == 1 else f"frac=${{data.fraction}}/aug=${{data.augment}}-k{per_mask}/seed=${{seed}}"

# Files inside one training run dir.
TRAIN_RESULT = "train_result.json"
# Audit of a synthetic set, inside the set's folder (a regenerated set starts without one).
AUDIT = "audit.json"
FAILED = "failed.json"
TEST_METRICS = "test_metrics.json"
PREDICTIONS = "predictions.npz"
CHECKPOINTS = "checkpoints"
LAST_CKPT = "last.ckpt"
# key set (True) in the LcGAN's candidate checkpoints (epoch=EEE.ckpt): generator weights, hyper-parameters
# and run config only (no discriminator, no optimiser state); they generate but do not resume
GENERATOR_ONLY = "generator_only"

_FRAC_PART = re.compile(r"frac=([0-9.eE+-]+)")
_EPOCHS_PART = re.compile(r"epochs=(\d+)")


def fraction_key(fraction: float) -> str:
    """JSON key of a fraction: 0.025 -> "0.025", 0.1 -> "0.1"."""
    return repr(float(fraction))


def epoch_ckpt_name(epochs: int) -> str:
    """File name of the LcGAN checkpoint written after `epochs` training epochs (1-based)."""
    return f"epoch={int(epochs):03d}.ckpt"


def fraction_in_path(path: str | Path) -> float | None:
    """The fraction of the innermost `frac=F` folder of a path, or None."""
    for part in reversed(Path(path).parts):
        if m := _FRAC_PART.fullmatch(part):
            return float(m.group(1))
    return None


def epochs_in_path(path: str | Path) -> int | None:
    """The epochs of the innermost `epochs=E` folder of a path (the file name excluded), or None."""
    for part in reversed(Path(path).parts[:-1]):
        if m := _EPOCHS_PART.fullmatch(part):
            return int(m.group(1))
    return None


@dataclass(frozen=True)
class RunLayout:
    """Paths of one pipeline run under `root` (see the module docstring)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    # ---- run-level files
    @property
    def pipeline_config(self) -> Path:
        return self.root / "pipeline.yaml"

    @property
    def state(self) -> Path:
        return self.root / "pipeline_state.json"

    @property
    def conf_dir(self) -> Path:
        """Hydra search path holding the frozen `data=pipeline` option."""
        return self.root / "conf"

    @property
    def data_config(self) -> Path:
        return self.conf_dir / "data" / "pipeline.yaml"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def splits(self) -> Path:
        return self.root / "splits.json"

    def split_of(self, seed: int) -> Path:
        """The patient split of repeat `seed` when every repeat draws its own (split_per_repeat)."""
        return self.root / "splits" / f"seed={int(seed)}.json"

    @property
    def split_pattern(self) -> str:
        """`split_of` as a Hydra interpolation over the job's `seed`."""
        return f"{self.root / 'splits'}/seed=${{seed}}.json"

    @property
    def run_plan(self) -> Path:
        """What the run trains (`lcgan_lightning.run_plan.RunPlan`)."""
        return self.root / "run_plan.json"

    # ---- judge
    @property
    def judge_dir(self) -> Path:
        return self.root / "judge"

    def judge_dir_of(self, seed: int | None) -> Path:
        """The judge of repeat `seed` (split_per_repeat), or the run's one judge for None."""
        return self.judge_dir if seed is None else self.judge_dir / f"seed={int(seed)}"

    # ---- GAN sweep and candidates
    @property
    def gan_sweep_dir(self) -> Path:
        return self.root / "gan"

    def gan_dir(self, fraction: float, seed: int, epochs: int) -> Path:
        """Run dir of the GAN trained on `fraction` with `seed` for `epochs` epochs."""
        return self.gan_sweep_dir / f"frac={float(fraction)}" / f"seed={int(seed)}" / f"epochs={int(epochs)}"

    def candidate_ckpt(self, fraction: float, seed: int, run_epochs: int, epochs: int) -> Path:
        """Checkpoint after `epochs` epochs of the GAN run `gan_dir(fraction, seed, run_epochs)`."""
        return self.gan_dir(fraction, seed, run_epochs) / CHECKPOINTS / epoch_ckpt_name(epochs)

    # ---- selection (one per repeat)
    def select_dir(self, seed: int) -> Path:
        return self.root / "select" / f"seed={int(seed)}"

    def candidates(self, seed: int) -> Path:
        """The candidate list the pipeline hands to lcgan-select."""
        return self.select_dir(seed) / "candidates.json"

    def scores(self, seed: int) -> Path:
        return self.select_dir(seed) / "scores.json"

    def selected(self, seed: int) -> Path:
        return self.select_dir(seed) / "selected.json"

    # ---- synthetic sets (one per repeat and fraction)
    @property
    def synthetic_root(self) -> Path:
        return self.root / "synthetic"

    def synthetic_dir(self, fraction: float, seed: int) -> Path:
        return self.synthetic_root / f"seed={int(seed)}" / f"frac={float(fraction)}"

    def audit(self, fraction: float, seed: int) -> Path:
        """`audit.json` of the synthetic set of `fraction` and repeat `seed`."""
        return self.synthetic_dir(fraction, seed) / AUDIT

    @property
    def audit_runs_dir(self) -> Path:
        """Hydra job folders (config, log, offline W&B run) of the audit stage."""
        return self.synthetic_root / ".audit_runs"

    def novel_dir(self, fraction: float, seed: int) -> Path:
        """The synthetic set of new masks (mask bank) of one repeat and fraction."""
        return self.root / "synthetic_novel" / f"seed={int(seed)}" / f"frac={float(fraction)}"

    @property
    def novel_dir_pattern(self) -> str:
        """`novel_dir` as a Hydra interpolation over the job's `seed` and `data.fraction`."""
        return f"{self.root / 'synthetic_novel'}/seed=${{seed}}/frac=${{data.fraction}}"

    @property
    def synthetic_dir_pattern(self) -> str:
        """`synthetic_dir` as a Hydra interpolation over the job's `seed` and `data.fraction`."""
        return f"{self.synthetic_root}/seed=${{seed}}/frac=${{data.fraction}}"

    # ---- segmentation sweep
    @property
    def seg_sweep_dir(self) -> Path:
        return self.root / "seg"

    def seg_dir(self, fraction: float, augment: str, seed: int) -> Path:
        return self.seg_sweep_dir / f"frac={float(fraction)}" / f"aug={augment}" / f"seed={seed}"

    # ---- report
    @property
    def report(self) -> Path:
        return self.root / "report.md"

    @property
    def results(self) -> Path:
        return self.root / "results.json"

    @property
    def results_per_seed(self) -> Path:
        return self.root / "results_per_seed.json"

    @property
    def figures_dir(self) -> Path:
        return self.root / "figures"


def train_result(run_dir: str | Path) -> Path:
    """`train_result.json` of a training run dir (its presence means the job is complete)."""
    return Path(run_dir) / TRAIN_RESULT


def last_ckpt(run_dir: str | Path) -> Path:
    return Path(run_dir) / CHECKPOINTS / LAST_CKPT
