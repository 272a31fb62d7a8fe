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


def _subset(data: Any) -> str:
    patients = data.get("subset_patients") if data is not None else None
    if patients is not None:
        return f"patients={patients}"
    return f"frac={data.get('fraction', 1.0) if data is not None else 1.0}"


# the generator LightningModules by class name -> their model config name (W&B names and tags)
GENERATOR_MODELS = {"LcGAN": "lcgan", "SpadeGAN": "spade", "MaskDiffusion": "diffusion"}


def _model_name(model: Any) -> str:
    target = str(model.get("_target_", "")) if model is not None else ""
    if target.rsplit(".", 1)[-1] in GENERATOR_MODELS:
        return GENERATOR_MODELS[target.rsplit(".", 1)[-1]]
    return str(model.get("arch", target.rsplit(".", 1)[-1] or "model")) if model is not None else "model"


def run_name(root: Any) -> str:
    """W&B name of a training job: what it is, e.g. 'seg fcn8s frac=0.1 aug=gan seed=2',
    'lcgan frac=0.025 seed=42', 'judge' (the judge segmenter of a pipeline)."""
    task = str(root.get("task_name", "train"))
    if task == "judge":
        return "judge"
    data, model, seed = root.get("data"), root.get("model"), root.get("seed")
    name = _model_name(model)
    if name in GENERATOR_MODELS.values():
        return f"{name} {_subset(data)} seed={seed}"
    augment = data.get("augment", "none") if data is not None else "none"
    return f"{'seg' if task in ('seg', 'train') else task} {name} {_subset(data)} aug={augment} seed={seed}"


def run_tags(root: Any) -> list[str]:
    """W&B tags of a training job: scale (set by the pipeline), subset, variant, model, task."""
    import os

    data = root.get("data")
    tags = [_subset(data), f"model={_model_name(root.get('model'))}", f"task={root.get('task_name', 'train')}"]
    if data is not None:
        tags.insert(1, f"aug={data.get('augment', 'none')}")
    if os.environ.get("LCGAN_SCALE"):
        tags.insert(0, f"scale={os.environ['LCGAN_SCALE']}")
    return tags


def flatten(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """{"data.fraction": 0.1, ...}: nested mappings as dotted keys (lists kept as values)."""
    out: dict[str, Any] = {}
    for key, value in dict(cfg).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def register_resolvers() -> None:
    """Register the custom `${...:}` resolvers our configs use (idempotent)."""
    if not OmegaConf.has_resolver("wandb_group"):
        OmegaConf.register_new_resolver("wandb_group", _wandb_group)
    if not OmegaConf.has_resolver("wandb_name"):
        OmegaConf.register_new_resolver("wandb_name", lambda *, _root_: run_name(_root_))
    if not OmegaConf.has_resolver("wandb_tags"):
        OmegaConf.register_new_resolver("wandb_tags", lambda *, _root_: run_tags(_root_))


def to_plain(cfg: DictConfig | Any) -> Any:
    """Resolved plain-Python copy of a config (for JSON, hparams and checkpoints)."""
    if isinstance(cfg, (DictConfig, ListConfig)):
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    return cfg


register_resolvers()
