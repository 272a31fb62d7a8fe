"""Hydra/OmegaConf helpers shared by every command-line app."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf


def _wandb_group() -> str | None:
    """W&B group of the current job: the sweep folder's name in a multirun, else None.

    `WANDB_RUN_GROUP` (set e.g. by the pipeline) takes precedence so that all stages of one
    experiment share a group.
    """
    import os

    if os.environ.get("WANDB_RUN_GROUP"):
        return os.environ["WANDB_RUN_GROUP"]
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
    except Exception:  # not inside a Hydra app
        return None
    if hc.mode == RunMode.MULTIRUN:
        return Path(hc.sweep.dir).name
    return None


def register_resolvers() -> None:
    """Register the custom `${...:}` resolvers our configs use (idempotent)."""
    if not OmegaConf.has_resolver("wandb_group"):
        OmegaConf.register_new_resolver("wandb_group", _wandb_group)


def to_plain(cfg: DictConfig | Any) -> Any:
    """Resolved plain-Python copy of a config (for JSON, hparams and checkpoints)."""
    if isinstance(cfg, (DictConfig, ListConfig)):
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    return cfg


register_resolvers()
