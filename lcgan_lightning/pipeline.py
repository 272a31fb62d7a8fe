"""The whole experiment of the paper (Fig. 4) as a sequence of stages under one run dir.

Each stage runs one of the project's Hydra apps in a subprocess (sweeps as Hydra multiruns
through the configured launcher) and writes to its place in the run-folder layout
(:class:`lcgan_lightning.layout.RunLayout`): data and splits, judge, GAN sweep, scores and
selection, synthetic sets, their audits, segmentation sweep, report.

A stage whose outputs exist is skipped; a training job whose run dir holds `train_result.json`
is skipped and an interrupted one resumes from its `last.ckpt`. A failed job leaves `failed.json`
in its run dir and is reported by name; the jobs beside it still run.

What the console shows is :class:`lcgan_lightning.console.PipelineConsole`: every sub-process
writes to a log file in its run dir (`stdout.log`; a sweep's own lines to `<sweep dir>/stdout.log`,
each job's to its run dir), and the console follows the stages and their jobs (`Job`) through the
files they leave. `verbose=true` sends everything to the console as before.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from lcgan_lightning.console import Job, PipelineConsole
from lcgan_lightning.devices import NoGPUError, requested_gpus, require_gpus
from lcgan_lightning.errors import UserError
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
LOG = "stdout.log"  # a sub-process's output, in its run dir (a sweep: the sweep dir)
POLL_S = 0.5


def quoted(value: object) -> str:
    """A Hydra override value in single quotes (paths here contain `=`, e.g. `frac=0.1`)."""
    text = str(value).replace("'", "\\'")
    return f"'{text}'"


def trainer_config(name: str) -> DictConfig:
    """The composed `trainer=<name>` config of lcgan-train (conf/trainer/<name>.yaml and its defaults)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from lcgan_lightning.paths import CONF_DIR

    overrides = [f"trainer={name}"]
    if GlobalHydra.instance().is_initialized():  # inside lcgan-pipeline's own Hydra app (same conf dir)
        return compose(config_name="train", overrides=overrides).trainer
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=overrides).trainer


class PipelineError(UserError, RuntimeError):
    """A stage failed; the message names the jobs and their errors."""

    hint = "each failed job's failed.json and log hold its error; run the same command again to resume"


@dataclass
class Pipeline:
    """Run the configured stages in order under `run_dir` (see the module docstring)."""

    cfg: DictConfig
    run_dir: Path
    python: str = sys.executable
    failures: list[str] = field(default_factory=list)
    console: PipelineConsole | None = None

    def __post_init__(self) -> None:
        self.layout = RunLayout(self.run_dir)
        self._facts: dict[str, Any] | None = None
        self._current: str | None = None
        self.verbose = bool(self.cfg.get("verbose", False))
        # every repeat draws its own patient split (and trains its own judge) instead of sharing one
        self.split_per_repeat = bool(self.cfg.get("split_per_repeat", False))
        if self.console is None:
            self.console = PipelineConsole(list(self.cfg.get("stages") or []), live=False if self.verbose else None)

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
        data["sample_seed"] = "${seed}"  # sampling follows each job's seed
        if self.split_per_repeat:  # ... and so does the split: repeat S reads splits/seed=S.json
            data["seed"] = "${seed}"
            data["splits_path"] = RunLayout(self.run_dir.resolve()).split_pattern
        else:  # split seed frozen, whatever the training seed
            data["splits_path"] = str(self.layout.splits.resolve())
        if self.cfg.get("subset_patients"):
            data["subset_counts"] = [int(k) for k in self.cfg.subset_patients]
        else:
            data["subsets"] = [float(f) for f in self.cfg.fractions]
        path.write_text(OmegaConf.to_yaml(OmegaConf.create(data)))
        return path

    def _common(self) -> list[str]:
        return [f"hydra.searchpath=[{quoted('file://' + str(self.layout.conf_dir.resolve()))}]", "data=pipeline"]

    def _log_path(self, args: Sequence[str]) -> Path:
        """`stdout.log` in the app's `hydra.run.dir` (a multirun: `hydra.sweep.dir`)."""
        for arg in args:
            key, _, value = arg.partition("=")
            if key in ("hydra.run.dir", "hydra.sweep.dir"):
                return Path(value.strip("'")) / LOG
        return self.run_dir / "logs" / f"{self._current or 'pipeline'}.log"

    def _run_app(self, module: str, args: Sequence[str], multirun: bool = False) -> None:
        """Run one app in a sub-process; its output goes to its log file (to the console if `verbose`)."""
        cmd = [self.python, "-m", module, *(["-m"] if multirun else []), *self._common(), *args]
        out = self._log_path(args)
        log.info("$ %s", " ".join(cmd))
        # all stages of one pipeline run share one W&B group
        env = {**os.environ, "WANDB_RUN_GROUP": os.environ.get("WANDB_RUN_GROUP", f"pipeline-{self.run_dir.name}"),
               "LCGAN_SCALE": str(self.cfg.get("scale", "custom"))}  # a W&B tag of every job
        if self.verbose:
            returncode = self._wait(subprocess.Popen(cmd, env=env))
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
            with open(out, "a") as f:
                f.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} $ {' '.join(cmd)}\n")
                f.flush()
                env["PYTHONUNBUFFERED"] = "1"  # the log follows the job (tail -f)
                returncode = self._wait(subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT,
                                                         stdin=subprocess.DEVNULL))
        if returncode != 0:
            app = "lcgan-" + module.rsplit(".", 1)[-1]
            self.console.job_failed(f"{self._current}: {app}", out.parent, f"exited with {returncode}", out)
            raise PipelineError(f"{module} exited with {returncode}; its output: {out}")

    def _wait(self, proc: subprocess.Popen) -> int:
        """Wait for a sub-process while the console follows the stage's jobs."""
        while proc.poll() is None:
            self.console.poll()
            time.sleep(POLL_S)
        self.console.poll()
        return proc.returncode

    def _launcher_args(self) -> list[str]:
        """`hydra/launcher=...` and, for Ray, the GPUs and CPUs each job holds."""
        launcher = self.cfg.get("launcher", "basic")
        args = [f"hydra/launcher={launcher}"]
        if launcher == "ray_gpus":
            cpus = self.cfg.get("cpus_per_job") or int((self.cfg.get("data") or {}).get("num_workers") or 0) + 1
            args += [f"hydra.launcher.ray.remote.num_gpus={self.cfg.get('gpus_per_job', 1)}",
                     f"hydra.launcher.ray.remote.num_cpus={cpus}"]
        return args

    def _short_stage_on_launcher(self) -> bool:
        """Judge, select and synthesize go through the launcher: one other than basic, with
        `short_stages_on_launcher` (on SLURM they then run on a GPU node, not the login node)."""
        return self.cfg.get("launcher", "basic") != "basic" and bool(self.cfg.get("short_stages_on_launcher", True))

    def _single_job(self, run_dir: Path) -> tuple[list[str], bool]:
        """(args, multirun) placing one app run in `run_dir`: a one-job multirun through the launcher
        when `_short_stage_on_launcher`, else a plain run."""
        if self._short_stage_on_launcher():
            return [*self._launcher_args(), f"hydra.sweep.dir={quoted(run_dir)}", "hydra.sweep.subdir=."], True
        return [f"hydra.run.dir={quoted(run_dir)}"], False

    def _train_args(self, stage_cfg: DictConfig) -> list[str]:
        quiet = [] if self.verbose else [
            "stdout_log=true",  # each job's output into its run dir's stdout.log
            "++trainer.enable_progress_bar=false",
            "++trainer.enable_model_summary=false",
        ]
        data = self.cfg.get("data") or {}
        return [
            f"trainer={self.cfg.job_trainer}",
            # the run's data config wins over a GPU trainer config's loader settings
            f"data.num_workers={int(data.get('num_workers') or 0)}",
            f"data.pin_memory={str(bool(data.get('pin_memory'))).lower()}",
            f"logger={self.cfg.job_logger}",
            "callbacks=none",
            "skip_if_done=true",
            "catch_errors=true",
            "print_config=false",
            "ckpt_path=last",
            *quiet,
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
            name = d.relative_to(self.run_dir)
            self.failures.append(f"{stage}: {name}: {reason}")
            self.console.job_failed(f"{stage}: {name}", d, reason, d / LOG)
        return missing

    def _stage(self, name: str, complete: bool, action: Callable[[], bool | None],
               jobs: Callable[[], Sequence[Job]] | None = None) -> None:
        """Run one stage unless `complete`; `jobs` lists its jobs for the console (one line each)."""
        if name not in self.cfg.stages:
            return
        if complete:
            log.info("stage %s: complete, skipped", name)
            self.console.skip(name)
            self._save_state(name, "skipped", 0.0)
            return
        log.info("stage %s: running", name)
        self._current = name
        self.console.start(name, jobs() if jobs else ())
        start = time.time()
        try:
            ok = action()
        except Exception:
            self._save_state(name, "failed", time.time() - start)
            self.console.finish(name, ok=False)
            raise
        finally:
            self._current = None
        self._save_state(name, "ran" if ok is not False else "failed", time.time() - start)
        self.console.finish(name, ok=ok is not False)
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
            if self.split_per_repeat:  # patient and slice counts of the first repeat's split
                cfg.seed = int(self.cfg.seed)
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

    # ------------------------------------------------------------------ jobs as the console shows them
    def _label(self, fraction: float | None = None, seed: int | None = None, **more: object) -> str:
        """`frac=0.1 aug=gan` (`n=8` for patient counts; the seed only with several repeats)."""
        parts = []
        if fraction is not None:
            parts.append(f"n={self.data_facts()['patients'][fraction_key(fraction)]}"
                         if self.cfg.get("subset_patients") else f"frac={fraction_key(fraction)}")
        parts += [f"{k}={v}" for k, v in more.items()]
        if seed is not None and len(self.seeds()) > 1:
            parts.append(f"seed={seed}")
        return " ".join(parts)

    def gan_jobs(self) -> list[Job]:
        return [Job(self._label(f, s, **({"epochs": e} if len(self.gan_run_epochs(f)) > 1 else {})),
                    self.layout.gan_dir(f, s, e))
                for f in self.fractions() for s in self.seeds() for e in self.gan_run_epochs(f)]

    def seg_jobs(self) -> list[Job]:
        return [Job(self._label(f, s, aug=a), self.layout.seg_dir(f, a, s))
                for f in self.fractions() for a in self.cfg.augments for s in self.seeds()]

    def judge_jobs(self) -> list[Job]:
        return [Job(self._label(seed=s), d) for s, d in zip(self.judge_seeds(), self.judge_dirs(), strict=True)]

    def select_jobs(self) -> list[Job]:
        return [Job(self._label(seed=s), self.layout.select_dir(s), done="selected.json", failed=None)
                for s in self.seeds()]

    def synthesize_jobs(self) -> list[Job]:
        def job(f: float, s: int, novel: bool) -> Job:
            out = (self.layout.novel_dir if novel else self.layout.synthetic_dir)(f, s)
            label = self._label(f, s, masks="novel") if novel else self._label(f, s)
            return Job(label, out, done="manifest.json", failed=None, skip=self.synthetic_is_current(f, s, novel),
                       log=str(out.parent / LOG))  # the stage's multirun log

        kinds = [False] + ([True] if self.per_mask_needed(novel=True) else [])
        return [job(f, s, novel) for s in self.seeds() for f in self.fractions() for novel in kinds]

    def audit_jobs(self) -> list[Job]:
        return [Job(self._label(f, s), self.layout.synthetic_dir(f, s), done="audit.json", failed=None,
                    skip=self.audit_is_current(f, s), log=str(self.layout.audit_runs_dir / LOG))
                for s in self.seeds() for f in self.fractions()]

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
        self.check_gpus()

    def check_gpus(self) -> None:
        """Stop before training when `trainer=` asks for GPUs this machine does not show. Skipped for
        launcher=slurm: its jobs run on the cluster's nodes (Ray checks its own request at launch)."""
        launcher, trainer = self.cfg.get("launcher", "basic"), str(self.cfg.get("job_trainer", "default"))
        if launcher == "slurm":
            return
        try:
            require_gpus(requested_gpus(trainer_config(trainer)), f"lcgan-pipeline trainer={trainer}")
        except NoGPUError as err:
            raise PipelineError(str(err)) from None

    def _seg_model_args(self, model: str | None = None) -> list[str]:
        vgg = self.cfg.seg.get("pretrained_vgg16")
        model = model or self.cfg.seg.model
        vgg_args = [f"model.pretrained_vgg16={quoted(Path(vgg).resolve())}"] if vgg and model == self.cfg.seg.model else []
        return [f"model={model}", *vgg_args]

    @property
    def splits_file(self) -> Path:
        """The split the data stage writes (split_per_repeat: the first repeat's)."""
        return self.layout.split_of(int(self.cfg.seed)) if self.split_per_repeat else self.layout.splits

    def judge_seeds(self) -> list[int | None]:
        """One judge for the run (None), or one per repeat when every repeat has its own split."""
        return list(self.seeds()) if self.split_per_repeat else [None]

    def stage_data(self) -> bool:
        # data=pipeline carries splits_path (splits.json, or splits/seed=S.json): inspect writes the split there
        self._run_app("lcgan_lightning.cli.inspect", [f"hydra.run.dir={quoted(self.layout.data_dir)}",
                                                      f"seed={self.cfg.seed}"])
        summary = self.layout.data_dir / "inspect.json"
        if summary.is_file():
            facts = json.loads(summary.read_text())
            split = "/".join(str(len(facts["splits"][k])) for k in ("train", "val", "test"))
            self.console.note("data", f"{facts['patients']} patients, {facts['slices']} slices, "
                                      f"train/val/test {split} patients")
        return self.splits_file.exists()

    def judge_dirs(self) -> list[Path]:
        return [self.layout.judge_dir_of(s) for s in self.judge_seeds()]

    def stage_judge(self) -> bool:
        dscs = []
        for seed, judge in zip(self.judge_seeds(), self.judge_dirs(), strict=True):
            place, multirun = self._single_job(judge)
            args = [
                *self._seg_model_args(self.cfg.judge.get("model")),
                "data.fraction=1.0",
                "data.augment=none",
                f"trainer.max_epochs={self.cfg.judge.max_epochs}",
                f"seed={self.cfg.seed if seed is None else seed}",
                *place,
                "task_name=judge",
                *self._train_args(self.cfg.seg),  # skip_if_done: a finished judge is not retrained
                *list(self.cfg.judge.get("overrides") or []),
            ]
            self._run_app("lcgan_lightning.cli.train", args, multirun=multirun)
            metrics = judge / "test_metrics.json"
            if metrics.is_file():
                dscs.append(f"{json.loads(metrics.read_text())['dsc']:.3f}")
        if dscs:
            self.console.note("judge", f"test DSC {', '.join(dscs)}")
        return not self._collect("judge", self.judge_dirs())

    def judge_ckpt(self, seed: int | None = None) -> str:
        """The judge checkpoint repeat `seed` uses (the run's one judge unless split_per_repeat)."""
        judge = self.layout.judge_dir_of(seed if self.split_per_repeat else None)
        result = json.loads(train_result(judge).read_text())
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
                f"model.last_ckpt_every_n_epochs={int(self.cfg.gan.get('last_ckpt_every_n_epochs') or 1)}",
                f"data.val_samples={self.cfg.gan.get('val_samples') or 'null'}",
                f"trainer.check_val_every_n_epoch={int(self.cfg.gan.get('val_every_n_epochs') or 1)}",
                *self._launcher_args(),
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
            place, multirun = self._single_job(self.layout.select_dir(seed))
            args = [
                f"candidates={quoted(cands)}",
                f"judge_ckpt={quoted(self.judge_ckpt(seed))}",
                f"out_dir={quoted(self.layout.select_dir(seed))}",
                f"seed={seed}",
                *place,
                *list(self.cfg.select.get("overrides") or []),
            ]
            self._run_app("lcgan_lightning.cli.select", args, multirun=multirun)
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
        # one multirun per repeat and kind of set, over the fractions whose set is not current: each job
        # reads its generator from the repeat's selected.json and writes to its set's dir
        kinds = [False] + ([True] if self.per_mask_needed(novel=True) else [])
        for seed in self.seeds():
            for novel in kinds:
                todo = [f for f in self.fractions() if not self.synthetic_is_current(f, seed, novel)]
                if not todo:
                    continue
                sets = (self.layout.novel_dir if novel else self.layout.synthetic_dir)(todo[0], seed).parent
                pattern = self.layout.novel_dir_pattern if novel else self.layout.synthetic_dir_pattern
                args = [
                    f"selected_json={quoted(self.layout.selected(seed))}",
                    "overwrite=true",
                    f"data.fraction={','.join(repr(f) for f in todo)}",
                    f"data.synthetic_per_mask={self.per_mask_needed(novel)}",
                    f"out_dir={quoted(pattern)}",
                    f"seed={seed}",
                    *(["masks=novel", f"judge_ckpt={quoted(self.judge_ckpt(seed))}"] if novel else []),
                    *(self._launcher_args() if self._short_stage_on_launcher() else ["hydra/launcher=basic"]),
                    f"hydra.sweep.dir={quoted(sets)}",
                    "hydra.sweep.subdir='.hydra_run_frac=${data.fraction}'",  # beside the set, not inside it
                    *list(self.cfg.synthesize.get("overrides") or []),
                ]
                self._run_app("lcgan_lightning.cli.synthesize", args, multirun=True)
        return True

    def audit_is_current(self, fraction: float, seed: int) -> bool:
        """The set's audit.json was made from this set and with this run's judge."""
        from lcgan_lightning.audit import audit_is_current

        return audit_is_current(self.layout.synthetic_dir(fraction, seed), self.judge_ckpt(seed))

    def stage_audit(self) -> bool:
        # one multirun per judge (split_per_repeat: per repeat, whose split the audit must read)
        for seeds in ([[s] for s in self.seeds()] if self.split_per_repeat else [self.seeds()]):
            todo = [self.layout.synthetic_dir(f, s) for s in seeds for f in self.fractions()
                    if not self.audit_is_current(f, s)]
            if not todo:
                continue
            args = [
                # one job per set; each reads its fraction and generator from the set's manifest
                "synthetic_dir=" + ",".join(quoted(d) for d in todo),
                f"judge_ckpt={quoted(self.judge_ckpt(seeds[0]))}",
                *([f"seed={seeds[0]}"] if self.split_per_repeat else []),
                f"logger={self.cfg.job_logger}",
                *self._launcher_args(),
                f"hydra.sweep.dir={quoted(self.layout.audit_runs_dir)}",
                *list((self.cfg.get("audit") or {}).get("overrides") or []),
            ]
            self._run_app("lcgan_lightning.cli.audit", args, multirun=True)
        return all(self.audit_is_current(f, s) for s in self.seeds() for f in self.fractions())

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
                *self._launcher_args(),
                f"hydra.sweep.dir={quoted(self.layout.seg_sweep_dir)}",
                f"hydra.sweep.subdir={quoted(seg_subdir(k))}",
                *self._train_args(self.cfg.seg),
            ]
            self._run_app("lcgan_lightning.cli.train", args, multirun=True)
        return not self._collect("seg", self.seg_dirs())

    def stage_report(self) -> bool:
        from lcgan_lightning.report import write_report

        write_report(self.run_dir, scale=self.cfg.scale)
        if self.cfg.get("job_logger") == "wandb":  # Tables 1-3, selection, figures as one `report` run
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
        where = os.path.relpath(self.run_dir) if self.run_dir.resolve().is_relative_to(Path.cwd()) else self.run_dir
        header = (f"lcgan-pipeline scale={self.cfg.get('scale', 'custom')} → {where} · "
                  + ("verbose" if self.verbose else "each job's output in its run dir's stdout.log (verbose=true shows it)"))
        with self.console.running(header):
            self._stage("data", done(self.splits_file), self.stage_data,
                        jobs=lambda: [Job("", lay.data_dir, done="inspect.json", failed=None)])
            self.write_subsets()
            self._stage("judge", done(*(train_result(d) for d in self.judge_dirs())), self.stage_judge,
                        jobs=self.judge_jobs)
            self._stage("gan", done(*(train_result(d) for d in self.gan_dirs())), self.stage_gan, self.gan_jobs)
            self._stage("select", done(*(p for s in self.seeds() for p in (lay.scores(s), lay.selected(s)))),
                        self.stage_select, self.select_jobs)
            self._stage(
                "synthesize",
                self.synthesize_done(),
                self.stage_synthesize,
                self.synthesize_jobs,
            )
            self._stage("audit", "audit" in self.cfg.stages
                        and all(self.audit_is_current(f, s) for f in self.fractions() for s in self.seeds()),
                        self.stage_audit, self.audit_jobs)
            self._stage("seg", done(*(train_result(d) for d in self.seg_dirs())), self.stage_seg, self.seg_jobs)
            # the report is cheap and must reflect the newest files: always rewritten
            self._stage("report", False, self.stage_report)
        return self.layout.report

    def print_summary(self, report: Path) -> None:
        """The end of a run on the console: Table 1 verdicts, selected generators, wall times, report path."""
        results = json.loads(self.layout.results.read_text()) if self.layout.results.is_file() else None
        self.console.summary(results, self._load_state(), report.resolve())
