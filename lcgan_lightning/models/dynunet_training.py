"""What the Segmenter needs to train `model.arch=dynunet`: the plan at fit start, plan.json, the
deep-supervision loss.

The plan is computed in the module's ``setup("fit")`` (after the datamodule's setup, before a resumed
checkpoint is restored and before the optimiser exists) from what the model will see: the patch size
and the class pixel frequencies of the training slices of the trainer's datamodule (``train_slices``:
the originals of the fraction, without augmented or synthetic extras), its in-plane spacing when it
carries one (``spacing``; the project's slices are resampled to ``data.image_size`` and carry none, so
isotropic 1.0), each unless ``model.planner`` sets it. The plan is stored in the hyper-parameters
(``model.plan``), hence in every checkpoint: ``load_segmenter`` / ``lcgan-eval`` rebuild the same
network from the file, and a resumed run whose data would plan differently keeps the checkpoint's plan.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lcgan_lightning.atomic_io import write_json_atomic
from lcgan_lightning.constants import CLASS_NAMES
from lcgan_lightning.errors import ConfigError
from lcgan_lightning.models.dynunet import DynUNetSeg
from lcgan_lightning.models.dynunet_plan import (
    PLAN_FILE,
    DynUNetPlan,
    check_planner,
    class_frequencies,
    plan_dynunet,
    plan_lines,
)

log = logging.getLogger(__name__)


class UnplannedNet(nn.Module):
    """Stands in for the DynUNet until ``setup("fit")`` has planned it from the training data."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise ConfigError(
            "model.plan: the DynUNet is planned from the training data when fitting starts and this "
            "module has no plan yet",
            hint="fit it (lcgan-train model=dynunet), load a trained checkpoint (load_segmenter), or pass "
                 "model.plan (a run's plan.json) or model.planner.patch_size")


def build_dynunet(plan: Mapping[str, Any], num_classes: int, in_channels: int, dropout: float) -> DynUNetSeg:
    """The network of a stored plan (`DynUNetPlan.as_dict()`)."""
    p = DynUNetPlan.from_dict(plan)
    return DynUNetSeg(p.kernels, p.strides, p.filters, num_classes=num_classes, in_channels=in_channels,
                      deep_supervision=len(p.deep_supervision_weights), dropout=dropout)


def plan_for_fit(trainer: Any, width: float, planner: Mapping[str, Any] | None) -> DynUNetPlan:
    """The plan for the data `trainer` fits on (module docstring); `planner` keys win over the data."""
    kwargs = check_planner(planner)
    dm = getattr(trainer, "datamodule", None)
    slices = getattr(dm, "train_slices", None)
    freqs = None
    if slices is not None:
        freqs = class_frequencies(slices.masks)
        kwargs.setdefault("patch_size", [int(s) for s in slices.masks.shape[-2:]])
    spacing = getattr(dm, "spacing", None)
    if spacing is not None:
        kwargs.setdefault("spacing", [float(s) for s in spacing])
    if "patch_size" not in kwargs:
        raise ConfigError("model.planner.patch_size: not set and the trainer has no datamodule with "
                          "train_slices to plan the DynUNet from",
                          hint="train through lcgan-train (the project's datamodule) or set model.planner.patch_size")
    return plan_dynunet(class_freqs=freqs, width=width, **kwargs)


def publish_plan(stored: Mapping[str, Any], run_dir: Path, write: bool = True) -> None:
    """Log a stored plan as a table and (rank zero: `write`) write it to <run dir>/plan.json atomically."""
    plan = DynUNetPlan.from_dict(stored)
    log.info("DynUNet plan (nnU-Net rules, models/dynunet_plan.py):\n  %s", "\n  ".join(plan_lines(plan)))
    absent = [name for name, f in zip(CLASS_NAMES, plan.class_frequencies, strict=False) if f == 0.0]
    if any(plan.class_frequencies) and absent:
        log.warning("DynUNet plan: classes without a training pixel: %s", ", ".join(absent))
    if write:
        write_json_atomic(Path(run_dir) / PLAN_FILE, plan.as_dict())


def deep_supervision_loss(
    outputs: Sequence[torch.Tensor], masks: torch.Tensor, weights: Sequence[float],
    loss: Any,
) -> torch.Tensor:
    """sum_i weights[i] · loss(outputs[i], masks at outputs[i]'s size, nearest). Every output enters the
    graph (a weight-0 head gets zero gradients, so DDP sees every parameter used)."""
    if len(outputs) != len(weights):
        raise ValueError(f"{len(outputs)} deep-supervision outputs but {len(weights)} weights")
    total = outputs[0].new_zeros(())
    for out, weight in zip(outputs, weights, strict=True):
        target = masks
        if tuple(out.shape[-2:]) != tuple(masks.shape[-2:]):
            target = F.interpolate(masks[:, None].float(), size=out.shape[-2:], mode="nearest")[:, 0].long()
        total = total + float(weight) * loss(out, target)
    return total
