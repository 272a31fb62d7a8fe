"""Validation image callbacks: the LcGAN's sample panels and the segmenter's prediction overlays.

* `GANPanels` (LcGAN): `panels/epoch=EEE.png` (mask | real | generated) and a W&B image panel;
* `SegmentationOverlays` (segmenter): prediction/truth overlays of the first validation batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from lcgan_lightning.constants import CLASS_NAMES
from lcgan_lightning.visual import mask_to_rgb, overlay, to_uint8


def _wandb_loggers(trainer: pl.Trainer) -> list[Any]:
    from pytorch_lightning.loggers import WandbLogger

    return [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]


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
        out = Path(trainer.default_root_dir) / "panels" / f"epoch={epoch:03d}.png"
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

        base = trainer.loggers[0].log_dir if trainer.loggers and trainer.loggers[0].log_dir else Path(trainer.default_root_dir)
        out_dir = Path(base) / "overlays"
        out_dir.mkdir(parents=True, exist_ok=True)
        rows = [np.concatenate([overlay(g, m.numpy()) for g, m in zip(grey, masks, strict=True)], axis=1)
                for masks in (true, pred)]
        plt.imsave(out_dir / f"epoch={trainer.current_epoch:03d}.png", np.concatenate(rows, axis=0))
