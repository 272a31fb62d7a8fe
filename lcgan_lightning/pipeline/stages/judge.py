"""Judge stage: the segmenter on 100 % of the training patients (FCN-score judge, "entire dataset" row)."""

from __future__ import annotations

import json

from lcgan_lightning.console import Job
from lcgan_lightning.pipeline.context import PipelineContext
from lcgan_lightning.pipeline.stages.base import Stage, check_network


class JudgeStage(Stage):
    name = "judge"

    def jobs(self, ctx: PipelineContext) -> list[Job]:
        return [Job(ctx.plan.label(seed=s), ctx.layout.judge_dir_of(s)) for s in ctx.plan.judge_seeds]

    def check_finished(self, ctx: PipelineContext, jobs: list[Job]) -> None:
        check_network(jobs, ctx.cfg.judge.get("model") or ctx.cfg.seg.model, key="judge.model")

    def run(self, ctx: PipelineContext) -> None:
        cfg, dscs = ctx.cfg, []
        for seed in ctx.plan.judge_seeds:
            judge = ctx.layout.judge_dir_of(seed)
            place, multirun = ctx.args.single_job(judge)
            args = [
                *ctx.args.seg_model(cfg.judge.get("model")),
                "data.fraction=1.0",
                "data.augment=none",
                f"trainer.max_epochs={cfg.judge.max_epochs}",
                f"seed={cfg.seed if seed is None else seed}",
                *place,
                "task_name=judge",
                *ctx.args.training(cfg.seg),  # skip_if_done: a finished judge is not retrained
                *list(cfg.judge.get("overrides") or []),
            ]
            ctx.launch("train", args, multirun=multirun)
            metrics = judge / "test_metrics.json"
            if metrics.is_file():
                dscs.append(f"{json.loads(metrics.read_text())['dsc']:.3f}")
        if dscs:
            ctx.console.note(self.name, f"test DSC {', '.join(dscs)}")
