"""Keep the console for what matters: named filters for library noise, a job's output in its log file.

`quiet_library_noise()` drops the messages in `NOISE` where they are raised (a `logging.Filter` on
the logger that emits them, or a `warnings` filter), each by name and exact text; every other
warning stays visible. `capture_output(path)` sends a job's stdout and stderr (Python and C level)
to a log file, as the pipeline asks of its training jobs (`stdout_log=true`).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

# rank_zero_info() of Lightning logs through one of these (whichever package was imported last)
LIGHTNING_LOGGERS = (
    "pytorch_lightning.utilities.rank_zero",
    "lightning_fabric.utilities.rank_zero",
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
)


@dataclass(frozen=True)
class Noise:
    """One message that does not concern a user of this project: dropped where it is raised."""

    name: str
    text: str  # the start of the message
    why: str
    loggers: tuple[str, ...] = ()  # a log record of these loggers ...
    category: type[Warning] | None = None  # ... or a warning of this category


NOISE: tuple[Noise, ...] = (
    Noise("lightning-tip-litlogger", "💡 Tip: For seamless cloud logging",
          "advertises the LitLogger package at every Trainer", loggers=LIGHTNING_LOGGERS),
    Noise("lightning-tip-litmodels", "💡 Tip: For seamless cloud uploads",
          "advertises the litmodels package at every fit", loggers=LIGHTNING_LOGGERS),
    Noise("configure-callbacks-override",
          "The following callbacks returned in `LightningModule.configure_callbacks` will override",
          "by design: each model's own ModelCheckpoint replaces the default one", loggers=LIGHTNING_LOGGERS),
    Noise("pytree-leafspec-deprecation", "`isinstance(treespec, LeafSpec)` is deprecated",
          "raised inside Lightning's own utilities/_pytree.py by torch >= 2.10; nothing to change here",
          category=FutureWarning),
)


class DropNoise(logging.Filter):
    """Drop the log records whose message starts with one of the texts of `noise`."""

    def __init__(self, noise: tuple[Noise, ...]) -> None:
        super().__init__(name="lcgan_lightning.quiet")
        self.noise = noise

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(message.startswith(n.text) for n in self.noise)


def quiet_library_noise(noise: tuple[Noise, ...] = NOISE) -> None:
    """Install the filters of `noise` in this process (idempotent)."""
    for name in {lg for n in noise for lg in n.loggers}:
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropNoise) for f in logger.filters):
            logger.addFilter(DropNoise(tuple(n for n in noise if name in n.loggers)))
    for n in noise:
        if n.category is not None:
            # the message argument of filterwarnings is a regex matched at the start
            warnings.filterwarnings("ignore", message=re.escape(n.text), category=n.category)


def console_log_level(level: int) -> None:
    """Set the level of the root logger's console handlers (its file handlers keep everything)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            handler.setLevel(level)


@contextmanager
def capture_output(path: Path | None) -> Iterator[bool]:
    """Append this process's stdout and stderr (file descriptors 1 and 2) to `path` inside the block.

    `None` captures nothing (yields False). C-level writes are captured too; the console's
    descriptors are restored afterwards, so the next job of a multirun gets its own file.
    """
    if path is None:
        yield False
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    streams = sys.stdout, sys.stderr
    with open(path, "ab") as out:
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
    # Python-level writes too, for when sys.stdout is not file descriptor 1 (pytest, notebooks)
    text = open(path, "a", buffering=1, encoding="utf-8", errors="replace")  # noqa: SIM115
    sys.stdout = sys.stderr = text
    try:
        yield True
    finally:
        text.flush()
        sys.stdout, sys.stderr = streams
        text.close()
        for fd, copy in zip((1, 2), saved, strict=True):
            os.dup2(copy, fd)
            os.close(copy)


def tail(path: Path, n: int = 20) -> list[str]:
    """The last `n` lines of a text file (without the line ends); [] when it does not exist."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - 64 * 1024))  # the end suffices for 20 lines
        lines = f.read().decode("utf-8", errors="replace").splitlines()
    return lines[-n:]
