"""The console of `lcgan-pipeline`: live progress of stages and jobs (`live`), the jobs as followed
through their files (`jobs`), and the end-of-run summary (`summary`)."""

from lcgan_lightning.console.jobs import Job, clock
from lcgan_lightning.console.live import PipelineConsole

__all__ = ["Job", "PipelineConsole", "clock"]
