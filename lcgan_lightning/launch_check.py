"""A Hydra callback that stops a multirun before it starts when its launcher cannot run the jobs.

Ray queues a task whose resources no node has (a GPU on a CPU-only machine, more CPUs than there
are) and waits for them forever; `LauncherPreflight` (registered in conf/hydra/default.yaml) turns
that into an immediate error naming the setting. Only a local Ray instance is checked
(`hydra.launcher.ray.init.address: null`); a remote cluster's resources are not visible from here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from hydra.experimental.callback import Callback

from lcgan_lightning.devices import NoGPUError, require_gpus


def check_launcher(launcher: Mapping[str, Any]) -> None:
    """Raise NoGPUError / ValueError when a local Ray launcher asks for resources this machine lacks."""
    if "ray" not in str(launcher.get("_target_", "")).lower():
        return
    ray = launcher.get("ray") or {}
    init, remote = ray.get("init") or {}, ray.get("remote") or {}
    if init.get("address"):
        return
    gpus = float(remote.get("num_gpus") or 0)
    if init.get("num_gpus") is not None and gpus > float(init["num_gpus"]):
        raise NoGPUError(f"hydra.launcher.ray.remote.num_gpus={gpus} per job but ray.init.num_gpus="
                         f"{init['num_gpus']}: no job could start")
    require_gpus(gpus, f"hydra/launcher=ray (hydra.launcher.ray.remote.num_gpus={gpus:g} per job)")
    cpus = float(remote.get("num_cpus") or 1)
    have = float(init.get("num_cpus") or os.cpu_count() or 1)
    if cpus > have:
        raise ValueError(f"hydra.launcher.ray.remote.num_cpus={cpus} per job but Ray has {have:g} CPUs here: "
                         "no job could start (lower num_cpus or raise ray.init.num_cpus)")


class LauncherPreflight(Callback):
    """Runs `check_launcher` on the launcher config when a multirun starts; a failure ends the process
    with exit status 1 and the message (Hydra turns exceptions of callbacks into warnings)."""

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        try:
            check_launcher(config.hydra.launcher)
        except (NoGPUError, ValueError) as err:
            raise SystemExit(f"error: {err}") from None


__all__ = ["LauncherPreflight", "check_launcher"]
