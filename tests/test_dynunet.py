"""model=dynunet: nnU-Net's planner, DynUNet deep supervision and its loss, the poly schedule, the configs in
every pipeline scale, and a tiny run that writes plan.json, resumes and is evaluated again."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate

from lcgan_lightning.errors import ConfigError
from lcgan_lightning.models.dynunet import DynUNetSeg
from lcgan_lightning.models.dynunet_plan import (
    DynUNetPlan,
    check_planner,
    class_frequencies,
    deep_supervision_weights,
    plan_dynunet,
    stage_filters,
)
from lcgan_lightning.models.dynunet_training import UnplannedNet, deep_supervision_loss
from lcgan_lightning.models.segmenter import Segmenter
from lcgan_lightning.paths import CONF_DIR

ISO = (1, 1), (2, 2)


# ---- planner ---------------------------------------------------------------------------------
@pytest.mark.parametrize("size,n_pool,bottleneck,filters", [
    (64, 4, 4, [32, 64, 128, 256, 320]),
    (128, 5, 4, [32, 64, 128, 256, 320, 320]),
    (256, 6, 4, [32, 64, 128, 256, 320, 320, 320]),
    (512, 6, 8, [32, 64, 128, 256, 320, 320, 320]),  # capped at 6 levels (nnU-Net would pool a 7th time)
])
def test_isotropic_plans(size, n_pool, bottleneck, filters):
    plan = plan_dynunet((size, size))
    assert plan.strides == ((1, 1),) + ((2, 2),) * n_pool
    assert plan.kernels == ((3, 3),) * (n_pool + 1)
    assert list(plan.filters) == filters
    assert plan.bottleneck == (bottleneck, bottleneck) and plan.divisible_by == (2**n_pool, 2**n_pool)
    assert len(plan.deep_supervision_weights) == n_pool


def test_512_without_the_cap_is_nnunets_seven_levels():
    plan = plan_dynunet((512, 512), max_pool_levels=7)
    assert len(plan.strides) == 8 and plan.bottleneck == (4, 4)


def test_anisotropic_spacing_waits_and_uses_kernel_1_on_the_coarse_axis():
    # (0.5, 1.5): x is 3x coarser, so only y is pooled first (x waits: stride 1, kernel 1); after one
    # level y is at 1.0 and x within 2x of it: both pool, kernels 3x3 from then on
    plan = plan_dynunet((128, 128), spacing=(0.5, 1.5))
    assert plan.strides == ((1, 1), (2, 1), (2, 2), (2, 2), (2, 2), (2, 2))
    assert plan.kernels == ((3, 1), (3, 3), (3, 3), (3, 3), (3, 3), (3, 3))
    assert plan.bottleneck == (4, 8) and plan.divisible_by == (32, 16)
    # (0.5, 2.5) at 256²: x waits two levels (5x, then 2.5x the finest), kernel 1 while >= 2x
    coarse = plan_dynunet((256, 256), spacing=(0.5, 2.5))
    assert coarse.strides == ((1, 1), (2, 1), (2, 1), (2, 2), (2, 2), (2, 2), (2, 2))
    assert coarse.kernels == ((3, 1), (3, 1)) + ((3, 3),) * 5
    assert coarse.bottleneck == (4, 16)
    # the transposed spacing transposes the plan
    flipped = plan_dynunet((128, 128), spacing=(1.5, 0.5))
    assert flipped.strides == tuple((s[1], s[0]) for s in plan.strides)


def test_filters_width_floor_and_cap():
    assert stage_filters(6, width=0.25) == [8, 16, 32, 64, 80, 80]
    assert stage_filters(6, width=0.125) == [8, 8, 16, 32, 40, 40]  # at least 8
    assert stage_filters(7, width=1.0, cap=512) == [32, 64, 128, 256, 512, 512, 512]


def test_planner_errors_name_the_key():
    with pytest.raises(ConfigError, match=r"model.planner.patch_size=\[12, 12\].*allow 1"):
        plan_dynunet((12, 12))
    with pytest.raises(ConfigError, match="model.planner.spacing"):
        plan_dynunet((64, 64), spacing=(0.0, 1.0))
    with pytest.raises(ConfigError, match="model.planner.kernel"):
        check_planner({"kernel": 3})
    with pytest.raises(ConfigError, match="model.plan: not a DynUNet plan"):
        DynUNetPlan.from_dict({"patch_size": [64, 64]})


def test_plan_round_trips_and_counts_classes():
    masks = np.zeros((2, 4, 4), np.uint8)
    masks[0, 0, :2] = 1
    masks[1, 3, 3] = 5
    freqs = class_frequencies(masks)
    assert freqs == pytest.approx([29 / 32, 2 / 32, 0, 0, 0, 1 / 32])
    plan = plan_dynunet((64, 64), class_freqs=freqs, width=0.5)
    assert DynUNetPlan.from_dict(json.loads(json.dumps(plan.as_dict()))) == plan
    assert plan.filters == (16, 32, 64, 128, 160)  # frequencies change nothing in the architecture


# ---- deep supervision ---------------------------------------------------------------------------
def test_deep_supervision_weights_by_hand():
    assert deep_supervision_weights(5) == pytest.approx([8 / 15, 4 / 15, 2 / 15, 1 / 15, 0.0])
    assert deep_supervision_weights(3) == pytest.approx([2 / 3, 1 / 3, 0.0])
    for n in range(2, 8):
        w = deep_supervision_weights(n)
        assert sum(w) == pytest.approx(1.0) and w[-1] == 0.0 and all(a > b for a, b in zip(w, w[1:], strict=False))


def test_deep_supervision_outputs_and_their_loss():
    plan = plan_dynunet((64, 64), width=0.125)
    net = DynUNetSeg(plan.kernels, plan.strides, plan.filters, deep_supervision=len(plan.deep_supervision_weights))
    x = torch.randn(2, 1, 64, 64)
    outs = net.train().forward_deep(x)
    assert [tuple(o.shape) for o in outs] == [(2, 6, 64, 64), (2, 6, 32, 32), (2, 6, 16, 16), (2, 6, 8, 8)]
    assert len(outs) == len(plan.deep_supervision_weights)
    with torch.no_grad():
        assert net.eval()(x).shape == (2, 6, 64, 64)  # evaluation: the full-resolution output only
        assert net.encode(x).shape == (2, 40)
        assert net(torch.randn(1, 1, 50, 44)).shape == (1, 6, 50, 44)  # padded to multiples of 16, cropped
    masks = torch.zeros(2, 64, 64, dtype=torch.long)
    masks[:, 8:24, 16:40] = 3
    weights = plan.deep_supervision_weights
    got = deep_supervision_loss(outs, masks, weights, F.cross_entropy)
    # by hand: the mask at 1/2, 1/4, 1/8 is every 2nd, 4th, 8th pixel (nearest)
    want = sum(w * F.cross_entropy(o, masks[:, ::s, ::s]) for o, w, s in zip(outs, weights, (1, 2, 4, 8), strict=True))
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    got.backward()  # the weight-0 head is in the graph (zero gradients): DDP sees every parameter used
    head = net.unet.deep_supervision_heads[-1]
    assert head.conv.conv.weight.grad is not None and head.conv.conv.weight.grad.abs().sum() == 0


def test_segmenter_trains_on_every_output_and_predicts_from_the_first():
    plan = plan_dynunet((32, 32), width=0.125)
    model = Segmenter(arch="dynunet", width=0.125, dropout=0.0, loss="dice_ce", optimizer="sgd", lr=0.01,
                      momentum=0.99, nesterov=True, weight_decay=3e-5, plan=plan.as_dict())
    images = torch.randn(2, 1, 32, 32)
    outs = model.train().training_outputs(images)
    assert isinstance(outs, list) and [o.shape[-1] for o in outs] == [32, 16, 8]
    masks = torch.randint(0, 6, (2, 32, 32))
    assert model.loss_fn(outs, masks).item() == pytest.approx(
        sum(w * model.loss_fn(o, F.interpolate(masks[:, None].float(), size=o.shape[-2:])[:, 0].long()).item()
            for o, w in zip(outs, plan.deep_supervision_weights, strict=True)), rel=1e-5)
    assert model.predict_masks(images).shape == (2, 32, 32)
    opt = model.configure_optimizers()
    group = opt.param_groups[0]
    assert isinstance(opt, torch.optim.SGD) and group["nesterov"] and group["momentum"] == 0.99
    assert group["weight_decay"] == 3e-5
    unplanned = Segmenter(arch="dynunet", width=0.125)
    assert isinstance(unplanned.net, UnplannedNet)
    with pytest.raises(ConfigError, match="model.plan"):
        unplanned(images)


def test_a_checkpoints_plan_wins_over_the_one_planned_now():
    """Resuming where the data now plans another network: the checkpoint's network, so its weights load."""
    small, large = plan_dynunet((32, 32), width=0.125).as_dict(), plan_dynunet((64, 64), width=0.125).as_dict()
    trained = Segmenter(arch="dynunet", width=0.125, plan=small)
    ckpt = {"hyper_parameters": dict(trained.hparams), "state_dict": trained.state_dict()}
    resumed = Segmenter(arch="dynunet", width=0.125, plan=large)  # what setup("fit") planned from the data
    assert len(resumed.net.unet.downsamples) == 3
    resumed.on_load_checkpoint(ckpt)
    assert resumed.hparams.plan == small and len(resumed.net.unet.downsamples) == 2
    resumed.load_state_dict(ckpt["state_dict"])  # strict: every key and shape fits


def test_poly_schedule_by_hand():
    model = Segmenter(arch="fcn8s", width=0.125, optimizer="sgd", lr=0.01, momentum=0.99, nesterov=True,
                      lr_schedule="poly")
    # (what lr_scheduler reads of a Trainer; the step count only from the first step on)
    model._trainer = SimpleNamespace(estimated_stepping_batches=10, max_steps=10, max_epochs=1)
    conf = model.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    assert conf["lr_scheduler"]["interval"] == "step"
    lrs = []
    for _ in range(11):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.01)
    assert lrs[2] == pytest.approx(0.01 * 0.8**0.9)          # 0.0081822
    assert lrs[5] == pytest.approx(0.01 * 0.5**0.9)          # 0.0053589: the middle
    assert lrs[9] == pytest.approx(0.01 * 0.1**0.9)          # 0.0012589
    assert lrs[10] == pytest.approx(0.0, abs=1e-12)           # the end
    model._trainer = SimpleNamespace(estimated_stepping_batches=float("inf"), max_steps=-1, max_epochs=-1)
    with pytest.raises(ConfigError, match="model.lr_schedule=poly"):
        model.configure_optimizers()
    with pytest.raises(ConfigError, match="model.nesterov=true"):
        Segmenter(arch="fcn8s", width=0.125, optimizer="sgd", momentum=0.0, nesterov=True)


# ---- configs --------------------------------------------------------------------------------------
def _compose(name: str, overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name=name, overrides=overrides)


def test_model_config_is_nnunets_recipe():
    cfg = _compose("train", ["model=dynunet"])
    m = cfg.model
    assert (m.arch, m.optimizer, m.lr, m.momentum, m.nesterov, m.weight_decay, m.lr_schedule, m.loss) == (
        "dynunet", "sgd", 0.01, 0.99, True, 3e-5, "poly", "dice_ce")
    assert m.planner.max_pool_levels == 6 and m.planner.max_filters == 320 and m.plan is None
    model = instantiate(m)
    assert isinstance(model, Segmenter) and isinstance(model.net, UnplannedNet)


SCALES = sorted(p.stem for p in (CONF_DIR / "scale").glob("*.yaml"))


@pytest.mark.parametrize("scale", SCALES)
def test_seg_model_dynunet_composes_in_every_scale(scale):
    """What the pipeline runs: model=<seg.model> + seg.overrides (+ judge.overrides for the judge), e.g.
    cpu_study's FCN-only model.fc6_kernel=3: the dynunet config accepts (and ignores) it."""
    pipe = _compose("pipeline", [f"scale={scale}", "seg.model=dynunet"])
    seg_args = ["model=dynunet", *pipe.seg.overrides]
    jobs = {"seg": seg_args}
    if pipe.judge.model in (None, "dynunet"):
        jobs["judge"] = seg_args + list(pipe.judge.overrides)
    for name, args in jobs.items():
        cfg = _compose("train", ["data=phantom", *args])
        assert cfg.model.arch == "dynunet", name
        model = instantiate(cfg.model)
        assert isinstance(model, Segmenter) and model.hparams.arch == "dynunet"
        # nnU-Net's SGD unless the scale says otherwise: cpu_study_dynunet's CPU budget takes Adam (its comment)
        assert model.hparams.optimizer == ("adam" if scale == "cpu_study_dynunet" else "sgd"), (scale, name)
    if scale == "paper_dynunet":  # the GPU preset keeps nnU-Net's optimiser and schedule
        assert "lr_schedule" not in " ".join(seg_args) and pipe.seg.model == "dynunet"


def test_cpu_study_dynunet_keeps_the_judge_and_trains_with_adam():
    base = _compose("pipeline", ["scale=cpu_study"])
    dyn = _compose("pipeline", ["scale=cpu_study_dynunet"])

    def judge(p):
        return _compose("train", ["data=phantom", f"model={p.judge.model}", *p.seg.overrides, *p.judge.overrides])

    a, b = judge(base), judge(dyn)
    unused = {"fc6_kernel"}  # FCN-8s only: cpu_study's judge gets 3 from seg.overrides, BasicUNet reads none
    assert {k: v for k, v in a.model.items() if k not in unused} == {k: v for k, v in b.model.items() if k not in unused}
    assert a.model.arch == "basicunet" and a.trainer.max_steps == b.trainer.max_steps == 3000
    seg = _compose("train", ["data=phantom", f"model={dyn.seg.model}", *dyn.seg.overrides])
    assert seg.trainer.max_steps == 400 and seg.model.width == 0.25 and seg.model.lr_schedule == "cosine"
    assert seg.model.optimizer == "adam" and seg.model.lr == 3.0e-3 and seg.model.weight_decay == 0.0
    paper = _compose("pipeline", ["scale=paper_dynunet"])
    assert paper.seg.model == "dynunet" and paper.judge.model is None
    assert _compose("train", ["data=phantom", "model=dynunet", *paper.seg.overrides]).trainer.max_steps == 62500


# ---- a tiny run: plan.json, test files, resume, lcgan-eval -----------------------------------------
class Kill(pl.Callback):
    """Raises before optimiser step `at` (the run dies like a killed one: last.ckpt is the one before)."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_start(self, trainer: pl.Trainer, *args: object) -> None:
        if trainer.global_step == self.at:
            raise RuntimeError(f"killed before step {self.at}")


# 12 training batches per epoch; 2 epochs planned (the poly schedule decays over 24 steps), validation
# and last.ckpt every 6 steps; the nnunet augmentation on
TINY = ["model=dynunet", "model.width=0.25", "data=phantom", "data.image_size=32", "data.phantom.num_patients=12",
        "data.phantom.num_slices=8", "data.batch_size=4", "trainer=cpu", "callbacks=none", "logger=none",
        "model.n_overlay=0", "seed=0", "print_config=false", "data.augment_online=nnunet", "trainer.max_epochs=2",
        "trainer.check_val_every_n_epoch=null", "++trainer.val_check_interval=6"]


@pytest.mark.slow
def test_dynunet_run_writes_the_plan_resumes_exactly_and_evaluates_again(tmp_path):
    """The first epoch runs, the run dies in the second (last.ckpt after step 18), resumes from last.ckpt,
    finishes the second epoch and tests: the weights and test files of an uninterrupted run; lcgan-eval
    of its best checkpoint gives the same test DSC and predictions."""
    from lcgan_lightning.evaluation import evaluate
    from lcgan_lightning.training import train

    def cfg(name: str, run: str, extra: list[str]):
        return _compose(name, [f"paths.root_dir={tmp_path}", f"paths.output_dir={tmp_path / run}", *extra])

    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="killed before step 20"):
        train(cfg("train", "run", [*TINY, "+callbacks.kill._target_=test_dynunet.Kill", "+callbacks.kill.at=20"]))
    plan = json.loads((run / "plan.json").read_text())
    assert plan["patch_size"] == [32, 32] and plan["strides"] == [[1, 1], [2, 2], [2, 2], [2, 2]]
    assert plan["filters"] == [8, 16, 32, 64] and plan["deep_supervision_weights"] == pytest.approx([2 / 3, 1 / 3, 0])
    assert sum(plan["class_frequencies"]) == pytest.approx(1.0) and 0.9 < plan["class_frequencies"][0] < 1.0
    killed = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert killed["global_step"] == 18 and killed["epoch"] == 1  # mid second epoch
    assert killed["hyper_parameters"]["plan"] == plan and not (run / "test_metrics.json").exists()

    resumed = train(cfg("train", "run", [*TINY, "ckpt_path=last"]))
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert resumed["epochs"] == 2 and last["global_step"] == 24 and last["hyper_parameters"]["plan"] == plan
    tested = json.loads((run / "test_metrics.json").read_text())

    train(cfg("train", "straight", [*TINY]))
    straight = torch.load(tmp_path / "straight" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert straight["state_dict"].keys() == last["state_dict"].keys()
    assert all(torch.equal(straight["state_dict"][k], v) for k, v in last["state_dict"].items())
    assert json.loads((tmp_path / "straight" / "test_metrics.json").read_text())["dsc"] == tested["dsc"]

    result = evaluate(cfg("eval", "eval", [f"ckpt_path='{resumed['best_ckpt']}'", "logger=none", "trainer=cpu"]))
    assert result["metrics"]["dsc"] == tested["dsc"]
    again = json.loads((tmp_path / "eval" / "test_metrics.json").read_text())
    assert again["per_class_dsc"] == tested["per_class_dsc"] and again["n_images"] == tested["n_images"] > 0
    with np.load(tmp_path / "eval" / "predictions.npz") as a, np.load(run / "predictions.npz") as b:
        assert np.array_equal(a["pred"], b["pred"])
