"""Select stage: per repeat, score every candidate generator and pick one per subset (`lcgan-select`)."""

from __future__ import annotations

import json

from lcgan_lightning.console import Job
from lcgan_lightning.pipeline.args import quoted
from lcgan_lightning.pipeline.context import PipelineContext
from lcgan_lightning.pipeline.stages.base import Stage


class SelectStage(Stage):
    name = "select"

    def jobs(self, ctx: PipelineContext) -> list[Job]:
        lay = ctx.layout
        return [Job(ctx.plan.label(seed=s), lay.select_dir(s), done="selected.json", failed=None,
                    skip=lay.selected(s).exists() and lay.scores(s).exists())
                for s in ctx.plan.seeds]

    def run(self, ctx: PipelineContext) -> None:
        lay = ctx.layout
        for job, seed in zip(self.jobs(ctx), ctx.plan.seeds, strict=True):
            if job.finished:
                continue
            cands = lay.candidates(seed)
            cands.parent.mkdir(parents=True, exist_ok=True)
            cands.write_text(json.dumps(ctx.plan.candidates(lay, seed), indent=2))
            place, multirun = ctx.args.single_job(lay.select_dir(seed))
            args = [
                f"candidates={quoted(cands)}",
                f"judge_ckpt={quoted(ctx.judge_ckpt(seed))}",
                f"out_dir={quoted(lay.select_dir(seed))}",
                f"seed={seed}",
                *place,
                *list(ctx.cfg.select.get("overrides") or []),
            ]
            ctx.launch("select", args, multirun=multirun)
