"""Checks that stop a pipeline run before any work when its configuration cannot run."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from lcgan_lightning.devices import NoGPUError, requested_gpus, require_gpus
from lcgan_lightning.generator_families import (
    FAMILIES,
    PAPER_FAMILY,
    family_overrides,
    foreign_model_keys,
    gan_model,
)
from lcgan_lightning.pipeline.launcher import PipelineError
from lcgan_lightning.variants import UnknownVariantError, variant


def trainer_config(name: str) -> DictConfig:
    """The composed `trainer=<name>` config of lcgan-train (conf/trainer/<name>.yaml and its defaults)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from lcgan_lightning.paths import CONF_DIR

    overrides = [f"trainer={name}"]
    if GlobalHydra.instance().is_initialized():  # inside lcgan-pipeline's own Hydra app (same conf dir)
        return compose(config_name="train", overrides=overrides).trainer
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=overrides).trainer


def preflight(cfg: DictConfig) -> None:
    """Stop before any work on a missing weights file, an unknown variant, budget or generator family, absent GPUs."""
    model, vgg = cfg.seg.model, cfg.seg.get("pretrained_vgg16")
    if model == "fcn8s_paper" and not vgg:
        raise PipelineError(
            "seg.model=fcn8s_paper fine-tunes ImageNet VGG-16 (paper §4.1) but seg.pretrained_vgg16 is not set: "
            "set seg.pretrained_vgg16=/path/to/vgg16-397923af.pth (torchvision's VGG-16 state dict, a local "
            "file; nothing is downloaded), or train from scratch with seg.model=fcn8s"
        )
    if vgg and not Path(vgg).is_file():
        raise PipelineError(f"seg.pretrained_vgg16={vgg}: no such file (torchvision's vgg16-397923af.pth)")
    for name in cfg.get("augments") or []:
        try:
            variant(name)
        except UnknownVariantError as err:
            raise PipelineError(f"augments: {err}") from None
    if cfg.get("budget", "steps") not in ("steps", "epochs"):
        raise PipelineError(f"budget={cfg.budget!r}: steps (same optimiser steps for every variant) or epochs")
    if cfg.get("gan") is not None:
        check_gan(cfg.gan)
    check_gpus(cfg)


def check_gan(gan: DictConfig) -> None:
    """Stop on an unknown generator family (`gan.model`), and on settings or overrides that its config lacks."""
    family = gan_model(gan)
    if family not in FAMILIES:
        raise PipelineError(f"gan.model={family!r} is not a generator family: use one of {', '.join(FAMILIES)}",
                            hint="lcgan is the paper's pix2pix (the default); docs/generators.md describes the others")
    unknown = sorted(set(gan.get("family_overrides") or {}) - set(FAMILIES))
    if unknown:
        raise PipelineError(f"gan.family_overrides: {unknown} are not generator families",
                            hint=f"name one of {', '.join(FAMILIES)}")
    if family != PAPER_FAMILY and gan.get("lr_policy", "constant") != "constant":
        raise PipelineError(f"gan.lr_policy={gan.lr_policy}: the LcGAN's linear decay; gan.model={family} trains "
                            "at a constant learning rate", hint="set gan.lr_policy=constant")
    foreign = foreign_model_keys(family, family_overrides(gan, family))
    if foreign:
        raise PipelineError(
            f"gan.model={family}: {foreign} set keys that conf/model/{family}.yaml does not have",
            hint=f"put them in gan.family_overrides.<family> of the family they are for (gan.overrides reach "
                 f"every family), or drop them for {family}")


def check_gpus(cfg: DictConfig) -> None:
    """Stop before training when `job_trainer` asks for GPUs this machine does not show. Skipped for
    launcher=slurm: its jobs run on the cluster's nodes (Ray checks its own request at launch)."""
    launcher, trainer = cfg.get("launcher", "basic"), str(cfg.get("job_trainer", "default"))
    if launcher == "slurm":
        return
    try:
        require_gpus(requested_gpus(trainer_config(trainer)), f"lcgan-pipeline trainer={trainer}")
    except NoGPUError as err:
        raise PipelineError(str(err)) from None
