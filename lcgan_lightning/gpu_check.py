"""`make gpu-check`: the GPU paths in one command (< 8 min on one GPU, estimated), results in gpu_check.json.

Checks, each with its figures and `ok`:

* `bf16_vs_fp32`: one short fp32 LcGAN run (128², phantom), then its last checkpoint validated twice
  on the same fixed slices, fp32 and bf16-mixed: |val/SSIM difference| <= 0.02;
* `ddp_smoke`: the LcGAN and the segmenter, 1 epoch under `trainer=ddp` on min(2, GPUs) GPUs; the
  segmenter's test file holds every test slice once;
* `ray_fractional`: a 2-job Ray sweep with `hydra.launcher.ray.remote.num_gpus=0.25` (both on one GPU);
* `peak_memory`: peak CUDA memory of paper-scale jobs (256², LcGAN ngf 64 batch 1 in fp32 and bf16;
  FCN-8s width 1 batch 8), 50 training steps each;
* `bench`: `python -m lcgan_lightning.bench` (its own JSON, included).

Without a visible GPU it stops at once with exit status 2 and says so. `--cpu` runs the same
sequence at toy size on the CPU (checks the script itself; its figures say nothing about GPUs).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lcgan_lightning.atomic_io import write_json_atomic
from lcgan_lightning.devices import visible_gpus, why_no_gpu

SSIM_TOLERANCE = 0.02


class CheckFailed(RuntimeError):
    """A subprocess of the check failed (its output tail is in the message)."""


class GpuCheck:
    """Runs the checks under `work` (phantom data, run dirs) on CUDA, or at toy size on the CPU."""

    def __init__(self, work: Path, cpu: bool = False) -> None:
        self.work, self.cpu = work.resolve(), cpu
        self.n_gpus = 0 if cpu else visible_gpus()
        self.env = dict(os.environ, LCGAN_ROOT=str(self.work), WANDB_MODE="disabled", HYDRA_FULL_ERROR="1",
                        RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")
        if cpu:
            self.env["OMP_NUM_THREADS"] = "1"
        self.size = 32 if cpu else 128
        self.tiny = ["model.ngf=8", "model.ndf=8"] if cpu else []

    # ---- helpers ------------------------------------------------------------------------------
    def _data(self, size: int, patients: int = 12, slices: int = 8) -> list[str]:
        return ["data=phantom", f"data.image_size={size}", f"data.phantom.num_patients={patients}",
                f"data.phantom.num_slices={slices}", "logger=csv", "callbacks=none", "print_config=false"]

    def _trainer(self, name: str) -> list[str]:
        if not self.cpu:
            return [f"trainer={name}"]
        cpu = ["trainer.accelerator=cpu", "data.num_workers=0", "data.pin_memory=false"]
        return {"gpu": ["trainer=cpu"], "gpu_bf16": ["trainer=cpu", "trainer.precision=bf16-mixed"],
                "ddp": ["trainer=ddp", "trainer.devices=2", *cpu]}[name]

    def _run(self, args: list[str], timeout: float) -> float:
        started = time.time()
        proc = subprocess.run([sys.executable, *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout)
        if proc.returncode != 0:
            raise CheckFailed(f"{' '.join(args[:3])} ... exited {proc.returncode}:\n{proc.stderr[-3000:]}")
        return round(time.time() - started, 1)

    def _train(self, run: Path, args: list[str], timeout: float = 300, multirun: bool = False) -> float:
        where = [f"hydra.sweep.dir={run}"] if multirun else [f"hydra.run.dir={run}"]
        return self._run(["-m", "lcgan_lightning.cli.train", *(["-m"] if multirun else []), *args, *where], timeout)

    @staticmethod
    def _result(run: Path) -> dict[str, Any]:
        return json.loads((run / "train_result.json").read_text())

    # ---- checks -------------------------------------------------------------------------------
    def bf16_vs_fp32(self) -> dict[str, Any]:
        import pytorch_lightning as pl
        import torch
        from omegaconf import OmegaConf

        from lcgan_lightning.data.datamodule import open_datamodule
        from lcgan_lightning.models.lcgan import LcGAN

        run = self.work / "bf16_vs_fp32"
        epochs = 1 if self.cpu else 3
        wall = self._train(run, ["model=lcgan", *self._data(self.size, 24, 16), *self._trainer("gpu"), *self.tiny,
                                 "data.batch_size=1", f"trainer.max_epochs={epochs}", "model.n_panel=0",
                                 "data.val_samples=32", "seed=0"])
        ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
        data_cfg = OmegaConf.load(run / "config.yaml").data
        ssim = {}
        for precision in ("32-true", "bf16-mixed"):
            model = LcGAN(**ckpt["hyper_parameters"])
            model.load_state_dict(ckpt["state_dict"])
            dm = open_datamodule(data_cfg, stage="validate", num_workers=0)
            trainer = pl.Trainer(accelerator="cpu" if self.cpu else "gpu", devices=1, precision=precision,
                                 logger=False, enable_progress_bar=False, enable_model_summary=False,
                                 default_root_dir=str(run / f"validate_{precision}"))
            ssim[precision] = float(trainer.validate(model, datamodule=dm, verbose=False)[0]["val/SSIM"])
        diff = abs(ssim["bf16-mixed"] - ssim["32-true"])
        return {"ok": diff <= SSIM_TOLERANCE, "val_ssim_fp32": ssim["32-true"], "val_ssim_bf16": ssim["bf16-mixed"],
                "abs_diff": diff, "tolerance": SSIM_TOLERANCE, "train_epochs": epochs, "train_wall_s": wall,
                "image_size": self.size}

    def ddp_smoke(self) -> dict[str, Any]:
        devices = 2 if self.cpu else min(2, self.n_gpus)
        ddp = [*self._trainer("ddp"), f"trainer.devices={devices}", "trainer.max_epochs=1"]
        gan, seg = self.work / "ddp_gan", self.work / "ddp_seg"
        wall_gan = self._train(gan, ["model=lcgan", *self._data(self.size), *ddp, *self.tiny, "data.batch_size=1",
                                     "model.save_epochs=[1]", "model.n_panel=2"])
        wall_seg = self._train(seg, ["model=fcn8s", *self._data(self.size), *ddp, "model.width=0.125",
                                     "data.batch_size=4", "model.n_overlay=0"])
        import numpy as np

        from lcgan_lightning.models.generation import load_generator

        load_generator(gan / "checkpoints" / "epoch=001.ckpt")
        pred = np.load(seg / "predictions.npz")
        rows = len(pred["slice"])
        unique = len(set(zip(pred["patient"], pred["volume"], pred["slice"], strict=True)))
        return {"ok": rows == unique and (gan / "train_result.json").exists(), "devices": devices,
                "test_rows": rows, "unique_test_rows": unique, "wall_s": {"lcgan": wall_gan, "segmenter": wall_seg},
                "peak_gpu_memory_mb": {"lcgan": self._result(gan).get("peak_gpu_memory_mb"),
                                       "segmenter": self._result(seg).get("peak_gpu_memory_mb")}}

    def ray_fractional(self) -> dict[str, Any]:
        sweep = self.work / "ray_sweep"
        gpus = 0 if self.cpu else 0.25
        args = ["model=lcgan", *self._data(self.size), *self._trainer("gpu"), *self.tiny, "data.batch_size=1",
                "trainer.max_epochs=1", "data.fraction=0.1,0.25", "hydra/launcher=ray_gpus",
                f"hydra.launcher.ray.remote.num_gpus={gpus}", "hydra.launcher.ray.remote.num_cpus=1",
                "data.num_workers=0"]
        if self.cpu:
            args.append("+hydra.launcher.ray.init.num_cpus=2")
        wall = self._train(sweep, args, timeout=400, multirun=True)
        results = [self._result(d) for d in sorted(sweep.iterdir()) if (d / "train_result.json").exists()]
        return {"ok": len(results) == 2, "num_gpus_per_job": gpus, "jobs_finished": len(results), "wall_s": wall,
                "job_wall_s": [r["wall_s"] for r in results],
                "peak_gpu_memory_mb": [r.get("peak_gpu_memory_mb") for r in results]}

    def peak_memory(self) -> dict[str, Any]:
        size = 32 if self.cpu else 256
        steps = 2 if self.cpu else 50
        common = [*self._data(size, 12, 16), f"++trainer.limit_train_batches={steps}", "++trainer.limit_val_batches=2",
                  "trainer.max_epochs=1"]
        jobs = {
            "lcgan_fp32_b1": ["model=lcgan", *self._trainer("gpu"), *self.tiny, "data.batch_size=1", "model.n_panel=0"],
            "lcgan_bf16_b1": ["model=lcgan", *self._trainer("gpu_bf16"), *self.tiny, "data.batch_size=1",
                              "model.n_panel=0"],
            "fcn8s_w1_fp32_b8": ["model=fcn8s", *self._trainer("gpu"), f"model.width={0.125 if self.cpu else 1.0}",
                                 "data.batch_size=8", "model.n_overlay=0", "test=false"],
        }
        out: dict[str, Any] = {"image_size": size, "train_steps": steps}
        for name, args in jobs.items():
            run = self.work / f"mem_{name}"
            self._train(run, [*common, *args])
            out[name] = {"peak_gpu_memory_mb": self._result(run).get("peak_gpu_memory_mb"),
                         "wall_s": self._result(run)["wall_s"]}
        out["ok"] = self.cpu or all(out[name]["peak_gpu_memory_mb"] for name in jobs)
        return out

    def bench(self) -> dict[str, Any]:
        out = self.work / "bench.json"
        args = ["-m", "lcgan_lightning.bench", "--out", str(out)]
        if self.cpu:
            args += ["--cpu", "--sizes", "32", "--batch-sizes", "1", "--steps", "1", "--warmup", "0",
                     "--ngf", "8", "--ndf", "8"]
        wall = self._run(args, timeout=300)
        return {"ok": True, "wall_s": wall, "result": json.loads(out.read_text())}

    def run_all(self) -> dict[str, Any]:
        import torch

        self.work.mkdir(parents=True, exist_ok=True)
        report: dict[str, Any] = {
            "device": "cpu (--cpu: script check only)" if self.cpu else torch.cuda.get_device_name(0),
            "gpus": self.n_gpus, "torch": torch.__version__, "cuda": torch.version.cuda, "checks": {}}
        started = time.time()
        for name in ("bf16_vs_fp32", "ddp_smoke", "ray_fractional", "peak_memory", "bench"):
            t0 = time.time()
            print(f"gpu-check: {name} ...", flush=True)
            try:
                result = getattr(self, name)()
            except (CheckFailed, subprocess.TimeoutExpired, OSError, ValueError, KeyError) as err:
                result = {"ok": False, "error": f"{type(err).__name__}: {err}"}
            result["check_wall_s"] = round(time.time() - t0, 1)
            report["checks"][name] = result
            print(f"gpu-check: {name}: {'ok' if result['ok'] else 'FAILED'} ({result['check_wall_s']} s)", flush=True)
        report["wall_s"] = round(time.time() - started, 1)
        report["ok"] = all(c["ok"] for c in report["checks"].values())
        return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="gpu_check.json", help="JSON result file")
    p.add_argument("--work", default="runs/gpu_check", help="run dirs and phantom data of the checks")
    p.add_argument("--cpu", action="store_true", help="toy-size run on the CPU (tests this script, not a GPU)")
    args = p.parse_args(argv)
    if not args.cpu and visible_gpus() == 0:
        print(f"gpu-check needs a CUDA GPU, and {why_no_gpu()}: nothing was run. Run it on a GPU machine "
              "(`python -m lcgan_lightning.gpu_check --cpu` checks this script at toy size on the CPU).",
              file=sys.stderr)
        return 2
    report = GpuCheck(Path(args.work), cpu=args.cpu).run_all()
    out = Path(args.out)
    write_json_atomic(out, report)
    print(f"gpu-check: {'all ok' if report['ok'] else 'FAILED'} in {report['wall_s']} s -> {out}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
