"""The pipeline driver through its public interface, with a launcher that starts no process:
a new stage in a few lines, skip and resume, failures named by job, the plan and its rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, open_dict
from pipeline_helpers import RecordingLauncher, plan

from lcgan_lightning.console import Job, PipelineConsole
from lcgan_lightning.paths import CONF_DIR
from lcgan_lightning.pipeline import (
    STAGES,
    PipelineContext,
    PipelineError,
    Stage,
    quoted,
    run_pipeline,
)
from lcgan_lightning.pipeline.planning import gan_epochs, subset_fractions
from lcgan_lightning.pipeline.state import Failures
from lcgan_lightning.run_plan import RunPlan


def _cfg(*overrides: str):
    """The pipeline config as `lcgan-pipeline` composes it (with its `hydra:` section set)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="pipeline", overrides=["job_trainer=cpu", *overrides], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]  # as the app gets it
    return cfg


class Hello(Stage):
    """A toy stage: one job that writes hello.txt."""

    name = "hello"

    def jobs(self, ctx: PipelineContext) -> list[Job]:
        return [Job("", ctx.layout.root / "hello", done="hello.txt", failed="failed.json")]

    def run(self, ctx: PipelineContext) -> None:
        ctx.launch("hello", [f"hydra.run.dir={quoted(ctx.layout.root / 'hello')}"])


def _hello_app(answer: str):
    def launch(app: str, args: list[str], multirun: bool) -> None:
        out = Path(args[0].split("=", 1)[1].strip("'"))
        out.mkdir(parents=True, exist_ok=True)
        if answer == "fail":
            (out / "failed.json").write_text(json.dumps({"error": "ValueError: no greeting"}))
        else:
            (out / "hello.txt").write_text(answer)
    return launch


def test_a_new_stage_is_one_class_and_one_list_entry(tmp_path: Path) -> None:
    cfg = _cfg("stages=[hello]")
    launcher = RecordingLauncher(on_launch=_hello_app("hi"))
    ctx = run_pipeline(cfg, tmp_path, stages=[*STAGES, Hello()], launcher=launcher)
    assert launcher.calls == [("hello", [f"hydra.run.dir='{tmp_path / 'hello'}'"], False)]
    assert (tmp_path / "hello" / "hello.txt").read_text() == "hi"
    state = json.loads(ctx.layout.state.read_text())
    assert state["last_invocation"] == {"hello": "ran"} and state["stages"]["hello"]["status"] == "ran"
    assert (tmp_path / "conf" / "data" / "pipeline.yaml").is_file()  # every app reads data=pipeline

    again = RecordingLauncher(on_launch=_hello_app("again"))
    run_pipeline(cfg, tmp_path, stages=[*STAGES, Hello()], launcher=again)
    assert again.calls == []  # current: skipped, nothing launched
    state = json.loads(ctx.layout.state.read_text())
    assert state["last_invocation"] == {"hello": "skipped"} and state["stages"]["hello"]["status"] == "ran"


def test_a_job_that_did_not_finish_stops_the_pipeline_by_name_and_a_rerun_resumes(tmp_path: Path, capsys) -> None:
    cfg = _cfg("stages=[hello]")
    with pytest.raises(PipelineError, match=r"stage hello failed:\n  hello: hello: ValueError: no greeting"):
        run_pipeline(cfg, tmp_path, stages=[Hello()], launcher=RecordingLauncher(on_launch=_hello_app("fail")))
    assert "✗ hello: hello failed: ValueError: no greeting" in capsys.readouterr().out
    assert json.loads((tmp_path / "pipeline_state.json").read_text())["last_invocation"] == {"hello": "failed"}
    run_pipeline(cfg, tmp_path, stages=[Hello()], launcher=RecordingLauncher(on_launch=_hello_app("hi")))
    assert json.loads((tmp_path / "pipeline_state.json").read_text())["last_invocation"] == {"hello": "ran"}


def test_calibrate_stage_is_asked_for_by_its_setting() -> None:
    calibrate = next(s for s in STAGES if s.name == "calibrate")
    assert "calibrate" in _cfg().stages and not calibrate.wanted(_cfg())
    assert calibrate.wanted(_cfg("calibrate=true"))
    assert not calibrate.wanted(_cfg("calibrate=true", "stages=[seg]"))


def test_failed_job_is_reported_by_name(tmp_path: Path, capsys) -> None:
    """...with the last 20 lines of its log and the log's path on the console."""
    ok, bad = tmp_path / "gan/frac=0.1/seed=3/epochs=2", tmp_path / "gan/frac=0.25/seed=3/epochs=2"
    ok.mkdir(parents=True)
    (ok / "train_result.json").write_text("{}")
    bad.mkdir(parents=True)
    (bad / "failed.json").write_text(json.dumps({"error": "RuntimeError: CUDA out of memory"}))
    (bad / "stdout.log").write_text("".join(f"log line {i}\n" for i in range(1, 31)))
    failures = Failures(tmp_path, PipelineConsole(["gan"], live=False))
    assert failures.collect("gan", [Job("a", ok), Job("b", bad)]) == [Job("b", bad)]
    assert failures.messages == ["gan: gan/frac=0.25/seed=3/epochs=2: RuntimeError: CUDA out of memory"]
    out = capsys.readouterr().out
    assert "✗ gan: gan/frac=0.25/seed=3/epochs=2 failed: RuntimeError: CUDA out of memory" in out
    shown = [line.split("│ ", 1)[1] for line in out.splitlines() if "│ " in line]
    assert shown == [f"log line {i}" for i in range(11, 31)]
    assert f"log: {bad / 'stdout.log'}" in out


def test_paper_settings_without_vgg_weights_stop_before_training(tmp_path: Path) -> None:
    cfg = _cfg("seg.model=fcn8s_paper")
    launcher = RecordingLauncher()
    with pytest.raises(PipelineError, match=r"seg.pretrained_vgg16=/path/to/vgg16-397923af.pth.*seg.model=fcn8s"):
        run_pipeline(cfg, tmp_path / "run", launcher=launcher)
    assert not (tmp_path / "run").exists() and launcher.calls == []  # nothing was started
    cfg.seg.pretrained_vgg16 = str(tmp_path / "missing.pth")
    with pytest.raises(PipelineError, match="missing.pth: no such file"):
        run_pipeline(cfg, tmp_path / "run", launcher=launcher)


def test_subset_counts_become_exact_fractions(caplog) -> None:
    from lcgan_lightning.data.splits import subset_size

    fracs = subset_fractions(OmegaConf.create({"subset_counts": [53, 212, 529]}), 2117)
    assert [subset_size(f, 2117) for f in fracs] == [53, 212, 529]  # the paper's sizes
    with pytest.raises(PipelineError, match=r"\[600\] outside 1..500 \(the training split holds 500 patients\)"):
        subset_fractions(OmegaConf.create({"subset_counts": [10, 600]}), 500)
    # the old name still works, with a warning
    assert subset_fractions(OmegaConf.create({"subset_patients": [53]}), 2117) == fracs[:1]
    assert "subset_patients is now called subset_counts" in caplog.text
    with pytest.raises(PipelineError, match="set subset_counts only"):
        subset_fractions(OmegaConf.create({"subset_patients": [5], "subset_counts": [5]}), 100)


def test_gan_update_budget_becomes_epochs_per_subset(tmp_path: Path) -> None:
    """gan.updates: small subsets get more epochs for the same number of generator updates."""
    gan = OmegaConf.create({"updates": [100, 400], "batch_size": 4, "lr_policy": "constant"})
    assert gan_epochs(gan, slices=40) == (10, 40)  # 10 updates per epoch
    assert gan_epochs(gan, slices=200) == (2, 8)  # 50 updates per epoch
    p = plan(fractions=(0.1, 0.5), gan_epochs=(10, 40))
    assert p.gan_run_epochs(p.subsets[0]) == [40]
    from lcgan_lightning.layout import RunLayout

    cands = p.candidates(RunLayout(tmp_path), seed=0)
    assert [c["epochs"] for c in cands] == [10, 40, 10, 40]
    assert cands[0]["checkpoint"].endswith("gan/frac=0.1/seed=0/epochs=40/checkpoints/epoch=010.ckpt")


def test_plan_seeds_round_trip_through_plan_json(tmp_path: Path) -> None:
    p = plan(fractions=(0.1, 0.25), seed=42, repeats=3, calibrate=True, variants=("none", "gan-k2"))
    assert p.seeds == [42, 43, 44] and p.calibration_seeds == [45, 46, 47] and p.judge_seeds == [None]
    assert (p.per_mask_needed(novel=False), p.per_mask_needed(novel=True)) == (2, 0)
    p.save(tmp_path / "run_plan.json")
    saved = json.loads((tmp_path / "run_plan.json").read_text())
    assert saved["seeds"] == [42, 43, 44] and saved["calibration_seeds"] == [45, 46, 47]
    assert RunPlan.load(tmp_path / "run_plan.json") == p
    with pytest.raises(FileNotFoundError, match="no run_plan.json"):
        RunPlan.load(tmp_path / "nothing.json")


def test_finished_segmenters_of_another_network_stop_the_run_by_name(tmp_path: Path) -> None:
    """seg/ and judge/ folders do not name the network: a run asking for another one must not count them."""
    from lcgan_lightning.pipeline.stages.seg import check_network

    def finished(name: str, model: str) -> Job:
        d = tmp_path / name
        (d / ".hydra").mkdir(parents=True)
        (d / ".hydra" / "overrides.yaml").write_text(f"- data=pipeline\n- model={model}\n- seed=1\n")
        (d / "train_result.json").write_text("{}")
        return Job(name, d)

    same, other = finished("seg/frac=0.1/aug=none/seed=1", "fcn8s"), finished("judge", "basicunet")
    unfinished = Job("seg/frac=0.1/aug=gan/seed=1", tmp_path / "nothing")
    check_network([same, unfinished], "fcn8s")  # same network, or nothing trained yet: fine
    with pytest.raises(PipelineError, match=r"judge: trained with model=basicunet, but this run asks for "
                                            r"judge.model=dynunet") as err:
        check_network([other], "dynunet", key="judge.model")
    assert "new run dir" in err.value.hint
    with pytest.raises(PipelineError, match=r"seed=1: trained with model=fcn8s, but this run asks for seg.model=dynunet"):
        check_network([same], "dynunet")
