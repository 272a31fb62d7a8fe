"""W&B runs are named and tagged for what they are, with a flat config W&B can group by."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

from lcgan_lightning.config import flatten, register_resolvers
from lcgan_lightning.paths import CONF_DIR

register_resolvers()


def _logger_cfg(overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["logger=wandb", *overrides])
    node = cfg.logger.wandb
    return node.name, list(node.tags)


@pytest.mark.parametrize(
    "overrides,name",
    [
        (["model=fcn8s", "data.fraction=0.1", "data.augment=gan", "seed=2", "task_name=seg"],
         "seg fcn8s frac=0.1 aug=gan seed=2"),
        (["model=lcgan", "data.fraction=0.025", "seed=42", "task_name=gan"], "lcgan frac=0.025 seed=42"),
        (["model=fcn8s", "task_name=judge"], "judge"),
        (["model=basicunet", "data.subset_patients=8", "seed=1"], "seg basicunet patients=8 aug=none seed=1"),
    ],
)
def test_run_names_say_what_the_run_is(overrides, name):
    assert _logger_cfg(overrides)[0] == name


def test_tags_carry_scale_subset_variant_model(monkeypatch):
    monkeypatch.setenv("LCGAN_SCALE", "cpu_study")
    _, tags = _logger_cfg(["model=fcn8s", "data.fraction=0.1", "data.augment=both", "task_name=seg"])
    assert tags == ["scale=cpu_study", "frac=0.1", "aug=both", "model=fcn8s", "task=seg"]


def test_flat_config_keys():
    flat = flatten({"data": {"fraction": 0.1, "augment": "gan", "subsets": [0.1]}, "seed": 3})
    assert flat == {"data.fraction": 0.1, "data.augment": "gan", "data.subsets": [0.1], "seed": 3}


def _records(wandb_file) -> list[dict]:
    """The records of an offline run, read back with wandb's own reader (`wandb leet inspect --json`)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    exe = Path(sys.executable).with_name("wandb")
    out = subprocess.run([str(exe), "leet", "inspect", "--json", str(wandb_file)], capture_output=True, text=True,
                         timeout=120, check=True)
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def test_offline_run_has_the_name_tags_flat_config_and_test_summary(tmp_path):
    """A real (offline) W&B run of a tiny segmenter, read back from its .wandb file."""
    import wandb
    from hydra.core.global_hydra import GlobalHydra
    from test_debug_presets import TINY

    from lcgan_lightning.training import train

    wandb.finish()  # an earlier test's (disabled) run would otherwise be reused by the new logger
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[
            f"paths.root_dir={tmp_path}", f"paths.output_dir={tmp_path / 'run'}", *TINY, "debug=limit",
            "logger=wandb", "task_name=seg", "data.fraction=0.5", "data.augment=traditional"])
    train(cfg)
    (wandb_file,) = (tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb")
    records = _records(wandb_file)
    (run,) = [r["run"] for r in records if r["type"] == "run"]
    assert run["display_name"] == "seg fcn8s frac=0.5 aug=traditional seed=0" and run["job_type"] == "seg"
    assert run["tags"] == ["frac=0.5", "aug=traditional", "model=fcn8s", "task=seg"]
    config = {k: v for r in records if r["type"] == "config" for k, v in r["config"]["update"].items()}
    assert config["data.fraction"] == 0.5 and config["data.augment"] == "traditional"
    summary = {k: v for r in records if r["type"] == "summary" for k, v in r["summary"]["update"].items()}
    assert {"test/dsc", "test/precision", "test/recall", "val/dsc"} <= set(summary)
