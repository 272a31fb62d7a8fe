"""`lcgan-audit`: audit one synthetic set against the real training slices of its subset.

    lcgan-audit synthetic_dir=<set> judge_ckpt=<judge.ckpt> splits_path=<run>/splits.json [fraction=F]

Writes `<set>/audit.json` and `<set>/previews/audit_closest_{feature,pixel}.png`; see
`conf/audit.yaml` and docs/audit.md.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from lcgan_lightning.config import register_resolvers, to_plain
from lcgan_lightning.paths import CONF_DIR

log = logging.getLogger(__name__)

register_resolvers()


def audit_from_config(cfg: DictConfig) -> dict[str, Any]:
    """Load the set's training slices, the judge and the generator; audit; returns audit.json."""
    from lcgan_lightning.audit import AuditConfig, audit_synthetic_set
    from lcgan_lightning.audit.run import set_fraction
    from lcgan_lightning.data.datamodule import open_datamodule
    from lcgan_lightning.data.synthetic_set import read_manifest
    from lcgan_lightning.models.generation import load_generator, resolve_device
    from lcgan_lightning.models.segmenter import load_segmenter

    set_dir = Path(cfg.synthetic_dir)
    config = AuditConfig(**to_plain(cfg.audit))  # checks the settings before any work
    manifest = read_manifest(set_dir)
    fraction = set_fraction(cfg.fraction, manifest, set_dir)
    judge_path = Path(cfg.judge_ckpt)
    if not judge_path.is_file():
        raise FileNotFoundError(f"judge_ckpt={judge_path}: no such file")
    overrides: dict[str, Any] = {"augment": "none", "fraction": fraction} | (
        {"splits_path": str(cfg.splits_path)} if cfg.splits_path else {})
    train = open_datamodule(cfg.data, **overrides).train_slices
    assert train is not None  # open_datamodule sets it up
    device = resolve_device(cfg.device)
    trust = bool(cfg.get("trust_checkpoint", False))
    judge = load_segmenter(str(judge_path), map_location=device, trust=trust)
    loader = (lambda p: load_generator(p, map_location=device, trust=trust)) if cfg.diversity else None
    return audit_synthetic_set(set_dir, train, judge, loader, generator_ckpt=cfg.generator_ckpt,
                               lesion_only=bool(cfg.lesion_only), config=config,
                               judge_ckpt=str(judge_path), fraction=fraction)


def log_to_wandb(cfg: DictConfig, audit: dict[str, Any]) -> None:
    """The headline numbers (run summary) and the closest-pairs figures, if logger=wandb."""
    from hydra.utils import instantiate

    from lcgan_lightning.audit import audit_summary
    from lcgan_lightning.config import flatten

    node = (cfg.get("logger") or {}).get("wandb")
    if node is None or "_target_" not in node:
        return
    seed = audit["set"].get("seed")
    name = f"audit frac={audit['set']['fraction']}" + (f" seed={seed}" if seed is not None else "")
    logger = instantiate(node, name=name, _convert_="all")
    numbers = {f"audit/{k}": v for k, v in flatten(audit_summary(audit)).items() if isinstance(v, (int, float))}
    logger.log_hyperparams({"synthetic_dir": audit["set"]["dir"], "judge_ckpt": audit["judge_ckpt"],
                            **flatten({"audit": audit["config"]})})
    logger.log_metrics(numbers)
    set_dir = Path(cfg.synthetic_dir)
    for space, rel in audit["figures"].items():
        if (set_dir / rel).is_file():
            logger.log_image(key=f"audit/closest_pairs_{space}", images=[str(set_dir / rel)])
    logger.experiment.summary.update(numbers)
    import wandb

    wandb.finish()


@hydra.main(config_path=str(CONF_DIR), config_name="audit", version_base="1.3")
def main(cfg: DictConfig) -> None:
    """Hydra entry point: a bad set stops with one line naming the file and the defect."""
    from lcgan_lightning.data.synthetic_set import SyntheticSetError

    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    try:
        audit = audit_from_config(cfg)
    except (SyntheticSetError, FileNotFoundError) as err:
        log.error("%s", err)
        sys.exit(1)
    log_to_wandb(cfg, audit)
    from lcgan_lightning.audit import audit_summary

    print(json.dumps(audit_summary(audit), indent=2))
    print(f"wrote {Path(cfg.synthetic_dir) / 'audit.json'}")


if __name__ == "__main__":
    main()
