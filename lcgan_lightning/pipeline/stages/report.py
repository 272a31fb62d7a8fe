"""Report stage: Tables 1-3, the Fig. 7 analogue, audit and selection tables from this run's files.

Always rewritten (cheap, and it must reflect the newest files)."""

from __future__ import annotations

from lcgan_lightning.pipeline.context import PipelineContext
from lcgan_lightning.pipeline.stages.base import Stage


class ReportStage(Stage):
    name = "report"

    def run(self, ctx: PipelineContext) -> None:
        from lcgan_lightning.report import write_report

        write_report(ctx.layout.root, scale=ctx.cfg.scale)
        if ctx.cfg.get("job_logger") == "wandb":  # Tables 1-3, selection, figures as one `report` run
            from lcgan_lightning.report.wandb_run import log_report_run

            log_report_run(ctx.layout.root)
