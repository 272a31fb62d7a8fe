"""A pipeline stage: lists its jobs, says whether it is current, and runs them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

import yaml
from omegaconf import DictConfig

from lcgan_lightning.console import Job
from lcgan_lightning.pipeline.launcher import PipelineError

if TYPE_CHECKING:
    from lcgan_lightning.pipeline.context import PipelineContext


class Stage:
    """One step of the experiment (subclass it; set `name`, implement `jobs` and `run`).

    The driver skips a stage whose `is_current` is true, else shows its `jobs` on the console, calls
    `run` and afterwards names every job that did not finish (its `failed.json` error) as a failure.
    """

    name: ClassVar[str] = ""

    def wanted(self, cfg: DictConfig) -> bool:
        """Asked for by the pipeline config (its name is in `stages`)."""
        return self.name in (cfg.get("stages") or [])

    def jobs(self, ctx: PipelineContext) -> list[Job]:
        """Every job of the stage; `Job.finished` says which need no work."""
        return []

    def is_current(self, ctx: PipelineContext) -> bool:
        """Nothing to do: every job is finished (a stage without jobs always runs)."""
        jobs = self.jobs(ctx)
        self.check_finished(ctx, jobs)
        return bool(jobs) and all(job.finished for job in jobs)

    def check_finished(self, ctx: PipelineContext, jobs: list[Job]) -> None:
        """Raise PipelineError when a finished job cannot count for this run (default: every one can)."""

    def run(self, ctx: PipelineContext) -> None:
        """Do the work (through `ctx.launch`)."""
        raise NotImplementedError


def check_network(jobs: Sequence[Job], model: str, key: str = "seg.model", hint: str | None = None) -> None:
    """Stop when a finished job of `jobs` was trained with another `model=` than `model` (the value of `key`).

    The judge/, gan/ and seg/ folders do not name the model, so such a job would count as done and its
    results would be reported as `model`'s. Runs without Hydra's overrides.yaml are not checked.
    """
    for job in jobs:
        overrides = job.dir / ".hydra" / "overrides.yaml"
        if not job.finished or not overrides.is_file():
            continue
        trained = [o.split("=", 1)[1] for o in yaml.safe_load(overrides.read_text()) or []
                   if isinstance(o, str) and o.startswith("model=")]
        if trained and trained[-1] != model:
            raise PipelineError(
                f"{job.dir}: trained with model={trained[-1]}, but this run asks for {key}={model} (the folder does "
                f"not name the model: the job would count as done and its results be reported as {model}'s)",
                hint=hint or f"run {key}={model} in a new run dir (hydra.run.dir=...), or keep {key}={trained[-1]} here",
            )
