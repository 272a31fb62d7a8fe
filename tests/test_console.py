"""The pipeline's console (plain lines, live view, failure tails) and the library-noise filters."""

from __future__ import annotations

import io
import json
import logging
import os
import warnings
from pathlib import Path

from omegaconf import OmegaConf
from rich.console import Console

from lcgan_lightning.console import Job, PipelineConsole
from lcgan_lightning.quiet import NOISE, capture_output, quiet_library_noise, tail


def _console(live: bool = False) -> tuple[PipelineConsole, io.StringIO]:
    out = io.StringIO()
    return PipelineConsole(["data", "seg", "report"], file=out, live=live), out


def test_plain_lines_one_per_event(tmp_path: Path) -> None:
    con, out = _console()
    jobs = [Job(f"frac=0.1 aug={a}", tmp_path / a) for a in ("none", "gan", "both")]
    (tmp_path / "none").mkdir()
    (tmp_path / "none" / "train_result.json").write_text("{}")  # done before: skipped, no line
    con.skip("data")
    con.start("seg", jobs)
    (tmp_path / "gan").mkdir()
    con.poll()
    assert con.stages["seg"].status[jobs[1]] == "running"
    (tmp_path / "gan" / "train_result.json").write_text("{}")
    con.poll()
    (tmp_path / "both").mkdir()
    (tmp_path / "both" / "failed.json").write_text(json.dumps({"error": "RuntimeError: boom"}))
    (tmp_path / "both" / "stdout.log").write_text("".join(f"line {i}\n" for i in range(30)))
    con.finish("seg", ok=False)
    lines = out.getvalue().splitlines()
    assert [line.split("] ", 1)[1] for line in lines if line.startswith("[")] == [
        "data: skipped (outputs exist)",
        "seg: running (3 jobs, 1 already done)",
        "seg 2/3: frac=0.1 aug=gan done in 0:00 · ETA 0:00",
        "seg: FAILED in 0:00, 2/3 jobs",
    ]
    text = out.getvalue()
    assert "✗ seg 3/3: frac=0.1 aug=both failed: RuntimeError: boom" in text
    assert "│ line 10" in text and "│ line 29" in text and "│ line 9\n" not in text  # the last 20 lines
    assert f"log: {tmp_path / 'both' / 'stdout.log'}" in text


def test_live_view_shows_states_counter_and_eta(tmp_path: Path) -> None:
    con, _ = _console(live=True)
    jobs = [Job(f"frac={f}", tmp_path / str(f)) for f in (0.1, 0.25)]
    con.skip("data")
    con.start("seg", jobs)
    (tmp_path / "0.1").mkdir()
    (tmp_path / "0.1" / "train_result.json").write_text("{}")
    (tmp_path / "0.25").mkdir()
    con.poll()
    screen = Console(file=io.StringIO(), width=100, force_terminal=False)
    screen.print(con.render())
    view = screen.file.getvalue()
    assert "skipped (outputs exist)" in view
    assert "2/2: frac=0.25" in view and "ETA" in view
    assert "waiting" in view.splitlines()[2]  # report


def test_noise_filtered_where_raised_and_other_warnings_kept(caplog) -> None:
    quiet_library_noise()
    logger = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    with caplog.at_level(logging.INFO, logger="pytorch_lightning.utilities.rank_zero"):
        for n in NOISE:
            if n.loggers:
                logger.info(n.text + " and the rest")
        logger.info("GPU available: False, used: False")
    assert [r.getMessage() for r in caplog.records] == ["GPU available: False, used: False"]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet_library_noise()  # catch_warnings reset the filters
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use ...", FutureWarning, stacklevel=1)
        warnings.warn("something that matters", FutureWarning, stacklevel=1)
    assert [str(w.message) for w in seen] == ["something that matters"]


def test_capture_output_takes_python_and_c_level_writes(tmp_path: Path, capfd) -> None:
    log = tmp_path / "job" / "stdout.log"
    with capture_output(log) as on:
        print("from python")
        os.write(2, b"from C\n")
    print("back on the console")
    assert on and tail(log) == ["from python", "from C"]
    assert "back on the console" in capfd.readouterr().out


def test_failed_training_job_log_ends_with_its_traceback(tmp_path: Path) -> None:
    from lcgan_lightning.training import run_job

    cfg = OmegaConf.create({"paths": {"output_dir": str(tmp_path)}, "seed": 0, "catch_errors": True,
                            "stdout_log": True, "data": {"_target_": "no.such.DataModule"}})
    assert run_job(cfg) is None
    assert json.loads((tmp_path / "failed.json").read_text())["error"].startswith("InstantiationException")
    log = (tmp_path / "stdout.log").read_text()
    assert "Traceback (most recent call last):" in log
    assert "InstantiationException: Error locating target 'no.such.DataModule'" in "\n".join(tail(tmp_path / "stdout.log"))


def test_pipeline_passes_quiet_settings_unless_verbose(tmp_path: Path) -> None:
    from lcgan_lightning.pipeline.args import HydraArgs
    from lcgan_lightning.pipeline.launcher import log_path

    cfg = OmegaConf.create({"job_trainer": "cpu", "job_logger": "csv", "stages": ["seg"]})
    quiet = HydraArgs(cfg).training(OmegaConf.create({"overrides": ["a=1"]}))
    assert {"stdout_log=true", "++trainer.enable_progress_bar=false", "++trainer.enable_model_summary=false"} <= set(quiet)
    assert quiet[-1] == "a=1"  # a stage's own overrides still win
    cfg.verbose = True
    loud = HydraArgs(cfg).training(OmegaConf.create({}))
    assert not [a for a in loud if "enable_" in a or "stdout_log" in a]
    assert log_path(["x=1", f"hydra.sweep.dir='{tmp_path}/seg'"], tmp_path / "x.log") == tmp_path / "seg" / "stdout.log"
    assert log_path(["x=1"], tmp_path / "x.log") == tmp_path / "x.log"
