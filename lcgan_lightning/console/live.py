"""What a person sees of an `lcgan-pipeline` run while it runs: stages, jobs and failures.

Every configured stage is listed with its state (waiting / running / skipped / done / failed);
inside a stage with several jobs the job counter (`seg 5/12: frac=0.1 aug=gan`), the elapsed time
and, once one of its jobs has finished, an ETA. On a terminal this is a Rich live view; elsewhere
(CI, a log file, a captured test) one plain line per event. The sub-processes write to log files:
a job's progress is read from the files it leaves (`Job.done`, `Job.failed`), so any launcher works.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from rich.console import Console, Group
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from lcgan_lightning.console.jobs import Job, StageView, clock, mtime
from lcgan_lightning.console.summary import run_summary
from lcgan_lightning.quiet import tail

TAIL_LINES = 20
STYLE = {"waiting": "dim", "running": "bold cyan", "skipped": "dim", "done": "green", "failed": "bold red"}
ICON = {"waiting": "·", "skipped": "–", "done": "✓", "failed": "✗"}


class PipelineConsole:
    """Progress of a pipeline run on a Rich console: live on a terminal, plain lines elsewhere."""

    def __init__(self, stages: Sequence[str], file: IO[str] | None = None, live: bool | None = None) -> None:
        self.console = Console(file=file, highlight=False)
        if not self.console.is_terminal:  # log files: one event per line, never wrapped
            self.console.width = max(self.console.width, 120)
            self.console.soft_wrap = True
        self.live_view = self.console.is_terminal if live is None else live
        self.stages = {name: StageView(name) for name in stages}
        self.t0 = time.monotonic()
        self._live: Live | None = None
        self._reported: set[Path] = set()

    # ------------------------------------------------------------------ output
    def print(self, *objects: Any, **kwargs: Any) -> None:
        self.console.print(*objects, **kwargs)

    def line(self, text: str, style: str = "") -> None:
        """One event: `[elapsed] text` (printed in plain mode only; the live view shows it)."""
        if self._live is None:
            self.console.print(Text(f"[{clock(time.monotonic() - self.t0):>7}] ", style="dim") + Text(text, style))

    def error(self, message: str) -> None:
        self.console.print(Text(message, style="bold red"))

    @contextmanager
    def running(self, header: str) -> Iterator[PipelineConsole]:
        """The whole run: prints `header`, then the live view (on a terminal) until the block ends."""
        self.console.print(header)
        if self.live_view:
            self._live = Live(get_renderable=self.render, console=self.console, refresh_per_second=4,
                              transient=False)
            self._live.start()
        try:
            yield self
        finally:
            if self._live is not None:
                self._live.stop()
                self._live = None

    # ------------------------------------------------------------------ events
    def _stage(self, name: str) -> StageView:
        return self.stages.setdefault(name, StageView(name))

    def skip(self, name: str, why: str = "outputs exist") -> None:
        view = self._stage(name)
        view.state = "skipped"
        view.note = why
        self.line(f"{name}: skipped ({why})", STYLE["skipped"])

    def start(self, name: str, jobs: Sequence[Job] = ()) -> None:
        view = self._stage(name)
        view.state, view.t_start, view.jobs = "running", time.monotonic(), list(jobs)
        for job in view.jobs:
            done, failed = job.dir / job.done, job.dir / job.failed if job.failed else None
            view.seen[job] = (mtime(done), mtime(failed) if failed else None)
            skipped = done.exists() if job.skip is None else job.skip
            view.status[job] = "skipped" if skipped else "waiting"
        n, old = len(view.jobs), view.count("skipped")
        count = f" ({n} jobs" + (f", {old} already done" if old else "") + ")" if n > 1 else ""
        self.line(f"{name}: running{count}", STYLE["running"])

    def note(self, name: str, text: str) -> None:
        """A short result shown beside the stage (e.g. the judge's test DSC)."""
        self._stage(name).note = text

    def poll(self) -> None:
        """Read the jobs' files: newly started, finished or failed jobs of the running stages."""
        for view in self.stages.values():
            if view.state != "running":
                continue
            for job in view.jobs:
                if view.status[job] in ("skipped", "done", "failed"):
                    continue
                done0, failed0 = view.seen[job]
                if mtime(job.dir / job.done) not in (None, done0):
                    self._job_end(view, job, "done")
                elif job.failed and mtime(job.dir / job.failed) not in (None, failed0):
                    self._job_end(view, job, "failed")
                elif view.status[job] == "waiting" and self._has_started(view, job):
                    view.status[job] = "running"
                    view.started_at[job] = time.monotonic()

    def _has_started(self, view: StageView, job: Job) -> bool:
        # Hydra makes the run dir and `.hydra/` as a job starts; its log is appended to at start
        # (1 s of slack: file systems stamp times coarsely)
        since = (time.time() - (time.monotonic() - view.t_start) - 1.0) * 1e9
        return any((m or 0) >= since for m in (mtime(job.dir), mtime(job.dir / ".hydra"), mtime(job.dir / job.log)))

    def _job_end(self, view: StageView, job: Job, state: str) -> None:
        view.status[job] = state
        k = view.count("skipped", "done", "failed")
        took = time.monotonic() - view.started_at.get(job, view.t_start)
        view.took.append(took)
        head = f"{view.name} {k}/{len(view.jobs)}" + (f": {job.label}" if job.label else "")
        if state == "done":
            if len(view.jobs) > 1:
                eta = view.eta()
                self.line(f"{head} done in {clock(took)}" + (f" · ETA {clock(eta)}" if eta else ""))
            return
        error = ""
        if job.failed and (job.dir / job.failed).is_file():
            error = json.loads((job.dir / job.failed).read_text()).get("error", "")
        self.job_failed(head, job.dir, error, job.dir / job.log)

    def job_failed(self, head: str, run_dir: Path, error: str, log: Path) -> None:
        """A failed job: its error, the last lines of its log and the log's path (once per run dir)."""
        if run_dir in self._reported:
            return
        self._reported.add(run_dir)
        lines = tail(log, TAIL_LINES)
        if not lines and (run_dir / "failed.json").is_file():  # no log (verbose run): the traceback
            tb = json.loads((run_dir / "failed.json").read_text()).get("traceback", "")
            lines = tb.splitlines()[-TAIL_LINES:]
        self.console.print(Group(  # one print: the live view redraws once, below it
            Text(f"✗ {head} failed" + (f": {error}" if error else ""), style=STYLE["failed"]),
            *(Text("  │ " + text, style="dim") for text in lines),
            Text(f"  log: {log}" if log.is_file() else f"  (no log at {log})"),
        ))

    def finish(self, name: str, ok: bool) -> None:
        self.poll()
        view = self._stage(name)
        view.state, view.t_end = ("done" if ok else "failed"), time.monotonic()
        n = len(view.jobs)
        jobs = f", {n - view.count('failed')}/{n} jobs" if n > 1 else ""
        note = f" · {view.note}" if view.note else ""
        word = "done" if ok else "FAILED"
        self.line(f"{name}: {word} in {clock(view.elapsed)}{jobs}{note}", STYLE[view.state])

    # ------------------------------------------------------------------ live view
    def render(self) -> Table:
        """The live view: one row per stage."""
        grid = Table.grid(padding=(0, 1))
        grid.add_column(width=1)
        grid.add_column(min_width=10)
        grid.add_column()
        for view in self.stages.values():
            icon: Any = Spinner("dots", style="cyan") if view.state == "running" else Text(ICON[view.state])
            grid.add_row(icon, Text(view.name, style=STYLE[view.state]), self._detail(view))
        grid.add_row("", Text("elapsed", style="dim"), Text(clock(time.monotonic() - self.t0), style="dim"))
        return grid

    def _detail(self, view: StageView) -> Text:
        n = len(view.jobs)
        if view.state == "waiting":
            return Text("waiting", style="dim")
        if view.state == "skipped":
            return Text(f"skipped ({view.note})", style="dim")
        parts = []
        if view.state == "running":
            if n > 1:
                k = min(view.count("skipped", "done", "failed") + 1, n)
                current = view.running() or [j for j in view.jobs if view.status[j] == "waiting"]
                label = current[0].label if current else ""
                parts.append(f"{k}/{n}" + (f": {label}" if label else ""))
                if len(view.running()) > 1:
                    parts.append(f"{len(view.running())} running")
            parts.append(clock(view.elapsed))
            eta = view.eta()
            if eta:
                parts.append(f"ETA {clock(eta)}")
        else:
            parts.append(("done" if view.state == "done" else "FAILED") + f" in {clock(view.elapsed)}")
            if n > 1:
                parts.append(f"{n - view.count('failed')}/{n} jobs")
            if view.note:
                parts.append(view.note)
        failed = view.count("failed")
        text = Text(" · ".join(parts))
        if failed and view.state == "running":
            text.append(f" · {failed} failed", style="red")
        return text

    # ------------------------------------------------------------------ end summary
    def summary(self, results: dict[str, Any] | None, state: dict[str, Any], report: Path) -> None:
        """Table 1 rows with CIs and verdicts, the selected generator per subset, wall time per stage."""
        self.console.print(run_summary(results, state))
        self.console.print(f"Report: {report}")
