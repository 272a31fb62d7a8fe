"""Runs the stages a pipeline config asks for, in order, under one run dir."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from lcgan_lightning.console import PipelineConsole
from lcgan_lightning.pipeline.context import PipelineContext
from lcgan_lightning.pipeline.data_config import write_data_config
from lcgan_lightning.pipeline.launcher import AppLauncher, PipelineError
from lcgan_lightning.pipeline.preflight import preflight
from lcgan_lightning.pipeline.stages import STAGES, Stage
from lcgan_lightning.pipeline.state import RunState

log = logging.getLogger(__name__)


def run_pipeline(cfg: DictConfig, run_dir: Path, *, stages: Sequence[Stage] = STAGES,
                 launcher: AppLauncher | None = None, console: PipelineConsole | None = None) -> PipelineContext:
    """Run (or finish) every stage of `stages` that the config asks for; returns the run's context.

    A stage whose jobs are all finished is skipped; after a stage ran, every job that did not finish
    is named with its error and the pipeline stops (`PipelineError`); the same command resumes it.
    """
    preflight(cfg)
    run_dir = Path(run_dir)
    wanted = [s for s in stages if s.wanted(cfg)]
    ctx = PipelineContext.create(cfg, run_dir, launcher, console or pipeline_console(cfg, stages))
    layout, console = ctx.layout, ctx.console
    run_dir.mkdir(parents=True, exist_ok=True)
    state = RunState(layout.state)
    state.new_invocation()
    write_data_config(cfg, layout)
    layout.pipeline_config.write_text(OmegaConf.to_yaml(cfg, resolve=True))
    where = os.path.relpath(run_dir) if run_dir.resolve().is_relative_to(Path.cwd()) else run_dir
    header = (f"lcgan-pipeline scale={cfg.get('scale', 'custom')} → {where} · "
              + ("verbose" if cfg.get("verbose") else "each job's output in its run dir's stdout.log (verbose=true shows it)"))
    with console.running(header):
        for stage in wanted:
            run_stage(ctx, stage, state)
    return ctx


def pipeline_console(cfg: DictConfig, stages: Sequence[Stage] = STAGES) -> PipelineConsole:
    """The console of a run: the stages the config asks for (every line in verbose mode)."""
    return PipelineConsole([s.name for s in stages if s.wanted(cfg)], live=False if cfg.get("verbose") else None)


def run_stage(ctx: PipelineContext, stage: Stage, state: RunState) -> None:
    """Skip a current stage; else run it and stop on its unfinished jobs."""
    console, name = ctx.console, stage.name
    if stage.is_current(ctx):
        log.info("stage %s: complete, skipped", name)
        console.skip(name)
        state.record(name, "skipped", 0.0)
        return
    log.info("stage %s: running", name)
    ctx.launcher.stage = name
    console.start(name, stage.jobs(ctx))
    start = time.time()
    try:
        stage.run(ctx)
        ok = not ctx.failures.collect(name, stage.jobs(ctx))
    except Exception:
        state.record(name, "failed", time.time() - start)
        console.finish(name, ok=False)
        raise
    finally:
        ctx.launcher.stage = None
    state.record(name, "ran" if ok else "failed", time.time() - start)
    console.finish(name, ok=ok)
    if not ok:
        raise PipelineError(f"stage {name} failed:\n  " + "\n  ".join(ctx.failures.messages))


def print_summary(ctx: PipelineContext) -> None:
    """The end of a run on the console: Table 1 verdicts, selected generators, wall times, report path."""
    results = json.loads(ctx.layout.results.read_text()) if ctx.layout.results.is_file() else None
    ctx.console.summary(results, RunState(ctx.layout.state).load(), ctx.layout.report.resolve())
