"""The jobs of a pipeline stage as the console follows them: through the files each job leaves.

A job is finished when `dir/done` is written and failed when `dir/failed` is, so any launcher
(local, Ray, SLURM) works: the console never talks to the processes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

STATES = ("waiting", "running", "skipped", "done", "failed")


@dataclass(frozen=True)
class Job:
    """One unit of a stage: finished when `dir/done` is written, failed when `dir/failed` is."""

    label: str  # e.g. "frac=0.1 aug=gan" ("" for a stage's only job)
    dir: Path  # its run dir; its output log is `dir/log` (`log` may be an absolute path)
    done: str = "train_result.json"
    failed: str | None = "failed.json"
    log: str = "stdout.log"
    skip: bool | None = None  # done before the stage starts (None: `done` exists)

    @property
    def finished(self) -> bool:
        """Needs no work: `skip` when given, else its `done` file exists."""
        return (self.dir / self.done).exists() if self.skip is None else self.skip


def mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


def clock(seconds: float) -> str:
    """1:05 or 1:02:05."""
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


@dataclass
class StageView:
    name: str
    state: str = "waiting"
    jobs: list[Job] = field(default_factory=list)
    status: dict[Job, str] = field(default_factory=dict)  # waiting | running | skipped | done | failed
    seen: dict[Job, tuple[float | None, float | None]] = field(default_factory=dict)  # mtimes at start
    started_at: dict[Job, float] = field(default_factory=dict)
    took: list[float] = field(default_factory=list)  # seconds of each job finished in this invocation
    t_start: float = 0.0
    t_end: float | None = None
    note: str = ""

    def count(self, *states: str) -> int:
        return sum(1 for s in self.status.values() if s in states)

    @property
    def elapsed(self) -> float:
        return (self.t_end or time.monotonic()) - self.t_start

    def eta(self) -> float | None:
        """Remaining time: the mean time of the jobs finished in this invocation × the jobs left
        (divided among the jobs running at once)."""
        left = self.count("waiting", "running")
        if not self.took or not left:
            return None
        return sum(self.took) / len(self.took) * left / max(1, len(self.running()))

    def running(self) -> list[Job]:
        return [j for j in self.jobs if self.status[j] == "running"]
