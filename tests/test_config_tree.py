"""lcgan_lightning.config_tree: the resolved config as a Rich tree, printed and saved."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from lcgan_lightning.config_tree import TREE_FILE, print_config_tree
from lcgan_lightning.paths import CONF_DIR


@pytest.fixture()
def cfg(tmp_path):
    GlobalHydra.instance().clear()
    overrides = ["model=fcn8s", "model.lr=0.003", "logger=csv", f"paths.root_dir={tmp_path}",
                 f"paths.output_dir={tmp_path / 'run'}"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=overrides, return_hydra_config=True)


def _branches(text: str) -> list[str]:
    """Top-level branch names, in printed order."""
    return [line[4:].strip() for line in text.splitlines() if line[:4] in ("├── ", "└── ")]


def test_prints_groups_first_with_resolved_values(cfg, tmp_path, capsys):
    assert cfg.print_config is True  # conf/train.yaml: on by default
    text = print_config_tree(cfg, save_to=tmp_path / "run")
    out = capsys.readouterr().out
    branches = _branches(out)
    assert branches[:6] == ["data", "model", "trainer", "callbacks", "logger", "paths"]
    assert {"task_name", "seed", "print_config"} <= set(branches) and "hydra" not in branches
    assert "lr: 0.003" in out and "arch: fcn8s" in out
    # interpolations are resolved: trainer.default_root_dir=${paths.output_dir}
    # (checked in the saved text: a terminal of 80 columns wraps the long temporary path)
    assert f"default_root_dir: {tmp_path / 'run'}" in text and "${" not in out + text
    assert (tmp_path / "run" / TREE_FILE).read_text() == text
    assert _branches(text) == branches


def test_fields_select_and_order_branches(cfg, capsys):
    text = print_config_tree(cfg, fields=["seed", "model"])
    assert _branches(text) == ["seed", "model"]
    assert "42" in text.split("model")[0]  # the scalar branch holds its value
    assert "data" not in _branches(capsys.readouterr().out)


def test_bad_input_is_named(cfg, tmp_path):
    with pytest.raises(ValueError, match=r"fields \['modle'\] are not top-level keys"):
        print_config_tree(cfg, fields=["modle"])
    with pytest.raises(TypeError, match="DictConfig, got dict"):
        print_config_tree(OmegaConf.to_container(cfg.model))
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="save_to must be a directory"):
        print_config_tree(cfg, save_to=tmp_path / "file")
