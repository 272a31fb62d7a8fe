"""`TestPredictionsWriter`: the segmenter's test predictions and metrics as files in the run dir."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pytorch_lightning as pl
import torch

from lcgan_lightning.layout import PREDICTIONS, TEST_METRICS
from lcgan_lightning.metrics import compute_metrics, write_metrics_json

if TYPE_CHECKING:
    from pytorch_lightning.utilities import AttributeDict

log = logging.getLogger(__name__)


def _test_set_size(trainer: pl.Trainer) -> int | None:
    loaders = trainer.test_dataloaders
    loader = loaders[0] if isinstance(loaders, (list, tuple)) and loaders else loaders
    dataset = getattr(loader, "dataset", None)
    try:
        return len(dataset) if dataset is not None else None
    except TypeError:
        return None


def merge_distributed_rows(ranks: list[dict[str, np.ndarray] | None], n: int | None) -> dict[str, np.ndarray] | None:
    """The test rows of all DDP ranks in dataset order, without the DistributedSampler's padding.

    Unshuffled, rank r holds dataset rows r, r+W, r+2W, ... of the index list padded (by repeating its
    first rows) to a multiple of W, so interleaving the ranks restores the order; the padding is cut
    at `n` (the dataset size), else dropped as repeats of an earlier (patient, volume, slice).
    """
    present = [r for r in ranks if r is not None]
    if not present:
        return None
    rows = [r if r is not None else {} for r in ranks]
    lengths = [len(r["pred"]) if r is not None else 0 for r in ranks]
    order = [(rank, k) for k in range(max(lengths)) for rank in range(len(ranks)) if k < lengths[rank]]
    merged = {key: np.stack([rows[r][key][k] for r, k in order]) for key in present[0]}  # str widths widen
    if n is not None and n <= len(order):
        keep = np.arange(n)
    else:
        seen, keep_list = set(), []
        for i, key in enumerate(zip(merged["patient"], merged["volume"], merged["slice"], strict=True)):
            if key not in seen:
                seen.add(key)
                keep_list.append(i)
        keep = np.asarray(keep_list, dtype=np.int64)
    return {key: value[keep] for key, value in merged.items()}


class TestPredictionsWriter(pl.Callback):
    """Collects the test predictions ({"preds": [B,H,W]} from `test_step`) with their slice keys and
    writes `predictions.npz` (pred, true, patient, volume, slice) and `test_metrics.json` to the run dir;
    logs test/dsc, test/precision, test/recall and test/dsc_<class>.

    The metrics are one `SegmentationMetrics` update over the whole gathered test set (the class that
    computes val/dsc), so `test_metrics.json` equals a recomputation from `predictions.npz` bit for bit.
    Under DDP the ranks' rows are gathered back into dataset order without the sampler's padded
    duplicates (`merge_distributed_rows`), so the files equal a single-process run's.
    """

    def __init__(self) -> None:
        self.parts: list[dict[str, Any]] = []

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.parts = []

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        preds = outputs["preds"]
        n = preds.shape[0]
        self.parts.append(
            {
                "pred": preds.cpu().numpy().astype(np.uint8),
                "true": batch["mask"].cpu().numpy().astype(np.uint8),
                "patient": list(batch.get("patient", [""] * n)),
                "volume": list(batch.get("volume", [""] * n)),
                "slice": np.asarray(
                    batch["slice"].cpu() if torch.is_tensor(batch.get("slice")) else batch.get("slice", [-1] * n),
                    dtype=np.int32,
                ),
            }
        )

    @staticmethod
    def _rows(parts: list[dict[str, Any]]) -> dict[str, np.ndarray]:
        return {
            "pred": np.concatenate([o["pred"] for o in parts]),
            "true": np.concatenate([o["true"] for o in parts]),
            "patient": np.array([p for o in parts for p in o["patient"]], dtype=str),
            "volume": np.array([v for o in parts for v in o["volume"]], dtype=str),
            "slice": np.concatenate([o["slice"] for o in parts]),
        }

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        parts, self.parts = self.parts, []
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, parts)
            ranks = [self._rows(p) if p else None for p in gathered]
            arrays = merge_distributed_rows(ranks, _test_set_size(trainer))
        elif parts:
            arrays = self._rows(parts)
        else:
            return
        if arrays is None or not len(arrays["pred"]):
            return
        num_classes = cast("AttributeDict", pl_module.hparams).num_classes  # the Segmenter's hyper-parameter
        metrics = compute_metrics(arrays["pred"], arrays["true"], num_classes)
        pl_module.log("test/dsc", metrics["dsc"], sync_dist=True)
        pl_module.log("test/precision", metrics["precision"], sync_dist=True)
        pl_module.log("test/recall", metrics["recall"], sync_dist=True)
        for name, value in metrics["per_class_dsc"].items():
            if np.isfinite(value):
                pl_module.log(f"test/dsc_{name}", value, sync_dist=True)
        if trainer.is_global_zero:
            run_dir = Path(trainer.default_root_dir)
            run_dir.mkdir(parents=True, exist_ok=True)
            # Any-valued: numpy's stub also matches **arrays against its `allow_pickle: bool` keyword
            np.savez_compressed(run_dir / PREDICTIONS, **cast(dict[str, Any], arrays))
            result = {**metrics, "train_set_size": getattr(pl_module, "train_set_size", None)}
            write_metrics_json(result, run_dir / TEST_METRICS)
            log.info("test metrics: dsc %.4f precision %.4f recall %.4f -> %s",
                     metrics["dsc"], metrics["precision"], metrics["recall"], run_dir / TEST_METRICS)
