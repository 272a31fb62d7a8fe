"""Hydra command-line arguments the stages give the project's apps, built from the pipeline config."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig


def quoted(value: object) -> str:
    """A Hydra override value in single quotes (paths here contain `=`, e.g. `frac=0.1`)."""
    text = str(value).replace("'", "\\'")
    return f"'{text}'"


class HydraArgs:
    """The overrides that depend on the pipeline config: launcher, trainer, logger, model."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self.verbose = bool(cfg.get("verbose", False))

    @property
    def launcher(self) -> list[str]:
        """`hydra/launcher=...` and, for Ray, the GPUs and CPUs each job holds."""
        launcher = self.cfg.get("launcher", "basic")
        args = [f"hydra/launcher={launcher}"]
        if launcher == "ray_gpus":
            cpus = self.cfg.get("cpus_per_job") or int((self.cfg.get("data") or {}).get("num_workers") or 0) + 1
            args += [f"hydra.launcher.ray.remote.num_gpus={self.cfg.get('gpus_per_job', 1)}",
                     f"hydra.launcher.ray.remote.num_cpus={cpus}"]
        return args

    @property
    def short_stage_on_launcher(self) -> bool:
        """Judge, select and synthesize go through the launcher: one other than basic, with
        `short_stages_on_launcher` (on SLURM they then run on a GPU node, not the login node)."""
        return self.cfg.get("launcher", "basic") != "basic" and bool(self.cfg.get("short_stages_on_launcher", True))

    def single_job(self, run_dir: Path) -> tuple[list[str], bool]:
        """(args, multirun) placing one app run in `run_dir`: a one-job multirun through the launcher
        when `short_stage_on_launcher`, else a plain run."""
        if self.short_stage_on_launcher:
            return [*self.launcher, f"hydra.sweep.dir={quoted(run_dir)}", "hydra.sweep.subdir=."], True
        return [f"hydra.run.dir={quoted(run_dir)}"], False

    def training(self, stage_cfg: DictConfig) -> list[str]:
        """lcgan-train overrides every training job of a stage gets (its own `overrides` last)."""
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

    def seg_model(self, model: str | None = None) -> list[str]:
        """`model=` of a segmenter (default `seg.model`), with its VGG-16 weights when it uses them."""
        vgg = self.cfg.seg.get("pretrained_vgg16")
        model = model or self.cfg.seg.model
        vgg_args = [f"model.pretrained_vgg16={quoted(Path(vgg).resolve())}"] if vgg and model == self.cfg.seg.model else []
        return [f"model={model}", *vgg_args]

    def segmenters(self, fractions: list[float], augments: list[str], seeds: list[int],
                   data: Sequence[str] = ()) -> list[str]:
        """A multirun of segmenters over fractions x augments x seeds (jobs in that order), with more
        `data.*` overrides; the caller adds the sweep dirs and `training(cfg.seg)`."""
        return [
            *self.seg_model(),
            f"data.fraction={','.join(repr(f) for f in fractions)}",
            f"data.augment={','.join(augments)}",
            f"seed={','.join(str(s) for s in seeds)}",
            *data,
            f"data.samples_per_epoch={'original' if self.cfg.get('budget', 'steps') == 'steps' else 'null'}",
            f"trainer.max_epochs={self.cfg.seg.max_epochs}",
            "task_name=seg",
            *self.launcher,
        ]
