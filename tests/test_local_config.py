"""conf/local/: this machine's settings, read last by every command and never committed."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig

from lcgan_lightning.paths import CONF_DIR

APPS = ["audit", "compare", "eval", "inspect", "phantom", "pipeline", "report", "select", "synthesize", "train"]


def _launcher(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["hydra/launcher=slurm", *overrides], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    return cfg.hydra.launcher


def test_slurm_launcher_reads_the_cluster_settings_of_the_local_config() -> None:
    plain = _launcher([])
    assert (plain.partition, plain.account, plain.qos, list(plain.setup)) == (None, None, None, [])
    local = _launcher(["local=example", "cluster.partition=gpu", "cluster.account=lab", "cluster.setup=[module load cuda]"])
    assert (local.partition, local.account, list(local.setup)) == ("gpu", "lab", ["module load cuda"])


@pytest.mark.parametrize("app", APPS)
def test_every_app_reads_the_local_config_last(app: str) -> None:
    defaults = (CONF_DIR / f"{app}.yaml").read_text().split("defaults:")[1].split("\n\n")[0]
    entries = [line.strip() for line in defaults.splitlines() if line.strip().startswith("- ")]
    assert entries[-1].startswith("- optional local: default"), entries


def test_the_local_settings_file_is_ignored_by_git_and_the_example_is_not() -> None:
    repo = Path(__file__).resolve().parents[1]

    def ignored(path: str) -> bool:
        return subprocess.run(["git", "check-ignore", "-q", path], cwd=repo).returncode == 0

    assert ignored("conf/local/default.yaml") and not ignored("conf/local/example.yaml")
