"""split_per_repeat: every repeat draws its own patient split and trains its own judge (pipeline
commands, the frozen data config as each job resolves it, real splits on a small BHSD-layout set)."""

from __future__ import annotations

import json

from data_helpers import bhsd_cases, write_bhsd
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf
from pipeline_helpers import RecordingLauncher

from lcgan_lightning.data.datamodule import open_datamodule
from lcgan_lightning.paths import CONF_DIR
from lcgan_lightning.pipeline import PipelineContext
from lcgan_lightning.pipeline.data_config import write_data_config
from lcgan_lightning.pipeline.stages.judge import JudgeStage
from lcgan_lightning.pipeline.stages.select import SelectStage


def _compose(name: str, overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name=name, overrides=overrides, return_hydra_config=True)


def _pipeline(tmp_path, root, split_per_repeat: bool) -> PipelineContext:
    cfg = _compose("pipeline", [
        "fractions=[0.5]", "gan.epochs=[1]", "repeats=2", "seed=7", f"split_per_repeat={split_per_repeat}",
        "data=bhsd", f"data.root={root}", "data.splits_path=null", f"data.cache_dir={tmp_path / 'cache'}", "data.image_size=32",
    ])
    ctx = PipelineContext.create(cfg, tmp_path / "run", RecordingLauncher())
    write_data_config(cfg, ctx.layout)
    return ctx


def _job_data(pipe: PipelineContext, seed: int):
    """The data config a training job of repeat `seed` resolves (`data=pipeline seed=S`)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[
            f"hydra.searchpath=[file://{pipe.layout.conf_dir.resolve()}]", "data=pipeline", f"seed={seed}"])
    return cfg.data


def test_each_repeat_gets_its_own_split_and_judge(tmp_path):
    root = write_bhsd(tmp_path / "bhsd", bhsd_cases(20))
    pipe = _pipeline(tmp_path, root, split_per_repeat=True)
    frozen = OmegaConf.to_container(OmegaConf.load(pipe.layout.data_config))
    assert frozen["seed"] == "${seed}" and frozen["splits_path"].endswith("/run/splits/seed=${seed}.json")

    splits = {}
    for seed in (7, 8):
        data = _job_data(pipe, seed)
        assert data.seed == seed and data.splits_path == str(pipe.layout.split_of(seed).resolve())
        dm = open_datamodule(data)
        assert pipe.layout.split_of(seed).is_file()  # the job writes its repeat's split
        splits[seed] = {k: set(v) for k, v in dm.splits.items()}
        assert not splits[seed]["train"] & splits[seed]["test"]
    assert splits[7]["test"] != splits[8]["test"]  # the repeats are tested on other patients

    calls = pipe.launcher.calls
    JudgeStage().run(pipe)
    assert [(app, [a for a in args if a.startswith(("seed=", "hydra.run.dir="))]) for app, args, _ in calls] == [
        ("train", ["seed=7", f"hydra.run.dir='{pipe.layout.judge_dir / 'seed=7'}'"]),
        ("train", ["seed=8", f"hydra.run.dir='{pipe.layout.judge_dir / 'seed=8'}'"]),
    ]
    for seed in (7, 8):  # each repeat's selection is scored by the judge of its own split
        d = pipe.layout.judge_dir_of(seed)
        d.mkdir(parents=True)
        (d / "train_result.json").write_text(json.dumps({"best_ckpt": f"judge{seed}.ckpt", "last_ckpt": None}))
    calls.clear()
    SelectStage().run(pipe)
    assert [[a for a in args if a.startswith(("seed=", "judge_ckpt="))] for _, args, _ in calls] == [
        ["judge_ckpt='judge7.ckpt'", "seed=7"], ["judge_ckpt='judge8.ckpt'", "seed=8"]]


def test_default_freezes_one_split_for_every_repeat(tmp_path):
    root = write_bhsd(tmp_path / "bhsd", bhsd_cases(12))
    pipe = _pipeline(tmp_path, root, split_per_repeat=False)
    for seed in (7, 8):
        data = _job_data(pipe, seed)
        assert (data.seed, data.sample_seed, data.splits_path) == (7, seed, str(pipe.layout.splits.resolve()))
    assert [j.dir for j in JudgeStage().jobs(pipe)] == [pipe.layout.judge_dir]
