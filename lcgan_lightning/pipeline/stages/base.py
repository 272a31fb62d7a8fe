"""A pipeline stage: lists its jobs, says whether it is current, and runs them."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from omegaconf import DictConfig

from lcgan_lightning.console import Job

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
