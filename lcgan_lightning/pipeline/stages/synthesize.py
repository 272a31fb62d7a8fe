"""Synthesize stage: the selected generator x every training mask of its subset (and new masks when a
variant reads them), per repeat (`lcgan-synthesize`)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from lcgan_lightning.console import Job
from lcgan_lightning.layout import fraction_key
from lcgan_lightning.pipeline.args import quoted
from lcgan_lightning.pipeline.context import PipelineContext
from lcgan_lightning.pipeline.launcher import LOG
from lcgan_lightning.pipeline.stages.base import Stage

log = logging.getLogger(__name__)


def set_is_current(ctx: PipelineContext, fraction: float, seed: int, novel: bool = False) -> bool:
    """The (new-mask) synthetic set exists, was made by the generator the repeat's selected.json
    names and holds enough synthetic images per mask."""
    set_dir = (ctx.layout.novel_dir if novel else ctx.layout.synthetic_dir)(fraction, seed)
    manifest, selected = set_dir / "manifest.json", ctx.layout.selected(seed)
    if not (manifest.exists() and selected.exists()):
        return False
    made = json.loads(manifest.read_text())
    made_by = made.get("checkpoint")
    chosen = json.loads(selected.read_text())[fraction_key(fraction)]["checkpoint"]
    enough = int(made.get("per_mask") or 1) >= ctx.plan.per_mask_needed(novel)
    if made_by and Path(made_by).resolve() == Path(chosen).resolve() and enough:
        return True
    log.info("%s was not made by the selected generator or holds too few images per mask: it will be "
             "regenerated", manifest.parent)
    return False


class SynthesizeStage(Stage):
    name = "synthesize"

    @staticmethod
    def kinds(ctx: PipelineContext) -> list[bool]:
        """The sets each subset needs: the redraw set (False), and the new-mask set (True) if read."""
        return [False] + ([True] if ctx.plan.per_mask_needed(novel=True) else [])

    def jobs(self, ctx: PipelineContext) -> list[Job]:
        plan = ctx.plan

        def job(f: float, s: int, novel: bool) -> Job:
            out = (ctx.layout.novel_dir if novel else ctx.layout.synthetic_dir)(f, s)
            label = plan.label(f, s, masks="novel") if novel else plan.label(f, s)
            return Job(label, out, done="manifest.json", failed=None, skip=set_is_current(ctx, f, s, novel),
                       log=str(out.parent / LOG))  # the stage's multirun log

        return [job(f, s, novel) for s in plan.seeds for f in plan.fractions for novel in self.kinds(ctx)]

    def run(self, ctx: PipelineContext) -> None:
        # one multirun per repeat and kind of set, over the subsets whose set is not current: each job
        # reads its generator from the repeat's selected.json and writes to its set's dir
        lay, plan = ctx.layout, ctx.plan
        for seed in plan.seeds:
            for novel in self.kinds(ctx):
                todo = [f for f in plan.fractions if not set_is_current(ctx, f, seed, novel)]
                if not todo:
                    continue
                sets = (lay.novel_dir if novel else lay.synthetic_dir)(todo[0], seed).parent
                pattern = lay.novel_dir_pattern if novel else lay.synthetic_dir_pattern
                args = [
                    f"selected_json={quoted(lay.selected(seed))}",
                    "overwrite=true",
                    f"data.fraction={','.join(repr(f) for f in todo)}",
                    f"data.synthetic_per_mask={plan.per_mask_needed(novel)}",
                    f"out_dir={quoted(pattern)}",
                    f"seed={seed}",
                    *(["masks=novel", f"judge_ckpt={quoted(ctx.judge_ckpt(seed))}"] if novel else []),
                    *(ctx.args.launcher if ctx.args.short_stage_on_launcher else ["hydra/launcher=basic"]),
                    f"hydra.sweep.dir={quoted(sets)}",
                    "hydra.sweep.subdir='.hydra_run_frac=${data.fraction}'",  # beside the set, not inside it
                    *list(ctx.cfg.synthesize.get("overrides") or []),
                ]
                ctx.launch("synthesize", args, multirun=True)
