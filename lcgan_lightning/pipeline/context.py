"""What every stage of a pipeline run reads: its config, run folder, plan, launcher and console."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig

from lcgan_lightning.console import PipelineConsole
from lcgan_lightning.layout import RunLayout, train_result
from lcgan_lightning.pipeline.args import HydraArgs
from lcgan_lightning.pipeline.launcher import AppLauncher, Launcher
from lcgan_lightning.pipeline.planning import data_facts, make_plan
from lcgan_lightning.pipeline.state import Failures
from lcgan_lightning.run_plan import RunPlan


@dataclass
class PipelineContext:
    """One pipeline invocation, as the stages see it."""

    cfg: DictConfig
    layout: RunLayout
    launcher: AppLauncher
    console: PipelineConsole
    failures: Failures
    args: HydraArgs = field(init=False)
    _plan: RunPlan | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.args = HydraArgs(self.cfg)

    @classmethod
    def create(cls, cfg: DictConfig, run_dir: Path, launcher: AppLauncher | None = None,
               console: PipelineConsole | None = None, plan: RunPlan | None = None) -> PipelineContext:
        """A context for `run_dir`: the sub-process launcher and a plain console unless given; `plan`
        replaces the one computed from the data (tests)."""
        layout = RunLayout(Path(run_dir))
        console = console or PipelineConsole([], live=False)
        launcher = launcher or Launcher(layout, console, scale=str(cfg.get("scale", "custom")),
                                        verbose=bool(cfg.get("verbose", False)))
        ctx = cls(cfg, layout, launcher, console, Failures(layout.root, console))
        ctx._plan = plan
        return ctx

    @property
    def plan(self) -> RunPlan:
        """The run's plan, computed from the config and the split on first use and written to run_plan.json."""
        if self._plan is None:
            self._plan = make_plan(self.cfg, data_facts(self.cfg, self.layout))
            self._plan.save(self.layout.run_plan)
        return self._plan

    def launch(self, app: str, args: Sequence[str], multirun: bool = False) -> None:
        """Run `lcgan-<app>` through the run's launcher."""
        self.launcher.launch(app, args, multirun)

    @property
    def splits_file(self) -> Path:
        """The split the data stage writes (split_per_repeat: the first repeat's)."""
        return self.layout.split_of(int(self.cfg.seed)) if self.cfg.get("split_per_repeat") else self.layout.splits

    def judge_ckpt(self, seed: int) -> str:
        """The judge checkpoint repeat `seed` uses (the run's one judge unless split_per_repeat)."""
        judge = self.layout.judge_dir_of(self.plan.judge_seed_of(seed))
        result = json.loads(train_result(judge).read_text())
        return result["best_ckpt"] or result["last_ckpt"]
