"""Calibrate stage (`calibrate: true`): the A/A control of the verdicts.

Trains the original variant again with the seeds after the repeats' (`RunPlan.calibration_seeds`), with
everything else as in the seg stage; the report compares these runs with the original runs by the
same method as every variant, so the share of A/A comparisons called a difference measures how often
the verdicts call noise a change.
"""

from __future__ import annotations

from omegaconf import DictConfig

from lcgan_lightning.console import Job
from lcgan_lightning.layout import SEG_SUBDIR
from lcgan_lightning.pipeline.args import quoted
from lcgan_lightning.pipeline.context import PipelineContext
from lcgan_lightning.pipeline.stages.base import Stage, check_network
from lcgan_lightning.pipeline.stages.seg import synthetic_data_args
from lcgan_lightning.variants import ORIGINAL


class CalibrateStage(Stage):
    name = "calibrate"

    def jobs(self, ctx: PipelineContext) -> list[Job]:
        plan = ctx.plan
        return [Job(plan.label(f, s, aug=ORIGINAL), ctx.layout.seg_dir(f, ORIGINAL, s))
                for f in plan.fractions for s in plan.calibration_seeds]

    def check_finished(self, ctx: PipelineContext, jobs: list[Job]) -> None:
        check_network(jobs, ctx.cfg.seg.model)

    def wanted(self, cfg: DictConfig) -> bool:
        return super().wanted(cfg) and bool(cfg.get("calibrate", False))

    def run(self, ctx: PipelineContext) -> None:
        plan, lay = ctx.plan, ctx.layout
        # with a split per repeat, A/A run r reads repeat r's split (not the split of its own seed)
        groups = ([([c], [f"data.seed={s}", f"data.splits_path={quoted(lay.split_of(s))}"])
                   for s, c in zip(plan.seeds, plan.calibration_seeds, strict=True)]
                  if plan.split_per_repeat else [(plan.calibration_seeds, [])])
        for seeds, split in groups:
            args = [
                *ctx.args.segmenters(plan.fractions, [ORIGINAL], seeds, [*synthetic_data_args(ctx, 1), *split]),
                f"hydra.sweep.dir={quoted(lay.seg_sweep_dir)}",
                f"hydra.sweep.subdir={quoted(SEG_SUBDIR)}",
                *ctx.args.training(ctx.cfg.seg),
            ]
            ctx.launch("train", args, multirun=True)
