"""Lightning callbacks for what is not the model: epoch checkpoints, image panels, overlays, test files.

The models return them from `configure_callbacks`, so every trainer (lcgan-train, tests, a user's
own script) gets the same files:

* `PaperEpochCheckpoint` (LcGAN): `checkpoints/epoch=EEE.ckpt` (generator only) after the listed epochs
  + the full `last.ckpt` every N epochs;
* `GANPanels` (LcGAN): `panels/epoch=EEE.png` (mask | real | generated) and a W&B image panel;
* `SegmentationOverlays` (segmenter): prediction/truth overlays of the first validation batch;
* `TestPredictionsWriter` (segmenter): `predictions.npz` and `test_metrics.json` of the test set.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from lcgan_lightning.constants import CLASS_NAMES
from lcgan_lightning.layout import GENERATOR_ONLY, PREDICTIONS, TEST_METRICS, epoch_ckpt_name
from lcgan_lightning.metrics import compute_metrics, write_metrics_json
from lcgan_lightning.visual import mask_to_rgb, overlay, to_uint8

log = logging.getLogger(__name__)

# what a candidate (generator-only) checkpoint keeps of Lightning's full one
GENERATOR_CKPT_KEYS = ("epoch", "global_step", "pytorch-lightning_version", "hyper_parameters", "hparams_name",
                       "datamodule_hyper_parameters", "datamodule_hparams_name", "run_config")


def _run_dir(trainer: pl.Trainer) -> Path:
    return Path(trainer.default_root_dir)


def _wandb_loggers(trainer: pl.Trainer) -> list[Any]:
    from pytorch_lightning.loggers import WandbLogger

    return [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]


# ---- LcGAN -----------------------------------------------------------------------------------
def resumes_mid_epoch(trainer: pl.Trainer) -> bool:
    """Whether a checkpoint written now, mid-epoch, resumes exactly: one process and a training loader
    that saves its position and the RNG states (`exact_resume`, lcgan_lightning.data.resumable)."""
    loader = trainer.train_dataloader
    return trainer.world_size == 1 and bool(getattr(loader, "exact_resume", False))


def in_mid_epoch(trainer: pl.Trainer) -> bool:
    """Whether the training loop stands between two batches of an epoch (not at its end)."""
    done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
    return 0 < done < trainer.num_training_batches


class PaperEpochCheckpoint(ModelCheckpoint):
    """Writes `epoch=EEE.ckpt` after exactly the listed epochs (EEE = epochs trained, 1-based) and the full
    `last.ckpt` every `last_every_n_epochs` epochs and after the final one, into `dirpath`. No metric
    monitoring (GAN losses do not rank models).

    `epoch=EEE.ckpt` holds what generating needs (generator weights, hyper-parameters, run config,
    `generator_only: true`), not the discriminator or optimiser state: at 256² about 1/3 of the bytes
    of `last.ckpt`, which alone resumes a run.

    `last_every_n_steps`: also `last.ckpt` every that many training batches (mid-epoch), when such a
    checkpoint resumes exactly (`resumes_mid_epoch`); else only at epoch ends.
    """

    def __init__(self, dirpath: str | Path, save_epochs: Sequence[int], last_every_n_steps: int | None = None,
                 last_every_n_epochs: int = 1):
        super().__init__(dirpath=str(dirpath), save_last=True, save_top_k=-1, save_on_train_epoch_end=True,
                         enable_version_counter=False)
        self.save_epochs = sorted({int(e) for e in save_epochs})
        self.last_every_n_steps = int(last_every_n_steps or 0)
        self.last_every_n_epochs = max(1, int(last_every_n_epochs))

    @property
    def state_key(self) -> str:
        return self._generate_state_key(dirpath=self.dirpath, save_epochs=self.save_epochs)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or bool(trainer.fast_dev_run):
            return
        done = trainer.current_epoch + 1
        if done in self.save_epochs:
            path = str(Path(self.dirpath) / epoch_ckpt_name(done))
            self.best_model_path = path
            self._save_generator_only(trainer, path)
        if done % self.last_every_n_epochs == 0 or done >= (trainer.max_epochs or 0) or trainer.should_stop:
            self.last_model_path = str(Path(self.dirpath) / f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}")
            self._save_checkpoint(trainer, self.last_model_path)

    @staticmethod
    def _save_generator_only(trainer: pl.Trainer, path: str) -> None:
        full = trainer._checkpoint_connector.dump_checkpoint(weights_only=False)  # runs the on_save hooks
        slim = {k: full[k] for k in GENERATOR_CKPT_KEYS if k in full}
        slim["state_dict"] = {k: v for k, v in full["state_dict"].items() if k.startswith("generator.")}
        slim[GENERATOR_ONLY] = True
        if trainer.is_global_zero:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(path).with_suffix(".ckpt.tmp")
            torch.save(slim, tmp)
            os.replace(tmp, path)
        trainer.strategy.barrier("PaperEpochCheckpoint")

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        return

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        n = self.last_every_n_steps
        if (n <= 0 or trainer.sanity_checking or bool(trainer.fast_dev_run)
                or trainer.fit_loop.epoch_loop.batch_progress.total.processed % n
                or not in_mid_epoch(trainer) or not resumes_mid_epoch(trainer)):
            return
        self.last_model_path = str(Path(self.dirpath) / f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}")
        self._save_checkpoint(trainer, self.last_model_path)


class ResumableModelCheckpoint(ModelCheckpoint):
    """ModelCheckpoint (top-k by the monitored metric) that also writes `last.ckpt` after every validation
    (Lightning writes it only with a new top-k file), mid-epoch (`val_check_interval`) only where that
    resumes exactly (`resumes_mid_epoch`); where it does not, `last.ckpt` is written at epoch ends."""

    _last_step: int | None = None

    def _save_last_checkpoint(self, trainer: pl.Trainer, monitor_candidates: dict[str, Any]) -> None:
        if in_mid_epoch(trainer) and not resumes_mid_epoch(trainer):
            return
        super()._save_last_checkpoint(trainer, monitor_candidates)
        self._last_step = trainer.global_step

    def _ensure_last(self, trainer: pl.Trainer) -> None:
        if self.save_last and self._last_step != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        skip = self._should_skip_saving_checkpoint(trainer) or self._should_save_on_train_epoch_end(trainer)
        super().on_validation_end(trainer, pl_module)
        if not skip:
            self._ensure_last(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if (not trainer.sanity_checking and not bool(trainer.fast_dev_run)
                and (self._should_save_on_train_epoch_end(trainer) or not resumes_mid_epoch(trainer))):
            self._ensure_last(trainer)


def make_panel(rows: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], min_tile: int = 128) -> np.ndarray:
    """One row per sample: mask (palette colours) | real | generated, tiles upscaled to >= min_tile px."""
    h = rows[0][0].shape[0]
    scale = max(1, -(-min_tile // h))
    sep = 2
    lines = []
    for mask, real, fake in rows:
        tiles = [mask_to_rgb(mask.numpy()), *(np.repeat(to_uint8(t)[..., None], 3, axis=2) for t in (real, fake))]
        tiles = [np.kron(t, np.ones((scale, scale, 1), dtype=np.uint8)) for t in tiles]
        gap = np.full((tiles[0].shape[0], sep, 3), 255, np.uint8)
        lines.append(np.concatenate([tiles[0], gap, tiles[1], gap, tiles[2]], axis=1))
        lines.append(np.full((sep, lines[-1].shape[1], 3), 255, np.uint8))
    return np.concatenate(lines[:-1], axis=0)


class GANPanels(pl.Callback):
    """The first `n_panel` validation samples of each epoch as `panels/epoch=EEE.png` and a W&B panel.

    Reads the generated images the LcGAN's `validation_step` returns ({"fake": [B,1,H,W]}).
    """

    def __init__(self, n_panel: int = 4) -> None:
        self.n_panel = int(n_panel)
        self.rows: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.rows = []

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        need = self.n_panel - len(self.rows)
        if need <= 0 or not outputs:
            return
        fake, real = outputs["fake"], batch["image"]
        masks = batch["mask"] if "mask" in batch else batch["mask_onehot"].argmax(dim=1)
        for i in range(min(need, real.shape[0])):
            self.rows.append((masks[i].cpu(), real[i, 0].float().cpu(), fake[i, 0].float().cpu()))

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not self.rows or not trainer.is_global_zero:
            return
        epoch = trainer.current_epoch + 1
        out = _run_dir(trainer) / "panels" / f"epoch={epoch:03d}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        from PIL import Image

        Image.fromarray(make_panel(self.rows)).save(out)
        self._log_wandb(trainer, epoch)

    def _log_wandb(self, trainer: pl.Trainer, epoch: int) -> None:
        loggers = _wandb_loggers(trainer)
        if not loggers:
            return
        class_labels = dict(enumerate(CLASS_NAMES))
        images, masks, captions = [], [], []
        for k, (mask, real, fake) in enumerate(self.rows):
            for name, img in (("real", real), ("generated", fake)):
                images.append(to_uint8(img))
                masks.append({"ground_truth": {"mask_data": mask.numpy().astype(np.uint8),
                                               "class_labels": class_labels}})
                captions.append(f"sample {k} {name} (epoch {epoch})")
        for lg in loggers:
            lg.log_image("val/panel", images, masks=masks, caption=captions)


# ---- segmenter -------------------------------------------------------------------------------
class SegmentationOverlays(pl.Callback):
    """Prediction and truth overlays of the first validation batch, every `every_n_epochs` and at the
    last epoch: a W&B image list when W&B logs, else `overlays/epoch=EEE.png` in the first logger's dir.

    Reads the label maps the segmenter's `validation_step` returns ({"preds": [B,H,W]}).
    """

    def __init__(self, n_overlay: int = 8, every_n_epochs: int = 1) -> None:
        self.n_overlay = int(n_overlay)
        self.every = max(1, int(every_n_epochs))
        self.first: dict[str, torch.Tensor] | None = None

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if batch_idx != 0 or self.n_overlay <= 0 or not outputs:
            return
        n = self.n_overlay
        self.first = {
            "image": batch["image"][:n, 0].detach().cpu(),
            "true": batch["mask"][:n].detach().cpu(),
            "pred": outputs["preds"][:n].detach().cpu(),
        }

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        last = trainer.current_epoch + 1 >= (trainer.max_epochs or 0)
        if (
            self.first is None
            or trainer.sanity_checking
            or not trainer.is_global_zero
            or not (trainer.current_epoch % self.every == 0 or last)
        ):
            return
        grey = to_uint8(self.first["image"])
        true, pred = self.first["true"], self.first["pred"]
        loggers = _wandb_loggers(trainer)
        if loggers:
            import wandb

            labels = dict(enumerate(CLASS_NAMES))
            pictures = [
                wandb.Image(
                    g,
                    masks={
                        "prediction": {"mask_data": p.numpy().astype(np.uint8), "class_labels": labels},
                        "ground_truth": {"mask_data": t.numpy().astype(np.uint8), "class_labels": labels},
                    },
                    caption=f"val slice {i}",
                )
                for i, (g, t, p) in enumerate(zip(grey, true, pred, strict=True))
            ]
            for lg in loggers:
                lg.experiment.log({"val/overlays": pictures, "trainer/global_step": trainer.global_step})
            return
        from matplotlib import pyplot as plt

        base = trainer.loggers[0].log_dir if trainer.loggers and trainer.loggers[0].log_dir else _run_dir(trainer)
        out_dir = Path(base) / "overlays"
        out_dir.mkdir(parents=True, exist_ok=True)
        rows = [np.concatenate([overlay(g, m.numpy()) for g, m in zip(grey, masks, strict=True)], axis=1)
                for masks in (true, pred)]
        plt.imsave(out_dir / f"epoch={trainer.current_epoch:03d}.png", np.concatenate(rows, axis=0))


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
    lengths = [len(r["pred"]) if r is not None else 0 for r in ranks]
    order = [(rank, k) for k in range(max(lengths)) for rank in range(len(ranks)) if k < lengths[rank]]
    merged = {key: np.stack([ranks[r][key][k] for r, k in order]) for key in present[0]}  # str widths widen
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
        metrics = compute_metrics(arrays["pred"], arrays["true"], pl_module.hparams.num_classes)
        pl_module.log("test/dsc", metrics["dsc"], sync_dist=True)
        pl_module.log("test/precision", metrics["precision"], sync_dist=True)
        pl_module.log("test/recall", metrics["recall"], sync_dist=True)
        for name, value in metrics["per_class_dsc"].items():
            if np.isfinite(value):
                pl_module.log(f"test/dsc_{name}", value, sync_dist=True)
        if trainer.is_global_zero:
            run_dir = _run_dir(trainer)
            run_dir.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(run_dir / PREDICTIONS, **arrays)
            result = {**metrics, "train_set_size": getattr(pl_module, "train_set_size", None)}
            write_metrics_json(result, run_dir / TEST_METRICS)
            log.info("test metrics: dsc %.4f precision %.4f recall %.4f -> %s",
                     metrics["dsc"], metrics["precision"], metrics["recall"], run_dir / TEST_METRICS)
