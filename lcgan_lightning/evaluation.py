"""Evaluation stage: test a trained segmenter checkpoint on any data config and split.

`lcgan-eval` (:mod:`lcgan_lightning.cli.eval`) is its command line. The model is rebuilt from the
checkpoint alone (its stored hyper-parameters), so no training override is repeated. The data is the
checkpoint's own training data config (stored by lcgan-train in `checkpoint["run_config"]`) unless a
`data=` group is given, e.g. train on BHSD, test on CT-ICH. Every dataset format maps its stored labels to
our class ids (IPH IVH SAH EDH SDH), so predictions and truth always speak the same label map; a
class that the evaluated truth does not contain is reported as absent, not scored.

Writes into the run dir: `predictions.npz` and `test_metrics.json` (the usual format, by the
segmenter's own TestPredictionsWriter), `splits.json`, and `eval.json` (checkpoint, data, split,
post-processing, counts, the per-class presence table and the metrics). `postprocess=none|
region_majority` evaluates the same weights with another post-processing than the checkpoint's.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from lcgan_lightning.checkpoint_io import load_checkpoint
from lcgan_lightning.config import flatten, to_plain
from lcgan_lightning.constants import LESION_CLASSES
from lcgan_lightning.data.datamodule import open_datamodule
from lcgan_lightning.data.dataset import SliceDataset
from lcgan_lightning.data.validation import DatasetError
from lcgan_lightning.errors import CheckpointNotFoundError, UserError
from lcgan_lightning.layout import PREDICTIONS, TEST_METRICS
from lcgan_lightning.models.postprocess import check_postprocess
from lcgan_lightning.models.segmenter import load_segmenter

log = logging.getLogger(__name__)

SPLITS = ("test", "val", "train", "all")
EVAL_RESULT = "eval.json"
# the data keys of a training config that describe what the model was trained ON, not what an
# evaluation reads: an evaluation always reads plain slices (no augmentation, all patients of the split)
TRAINING_ONLY_DATA_KEYS = {
    "augment": "none", "synthetic_dir": None, "generator_ckpt": None, "augment_online": False,
    "synthetic_per_mask": 1, "novel_dir": None,
    "fraction": 1.0, "subset_patients": None, "samples_per_epoch": None,
}


class EvaluationError(UserError, ValueError):
    """A checkpoint or an evaluation setting that cannot be evaluated (names the file or key)."""

    hint = "lcgan-eval evaluates segmenter checkpoints (…/checkpoints/*.ckpt of a segmenter run); split=test|val|train|all"


def stored_run_config(ckpt_path: str | Path, trust: bool = False) -> dict[str, Any]:
    """The resolved lcgan-train config stored in a checkpoint ({} when it has none)."""
    ckpt = load_checkpoint(ckpt_path, map_location="cpu", trust=trust)
    config = ckpt.get("run_config") if isinstance(ckpt, dict) else None
    return config if isinstance(config, dict) else {}


def class_presence(preds: np.ndarray, trues: np.ndarray) -> dict[str, dict[str, Any]]:
    """Per lesion class: slices holding it in the truth and in the prediction, and whether it can be
    scored here ("present") or is "absent from the evaluated truth" (its per-class DSC is then null)."""
    table = {}
    for c, name in enumerate(LESION_CLASSES, start=1):
        in_truth = int((trues == c).reshape(len(trues), -1).any(axis=1).sum())
        in_pred = int((preds == c).reshape(len(preds), -1).any(axis=1).sum())
        status = "present" if in_truth else "absent from the evaluated truth"
        table[name] = {"truth_slices": in_truth, "predicted_slices": in_pred, "status": status}
    return table


def _data_config(cfg: DictConfig, run_config: dict[str, Any], ckpt_path: Path) -> tuple[Any, str]:
    """The data config to evaluate on and where it came from ("command line" or "checkpoint")."""
    if cfg.get("data") is not None:
        return cfg.data, "command line"
    data = run_config.get("data")
    if not isinstance(data, dict) or "_target_" not in data:
        raise EvaluationError(
            f"{ckpt_path}: holds no training data config (not written by lcgan-train); "
            "name the data to evaluate on, e.g. data=bhsd data.root=/data/bhsd"
        )
    return OmegaConf.create(data), "checkpoint"


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Test `cfg.ckpt_path` on `cfg.data` (or the checkpoint's data) `cfg.split`; returns eval.json's content."""
    started = time.time()
    split = str(cfg.get("split", "test"))
    if split not in SPLITS:
        raise EvaluationError(f"split={split!r}: must be one of {SPLITS}")
    if not cfg.get("ckpt_path"):
        raise EvaluationError("ckpt_path: not set (the segmenter checkpoint to evaluate)")
    ckpt_path = Path(str(cfg.ckpt_path))
    if not ckpt_path.is_file():
        raise CheckpointNotFoundError(f"{ckpt_path}: checkpoint not found")
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(int(cfg.get("seed", 0)), workers=True)
    trust = bool(cfg.get("trust_checkpoint", False))

    try:
        model = load_segmenter(ckpt_path, trust=trust)
    except ValueError as err:
        raise EvaluationError(f"{err} (lcgan-eval evaluates segmenter checkpoints; a generator is "
                              "judged by lcgan-select)") from err
    if cfg.get("postprocess") is not None:  # null: the checkpoint's own
        model.hparams.postprocess = check_postprocess(str(cfg.postprocess), key="postprocess")
    run_config = stored_run_config(ckpt_path, trust=trust)
    data_cfg, data_from = _data_config(cfg, run_config, ckpt_path)
    trained_size = (run_config.get("data") or {}).get("image_size")
    image_size = cfg.get("image_size") or trained_size or data_cfg.get("image_size")
    dm = open_datamodule(data_cfg, stage="test", image_size=int(image_size),
                         splits_path=str(run_dir / "splits.json"), **TRAINING_ONLY_DATA_KEYS)
    chosen = {"test": dm.test_slices, "val": dm.val_slices, "train": dm.train_slices, "all": dm.slices}[split]
    if chosen is None or len(chosen) == 0:
        raise DatasetError(f"{dm.root}: split={split} holds no slice")
    dm.test_dataset = SliceDataset(chosen)

    resolved = to_plain(cfg)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(resolved)))
    loggers: list[Any] = [pl.loggers.CSVLogger(save_dir=str(run_dir), name="csv", version="")]
    for node in (cfg.get("logger") or {}).values():
        if node is not None and "_target_" in node:
            loggers.append(instantiate(node, _convert_="all"))
    wandb_loggers = [lg for lg in loggers if isinstance(lg, pl.loggers.WandbLogger)]
    for lg in wandb_loggers:
        lg.log_hyperparams(flatten({k: v for k, v in resolved.items() if k not in ("hydra", "logger")}))
    trainer: pl.Trainer = instantiate(cfg.trainer, logger=loggers, default_root_dir=str(run_dir))
    trainer.test(model, dataloaders=dm.test_dataloader(), verbose=False)

    metrics = json.loads((run_dir / TEST_METRICS).read_text())
    with np.load(run_dir / PREDICTIONS) as arrays:
        presence = class_presence(arrays["pred"], arrays["true"])
        patients = sorted(set(arrays["patient"].tolist()))
    for name, row in presence.items():
        if row["status"] != "present":
            log.warning("class %s: absent from the evaluated truth (%s, split %s): no per-class DSC",
                        name, dm.root, split)
    result = {
        "ckpt_path": str(ckpt_path.resolve()),
        "data": {"from": data_from, "dataset_format": dm.dataset_format, "root": str(dm.root), "window": dm.window,
                 "image_size": dm.image_size, "trained_image_size": trained_size},
        "split": split,
        "postprocess": model.hparams.get("postprocess", "none"),
        "patients": len(patients),
        "slices": int(metrics.get("n_images", len(chosen))),
        "classes": presence,
        "metrics": {k: metrics[k] for k in ("dsc", "binary_dsc", "precision", "recall",
                                            "per_class_dsc", "per_class_dsc_present") if k in metrics},
        "wall_s": round(time.time() - started, 2),
    }
    tmp = run_dir / f".{EVAL_RESULT}.tmp"
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(run_dir / EVAL_RESULT)
    if wandb_loggers:
        import wandb

        summary = {f"test/{k}": v for k, v in result["metrics"].items() if isinstance(v, float)}
        for lg in wandb_loggers:
            lg.experiment.summary.update(summary)
        wandb.finish()
    log.info("eval %s on %s split=%s: dsc %.4f (%d slices) -> %s", ckpt_path.name, dm.root, split,
             result["metrics"]["dsc"], result["slices"], run_dir / EVAL_RESULT)
    return result
