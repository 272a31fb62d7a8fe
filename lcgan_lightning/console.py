"""What a person sees of an `lcgan-pipeline` run: stages, jobs, failures and the end summary.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from lcgan_lightning.quiet import tail
from lcgan_lightning.report import VARIANT_LABELS, subset_title

TAIL_LINES = 20
STATES = ("waiting", "running", "skipped", "done", "failed")
STYLE = {"waiting": "dim", "running": "bold cyan", "skipped": "dim", "done": "green", "failed": "bold red"}
ICON = {"waiting": "·", "skipped": "–", "done": "✓", "failed": "✗"}


@dataclass(frozen=True)
class Job:
    """One unit of a stage: finished when `dir/done` is written, failed when `dir/failed` is."""

    label: str  # e.g. "frac=0.1 aug=gan" ("" for a stage's only job)
    dir: Path  # its run dir; its output log is `dir/log` (`log` may be an absolute path)
    done: str = "train_result.json"
    failed: str | None = "failed.json"
    log: str = "stdout.log"
    skip: bool | None = None  # done before the stage starts (None: `done` exists)


def _mtime(path: Path) -> float | None:
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
            view.seen[job] = (_mtime(done), _mtime(failed) if failed else None)
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
                if _mtime(job.dir / job.done) not in (None, done0):
                    self._job_end(view, job, "done")
                elif job.failed and _mtime(job.dir / job.failed) not in (None, failed0):
                    self._job_end(view, job, "failed")
                elif view.status[job] == "waiting" and self._has_started(view, job):
                    view.status[job] = "running"
                    view.started_at[job] = time.monotonic()

    def _has_started(self, view: StageView, job: Job) -> bool:
        # Hydra makes the run dir and `.hydra/` as a job starts; its log is appended to at start
        # (1 s of slack: file systems stamp times coarsely)
        since = (time.time() - (time.monotonic() - view.t_start) - 1.0) * 1e9
        return any((m or 0) >= since for m in (_mtime(job.dir), _mtime(job.dir / ".hydra"), _mtime(job.dir / job.log)))

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
        parts: list[Any] = []
        if results:
            parts += ["", _table1(results), "", _selected(results)]
        parts += ["", _walls(state)]
        self.console.print(Group(*parts))
        self.console.print(f"Report: {report}")


def _table1(results: dict[str, Any]) -> Table:
    repeats = int(results.get("repeats", 1))
    level = results.get("statistics", {}).get("level", 0.95)
    table = Table(title=f"Table 1 — test DSC, mean over {repeats} repeat(s); Δ vs original, "
                        f"{level:.0%} bootstrap CI over test patients",
                  box=box.SIMPLE_HEAD, show_edge=False, title_justify="left", pad_edge=False)
    for col, justify in (("subset", "left"), ("training data", "left"), ("DSC", "right"),
                         ("Δ DSC [CI]", "right"), ("verdict", "left")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for fkey, block in results["fractions"].items():
        title = subset_title(fkey, block)
        for key, label in VARIANT_LABELS.items():
            if key not in block:
                continue
            vs = block[key].get("vs_original", {}).get("dsc") or {}
            ci = vs.get("ci") or [None, None]
            change = (f"{vs['diff']:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}]"
                      if vs.get("diff") is not None and None not in ci else "")
            dsc = block[key].get("dsc")
            verdict = vs.get("verdict", "")
            style = {"better": "green", "worse": "red"}.get(verdict, "")
            table.add_row(title, label, "—" if dsc is None else f"{dsc:.3f}", change, Text(verdict, style=style))
            title = ""
    full = results.get("full", {}).get("dsc")
    if full is not None:
        table.add_row("100 %", "entire dataset (judge)", f"{full:.3f}", "", "")
    return table


def _selected(results: dict[str, Any]) -> Table:
    table = Table(title="Selected generator per subset (first repeat)", box=box.SIMPLE_HEAD, show_edge=False,
                  title_justify="left", pad_edge=False)
    for col in ("subset", "epochs", "FCN score", "SSIM", "fooled"):
        table.add_column(col, justify="left" if col == "subset" else "right")
    for fkey, block in results["fractions"].items():
        sel = block.get("selected") or {}
        cells = [f"{sel[k]:.3f}" if isinstance(sel.get(k), float) else "—" for k in ("fcn_score", "ssim", "fooled")]
        table.add_row(subset_title(fkey, block), str(sel.get("epochs", "—")), *cells)
    return table


def _walls(state: dict[str, Any]) -> Table:
    stages = state.get("stages", {})
    last = state.get("last_invocation", {})
    table = Table(title="Wall time per stage (s; the run that did the work)", box=box.SIMPLE_HEAD, show_edge=False,
                  title_justify="left", pad_edge=False)
    for name in stages:
        table.add_column(name + (" (skipped)" if last.get(name) == "skipped" else ""), justify="right")
    table.add_column("total", justify="right")
    walls = [float(v.get("wall_s", 0.0)) for v in stages.values()]
    table.add_row(*[f"{w:.0f}" for w in walls], clock(sum(walls)))
    return table
