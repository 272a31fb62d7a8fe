"""conf/model/{fcn8s,basicunet}.yaml and conf/experiment/seg_*.yaml compose and instantiate."""

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from lcgan_lightning.models.basicunet import BasicUNetSeg
from lcgan_lightning.models.fcn8s import FCN8s
from lcgan_lightning.models.segmenter import Segmenter
from lcgan_lightning.paths import CONF_DIR


def compose_train(overrides, hydra_cfg=False):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=overrides, return_hydra_config=hydra_cfg)


@pytest.mark.parametrize("name,cls", [("fcn8s", FCN8s), ("basicunet", BasicUNetSeg)])
def test_model_configs_instantiate(name, cls):
    cfg = compose_train([f"model={name}", "model.width=0.125", "logger=csv"])
    model = instantiate(cfg.model)
    assert isinstance(model, Segmenter) and isinstance(model.net, cls)
    assert model.hparams.arch == name and model.hparams.width == 0.125


def test_seg_sweep_covers_fractions_and_augments():
    cfg = compose_train(["experiment=seg_sweep"], hydra_cfg=True)
    assert cfg.model._target_ == "lcgan_lightning.models.segmenter.Segmenter"
    params = cfg.hydra.sweeper.params
    assert params["data.fraction"] == "0.025,0.1,0.25"
    assert params["data.augment"] == "none,gan,traditional,both"
    assert str(cfg.hydra.mode) == "RunMode.MULTIRUN"


def test_seg_judge_uses_all_training_patients():
    cfg = compose_train(["experiment=seg_judge"])
    assert cfg.data.fraction == 1.0 and cfg.data.augment == "none"
    assert cfg.model.arch == "fcn8s"
