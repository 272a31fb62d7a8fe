"""Runs the project's Hydra apps for the stages: the one place a sub-process is started.

Every app gets the run's frozen data config (`hydra.searchpath=[<run>/conf] data=pipeline`); its
output goes to `stdout.log` in its `hydra.run.dir` (a multirun: `hydra.sweep.dir`), or to the
console with `verbose`. Tests replace the launcher with one that records the calls (any object
with `launch(app, args, multirun)` and a `stage` attribute).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from lcgan_lightning.console import PipelineConsole
from lcgan_lightning.errors import UserError
from lcgan_lightning.layout import RunLayout
from lcgan_lightning.pipeline.args import quoted

log = logging.getLogger(__name__)
LOG = "stdout.log"  # a sub-process's output, in its run dir (a sweep: the sweep dir)
POLL_S = 0.5


class PipelineError(UserError, RuntimeError):
    """A stage failed; the message names the jobs and their errors."""

    hint = "each failed job's failed.json and log hold its error; run the same command again to resume"


class AppLauncher(Protocol):
    """What the stages call: run app `lcgan-<app>` with `args` (a Hydra multirun if `multirun`)."""

    stage: str | None

    def launch(self, app: str, args: Sequence[str], multirun: bool = False) -> None: ...


def log_path(args: Sequence[str], fallback: Path) -> Path:
    """`stdout.log` in the app's `hydra.run.dir` (a multirun: `hydra.sweep.dir`), else `fallback`."""
    for arg in args:
        key, _, value = arg.partition("=")
        if key in ("hydra.run.dir", "hydra.sweep.dir"):
            return Path(value.strip("'")) / LOG
    return fallback


class Launcher:
    """Runs `python -m lcgan_lightning.cli.<app>` in a sub-process while the console follows its jobs."""

    def __init__(self, layout: RunLayout, console: PipelineConsole, scale: str = "custom", verbose: bool = False,
                 python: str = sys.executable) -> None:
        self.layout, self.console, self.scale, self.verbose, self.python = layout, console, scale, verbose, python
        self.stage: str | None = None

    def command(self, app: str, args: Sequence[str], multirun: bool = False) -> list[str]:
        common = [f"hydra.searchpath=[{quoted('file://' + str(self.layout.conf_dir.resolve()))}]", "data=pipeline"]
        return [self.python, "-m", f"lcgan_lightning.cli.{app}", *(["-m"] if multirun else []), *common, *args]

    def launch(self, app: str, args: Sequence[str], multirun: bool = False) -> None:
        """Run one app; its output goes to its log file (to the console if `verbose`)."""
        cmd = self.command(app, args, multirun)
        out = log_path(args, self.layout.root / "logs" / f"{self.stage or 'pipeline'}.log")
        log.info("$ %s", " ".join(cmd))
        # all stages of one pipeline run share one W&B group; the scale is a W&B tag of every job
        env = {**os.environ, "WANDB_RUN_GROUP": os.environ.get("WANDB_RUN_GROUP", f"pipeline-{self.layout.root.name}"),
               "LCGAN_SCALE": self.scale}
        if self.verbose:
            returncode = self._wait(subprocess.Popen(cmd, env=env))
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
            with open(out, "a") as f:
                f.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} $ {' '.join(cmd)}\n")
                f.flush()
                env["PYTHONUNBUFFERED"] = "1"  # the log follows the job (tail -f)
                returncode = self._wait(subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT,
                                                         stdin=subprocess.DEVNULL))
        if returncode != 0:
            self.console.job_failed(f"{self.stage}: lcgan-{app}", out.parent, f"exited with {returncode}", out)
            raise PipelineError(f"lcgan_lightning.cli.{app} exited with {returncode}; its output: {out}")

    def _wait(self, proc: subprocess.Popen) -> int:
        """Wait for a sub-process while the console follows the stage's jobs."""
        while proc.poll() is None:
            self.console.poll()
            time.sleep(POLL_S)
        self.console.poll()
        return proc.returncode
