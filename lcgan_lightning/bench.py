"""Training-step benchmark of the LcGAN: Lightning module vs the same loop in plain PyTorch.

    python -m lcgan_lightning.bench --out bench.json [--steps 10] [--warmup 3] [--sizes 256]
                                    [--batch-sizes 1,16] [--modes fp32,bf16_cl] [--threads N]

One G+D step = generator forward, one discriminator update, one generator update (LcGAN.training_step).
Each (implementation, mode, image size, batch size) runs in a fresh subprocess so peak memory is its own:
CUDA: torch.cuda.max_memory_allocated; CPU: peak resident set size of the process (ru_maxrss) minus the
RSS before the models were built. Modes: fp32; cl = channels_last (`model.channels_last`); compile =
torch.compile (`model.compile`); cl_compile = both; bf16_cl = bf16 autocast + channels_last;
bf16_cl_compile (CUDA defaults: fp32, bf16_cl; CPU: fp32, cl, compile, cl_compile). fp32 and bf16_cl run
the Lightning module and the plain loop; the other modes run the Lightning module only (`--plain-all`:
both), and every Lightning result is also given relative to the plain fp32 step and to the Lightning
fp32 step (the current default) of the same size and batch. Step time = wall clock of one full training iteration (fetch from an in-memory dataset,
transfer, G+D step, framework bookkeeping; device synchronised), median over the timed steps after `--warmup` untimed ones (the median resists load spikes on shared
machines); throughput = batch / median step time. `--repeats` alternates plain/Lightning runs and keeps
each implementation's fastest median.

`--loader`, `--mask-bank`, `--audit` and `--verdicts` time other operations instead (lcgan_lightning.bench_operations);
`--generators` the time to images of LcGAN, SPADE and diffusion (lcgan_lightning.bench_generators).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

MODES = ("fp32", "bf16_cl", "cl", "compile", "cl_compile", "bf16_cl_compile", "fused", "cl_fused", "bf16_cl_fused")
PLAIN_MODES = ("fp32", "bf16_cl")  # modes that also run the plain loop unless --plain-all


def mode_flags(mode: str) -> dict[str, bool]:
    """bf16 autocast, channels_last, torch.compile, fused Adam of a mode name."""
    parts = mode.split("_")
    return {"bf16": mode.startswith("bf16"), "channels_last": "cl" in parts, "compile": "compile" in parts,
            "fused_adam": "fused" in parts}


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


def machine_info() -> dict[str, Any]:
    import pytorch_lightning as pl
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "pytorch_lightning": pl.__version__,
        "python": platform.python_version(),
        "cuda": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda_version"] = torch.version.cuda
    return info


def _dataset(n: int, image_size: int, seed: int = 0, stored: int = 32):
    """`n` samples that cycle through `stored` fixed random (image, mask) pairs, stored as the cache
    stores them (float16 image, uint8 mask): the model builds the rest after the transfer."""
    import torch
    from torch.utils.data import Dataset

    g = torch.Generator().manual_seed(seed)
    stored = min(n, stored)
    masks = torch.randint(0, 6, (stored, image_size // 16, image_size // 16), generator=g)
    masks = masks.repeat_interleave(16, 1).repeat_interleave(16, 2).to(torch.uint8)
    images = (torch.rand(stored, 1, image_size, image_size, generator=g) * 2 - 1).to(torch.float16)

    class Fixed(Dataset):
        def __len__(self) -> int:
            return n

        def __getitem__(self, i: int) -> dict:
            return {"image": images[i % stored], "mask": masks[i % stored]}

    return Fixed()


def _run_one(spec: dict[str, Any]) -> dict[str, Any]:
    """One measurement in this process."""
    import pytorch_lightning as pl
    import torch
    from torch.utils.data import DataLoader

    from lcgan_lightning.batch import model_batch
    from lcgan_lightning.models.lcgan import LcGAN, discriminator_loss, generator_loss

    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    cuda = torch.cuda.is_available() and not spec.get("cpu")
    device = torch.device("cuda" if cuda else "cpu")
    bs, size, warmup, steps = spec["batch"], spec["image_size"], spec["warmup"], spec["steps"]
    flags = mode_flags(spec["mode"])
    bf16, cl = flags["bf16"], flags["channels_last"]
    torch.manual_seed(0)
    rss0 = _rss_mb()
    n_total = warmup + steps
    loader = DataLoader(_dataset(bs * n_total, size), batch_size=bs, shuffle=False, drop_last=True)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    class BenchGAN(LcGAN):
        def configure_callbacks(self):
            return []

    # the model's own options (model.channels_last / model.compile); the plain loop uses the same modules
    model = BenchGAN(image_size=size, ngf=spec["ngf"], ndf=spec["ndf"], save_epochs=[], channels_last=cl,
                     compile=flags["compile"], fused_adam=flags["fused_adam"])
    if cuda:
        torch.cuda.reset_peak_memory_stats()

    # time stamps at the start of every iteration (device synchronised): differences = full iterations
    # (fetch + transfer + G/D step + framework bookkeeping)
    stamps: list[float] = []
    if spec["impl"] == "lightning":

        class Timer(pl.Callback):
            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
                sync()
                stamps.append(time.perf_counter())

            def on_train_end(self, trainer, pl_module):
                sync()
                stamps.append(time.perf_counter())

        trainer = pl.Trainer(
            accelerator="gpu" if cuda else "cpu", devices=1, max_epochs=1,
            precision="bf16-mixed" if bf16 else "32-true", logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
            num_sanity_val_steps=0, callbacks=[Timer()],
        )
        trainer.fit(model, train_dataloaders=loader)
    else:
        model.to(device)
        model.train()
        g, d = model.generator, model.discriminator
        hp = model.hparams
        opt_g = torch.optim.Adam(g.parameters(), lr=hp.lr, betas=(hp.beta1, hp.beta2))
        opt_d = torch.optim.Adam(d.parameters(), lr=hp.lr, betas=(hp.beta1, hp.beta2))

        def set_grad(net, flag: bool) -> None:
            for p in net.parameters():
                p.requires_grad_(flag)

        def step(batch) -> None:
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            batch = model_batch(batch, onehot=True, channels_last=cl)  # what the LcGAN does after transfer
            cond, real = batch["mask_onehot"], batch["image"]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                fake = g(cond)
                set_grad(g, False)
                loss_d, *_ = discriminator_loss(d(torch.cat([cond, real], 1)), d(torch.cat([cond, fake.detach()], 1)))
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            set_grad(g, True)
            set_grad(d, False)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss_g, *_ = generator_loss(d(torch.cat([cond, fake], 1)), fake, real, hp.lambda_l1)
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            set_grad(d, True)

        for batch in loader:
            sync()
            stamps.append(time.perf_counter())
            step(batch)
        sync()
        stamps.append(time.perf_counter())

    step_times = [b - a for a, b in zip(stamps[:-1], stamps[1:], strict=True)]
    timed = sorted(step_times[warmup:])
    median = timed[len(timed) // 2] if len(timed) % 2 else 0.5 * (timed[len(timed) // 2 - 1] + timed[len(timed) // 2])
    out = dict(spec)
    out.update(
        device=str(device),
        s_per_step=median,
        images_per_s=bs / median,
        s_per_step_mean=sum(timed) / len(timed),
        s_per_step_min=timed[0],
    )
    if cuda:
        out.update(peak_mem_mb=torch.cuda.max_memory_allocated() / 2**20, mem_kind="cuda_max_allocated")
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        out.update(peak_mem_mb=peak - rss0, peak_rss_mb=peak, mem_kind="cpu_peak_rss_minus_start")
    return out


def _measure(spec: dict[str, Any]) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "lcgan_lightning.bench", "--child", json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH_RESULT ")]
    if proc.returncode != 0 or not lines:
        return dict(spec, error=(proc.stderr or proc.stdout)[-2000:])
    return json.loads(lines[-1][len("BENCH_RESULT "):])


def _ints(text: str) -> list[int]:
    return [int(x) for x in str(text).split(",") if x.strip()]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="bench.json", help="JSON result file")
    p.add_argument("--steps", type=int, default=None, help="timed G+D steps per measurement (CUDA 20, CPU 3)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (CUDA 5, CPU 1)")
    p.add_argument("--sizes", default="256", help="image sizes, comma-separated")
    p.add_argument("--batch-sizes", default="1,16", help="batch sizes, comma-separated")
    p.add_argument("--modes", default=None, help=f"comma-separated of {MODES} (default: fp32,bf16_cl,bf16_cl_fused on "
                   "CUDA, fp32,cl,compile,cl_compile,fused on CPU)")
    p.add_argument("--plain-all", action="store_true", help="run the plain loop in every mode, not only fp32/bf16_cl")
    p.add_argument("--ngf", type=int, default=64)
    p.add_argument("--ndf", type=int, default=64)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--repeats", type=int, default=1, help="alternate plain/Lightning runs; keep each one's best")
    p.add_argument("--cpu", action="store_true", help="benchmark on CPU even when CUDA is available")
    p.add_argument("--loader", action="store_true",
                   help="measure DataLoader slices/s instead (256², batch 32, 1 worker: --sizes/--loader-*)")
    p.add_argument("--loader-batch", type=int, default=32)
    p.add_argument("--loader-workers", type=int, default=1)
    p.add_argument("--mask-bank", action="store_true",
                   help="time the mask bank instead: 1000 new masks at 256² from 16 phantom patients")
    p.add_argument("--audit", action="store_true",
                   help="time the audit instead: 1000 synthetic vs 800 real slices at 128², stand-in judge")
    p.add_argument("--verdicts", action="store_true",
                   help="time the paired comparisons of every metric instead: 5 vs 5 runs, 40 test patients")
    p.add_argument("--generators", action="store_true",
                   help="time image generation instead: lcgan, spade, diffusion at --sizes (default widths)")
    p.add_argument("--generator-images", type=int, default=8, help="images per generator (--generators)")
    p.add_argument("--diffusion-steps", default="20", help="DDIM steps, comma-separated (--generators)")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.child:
        print("BENCH_RESULT " + json.dumps(_run_one(json.loads(args.child))), flush=True)
        return {}
    if args.loader or args.mask_bank or args.audit or args.verdicts or args.generators:
        return _write(args, _operations(args))

    import torch

    cuda = torch.cuda.is_available() and not args.cpu
    if args.steps is None:
        args.steps = 20 if cuda else 3
    if args.warmup is None:
        args.warmup = 5 if cuda else 1
    default_modes = ["fp32", "bf16_cl", "bf16_cl_fused"] if cuda else ["fp32", "cl", "compile", "cl_compile", "fused"]
    modes = args.modes.split(",") if args.modes else default_modes
    for m in modes:
        if m not in MODES:
            raise SystemExit(f"--modes: unknown mode {m!r} (choose from {MODES})")
    results, ratios, speedups = [], [], []
    header = f"{'impl':<10} {'mode':<15} {'size':>5} {'batch':>5} {'img/s':>9} {'s/step':>8} {'peak MB':>9}"
    print(header)
    for size in _ints(args.sizes):
        for bs in _ints(args.batch_sizes):
            runs = [(impl, mode) for mode in modes for impl in ("plain", "lightning")
                    if impl == "lightning" or args.plain_all or mode in PLAIN_MODES]
            if "fp32" not in modes:  # the references every mode is compared with
                runs = [("plain", "fp32"), ("lightning", "fp32"), *runs]
            best: dict[tuple[str, str], dict] = {}
            for rep in range(args.repeats):
                for impl, mode in runs:
                    spec = dict(impl=impl, mode=mode, image_size=size, batch=bs, steps=args.steps,
                                warmup=args.warmup, ngf=args.ngf, ndf=args.ndf, threads=args.threads,
                                cpu=args.cpu, repeat=rep)
                    r = _measure(spec)
                    results.append(r)
                    if "error" in r:
                        print(f"{impl:<10} {mode:<15} {size:>5} {bs:>5}  FAILED: {r['error'][-300:]}")
                        best.setdefault((impl, mode), r)
                        continue
                    print(f"{impl:<10} {mode:<15} {size:>5} {bs:>5} {r['images_per_s']:>9.3f} "
                          f"{r['s_per_step']:>8.3f} {r['peak_mem_mb']:>9.0f}", flush=True)
                    old = best.get((impl, mode))
                    if old is None or "error" in old or r["images_per_s"] > old["images_per_s"]:
                        best[(impl, mode)] = r

            def rate(impl: str, mode: str, best: dict = best) -> float | None:
                r = best.get((impl, mode))
                return None if r is None or "error" in r else r["images_per_s"]

            for mode in dict.fromkeys(m for _, m in runs):
                light, plain = rate("lightning", mode), rate("plain", mode)
                if light and plain:
                    ratio = light / plain
                    ratios.append(dict(mode=mode, image_size=size, batch=bs, lightning_over_plain=ratio,
                                       overhead_pct=100 * (1 - ratio)))
                    print(f"  -> {mode}: Lightning/plain throughput {ratio:.3f} (overhead {100 * (1 - ratio):+.1f} %)")
                plain32, light32 = rate("plain", "fp32"), rate("lightning", "fp32")
                if light and plain32 and light32:
                    speedups.append(dict(mode=mode, image_size=size, batch=bs, over_plain_fp32=light / plain32,
                                         over_lightning_fp32=light / light32))
                    print(f"  -> LcGAN {mode}: {light / plain32:.2f}x the plain fp32 step, "
                          f"{light / light32:.2f}x the current (fp32) step")
    return _write(args, {"results": results, "ratios": ratios, "speedups": speedups})


def _operations(args: argparse.Namespace) -> dict[str, Any]:
    """The timings of --loader / --mask-bank / --audit / --verdicts (lcgan_lightning.bench_operations)
    and --generators (lcgan_lightning.bench_generators)."""
    from lcgan_lightning import bench_operations as ops

    out: dict[str, Any] = {}
    if args.loader:
        out["loader"] = [ops.loader_throughput(size, args.loader_batch, args.loader_workers,
                                               repeats=max(2, args.repeats)) for size in _ints(args.sizes)]
    if args.mask_bank:
        out["mask_bank"] = ops.mask_bank_timing()
    if args.audit:
        out["audit"] = ops.audit_timing()
    if args.verdicts:
        out["verdicts"] = ops.verdicts_timing()
    if args.generators:
        from lcgan_lightning.bench_generators import generators_timing

        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        out["generators"] = [r for size in _ints(args.sizes) for r in generators_timing(
            size, args.generator_images, tuple(_ints(args.diffusion_steps)), repeats=max(1, args.repeats))]
    return out


def _write(args: argparse.Namespace, parts: dict[str, Any]) -> dict[str, Any]:
    report = {"machine": machine_info(), "args": vars(args), **parts}
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
