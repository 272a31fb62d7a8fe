"""Exact resume after a kill at any moment: training runs killed with SIGKILL after a mid-epoch
checkpoint, resumed with ckpt_path=last, end exactly like uninterrupted ones (trainer=cpu)."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from lcgan_lightning.data.resumable import (
    ResumableLoader,
    ResumableSampler,
    rng_state,
    set_rng_state,
)
from lcgan_lightning.paths import CONF_DIR

REPO = Path(__file__).resolve().parents[1]
COMMON = [
    "data=phantom", "data.image_size=32", "data.phantom.num_patients=8", "data.phantom.num_slices=8",
    "data.batch_size=2", "trainer=cpu", "logger=csv", "callbacks=none", "print_config=false",
    "+trainer.enable_progress_bar=false", "+trainer.limit_val_batches=2",
]
# 27 training slices = 14 batches per epoch; validation (and last.ckpt) every 5 steps, across epochs;
# class weights make the tiny net predict lesions, so the compared predictions are not all background
SEG = ["model=fcn8s", "model.width=0.125", "model.lr=0.003", "model.loss=ce", "model.class_weights=[0.05,1,1,1,1,1]",
       "trainer.max_epochs=3", "++trainer.max_steps=40", "trainer.check_val_every_n_epoch=null",
       "++trainer.val_check_interval=5"]
# last.ckpt every 4 batches and at epoch ends (global_step counts 2 per batch: one D and one G step)
GAN = ["model=lcgan", "model.ngf=8", "model.ndf=8", "model.n_panel=1", "model.save_epochs=[2]",
       "model.last_every_n_steps=4", "model.lr_policy=linear", "trainer.max_epochs=3"]
THROTTLE = ["+callbacks.throttle._target_=resume_helpers.Throttle", "+callbacks.throttle.seconds=0.3"]


def _cmd(run_dir: Path, data_dir: Path, args: list[str]) -> list[str]:
    return [sys.executable, "-m", "lcgan_lightning.cli.train", *COMMON, f"paths.root_dir={run_dir.parent}",
            f"paths.data_dir={data_dir}", f"hydra.run.dir={run_dir}", *args]


def _env() -> dict[str, str]:
    tests = str(Path(__file__).parent)
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled",
            "PYTHONPATH": tests if not path else f"{tests}{os.pathsep}{path}"}


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _loader_state(ckpt: dict) -> dict:
    return ckpt["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """The phantom and its slice cache, written once before the concurrent runs read them."""
    from lcgan_lightning.data.datamodule import open_datamodule

    root = tmp_path_factory.mktemp("resume")
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[*COMMON, f"paths.root_dir={root}", f"paths.data_dir={root / 'data'}",
                                                      f"paths.output_dir={root / 'out'}"])
    dm = open_datamodule(cfg.data)
    assert len(dm.train_slices) == 27  # 14 batches of 2 per epoch (the schedules above rely on it)
    return root / "data"


def _kill_mid_epoch_then_resume(tmp_path: Path, data_dir: Path, args: list[str], min_step: int) -> tuple[Path, Path]:
    """Run A uninterrupted and B until its last.ckpt is from global step >= min_step, then SIGKILL B's
    process group and resume B with ckpt_path=last. Returns (A's run dir, B's run dir)."""
    a, b = tmp_path / "a", tmp_path / "b"
    ref = subprocess.Popen(_cmd(a, data_dir, args), cwd=REPO, env=_env(), stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
    victim = subprocess.Popen(_cmd(b, data_dir, [*args, *THROTTLE]), cwd=REPO, env=_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    last = b / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 600
    while victim.poll() is None and time.monotonic() < deadline:
        try:
            if _load(last)["global_step"] >= min_step:
                os.killpg(victim.pid, signal.SIGKILL)
                break
        except (FileNotFoundError, RuntimeError, EOFError, KeyError):
            pass
        time.sleep(0.05)
    assert victim.wait() == -signal.SIGKILL, "the run ended before it was killed"
    killed_at = _load(last)
    assert "seed" in _loader_state(killed_at), "last.ckpt is not a mid-epoch checkpoint"
    assert not (b / "train_result.json").exists()

    resumed = subprocess.run(_cmd(b, data_dir, [*args, "ckpt_path=last"]), cwd=REPO, env=_env(),
                             capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "not resumable" not in resumed.stderr  # Lightning's warning for a non-resumable loader
    assert ref.wait(timeout=900) == 0, ref.stderr.read()[-3000:]
    return a, b


def _assert_same_weights(x: dict, y: dict) -> None:
    assert x["global_step"] == y["global_step"]
    assert x["state_dict"].keys() == y["state_dict"].keys()
    for k in x["state_dict"]:
        assert torch.equal(x["state_dict"][k], y["state_dict"][k]), k


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_segmenter_killed_mid_epoch_resumes_exactly(tmp_path, data_dir):
    a, b = _kill_mid_epoch_then_resume(tmp_path, data_dir, SEG, min_step=20)  # epoch 1, batch 6 of 14
    _assert_same_weights(_load(a / "checkpoints" / "last.ckpt"), _load(b / "checkpoints" / "last.ckpt"))
    assert _load(a / "checkpoints" / "last.ckpt")["global_step"] == 40  # the final weights
    ra, rb = (json.loads((d / "train_result.json").read_text()) for d in (a, b))
    assert Path(ra["best_ckpt"]).name == Path(rb["best_ckpt"]).name
    assert ra["metrics"] == rb["metrics"]
    assert (a / "test_metrics.json").read_text() == (b / "test_metrics.json").read_text()
    pa, pb = np.load(a / "predictions.npz"), np.load(b / "predictions.npz")
    assert np.array_equal(pa["pred"], pb["pred"]) and (pa["pred"] > 0).any()


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_lcgan_killed_mid_epoch_resumes_exactly(tmp_path, data_dir):
    a, b = _kill_mid_epoch_then_resume(tmp_path, data_dir, GAN, min_step=36)  # epoch 1, batch 4 of 14
    # the candidate epoch=002.ckpt holds the generator only; last.ckpt everything, optimisers included
    _assert_same_weights(_load(a / "checkpoints" / "epoch=002.ckpt"), _load(b / "checkpoints" / "epoch=002.ckpt"))
    x, y = _load(a / "checkpoints" / "last.ckpt"), _load(b / "checkpoints" / "last.ckpt")
    _assert_same_weights(x, y)
    for opt_x, opt_y in zip(x["optimizer_states"], y["optimizer_states"], strict=True):  # G and D Adam
        for sx, sy in zip(opt_x["state"].values(), opt_y["state"].values(), strict=True):
            assert all(torch.equal(sx[k], sy[k]) for k in sx)
    assert x["lr_schedulers"] == y["lr_schedulers"]
    # the epoch means of the interrupted epoch and after it (the resumed CSV log starts at epoch 1)
    def means(run: Path) -> dict[str, str]:
        rows = csv.DictReader((run / "csv" / "metrics.csv").open())
        return {r["epoch"]: r["train/G_total_epoch"] for r in rows if r.get("train/G_total_epoch")}
    ma, mb = means(a), means(b)
    assert set(ma) == {"0", "1", "2"} and {"1", "2"} <= set(mb)
    assert all(mb[e] == ma[e] for e in mb)


def test_loader_state_resumes_order_and_rng(tmp_path):
    """In-process: a state taken after k batches replays the rest of the epoch and the RNG draws."""

    class Keys(torch.utils.data.Dataset):  # returns the (index, sample seed) it is asked for
        def __len__(self) -> int:
            return 11

        def __getitem__(self, key):
            return key

    ds = Keys()
    sampler = ResumableSampler(len(ds), 9, with_seeds=True)
    done = {"n": 0}
    loader = ResumableLoader(ds, batch_size=2, sampler=sampler, collate_fn=list, progress=lambda: (done["n"], 5))
    torch.manual_seed(3)
    it = iter(loader)
    first = [next(it) for _ in range(2)]
    done["n"] = 2
    state = loader.state_dict()
    rest, draws = list(it), (torch.rand(2), np.random.rand(), random.random())

    torch.manual_seed(99)  # another process, another start
    set_rng_state(rng_state())
    other = ResumableLoader(ds, batch_size=2, sampler=ResumableSampler(len(ds), 9, with_seeds=True),
                            collate_fn=list, progress=lambda: None)
    other.load_state_dict(state)
    again = list(other)
    assert again == rest and len(first + rest) == 5
    indices = [i for batch in first + rest for i, _ in batch]
    assert len(indices) == len(set(indices)) == 9
    d2 = (torch.rand(2), np.random.rand(), random.random())
    assert torch.equal(draws[0], d2[0]) and draws[1:] == d2[1:]
    # the order is RandomSampler's: same draw from torch's global RNG
    torch.manual_seed(5)
    plain = list(torch.utils.data.RandomSampler(range(11), num_samples=9))
    torch.manual_seed(5)
    assert [i for i, _ in ResumableSampler(len(ds), 9, with_seeds=True)] == plain


def test_slurm_launcher_requeues_and_a_requeued_job_resumes_from_last(tmp_path, monkeypatch):
    """hydra/launcher=slurm composes with requeueing on; a requeued job (SLURM_RESTART_COUNT > 0)
    resolves its checkpoint to last.ckpt (cannot run SLURM here: the parts that decide are tested)."""
    from lcgan_lightning.layout import last_ckpt
    from lcgan_lightning.training import _resolve_ckpt_path

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["hydra/launcher=slurm"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert launcher.max_num_timeout == 3 and launcher.signal_delay_s == 120

    run = tmp_path / "run"
    last = last_ckpt(run)
    last.parent.mkdir(parents=True)
    torch.save({"state_dict": {}}, last)
    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    assert _resolve_ckpt_path(None, run) == (None, True)  # a first start trains from scratch
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert _resolve_ckpt_path(None, run) == (str(last), True)
    assert _resolve_ckpt_path(str(tmp_path / "init.ckpt"), run) == (str(last), True)
    last.unlink()
    assert _resolve_ckpt_path(None, run) == (None, True)  # requeued before its first last.ckpt


@pytest.mark.slow
def test_online_augmentation_does_not_depend_on_workers(data_dir, tmp_path):
    """Per-sample seeds from (epoch shuffle seed, position): 0 or 2 DataLoader workers give the same
    augmented batches, so a resumed epoch (new workers, new worker seeds) augments as the first time."""
    from lcgan_lightning.data.datamodule import open_datamodule

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[*COMMON, f"paths.root_dir={data_dir.parent}",
                                                      f"paths.data_dir={data_dir}", f"paths.output_dir={tmp_path}"])

    def epoch(workers: int, augment: bool = True) -> torch.Tensor:
        dm = open_datamodule(cfg.data, augment_online=augment, num_workers=workers)
        torch.manual_seed(7)
        return torch.cat([b["image"] for b in dm.train_dataloader()]).float()

    plain, serial, parallel = epoch(0, augment=False), epoch(0), epoch(2)
    assert torch.equal(serial, parallel)
    assert not torch.equal(serial, plain) and serial.shape == plain.shape


def test_a_loader_that_cannot_resume_gets_last_ckpt_at_epoch_ends_only(tmp_path, monkeypatch):
    """A plain DataLoader (no position to save): the segmenter's validations every 2 steps and the
    LcGAN's last_every_n_steps=1 write no mid-epoch last.ckpt; both write it at every epoch end."""
    import pytorch_lightning as pl
    from test_lcgan import TinyLesionSet
    from torch.utils.data import DataLoader

    from lcgan_lightning.models.lcgan import LcGAN
    from lcgan_lightning.models.segmenter import Segmenter

    saved: list[tuple[str, int]] = []
    original = pl.Trainer.save_checkpoint  # every full checkpoint file goes through it

    def record(trainer, filepath, *args, **kwargs):
        saved.append((Path(filepath).name, trainer.fit_loop.epoch_loop.batch_progress.total.processed))
        original(trainer, filepath, *args, **kwargs)

    monkeypatch.setattr(pl.Trainer, "save_checkpoint", record)
    ds = TinyLesionSet(n=5)  # 5 batches of 1 per epoch
    for name, model, kw in (
        ("seg", Segmenter(width=0.125, n_overlay=0), {"val_check_interval": 2}),
        ("gan", LcGAN(image_size=32, ngf=8, ndf=8, save_epochs=[9], n_panel=1, last_every_n_steps=1), {}),
    ):
        saved.clear()
        trainer = pl.Trainer(default_root_dir=str(tmp_path / name), max_epochs=2, accelerator="cpu", logger=False,
                             enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                             limit_val_batches=1, **kw)
        trainer.fit(model, DataLoader(ds, batch_size=1, shuffle=True), DataLoader(ds, batch_size=2))
        last = [done for n, done in saved if n == "last.ckpt"]  # batches trained when written
        assert all(done % 5 == 0 for done in last) and {5, 10} <= set(last), (name, saved)
