"""The whole experiment of the paper (Fig. 4) as a sequence of stages under one run dir.

Each stage runs one of the project's Hydra apps in a subprocess (sweeps as Hydra multiruns
through the configured launcher) and writes to its place in the run-folder layout
(:class:`lcgan_lightning.layout.RunLayout`): data and splits, judge, GAN sweep, scores and
selection, synthetic sets, segmentation sweep, report.

A stage whose outputs exist is skipped; a training job whose run dir holds `train_result.json`
is skipped and an interrupted one resumes from its `last.ckpt`. A failed job leaves `failed.json`
in its run dir and is reported by name; the jobs beside it still run.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from lcgan_lightning.layout import (
    FAILED,
    GAN_SUBDIR,
    RunLayout,
    fraction_key,
    seg_subdir,
    train_result,
    variant_parts,
)

log = logging.getLogger(__name__)


def quoted(value: object) -> str:
    """A Hydra override value in single quotes (paths here contain `=`, e.g. `frac=0.1`)."""
    text = str(value).replace("'", "\\'")
    return f"'{text}'"


class PipelineError(RuntimeError):
    """A stage failed; the message names the jobs and their errors."""


@dataclass
class Pipeline:
    """Run the configured stages in order under `run_dir` (see the module docstring)."""

    cfg: DictConfig
    run_dir: Path
    python: str = sys.executable
    failures: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.layout = RunLayout(self.run_dir)
        self._facts: dict[str, Any] | None = None

    # ------------------------------------------------------------------ plumbing
    @property
    def state_path(self) -> Path:
        return self.layout.state

    def _load_state(self) -> dict[str, Any]:
        return json.loads(self.state_path.read_text()) if self.state_path.exists() else {}

    def _save_state(self, stage: str, status: str, wall_s: float) -> None:
        """Record a stage: `stages` keeps the time of the run that did the work,
        `last_invocation` says what this invocation did (ran / skipped / failed)."""
        state = self._load_state()
        stages = state.setdefault("stages", {})
        if not (status == "skipped" and stage in stages):
            stages[stage] = {"status": status, "wall_s": round(wall_s, 1)}
        state.setdefault("last_invocation", {})[stage] = status
        self.state_path.write_text(json.dumps(state, indent=2))

    def write_data_config(self) -> Path:
        """Freeze this run's data config as the config option `data=pipeline` under the run dir.

        Every stage app gets `hydra.searchpath=[file://<run_dir>/conf] data=pipeline`, so all
        stages read the same data with the same split seed, whatever the training seed.
        """
        path = self.layout.data_config
        path.parent.mkdir(parents=True, exist_ok=True)
        data = OmegaConf.to_container(self.cfg.data, resolve=True)
        for key in ("root", "cache_dir"):  # jobs may run in another cwd (Ray, SLURM)
            if data.get(key) is not None:
                data[key] = str(Path(data[key]).resolve())
        data["splits_path"] = str(self.layout.splits.resolve())
        data["sample_seed"] = "${seed}"  # split seed frozen, sampling follows each job's seed
        if self.cfg.get("subset_patients"):
            data["subset_counts"] = [int(k) for k in self.cfg.subset_patients]
        else:
            data["subsets"] = [float(f) for f in self.cfg.fractions]
        path.write_text(OmegaConf.to_yaml(OmegaConf.create(data)))
        return path

    def _common(self) -> list[str]:
        return [f"hydra.searchpath=[{quoted('file://' + str(self.layout.conf_dir.resolve()))}]", "data=pipeline"]

    def _run_app(self, module: str, args: Sequence[str], multirun: bool = False) -> None:
        cmd = [self.python, "-m", module, *(["-m"] if multirun else []), *self._common(), *args]
        log.info("$ %s", " ".join(cmd))
        # all stages of one pipeline run share one W&B group
        env = {**os.environ, "WANDB_RUN_GROUP": os.environ.get("WANDB_RUN_GROUP", f"pipeline-{self.run_dir.name}"),
               "LCGAN_SCALE": str(self.cfg.get("scale", "custom"))}  # a W&B tag of every job
        result = subprocess.run(cmd, check=False, env=env)
        if result.returncode != 0:
            raise PipelineError(f"{module} exited with {result.returncode}: {' '.join(cmd)}")

    def _train_args(self, stage_cfg: DictConfig) -> list[str]:
        return [
            f"trainer={self.cfg.trainer}",
            f"logger={self.cfg.logger}",
            "callbacks=none",
            "skip_if_done=true",
            "catch_errors=true",
            "print_config=false",
            "ckpt_path=last",
            *list(stage_cfg.get("overrides") or []),
        ]

    def _collect(self, stage: str, run_dirs: Sequence[Path]) -> list[Path]:
        """Run dirs that did not finish; their failures are recorded by name."""
        missing = []
        for d in run_dirs:
            if train_result(d).exists():
                continue
            missing.append(d)
            failed = d / FAILED
            reason = json.loads(failed.read_text())["error"] if failed.exists() else "no result"
            self.failures.append(f"{stage}: {d.relative_to(self.run_dir)}: {reason}")
        return missing

    def _stage(self, name: str, complete: bool, action) -> None:
        if name not in self.cfg.stages:
            return
        if complete:
            log.info("stage %s: complete, skipped", name)
            self._save_state(name, "skipped", 0.0)
            return
        log.info("stage %s: running", name)
        start = time.time()
        try:
            ok = action()
        except Exception:
            self._save_state(name, "failed", time.time() - start)
            raise
        self._save_state(name, "ran" if ok is not False else "failed", time.time() - start)
        if ok is False:
            raise PipelineError("stage " + name + " failed:\n  " + "\n  ".join(self.failures))

    # ------------------------------------------------------------------ what runs
    def seeds(self) -> list[int]:
        """Replicate seeds: repeat r uses seed + r for its GAN, selection, synthesis and segmenters."""
        return [int(self.cfg.seed) + r for r in range(int(self.cfg.get("repeats", 1)))]

    def data_facts(self) -> dict[str, Any]:
        """Training patients and, per subset, training slices (read once, after the data stage)."""
        if self._facts is None:
            from lcgan_lightning.data.datamodule import open_datamodule
            from lcgan_lightning.data.splits import training_patients

            cfg = OmegaConf.load(self.layout.data_config)
            cfg.sample_seed = 0  # `${seed}` of the training jobs; reading slices does not sample
            dm = open_datamodule(cfg, augment="none", fraction=1.0)
            n_train = len(dm.splits["train"])
            fracs = self._fractions(n_train)
            self._facts = {
                "n_train": n_train,
                "fractions": fracs,
                "patients": {fraction_key(f): len(training_patients(dm.splits, f)) for f in fracs},
                "slices": {fraction_key(f): len(dm.slices.for_patients(training_patients(dm.splits, f)))
                           for f in fracs},
            }
        return self._facts

    def write_subsets(self) -> None:
        """`subsets.json`: per training subset its fraction, training patients and slices (for the report)."""
        facts = self.data_facts()
        subsets = {
            fraction_key(f): {"fraction": f, "patients": facts["patients"][fraction_key(f)],
                              "slices": facts["slices"][fraction_key(f)]}
            for f in facts["fractions"]
        }
        self.layout.subsets.write_text(json.dumps(subsets, indent=2))

    def _fractions(self, n_train: int) -> list[float]:
        if not self.cfg.get("subset_patients"):
            return [float(f) for f in self.cfg.fractions]
        counts = [int(k) for k in self.cfg.subset_patients]
        too_big = [k for k in counts if not 1 <= k <= n_train]
        if too_big:
            raise PipelineError(f"subset_patients={counts}: {too_big} outside 1..{n_train} "
                                f"(the training split holds {n_train} patients)")
        # K patients as the fraction K / n_train: the prefix rule then selects exactly K patients
        return [k / n_train for k in counts]

    def fractions(self) -> list[float]:
        if not self.cfg.get("subset_patients"):
            return [float(f) for f in self.cfg.fractions]
        return self.data_facts()["fractions"]

    def gan_epochs(self, fraction: float) -> list[int]:
        """Candidate epoch counts of one fraction: `gan.epochs`, or `gan.updates` generator updates
        converted with the fraction's training slices and the GAN batch size (at least 1 epoch)."""
        updates = self.cfg.gan.get("updates")
        if not updates:
            return sorted(int(e) for e in self.cfg.gan.epochs)
        n = self.data_facts()["slices"][fraction_key(fraction)]
        per_epoch = math.ceil(n / int(self.cfg.gan.batch_size))
        return sorted({max(1, math.ceil(int(u) / per_epoch)) for u in updates})

    def gan_run_epochs(self, fraction: float) -> list[int]:
        """Epoch counts of the GAN runs: one run of the longest with a constant LR, else one per count."""
        epochs = self.gan_epochs(fraction)
        return [max(epochs)] if self.cfg.gan.lr_policy == "constant" else epochs

    def gan_dirs(self) -> list[Path]:
        return [self.layout.gan_dir(f, s, e) for f in self.fractions() for s in self.seeds()
                for e in self.gan_run_epochs(f)]

    def candidates(self, seed: int) -> list[dict[str, Any]]:
        """Every candidate generator of one repeat: with a constant LR the per-epoch checkpoints of each
        fraction's run, else the final checkpoint of each run."""
        out = []
        for f in self.fractions():
            for e in self.gan_epochs(f):
                run = max(self.gan_run_epochs(f)) if self.cfg.gan.lr_policy == "constant" else e
                out.append({"checkpoint": str(self.layout.candidate_ckpt(f, seed, run, e)), "fraction": f,
                            "epochs": e})
        return out

    def seg_dirs(self) -> list[Path]:
        return [self.layout.seg_dir(f, a, s) for f in self.fractions() for a in self.cfg.augments for s in self.seeds()]

    def preflight(self) -> None:
        """Stop before any work when the configuration cannot run (missing weights file, ...)."""
        model, vgg = self.cfg.seg.model, self.cfg.seg.get("pretrained_vgg16")
        if model == "fcn8s_paper" and not vgg:
            raise PipelineError(
                "seg.model=fcn8s_paper fine-tunes ImageNet VGG-16 (paper §4.1) but seg.pretrained_vgg16 is not set: "
                "set seg.pretrained_vgg16=/path/to/vgg16-397923af.pth (torchvision's VGG-16 state dict, a local "
                "file; nothing is downloaded), or train from scratch with seg.model=fcn8s"
            )
        if vgg and not Path(vgg).is_file():
            raise PipelineError(f"seg.pretrained_vgg16={vgg}: no such file (torchvision's vgg16-397923af.pth)")
        from lcgan_lightning.report import VARIANTS

        unknown = [a for a in self.cfg.get("augments") or [] if a not in VARIANTS]
        if unknown:
            raise PipelineError(f"augments: {unknown} unknown; use {sorted(VARIANTS)} (A-kK = data.augment A with "
                                "data.synthetic_per_mask=K)")
        if self.cfg.get("budget", "steps") not in ("steps", "epochs"):
            raise PipelineError(f"budget={self.cfg.budget!r}: steps (same optimiser steps for every variant) or epochs")

    def _seg_model_args(self) -> list[str]:
        vgg = self.cfg.seg.get("pretrained_vgg16")
        return [f"model={self.cfg.seg.model}"] + ([f"model.pretrained_vgg16={quoted(Path(vgg).resolve())}"] if vgg else [])

    def stage_data(self) -> bool:
        # data=pipeline carries splits_path=<run_dir>/splits.json: inspect writes the split there
        self._run_app("lcgan_lightning.cli.inspect", [f"hydra.run.dir={quoted(self.layout.data_dir)}"])
        return self.layout.splits.exists()

    def stage_judge(self) -> bool:
        judge = self.layout.judge_dir
        args = [
            *self._seg_model_args(),
            "data.fraction=1.0",
            "data.augment=none",
            f"trainer.max_epochs={self.cfg.judge.max_epochs}",
            f"seed={self.cfg.seed}",
            f"hydra.run.dir={quoted(judge)}",
            "task_name=judge",
            *self._train_args(self.cfg.seg),
            *list(self.cfg.judge.get("overrides") or []),
        ]
        self._run_app("lcgan_lightning.cli.train", args)
        return not self._collect("judge", [judge])

    def judge_ckpt(self) -> str:
        result = json.loads(train_result(self.layout.judge_dir).read_text())
        return result["best_ckpt"] or result["last_ckpt"]

    def stage_gan(self) -> bool:
        constant = self.cfg.gan.lr_policy == "constant"
        seeds = ",".join(str(x) for x in self.seeds())
        # one multirun per group of fractions that share their candidate epochs (all of them with gan.epochs)
        groups: dict[tuple[int, ...], list[float]] = {}
        for f in self.fractions():
            groups.setdefault(tuple(self.gan_epochs(f)), []).append(f)
        for epochs, fracs in groups.items():
            args = [
                "model=lcgan",
                f"data.fraction={','.join(repr(f) for f in fracs)}",
                f"data.batch_size={int(self.cfg.gan.batch_size)}",
                f"model.lr_policy={self.cfg.gan.lr_policy}",
                # constant LR: the shorter candidates are checkpoints of the longest run;
                # linear decay: every epoch count is its own job and keeps only its final epoch
                f"model.save_epochs=[{','.join(str(e) for e in epochs)}]"
                if constant
                else "model.save_epochs=[${trainer.max_epochs}]",
                f"trainer.max_epochs={max(epochs) if constant else ','.join(str(e) for e in epochs)}",
                f"seed={seeds}",
                "test=false",
                "task_name=gan",
                f"hydra/launcher={self.cfg.launcher}",
                f"hydra.sweep.dir={quoted(self.layout.gan_sweep_dir)}",
                f"hydra.sweep.subdir={quoted(GAN_SUBDIR)}",
                *self._train_args(self.cfg.gan),
            ]
            self._run_app("lcgan_lightning.cli.train", args, multirun=True)
        return not self._collect("gan", self.gan_dirs())

    def stage_select(self) -> bool:
        for seed in self.seeds():
            if self.layout.selected(seed).exists() and self.layout.scores(seed).exists():
                continue
            cands = self.layout.candidates(seed)
            cands.parent.mkdir(parents=True, exist_ok=True)
            cands.write_text(json.dumps(self.candidates(seed), indent=2))
            args = [
                f"candidates={quoted(cands)}",
                f"judge_ckpt={quoted(self.judge_ckpt())}",
                f"out_dir={quoted(self.layout.select_dir(seed))}",
                f"seed={seed}",
                f"hydra.run.dir={quoted(self.layout.select_dir(seed))}",
                *list(self.cfg.select.get("overrides") or []),
            ]
            self._run_app("lcgan_lightning.cli.select", args)
        return all(self.layout.selected(s).exists() for s in self.seeds())

    def per_mask_needed(self, novel: bool) -> int:
        """Largest data.synthetic_per_mask the augments read from the redraw (novel=False; at
        least 1: the set is always made) or the novel set (0 = none needed). Sets are
        prefix-stable, so the largest serves every smaller k."""
        bases = ("gan_novel", "both_novel") if novel else ("gan", "both")
        ks = [k for base, k in map(variant_parts, self.cfg.augments) if base in bases]
        return max(ks, default=0 if novel else 1)

    def synthetic_is_current(self, fraction: float, seed: int, novel: bool = False) -> bool:
        """The (novel) synthetic set exists, was made by the generator the repeat's selected.json
        names and holds enough synthetic images per mask."""
        set_dir = (self.layout.novel_dir if novel else self.layout.synthetic_dir)(fraction, seed)
        manifest = set_dir / "manifest.json"
        selected = self.layout.selected(seed)
        if not (manifest.exists() and selected.exists()):
            return False
        made = json.loads(manifest.read_text())
        made_by = made.get("checkpoint")
        chosen = json.loads(selected.read_text())[fraction_key(fraction)]["checkpoint"]
        enough = int(made.get("per_mask") or 1) >= self.per_mask_needed(novel)
        if made_by and Path(made_by).resolve() == Path(chosen).resolve() and enough:
            return True
        log.info("%s was not made by the selected generator or holds too few images per mask: it will be "
                 "regenerated", manifest.parent)
        return False

    def synthesize_done(self) -> bool:
        novel = self.per_mask_needed(novel=True) > 0
        return all(self.synthetic_is_current(f, s) and (not novel or self.synthetic_is_current(f, s, novel=True))
                   for f in self.fractions() for s in self.seeds())

    def stage_synthesize(self) -> bool:
        kinds = [False] + ([True] if self.per_mask_needed(novel=True) else [])
        for seed in self.seeds():
            selected = json.loads(self.layout.selected(seed).read_text())
            for f in self.fractions():
                for novel in kinds:
                    if self.synthetic_is_current(f, seed, novel):
                        continue
                    out = (self.layout.novel_dir if novel else self.layout.synthetic_dir)(f, seed)
                    args = [
                        f"checkpoint={quoted(selected[fraction_key(f)]['checkpoint'])}",
                        "overwrite=true",
                        f"data.fraction={f!r}",
                        f"data.synthetic_per_mask={self.per_mask_needed(novel)}",
                        f"out_dir={quoted(out)}",
                        f"seed={seed}",
                        f"hydra.run.dir={quoted(out.parent / ('.hydra_run_' + out.name))}",
                        *(["masks=novel", f"judge_ckpt={quoted(self.judge_ckpt())}"] if novel else []),
                        *list(self.cfg.synthesize.get("overrides") or []),
                    ]
                    self._run_app("lcgan_lightning.cli.synthesize", args)
        return True

    def stage_seg(self) -> bool:
        by_k: dict[int, list[str]] = {}  # one multirun per data.synthetic_per_mask
        for base, k in map(variant_parts, self.cfg.augments):
            by_k.setdefault(k, []).append(base)
        for k, bases in sorted(by_k.items()):
            args = [
                *self._seg_model_args(),
                f"data.fraction={','.join(repr(f) for f in self.fractions())}",
                f"data.augment={','.join(bases)}",
                f"seed={','.join(str(s) for s in self.seeds())}",
                "data.synthetic_dir=" + quoted(self.layout.synthetic_dir_pattern),
                "data.novel_dir=" + quoted(self.layout.novel_dir_pattern),
                f"data.synthetic_per_mask={k}",
                f"data.samples_per_epoch={'original' if self.cfg.get('budget', 'steps') == 'steps' else 'null'}",
                f"trainer.max_epochs={self.cfg.seg.max_epochs}",
                "task_name=seg",
                f"hydra/launcher={self.cfg.launcher}",
                f"hydra.sweep.dir={quoted(self.layout.seg_sweep_dir)}",
                f"hydra.sweep.subdir={quoted(seg_subdir(k))}",
                *self._train_args(self.cfg.seg),
            ]
            self._run_app("lcgan_lightning.cli.train", args, multirun=True)
        return not self._collect("seg", self.seg_dirs())

    def stage_report(self) -> bool:
        from lcgan_lightning.report import write_report

        write_report(self.run_dir, scale=self.cfg.scale)
        if self.cfg.get("logger") == "wandb":  # Tables 1-3, selection, figures as one `report` run
            from lcgan_lightning.report_wandb import log_report_run

            log_report_run(self.run_dir)
        return True

    # ------------------------------------------------------------------ driver
    def run(self) -> Path:
        """Run (or finish) every configured stage; returns the report path."""
        self.preflight()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.state_path.exists():
            state = self._load_state()
            state["last_invocation"] = {}
            self.state_path.write_text(json.dumps(state, indent=2))
        self.write_data_config()
        self.layout.pipeline_config.write_text(OmegaConf.to_yaml(self.cfg, resolve=True))
        done = lambda *paths: all(p.exists() for p in paths)  # noqa: E731
        lay = self.layout
        self._stage("data", done(lay.splits), self.stage_data)
        self.write_subsets()
        self._stage("judge", done(train_result(lay.judge_dir)), self.stage_judge)
        self._stage("gan", done(*(train_result(d) for d in self.gan_dirs())), self.stage_gan)
        self._stage("select", done(*(p for s in self.seeds() for p in (lay.scores(s), lay.selected(s)))),
                    self.stage_select)
        self._stage("synthesize", self.synthesize_done(), self.stage_synthesize)
        self._stage("seg", done(*(train_result(d) for d in self.seg_dirs())), self.stage_seg)
        # the report is cheap and must reflect the newest files: always rewritten
        self._stage("report", False, self.stage_report)
        return self.layout.report
