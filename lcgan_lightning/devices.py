"""Which accelerator a trainer config asks for, and a clear error when the GPU it needs is not there.

Used before any work starts: by `lcgan-pipeline` (its `trainer=` config), by the Ray launcher check
(`LauncherPreflight`, a Hydra callback) and by `make gpu-check`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch

from lcgan_lightning.errors import UserError

GPU_ACCELERATORS = ("gpu", "cuda")


class NoGPUError(UserError, RuntimeError):
    """A configuration asks for a GPU (or more GPUs) than this machine shows."""

    hint = "run on a machine with the GPUs, or pick a CPU trainer (trainer=cpu)"


def visible_gpus() -> int:
    """CUDA devices torch can use here (0 on a CPU-only build or machine)."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def why_no_gpu() -> str:
    if torch.version.cuda is None:
        return f"this torch build ({torch.__version__}) has no CUDA support"
    cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
    if cvd is not None:
        return f"no CUDA device is visible (CUDA_VISIBLE_DEVICES={cvd!r})"
    return "no CUDA device is visible (driver missing or no GPU on this machine)"


def requested_gpus(trainer_cfg: Mapping[str, Any]) -> int:
    """GPUs a trainer config needs on this machine: 0 (CPU or auto), else its device count (-1 = all, at least 1)."""
    if str(trainer_cfg.get("accelerator", "auto")).lower() not in GPU_ACCELERATORS:
        return 0
    devices = trainer_cfg.get("devices", 1)
    if isinstance(devices, int):
        return 1 if devices in (-1, 0) else devices
    if isinstance(devices, str):
        text = devices.strip()
        if text in ("auto", "-1"):
            return 1
        if text.isdigit():
            return int(text)
        return len([d for d in text.split(",") if d.strip()])
    return len(list(devices))  # a list of device ids


def require_gpus(n: int | float, what: str) -> None:
    """Raise NoGPUError naming `what` when fewer than `n` GPUs (fractions count as one) are visible."""
    if n <= 0:
        return
    need = max(1, int(-(-n // 1)))
    have = visible_gpus()
    if have >= need:
        return
    reason = why_no_gpu() if have == 0 else f"only {have} CUDA device(s) are visible"
    raise NoGPUError(f"{what} asks for {n:g} GPU(s), but {reason}. Run it on a GPU machine, or use a CPU setting "
                     "(trainer=cpu; for Ray hydra.launcher.ray.remote.num_gpus=0).")


def uses_cuda(trainer_cfg: Mapping[str, Any]) -> bool:
    """Whether a trainer config will run on CUDA here (gpu/cuda, or auto with a GPU visible)."""
    acc = str(trainer_cfg.get("accelerator", "auto")).lower()
    return acc in GPU_ACCELERATORS or (acc == "auto" and visible_gpus() > 0)


__all__ = ["NoGPUError", "require_gpus", "requested_gpus", "uses_cuda", "visible_gpus", "why_no_gpu"]
