"""Data stage: read (or generate) the dataset, check it and split its patients (`lcgan-inspect`)."""

from __future__ import annotations

import json

from lcgan_lightning.console import Job
from lcgan_lightning.pipeline.args import quoted
from lcgan_lightning.pipeline.context import PipelineContext
from lcgan_lightning.pipeline.stages.base import Stage


class DataStage(Stage):
    name = "data"

    def jobs(self, ctx: PipelineContext) -> list[Job]:
        return [Job("", ctx.layout.data_dir, done="inspect.json", failed=None, skip=ctx.splits_file.exists())]

    def run(self, ctx: PipelineContext) -> None:
        # data=pipeline carries splits_path (splits.json, or splits/seed=S.json): inspect writes the split there
        ctx.launch("inspect", [f"hydra.run.dir={quoted(ctx.layout.data_dir)}", f"seed={ctx.cfg.seed}"])
        summary = ctx.layout.data_dir / "inspect.json"
        if summary.is_file():
            facts = json.loads(summary.read_text())
            split = "/".join(str(len(facts["splits"][k])) for k in ("train", "val", "test"))
            ctx.console.note(self.name, f"{facts['patients']} patients, {facts['slices']} slices, "
                                        f"train/val/test {split} patients")
