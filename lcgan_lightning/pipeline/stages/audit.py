"""Audit stage: `lcgan-audit` of every synthetic set (memorisation, fidelity, diversity), one job per set."""

from __future__ import annotations

from lcgan_lightning.console import Job
from lcgan_lightning.pipeline.args import quoted
from lcgan_lightning.pipeline.context import PipelineContext
from lcgan_lightning.pipeline.launcher import LOG
from lcgan_lightning.pipeline.stages.base import Stage


def audit_is_current(ctx: PipelineContext, fraction: float, seed: int) -> bool:
    """The set's audit.json was made from this set, with this run's judge, by this audit version."""
    from lcgan_lightning.audit import audit_is_current as current

    return current(ctx.layout.synthetic_dir(fraction, seed), ctx.judge_ckpt(seed))


class AuditStage(Stage):
    name = "audit"

    def jobs(self, ctx: PipelineContext) -> list[Job]:
        lay, plan = ctx.layout, ctx.plan
        return [Job(plan.label(f, s), lay.synthetic_dir(f, s), done="audit.json", failed=None,
                    skip=audit_is_current(ctx, f, s), log=str(lay.audit_runs_dir / LOG))
                for s in plan.seeds for f in plan.fractions]

    def run(self, ctx: PipelineContext) -> None:
        plan, lay = ctx.plan, ctx.layout
        # one multirun per judge (split_per_repeat: per repeat, whose split the audit must read)
        for seeds in ([[s] for s in plan.seeds] if plan.split_per_repeat else [plan.seeds]):
            todo = [lay.synthetic_dir(f, s) for s in seeds for f in plan.fractions if not audit_is_current(ctx, f, s)]
            if not todo:
                continue
            args = [
                # one job per set; each reads its fraction and generator from the set's manifest
                "synthetic_dir=" + ",".join(quoted(d) for d in todo),
                f"judge_ckpt={quoted(ctx.judge_ckpt(seeds[0]))}",
                *([f"seed={seeds[0]}"] if plan.split_per_repeat else []),
                f"logger={ctx.cfg.job_logger}",
                *ctx.args.launcher,
                f"hydra.sweep.dir={quoted(lay.audit_runs_dir)}",
                *list((ctx.cfg.get("audit") or {}).get("overrides") or []),
            ]
            ctx.launch("audit", args, multirun=True)
