"""What a pipeline run remembers between invocations (`pipeline_state.json`) and the failures of one."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lcgan_lightning.console import Job, PipelineConsole
from lcgan_lightning.layout import FAILED


@dataclass
class RunState:
    """`pipeline_state.json`: `stages` keeps each stage's status and the wall time of the invocation
    that did the work; `last_invocation` says what the latest invocation did (ran / skipped / failed)."""

    path: Path

    def load(self) -> dict[str, Any]:
        return json.loads(self.path.read_text()) if self.path.exists() else {}

    def new_invocation(self) -> None:
        if self.path.exists():
            state = self.load()
            state["last_invocation"] = {}
            self.path.write_text(json.dumps(state, indent=2))

    def record(self, stage: str, status: str, wall_s: float) -> None:
        state = self.load()
        stages = state.setdefault("stages", {})
        if not (status == "skipped" and stage in stages):
            stages[stage] = {"status": status, "wall_s": round(wall_s, 1)}
        state.setdefault("last_invocation", {})[stage] = status
        self.path.write_text(json.dumps(state, indent=2))


@dataclass
class Failures:
    """The unfinished jobs of the stages, by name, with the error each job's `failed.json` holds."""

    run_dir: Path
    console: PipelineConsole
    messages: list[str] = field(default_factory=list)

    def collect(self, stage: str, jobs: Sequence[Job]) -> list[Job]:
        """Jobs that did not finish; each is recorded (`<stage>: <dir>: <error>`) and shown once."""
        unfinished = [job for job in jobs if not job.finished]
        for job in unfinished:
            failed = job.dir / (job.failed or FAILED)
            reason = json.loads(failed.read_text())["error"] if failed.is_file() else "no result"
            name = job.dir.relative_to(self.run_dir) if job.dir.is_relative_to(self.run_dir) else job.dir
            self.messages.append(f"{stage}: {name}: {reason}")
            log = Path(job.log) if Path(job.log).is_absolute() else job.dir / job.log
            self.console.job_failed(f"{stage}: {name}", job.dir, reason, log)
        return unfinished
