"""DDP on CPU (gloo, 2 processes): the three generator families and the segmenters train under
`trainer=ddp`; test rows are gathered without the DistributedSampler's padding; trainer adjustments per
model and machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf

from lcgan_lightning.models.diffusion_gen import MaskDiffusion
from lcgan_lightning.models.lcgan import LcGAN
from lcgan_lightning.models.prediction_writer import merge_distributed_rows
from lcgan_lightning.models.segmenter import Segmenter
from lcgan_lightning.models.spade_gan import SpadeGAN
from lcgan_lightning.training import trainer_adjustments

TINY_DATA = ["data=phantom", "data.image_size=32", "data.phantom.num_patients=12", "data.phantom.num_slices=8",
             "data.num_workers=0", "data.pin_memory=false", "logger=csv", "callbacks=none", "print_config=false",
             "trainer.max_epochs=1"]
DDP = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"]


def _rows(idx: list[int]) -> dict[str, np.ndarray]:
    return {"pred": np.array([[[i]] for i in idx], np.uint8), "true": np.zeros((len(idx), 1, 1), np.uint8),
            "patient": np.array([f"p{i:03d}" for i in idx]), "volume": np.array(["v"] * len(idx)),
            "slice": np.array(idx, np.int32)}


def test_merge_distributed_rows_restores_order_and_drops_padding():
    # 5 rows on 2 ranks: the sampler pads to 6 with row 0; rank 0 gets 0,2,4 and rank 1 gets 1,3,0
    ranks = [_rows([0, 2, 4]), _rows([1, 3, 0])]
    for n in (5, None):  # cut at the dataset size, or by repeated (patient, volume, slice)
        merged = merge_distributed_rows(ranks, n)
        assert merged["slice"].tolist() == [0, 1, 2, 3, 4]
        assert merged["pred"].ravel().tolist() == [0, 1, 2, 3, 4]
        assert merged["patient"].tolist() == ["p000", "p001", "p002", "p003", "p004"]
    assert merge_distributed_rows([None, None], 3) is None


def test_trainer_adjustments_per_model_and_machine():
    ddp = OmegaConf.create({"strategy": "ddp", "accelerator": "cpu", "sync_batchnorm": True})
    gan = LcGAN(image_size=32, ngf=8, ndf=8)
    seg = Segmenter(width=0.125)
    assert trainer_adjustments(ddp, gan) == {"strategy": "ddp_find_unused_parameters_true", "sync_batchnorm": False}
    assert trainer_adjustments(ddp, seg) == {"sync_batchnorm": False}
    assert trainer_adjustments(OmegaConf.create({"accelerator": "cpu"}), gan) == {}


def _train(args: list[str], root: Path, timeout: int = 240) -> None:
    env = dict(os.environ, LCGAN_ROOT=str(root), OMP_NUM_THREADS="1", WANDB_MODE="disabled", HYDRA_FULL_ERROR="1")
    cmd = [sys.executable, "-m", "lcgan_lightning.cli.train", *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]


GENERATORS = {  # family -> (tiny lcgan-train arguments, module class, optimisers in a checkpoint)
    "lcgan": (["data.batch_size=1", "model.ngf=8", "model.ndf=8"], LcGAN, 2),
    "spade": (["data.batch_size=2", "model.channels=[8,16,16]", "model.hidden=8", "model.ndf=8", "model.num_d=2",
               "model.n_layers_d=1", "model.z_dim=4"], SpadeGAN, 2),
    "diffusion": (["data.batch_size=2", "model.channels=[8,16,16]", "model.norm_num_groups=8",
                   "model.num_head_channels=8", "model.sample_steps=2"], MaskDiffusion, 1),
}


@pytest.mark.slow
@pytest.mark.parametrize("family", list(GENERATORS))
def test_generator_trains_under_cpu_ddp_and_its_checkpoints_load(tmp_path, family):
    args, module_class, n_optimizers = GENERATORS[family]
    run = tmp_path / "gan"
    _train([f"model={family}", *TINY_DATA, *DDP, *args, "model.n_panel=2", "model.save_epochs=[1]",
            f"hydra.run.dir={run}"], tmp_path)
    result = json.loads((run / "train_result.json").read_text())
    assert result["epochs"] == 1 and np.isfinite(result["metrics"]["val/SSIM"])
    from lcgan_lightning.models.generation import load_generator

    gen = load_generator(run / "checkpoints" / "epoch=001.ckpt")
    assert gen.kind == family
    masks = torch.zeros(1, 32, 32, dtype=torch.long)
    assert torch.equal(gen.generate(masks, seed=3), gen.generate(masks, seed=3))
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert len(last["optimizer_states"]) == n_optimizers and last["epoch"] == 0
    model = module_class(**last["hyper_parameters"])
    model.load_state_dict(last["state_dict"])  # every network, same names as on one device


@pytest.mark.slow
@pytest.mark.parametrize("model", ["fcn8s", "dynunet"])
def test_segmenter_ddp_test_files_equal_a_single_process_test(tmp_path, model):
    """dynunet: deep-supervision heads train under DDP (no unused parameter), one plan.json (rank 0)."""
    run = tmp_path / "seg"
    _train([f"model={model}", *TINY_DATA, *DDP, "data.batch_size=4", "data.eval_batch_size=2", "model.width=0.125",
            "model.n_overlay=0", f"hydra.run.dir={run}"], tmp_path)
    if model == "dynunet":
        plan = json.loads((run / "plan.json").read_text())
        assert plan["patch_size"] == [32, 32] and len(plan["strides"]) == len(plan["kernels"])
        assert len(plan["deep_supervision_weights"]) > 1  # the heads were trained under DDP
    ddp_pred = dict(np.load(run / "predictions.npz"))
    ddp_metrics = json.loads((run / "test_metrics.json").read_text())

    # the same checkpoint tested by one process: same rows in the same order, same metrics
    from lcgan_lightning.data.datamodule import open_datamodule
    from lcgan_lightning.models.segmenter import load_segmenter

    cfg = OmegaConf.load(run / "config.yaml")
    dm = open_datamodule(cfg.data, stage="test")
    n_test = len(dm.test_dataset)
    assert n_test % 2 == 1  # odd: the 2-rank sampler pads one duplicate row
    model = load_segmenter(json.loads((run / "train_result.json").read_text())["best_ckpt"])
    single = tmp_path / "single"
    pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
               default_root_dir=str(single)).test(model, datamodule=dm)
    one_pred = dict(np.load(single / "predictions.npz"))
    assert len(ddp_pred["slice"]) == n_test
    keys = set(zip(ddp_pred["patient"], ddp_pred["volume"], ddp_pred["slice"], strict=True))
    assert len(keys) == n_test
    for name in ("pred", "true", "patient", "volume", "slice"):
        np.testing.assert_array_equal(ddp_pred[name], one_pred[name], err_msg=name)
    one_metrics = json.loads((single / "test_metrics.json").read_text())
    ddp_metrics.pop("train_set_size"), one_metrics.pop("train_set_size")
    assert ddp_metrics == one_metrics and ddp_metrics["n_images"] == n_test
