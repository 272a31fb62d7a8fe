"""Errors for people: every command-line app wraps its Hydra task function with `report_errors`.

A known error (any `UserError`: dataset defect, config value, missing or unreadable checkpoint,
missing weights file, stale synthetic set, failed pipeline stage; or a file the OS did not find)
prints two lines on stderr and exits 1:

    error: <file>: <defect>
    hint: <what to do>

Anything else, and every error when ``HYDRA_FULL_ERROR=1`` is set, keeps Hydra's traceback. In a
multirun (`-m`) the two lines are printed and the error is raised on, so that Hydra runs the other jobs
of the sweep as before and reports the failure at the end.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lcgan_lightning.errors import UserError

EXIT_CODE = 1
DEFECTS_FILE = "defects.json"


def known_error(err: BaseException) -> UserError | FileNotFoundError | None:
    """The user-fixable error behind `err` (Hydra's instantiate wraps it), or None."""
    seen: set[int] = set()
    cur: BaseException | None = err
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, UserError):
            return cur
        if isinstance(cur, FileNotFoundError) and cur.filename:  # raised by the OS: names its file
            return cur
        cur = cur.__cause__ or cur.__context__
    return None


def one_line(text: str) -> str:
    """`text` with every run of whitespace (newlines included) as one space."""
    return " ".join(str(text).split())


def describe(err: UserError | FileNotFoundError) -> tuple[str, str]:
    """(error line, hint line) of a known error, without the `error: ` / `hint: ` prefixes."""
    if isinstance(err, UserError):
        hint = one_line(err.hint)
        message = one_line(str(err))
        if hint and message.endswith(hint):  # some messages carry their hint already
            message = message[: -len(hint)].rstrip(" ;.") + "."
        return message, hint
    return one_line(f"{err.filename}: {err.strerror or 'not found'}"), "check the path (relative paths start at the current directory)"


def _write_defects(err: BaseException, run_dir: str | Path | None) -> Path | None:
    defects = getattr(err, "defects", None)
    if not defects or run_dir is None:
        return None
    path = Path(run_dir) / DEFECTS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(defects, indent=2))
    tmp.replace(path)
    return path


def _hydra_run() -> tuple[str | None, bool]:
    """(this job's run dir, whether it is one job of a multirun); (None, False) outside a Hydra app."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
        return hc.runtime.output_dir, hc.mode == RunMode.MULTIRUN
    except Exception:  # noqa: BLE001 - called outside a Hydra app (tests)
        return None, False


def print_error(err: UserError | FileNotFoundError, run_dir: str | Path | None = None, file: Any = None) -> None:
    """Write the two lines of a known error (and, for a list of defects, defects.json in `run_dir`)."""
    file = file or sys.stderr
    message, hint = describe(err)
    listed = _write_defects(err, run_dir)
    if listed is not None:  # err has a non-empty `defects` list (a DatasetError's)
        hint = f"all {len(getattr(err, 'defects', []))} defects are listed in {listed}; {hint}"
    print(f"error: {message}", file=file)
    print(f"hint: {hint}", file=file, flush=True)


def report_errors(task: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator for a Hydra task function (put it under ``@hydra.main``): known errors -> two lines, exit 1."""

    @functools.wraps(task)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return task(*args, **kwargs)
        except Exception as err:
            known = known_error(err)
            if known is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            run_dir, multirun = _hydra_run()
            print_error(known, run_dir)
            if multirun:
                raise
            sys.exit(EXIT_CODE)

    return wrapper
