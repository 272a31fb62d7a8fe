"""Imported by the training subprocesses of tests/test_resume.py (PYTHONPATH=tests)."""

from __future__ import annotations

import time

import pytorch_lightning as pl


class Throttle(pl.Callback):
    """Sleeps after every training batch, so that a test can kill the run between two checkpoints."""

    def __init__(self, seconds: float = 0.2) -> None:
        self.seconds = float(seconds)

    def on_train_batch_end(self, *args, **kwargs) -> None:
        time.sleep(self.seconds)
