"""The whole experiment of the paper (Fig. 4) as a sequence of stages under one run dir.

Each stage (`stages/`, a `Stage` subclass) lists its jobs, says whether it is current and runs
the project's Hydra apps through one launcher (`launcher.Launcher`, sub-processes; sweeps as Hydra
multiruns through the configured `hydra/launcher`); every path comes from `layout.RunLayout`, every
seed and subset from the run's plan (`run_plan.RunPlan`, computed once after the data stage by
`planning`). `driver.run_pipeline` is the loop over the stages the config asks for; `state` keeps
`pipeline_state.json` and the failures of an invocation.

A stage whose jobs are all finished is skipped; a training job whose run dir holds
`train_result.json` is skipped and an interrupted one resumes from its `last.ckpt`. A failed job
leaves `failed.json` in its run dir and is reported by name; the jobs beside it still run.
"""

from lcgan_lightning.pipeline.args import quoted
from lcgan_lightning.pipeline.context import PipelineContext
from lcgan_lightning.pipeline.driver import pipeline_console, print_summary, run_pipeline
from lcgan_lightning.pipeline.launcher import AppLauncher, Launcher, PipelineError
from lcgan_lightning.pipeline.stages import STAGES, Stage

__all__ = ["STAGES", "AppLauncher", "Launcher", "PipelineContext", "PipelineError", "Stage", "pipeline_console", "print_summary",
           "quoted", "run_pipeline"]
