"""`lcgan-select`: score every candidate generator of a GAN sweep and pick one per fraction.

    lcgan-select candidates_dir=<run>/gan judge_ckpt=<judge.ckpt> splits_path=<run>/splits.json out_dir=<run>
    lcgan-select candidates=<candidates.json> judge_ckpt=...    (an explicit list, as the pipeline does)

See `conf/select.yaml` and docs/selection-and-synthesis.md.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from lcgan_lightning.cli.errors import report_errors
from lcgan_lightning.config import register_resolvers, to_plain
from lcgan_lightning.paths import CONF_DIR

log = logging.getLogger(__name__)

register_resolvers()


def load_data(data_cfg: DictConfig, splits_path: str | None) -> tuple[Any, Any]:
    """(validation slices, all training slices) of the configured dataset and split.

    With `splits_path`, the data config's split must equal the file's (the datamodule checks it).
    """
    from lcgan_lightning.data.datamodule import open_datamodule

    overrides: dict[str, Any] = {"augment": "none", "fraction": 1.0} | ({"splits_path": str(splits_path)} if splits_path else {})
    dm = open_datamodule(data_cfg, **overrides)
    assert dm.val_slices is not None  # open_datamodule sets it up
    if len(dm.val_slices) == 0:
        raise ValueError("the validation split holds no slice: nothing to score generators on")
    return dm.val_slices, dm.train_slices


def load_candidates(cfg: DictConfig) -> tuple[list[Any], list[dict[str, str]]]:
    """The candidates: `candidates` (a list, or the path of a JSON list), else discovered in `candidates_dir`."""
    from lcgan_lightning.selection import candidates as cands

    items = cfg.candidates
    if isinstance(items, str):
        path = Path(items)
        if not path.is_file():
            raise FileNotFoundError(f"candidates={path}: no such file (a JSON list of checkpoints)")
        items = json.loads(path.read_text())
    else:
        items = to_plain(items)
    trust = bool(cfg.get("trust_checkpoint", False))
    if items:
        return cands.parse_candidates(items, trust=trust), []
    if cfg.candidates_dir:
        return cands.discover_candidates(cfg.candidates_dir, trust=trust)
    raise ValueError("set candidates_dir=<sweep dir> or candidates=[...]")


def select_generators(cfg: DictConfig) -> dict[str, Any]:
    """Run scoring + selection as configured; returns selected.json's content."""
    from lcgan_lightning.errors import CheckpointNotFoundError
    from lcgan_lightning.layout import fraction_key
    from lcgan_lightning.models.generation import load_generator, resolve_device
    from lcgan_lightning.models.segmenter import load_segmenter
    from lcgan_lightning.selection import realism, rule, score

    rk = rule.rule_kwargs(to_plain(cfg.rule))  # checks the rule block before any work
    candidates, skipped = load_candidates(cfg)
    if cfg.fractions is not None:
        wanted = {fraction_key(f) for f in cfg.fractions}
        candidates = [c for c in candidates if fraction_key(c.fraction) in wanted]
        if not candidates:
            raise ValueError(f"no candidate of fractions {sorted(wanted)}")
    for s in skipped:
        log.warning("skipped %s: %s", s["file"], s["reason"])
    log.info("%d candidates: %s", len(candidates), ", ".join(c.name for c in candidates))

    judge_path = Path(cfg.judge_ckpt)
    if not judge_path.is_file():
        raise CheckpointNotFoundError(f"{judge_path}: judge_ckpt does not exist")
    device = resolve_device(cfg.device)
    trust = bool(cfg.get("trust_checkpoint", False))
    judge = load_segmenter(str(judge_path), map_location=device, trust=trust).to(device)

    splits_path = cfg.splits_path or cfg.data.get("splits_path")
    val, train_all = load_data(cfg.data, splits_path)
    eval_set = score.make_eval_set(val, train_all, cfg.max_images, cfg.seed, cfg.lesion_only, cfg.real_pool_max)
    settings = {
        "judge_ckpt": str(judge_path),
        "splits_path": str(splits_path) if splits_path else None,
        "max_images": cfg.max_images,
        "lesion_only": cfg.lesion_only,
        "batch_size": cfg.batch_size,
        "device": device,
        "data": to_plain(cfg.data),
    }
    return score.run_scoring(
        candidates,
        eval_set,
        judge,
        lambda p: load_generator(p, map_location=device, trust=trust),
        out_dir=cfg.out_dir,
        sheets_dir=cfg.sheets_dir,
        seed=cfg.seed,
        dropout=cfg.dropout,
        batch_size=cfg.batch_size,
        realism_cfg=realism.realism_config(to_plain(cfg.realism)),
        rule_name=rk.pop("rule"),
        weights=rk.pop("weights", None),
        rule_params=rk,
        fid=cfg.fid,
        ssim_psnr=cfg.ssim_psnr,
        sheet_columns=cfg.sheet_columns,
        skipped=skipped,
        settings=settings,
    )


@hydra.main(config_path=str(CONF_DIR), config_name="select", version_base="1.3")
@report_errors
def main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    import torch

    torch.manual_seed(cfg.seed)
    (Path(cfg.paths.output_dir)).mkdir(parents=True, exist_ok=True)
    (Path(cfg.paths.output_dir) / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    selected = select_generators(cfg)
    for fkey, s in selected.items():
        log.info("fraction %s: %s epochs (%s)", fkey, s["epochs"], s["reason"])
    print(json.dumps(selected, indent=2))


if __name__ == "__main__":
    main()
