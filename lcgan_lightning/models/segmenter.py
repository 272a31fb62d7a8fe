"""Hemorrhage segmenter (paper §4.1): FCN-8s (default), MONAI BasicUNet or DynUNet as a LightningModule.

Training: pixel-wise cross-entropy (``loss: ce``, the FCN recipe) or MONAI's DiceCELoss
(``loss: dice_ce``: CE + soft Dice over the five lesion classes, background excluded from the
Dice term, Dice pooled over the batch), Adam or SGD. Validation logs ``val/dsc`` (per-image DSC,
see :mod:`lcgan_lightning.metrics`), which the built-in ModelCheckpoint monitors. The model's
callbacks draw validation overlays (:mod:`lcgan_lightning.models.sample_panels`) and write
``<run_dir>/test_metrics.json`` and ``<run_dir>/predictions.npz``
(:mod:`lcgan_lightning.models.prediction_writer`); the run dir is the trainer's
``default_root_dir`` (``lcgan-train`` sets it to the Hydra run dir). ``postprocess=region_majority``
(opt-in, :mod:`lcgan_lightning.models.postprocess`) relabels every predicted lesion region with its
majority class in all of these. ``arch=dynunet`` (nnU-Net-style) plans its network from the training
data at fit start (:mod:`lcgan_lightning.models.dynunet_training`: ``plan.json``, stored in ``plan``)
and trains with deep supervision; it predicts from its full-resolution output alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from lcgan_lightning.batch import model_batch, speed_up
from lcgan_lightning.checkpoint_io import load_checkpoint
from lcgan_lightning.config import to_plain
from lcgan_lightning.constants import NUM_CLASSES
from lcgan_lightning.errors import CheckpointNotFoundError, CheckpointReadError, ConfigError
from lcgan_lightning.layout import CHECKPOINTS
from lcgan_lightning.metrics import SegmentationMetrics
from lcgan_lightning.models.basicunet import BasicUNetSeg
from lcgan_lightning.models.checkpointing import ResumableModelCheckpoint
from lcgan_lightning.models.fcn8s import FCN8s, load_vgg16_imagenet
from lcgan_lightning.models.lr_schedules import LR_SCHEDULES, lr_scheduler
from lcgan_lightning.models.postprocess import check_postprocess, postprocess_labels
from lcgan_lightning.models.prediction_writer import TestPredictionsWriter
from lcgan_lightning.models.sample_panels import SegmentationOverlays

if TYPE_CHECKING:
    from pytorch_lightning.utilities import AttributeDict
    from pytorch_lightning.utilities.types import OptimizerLRSchedulerConfig

log = logging.getLogger(__name__)

ARCHS = ("fcn8s", "basicunet", "dynunet")


def build_net(
    arch: str = "fcn8s",
    num_classes: int = NUM_CLASSES,
    in_channels: int = 1,
    width: float = 1.0,
    dropout: float = 0.5,
    pretrained_vgg16: str | None = None,
    net: dict | None = None,
    batch_norm: bool = False,
    fc6_kernel: int = 7,
    plan: dict | None = None,
) -> nn.Module:
    """The segmentation network: ``net`` (a ``_target_`` dict) if given, else ``arch`` (``dynunet``:
    built from ``plan``; a stand-in until the fit plans it when there is none)."""
    if net:
        from hydra.utils import instantiate

        return instantiate(net)
    if arch == "fcn8s":
        model = FCN8s(
            num_classes=num_classes,
            in_channels=in_channels,
            width=width,
            dropout=dropout,
            batch_norm=batch_norm,
            fc6_kernel=fc6_kernel,
        )
        if pretrained_vgg16:
            load_vgg16_imagenet(model, pretrained_vgg16)
        return model
    if pretrained_vgg16:
        raise ValueError(f"pretrained_vgg16 is for arch=fcn8s only, not arch={arch}")
    if arch == "basicunet":
        return BasicUNetSeg(
            num_classes=num_classes, in_channels=in_channels, width=width, dropout=dropout
        )
    if arch == "dynunet":
        from lcgan_lightning.models.dynunet_training import UnplannedNet, build_dynunet

        return build_dynunet(plan, num_classes, in_channels, dropout) if plan else UnplannedNet()
    raise ConfigError(f"model.arch={arch!r}: unknown segmenter arch {arch!r}; choose one of {ARCHS} or give net._target_")


def coarse_output_note(arch: str | None, image_size: int | None, net: dict | None = None) -> str | None:
    """A warning when FCN-8s meets images so small that its stride-8 output grid is coarser than
    most hemorrhage regions (image_size <= 64: 8x8-px cells), else None."""
    if arch != "fcn8s" or net or not image_size or int(image_size) > 64:
        return None
    return (
        f"model.arch=fcn8s at data.image_size={int(image_size)}: FCN-8s predicts on a stride-8 grid "
        f"(8x8-px cells here), coarser than most hemorrhage regions at this size; expect a low DSC. "
        "model=basicunet predicts at full resolution (docs/study-defaults.md)."
    )


class Segmenter(pl.LightningModule):
    """Segments 1-channel CT slices into our 6 classes; logs the paper's metrics.

    Batches are dicts with "image" [B,1,H,W] in [-1,1] and "mask" [B,H,W] int64 (plus
    "patient", "volume", "slice" for the test files).
    """

    if TYPE_CHECKING:  # save_hyperparameters() stores an AttributeDict (Lightning types it more widely)

        @property
        def hparams(self) -> AttributeDict: ...

    def __init__(
        self,
        arch: str = "fcn8s",
        width: float = 1.0,
        num_classes: int = NUM_CLASSES,
        in_channels: int = 1,
        dropout: float = 0.5,
        batch_norm: bool = False,
        fc6_kernel: int = 7,
        pretrained_vgg16: str | None = None,
        net: dict | None = None,
        loss: str = "ce",
        class_weights: list[float] | None = None,
        optimizer: str = "adam",
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        momentum: float = 0.9,
        nesterov: bool = False,
        lr_schedule: str = "constant",
        n_overlay: int = 8,
        overlay_every_n_epochs: int = 1,
        channels_last: bool = False,
        compile: bool = False,
        fused_adam: bool = False,
        postprocess: str = "none",
        planner: dict | None = None,
        plan: dict | None = None,
    ) -> None:
        super().__init__()
        net, planner, plan = to_plain(net), to_plain(planner), to_plain(plan)
        class_weights = to_plain(class_weights)
        if loss not in ("ce", "dice_ce"):
            raise ConfigError(f"model.loss={loss!r}: loss must be 'ce' or 'dice_ce'")
        if optimizer not in ("adam", "sgd"):
            raise ConfigError(f"model.optimizer={optimizer!r}: optimizer must be 'adam' or 'sgd'")
        if lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"model.lr_schedule={lr_schedule!r}: lr_schedule must be one of {LR_SCHEDULES}")
        check_postprocess(postprocess)
        if nesterov and optimizer == "sgd" and momentum <= 0:
            raise ConfigError(f"model.nesterov=true: Nesterov SGD needs model.momentum > 0, got {momentum}")
        if class_weights is not None and loss != "ce":
            raise ValueError("class_weights apply to loss=ce only")
        if class_weights is not None and len(class_weights) != num_classes:
            raise ValueError(f"class_weights needs {num_classes} values, got {len(class_weights)}")
        self.save_hyperparameters()
        self._set_net(build_net(
            arch, num_classes, in_channels, width, dropout, pretrained_vgg16, net, batch_norm, fc6_kernel, plan
        ))
        if class_weights is not None:
            self.register_buffer("class_weights", torch.tensor(class_weights, dtype=torch.float32))
        else:
            self.class_weights = None
        self._dice_ce = None
        if loss == "dice_ce":
            from monai.losses import DiceCELoss

            self._dice_ce = DiceCELoss(
                include_background=False, to_onehot_y=True, softmax=True, batch=True
            )
        self.val_metrics = SegmentationMetrics(num_classes)
        self.train_set_size: int | None = None

    # ---- network -------------------------------------------------------------------------
    def _set_net(self, net: nn.Module) -> None:
        self.net = net
        speed_up(self.net, bool(self.hparams.get("channels_last")), bool(self.hparams.get("compile")))

    def _plans_net(self) -> bool:
        """arch=dynunet without a ``net``: the network comes from ``plan``."""
        return self.hparams.get("arch") == "dynunet" and not self.hparams.get("net")

    def setup(self, stage: str) -> None:
        """arch=dynunet, fitting: plan the network from the training data unless a plan is given, log it
        and write <run dir>/plan.json (models/dynunet_training.py)."""
        if stage != "fit" or not self._plans_net():
            return
        from lcgan_lightning.models.dynunet_training import (
            build_dynunet,
            plan_for_fit,
            publish_plan,
        )

        hp = self.hparams
        if not hp.get("plan"):
            hp.plan = plan_for_fit(self.trainer, float(hp.width), hp.get("planner")).as_dict()
            self._set_net(build_dynunet(hp.plan, int(hp.num_classes), int(hp.in_channels), float(hp.dropout)))
        publish_plan(hp.plan, self.run_dir, write=self.trainer.is_global_zero)

    def training_outputs(self, images: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """Logits for the training loss: every deep-supervision output (full resolution first) of a
        planned DynUNet with deep supervision, else the network's output."""
        forward_deep = getattr(self.net, "forward_deep", None)
        if forward_deep is not None and self._plans_net() and len(self.hparams.plan["deep_supervision_weights"]) > 1:
            return cast(list[torch.Tensor], forward_deep(images))
        return self(images)

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        """float32 image and int64 mask, converted on this module's device."""
        return model_batch(batch, channels_last=bool(self.hparams.get("channels_last")))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)

    def loss_fn(self, logits: torch.Tensor | list[torch.Tensor], masks: torch.Tensor) -> torch.Tensor:
        if isinstance(logits, list):  # deep supervision: nnU-Net's weights, masks downsampled (nearest)
            from lcgan_lightning.models.dynunet_training import deep_supervision_loss

            return deep_supervision_loss(logits, masks, self.hparams.plan["deep_supervision_weights"], self.loss_fn)
        if self._dice_ce is not None:
            return self._dice_ce(logits, masks[:, None])
        return F.cross_entropy(logits, masks, weight=self.class_weights)

    def labels(self, logits: torch.Tensor) -> torch.Tensor:
        """Label maps [B, H, W] from logits [B, C, H, W]: argmax, then ``postprocess`` (if any).

        Every prediction of the module goes through here (validation, test, ``predict_masks``), so
        the checkpoint choice, the test files, the FCN score and the audit see the same labels."""
        return postprocess_labels(
            logits.argmax(dim=1), self.hparams.get("postprocess", "none"), int(self.hparams.num_classes)
        )

    @torch.no_grad()
    def predict_masks(self, images: torch.Tensor) -> torch.Tensor:
        """Label maps [B, H, W] (long) for images [B, 1, H, W] in [-1, 1]."""
        was_training = self.training
        self.eval()
        try:
            return self.labels(self.net(images.to(self.device, torch.float32)))
        finally:
            self.train(was_training)

    @torch.no_grad()
    def encoder_features(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled encoder features [B, F] (FCN-8s: pool5, BasicUNet and DynUNet: bottleneck), for FID."""
        if not hasattr(self.net, "encode"):
            raise NotImplementedError(f"{type(self.net).__name__} has no encode() method")
        was_training = self.training
        self.eval()
        try:
            encode = cast(Callable[[torch.Tensor], torch.Tensor], self.net.encode)  # checked above
            return encode(images.to(self.device, torch.float32))
        finally:
            self.train(was_training)

    # ---- training ------------------------------------------------------------------------
    def configure_optimizers(self) -> torch.optim.Optimizer | OptimizerLRSchedulerConfig:
        """Adam or SGD (``nesterov``: Nesterov momentum) with ``lr_schedule`` constant, cosine or poly,
        stepped per optimiser step (:mod:`lcgan_lightning.models.lr_schedules`)."""
        hp = self.hparams
        opt: torch.optim.Optimizer
        if hp.optimizer == "sgd":
            opt = torch.optim.SGD(self.parameters(), lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay,
                                  nesterov=bool(hp.get("nesterov", False)))
        else:
            fused: dict[str, Any] = {"fused": True} if hp.get("fused_adam") else {}  # one pass per parameter; not bit-identical
            opt = torch.optim.Adam(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay, **fused)
        schedule = hp.get("lr_schedule", "constant")
        if schedule == "constant":
            return opt
        return {"optimizer": opt, "lr_scheduler": {"scheduler": lr_scheduler(opt, schedule, self.trainer), "interval": "step"}}

    def configure_callbacks(self) -> list[pl.Callback]:
        return [
            ResumableModelCheckpoint(
                dirpath=str(self.run_dir / CHECKPOINTS),
                filename="epoch={epoch:03d}-dsc={val/dsc:.4f}",
                auto_insert_metric_name=False,
                monitor="val/dsc",
                mode="max",
                save_last=True,
            ),
            SegmentationOverlays(self.hparams.n_overlay, self.hparams.overlay_every_n_epochs),
            TestPredictionsWriter(),
        ]

    @property
    def run_dir(self) -> Path:
        """Where checkpoints and test files go: the trainer's default_root_dir."""
        trainer = self._trainer
        return Path(trainer.default_root_dir) if trainer is not None else Path.cwd()

    def on_train_start(self) -> None:
        dataset = getattr(self.trainer.train_dataloader, "dataset", None)
        if dataset is not None and hasattr(dataset, "__len__"):
            self.train_set_size = len(dataset)
            log.info("segmenter training set: %d slices", self.train_set_size)
            for logger in self.loggers:
                logger.log_metrics({"train_set_size": float(self.train_set_size)}, step=0)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["train_set_size"] = self.train_set_size

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.train_set_size = checkpoint.get("train_set_size")
        stored = (checkpoint.get("hyper_parameters") or {}).get("plan")
        if self._plans_net() and stored and stored != self.hparams.get("plan"):
            # a resumed run whose data now plans differently: the checkpoint's network, so its weights load
            from lcgan_lightning.models.dynunet_training import build_dynunet

            log.warning("model.plan: the checkpoint's DynUNet plan differs from the one planned now; using the checkpoint's")
            self.hparams.plan = stored
            hp = self.hparams
            self._set_net(build_dynunet(stored, int(hp.num_classes), int(hp.in_channels), float(hp.dropout)))

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        logits = self.training_outputs(batch["image"])
        loss = self.loss_fn(logits, batch["mask"])
        self.log(
            "train/loss",
            loss,
            on_step=True,
            on_epoch=True,
            prog_bar=True,
            batch_size=batch["image"].shape[0],
        )
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        images, masks = batch["image"], batch["mask"]
        logits = self(images)
        self.log("val/loss", self.loss_fn(logits, masks), on_epoch=True, batch_size=images.shape[0],
                 sync_dist=True)
        preds = self.labels(logits)
        self.val_metrics.update(preds, masks)
        return {"preds": preds.detach()}

    def on_validation_epoch_end(self) -> None:
        m = self.val_metrics.compute()
        self.val_metrics.reset()
        self.log("val/dsc", m["dsc"], prog_bar=True)
        self.log("val/precision", m["precision"])
        self.log("val/recall", m["recall"])

    # ---- test ----------------------------------------------------------------------------
    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        return {"preds": self.labels(self(batch["image"]))}


def load_segmenter(
    ckpt_path: str | Path, map_location: str | torch.device = "cpu", trust: bool = False
) -> Segmenter:
    """A trained Segmenter from its checkpoint file alone, in eval mode.

    The file is read by `load_checkpoint` (tensors and plain data only unless `trust`); the
    module is rebuilt from its stored hyper-parameters, as Lightning's load_from_checkpoint does.
    """
    path = Path(ckpt_path)
    if not path.is_file():
        raise CheckpointNotFoundError(f"{path}: segmenter checkpoint not found")
    ckpt = load_checkpoint(path, map_location=map_location, trust=trust)
    hp = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if not isinstance(hp, dict) or "state_dict" not in ckpt:
        raise CheckpointReadError(
            f"{path}: not a Segmenter checkpoint (missing hyper_parameters/state_dict)"
        )
    try:
        model = Segmenter(**{**hp, "pretrained_vgg16": None, "compile": False})  # weights from the file
        model.on_load_checkpoint(ckpt)
        model.load_state_dict(ckpt["state_dict"])
    except (KeyError, TypeError, RuntimeError) as e:
        raise CheckpointReadError(f"{path}: not a Segmenter checkpoint: {e}") from e
    if isinstance(map_location, (str, torch.device)):
        model.to(map_location)
    return model.eval()


__all__ = ["Segmenter", "build_net", "coarse_output_note", "load_segmenter"]
