"""`lcgan-synthesize`: k synthetic CTs per training mask of a fraction, or one per NEW mask made
from those masks by the mask bank, from one generator.

    lcgan-synthesize checkpoint=<gen.ckpt> data.fraction=0.1 splits_path=<run>/splits.json out_dir=<dir>
    lcgan-synthesize ... data.synthetic_per_mask=4                 # 4 CTs per training mask
    lcgan-synthesize ... masks=novel data.synthetic_per_mask=2     # 2 new masks per training mask

Writes `<out_dir>/images.npy`, `masks.npy`, `manifest.json`, `previews/`. See `conf/synthesize.yaml`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, cast

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf

from lcgan_lightning.cli.errors import report_errors
from lcgan_lightning.config import register_resolvers
from lcgan_lightning.paths import CONF_DIR

log = logging.getLogger(__name__)

register_resolvers()


def resolve_checkpoint(cfg: DictConfig, fraction: float) -> str:
    """The generator checkpoint: `checkpoint`, else selected_json's entry for `fraction`."""
    from lcgan_lightning.layout import fraction_key

    if cfg.checkpoint:
        return str(cfg.checkpoint)
    if not cfg.selected_json:
        raise ValueError("set checkpoint=<generator.ckpt> or selected_json=<run>/selected.json")
    path = Path(cfg.selected_json)
    selected = json.loads(path.read_text())
    key = fraction_key(fraction)
    if key not in selected:
        raise ValueError(f"{path} has no generator for fraction {key} (has {sorted(selected)})")
    return selected[key]["checkpoint"]


def synthesize_from_config(cfg: DictConfig) -> dict[str, Any]:
    """Load the fraction's training slices and write the synthetic set; returns the manifest."""
    from lcgan_lightning.data.datamodule import open_datamodule
    from lcgan_lightning.synthesize import synthesize, synthesize_novel

    fraction = float(cfg.data.fraction)
    out_dir = Path(cfg.out_dir)
    if (out_dir / "manifest.json").exists() and not cfg.overwrite:
        raise FileExistsError(f"{out_dir} already holds a synthetic set (manifest.json); pass overwrite=true")
    checkpoint = resolve_checkpoint(cfg, fraction)
    overrides: dict[str, Any] = {"augment": "none"} | ({"splits_path": str(cfg.splits_path)} if cfg.splits_path else {})
    slices = open_datamodule(cfg.data, **overrides).train_slices
    assert slices is not None  # open_datamodule sets it up
    if cfg.lesion_only:
        keep = np.asarray(slices.masks).reshape(len(slices), -1).max(1) > 0
        slices = slices.select(keep)
    common = dict(seed=cfg.seed, dropout=cfg.dropout, previews=cfg.previews, device=cfg.device,
                  trust=bool(cfg.get("trust_checkpoint", False)),
                  per_mask=int(cfg.data.get("synthetic_per_mask", 1)))
    masks = cfg.get("masks", "train")
    if masks == "train":
        return synthesize(checkpoint, slices, out_dir, fraction, **common)
    if masks != "novel":
        raise ValueError(f"masks={masks!r}: train (the training masks) or novel (new masks from the mask bank)")
    novel = cfg.novel
    bank = cast(dict[str, Any], OmegaConf.to_container(novel.bank, resolve=True)) if novel.get("bank") is not None else {}
    judge = None
    if cfg.get("judge_ckpt"):
        from lcgan_lightning.models.generation import resolve_device
        from lcgan_lightning.models.segmenter import load_segmenter

        device = resolve_device(cfg.device)
        judge = load_segmenter(str(cfg.judge_ckpt), map_location=device, trust=common["trust"]).to(device)
    return synthesize_novel(checkpoint, slices, out_dir, fraction, n=novel.get("n"), bank_seed=novel.get("seed"),
                            bank_config=bank, judge=judge, **common)


@hydra.main(config_path=str(CONF_DIR), config_name="synthesize", version_base="1.3")
@report_errors
def main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    manifest = synthesize_from_config(cfg)
    log.info("wrote %d synthetic slices (fraction %s) to %s", manifest["n"], manifest["fraction"], cfg.out_dir)


if __name__ == "__main__":
    main()
