"""The segmenter's learning-rate schedules (`model.lr_schedule`), stepped once per optimiser step.

- ``constant``: no scheduler.
- ``cosine``: ``CosineAnnealingLR`` from ``lr`` to 0 over ``trainer.estimated_stepping_batches``
  (max_steps, else the epochs' batches), so a step budget ends on a settled model.
- ``poly`` (nnU-Net): lr · (1 − step / steps)^0.9 over the same number of steps, as a closed form
  (``LambdaLR``); nnU-Net steps it per epoch of 250 batches, here per batch: the same curve, smoother.
  The number of steps is read at the first step, not when the optimiser is made: counting them then
  would make Lightning load the training loader before a resumed checkpoint is restored, and the run
  would then not resume bit for bit (measured: ``cosine``, which counts them at once, resumes
  mid-epoch with different weights than an uninterrupted run; ``poly`` and ``constant`` with the same).
"""

from __future__ import annotations

from typing import Any

import torch

from lcgan_lightning.errors import ConfigError

LR_SCHEDULES = ("constant", "cosine", "poly")
POLY_POWER = 0.9


def poly_factor(step: int, steps: float, power: float = POLY_POWER) -> float:
    """(1 − step / steps)^power, 0 from `steps` on."""
    return max(0.0, 1.0 - step / max(float(steps), 1.0)) ** power


def lr_scheduler(opt: torch.optim.Optimizer, schedule: str, trainer: Any) -> torch.optim.lr_scheduler.LRScheduler:
    """The scheduler of `schedule` (cosine | poly; constant needs none) for `opt`; `trainer` gives the
    run's steps."""
    if getattr(trainer, "max_steps", -1) == -1 and getattr(trainer, "max_epochs", None) == -1:  # endless
        raise ConfigError(f"model.lr_schedule={schedule}: the run has no length to decay over",
                          hint="set trainer.max_steps or trainer.max_epochs")
    if schedule == "poly":
        # a plain function (not an object): LambdaLR stores nothing of it in the checkpoint
        return torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: 1.0 if step == 0 else poly_factor(step, trainer.estimated_stepping_batches))
    if schedule == "cosine":
        total = max(1, int(trainer.estimated_stepping_batches))
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    raise ConfigError(f"model.lr_schedule={schedule!r}: lr_schedule must be one of {LR_SCHEDULES}")
