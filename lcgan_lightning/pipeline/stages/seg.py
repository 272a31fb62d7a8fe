"""Seg stage: a segmenter per training subset x variant x repeat (the paper's Tables 1-3)."""

from __future__ import annotations

from lcgan_lightning.console import Job
from lcgan_lightning.layout import seg_subdir
from lcgan_lightning.pipeline.args import quoted
from lcgan_lightning.pipeline.context import PipelineContext
from lcgan_lightning.pipeline.stages.base import Stage, check_network


def synthetic_data_args(ctx: PipelineContext, per_mask: int) -> list[str]:
    """Where a segmenter finds its repeat's synthetic sets, and how many images per mask it reads."""
    return [
        "data.synthetic_dir=" + quoted(ctx.layout.synthetic_dir_pattern),
        "data.novel_dir=" + quoted(ctx.layout.novel_dir_pattern),
        f"data.synthetic_per_mask={per_mask}",
    ]


class SegStage(Stage):
    name = "seg"

    def check_finished(self, ctx: PipelineContext, jobs: list[Job]) -> None:
        check_network(jobs, ctx.cfg.seg.model)

    def jobs(self, ctx: PipelineContext) -> list[Job]:
        plan = ctx.plan
        return [Job(plan.label(f, s, aug=v.name), ctx.layout.seg_dir(f, v.name, s))
                for f in plan.fractions for v in plan.variant_list for s in plan.seeds]

    def run(self, ctx: PipelineContext) -> None:
        plan = ctx.plan
        by_k: dict[int, list[str]] = {}  # one multirun per data.synthetic_per_mask
        for v in plan.variant_list:
            by_k.setdefault(v.per_mask, []).append(v.augment.name)
        for k, augments in sorted(by_k.items()):
            args = [
                *ctx.args.segmenters(plan.fractions, augments, plan.seeds, synthetic_data_args(ctx, k)),
                f"hydra.sweep.dir={quoted(ctx.layout.seg_sweep_dir)}",
                f"hydra.sweep.subdir={quoted(seg_subdir(k))}",
                *ctx.args.training(ctx.cfg.seg),
            ]
            ctx.launch("train", args, multirun=True)
