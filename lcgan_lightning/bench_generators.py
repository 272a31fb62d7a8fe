"""Time to images of the three generator families (`python -m lcgan_lightning.bench --generators`).

Each generator is built with its config's default widths (conf/model/{lcgan,spade,diffusion}.yaml,
untrained: the weights do not change the time) and makes images as synthesis does (`generate_set`:
one mask per call, seeded rows). Diffusion is timed at each DDIM step count asked for.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from lcgan_lightning.models.diffusion_gen import DiffusionSampler, MaskDiffusion
from lcgan_lightning.models.generation import MaskToCT, generate_set
from lcgan_lightning.models.generator import UNetGenerator
from lcgan_lightning.models.mask_generator import MaskGenerator
from lcgan_lightning.models.spade_gan import SpadeGAN, SpadeSampler


def default_generators(image_size: int, diffusion_steps: tuple[int, ...] = (20,)) -> dict[str, MaskGenerator]:
    """name -> generator at the configs' default widths (lcgan; spade; diffusion, one per step count)."""
    with torch.random.fork_rng(devices=[]):
        lcgan = MaskToCT(_lcgan_net(image_size), "onehot", image_size)
        spade = SpadeGAN(image_size=image_size)
        out: dict[str, MaskGenerator] = {
            "lcgan": lcgan,
            "spade": SpadeSampler(spade.generator, image_size, dict(spade.hparams)),
        }
        diffusion = MaskDiffusion(image_size=image_size)
        for steps in diffusion_steps:
            gen = DiffusionSampler(diffusion.generator, image_size, dict(diffusion.hparams))
            gen.sample_steps = int(steps)
            out[f"diffusion ({steps} DDIM steps)"] = gen
    return {name: gen.eval() for name, gen in out.items()}


def _lcgan_net(image_size: int) -> UNetGenerator:
    return UNetGenerator(6, 1, image_size=image_size, ngf=64, norm="batch", dropout=0.5)


def time_to_images(generator: MaskGenerator, masks: np.ndarray, repeats: int = 2) -> float:
    """Seconds of the fastest of `repeats` runs making one image per mask as synthesis does
    (`generate_set`, seeded rows), after one untimed image."""
    generate_set(generator, masks[:1], seed=0, progress=False)  # warm-up
    times = []
    for r in range(repeats):
        start = time.perf_counter()
        generate_set(generator, masks, seed=r, progress=False)
        times.append(time.perf_counter() - start)
    return min(times)


def generators_timing(image_size: int = 128, n_images: int = 8, diffusion_steps: tuple[int, ...] = (20,),
                      repeats: int = 2) -> list[dict[str, Any]]:
    """Images/s of each generator on the current device (CPU unless CUDA): `n_images` lesion masks
    after one untimed image, the best of `repeats` runs."""
    masks = np.zeros((n_images, image_size, image_size), np.int64)
    s = image_size
    for i in range(n_images):
        masks[i, s // 4 : s // 2, s // 4 + i % 4 : s // 2 + i % 4] = 1 + i % 5
    results = []
    for name, gen in default_generators(image_size, diffusion_steps).items():
        best = time_to_images(gen, masks, repeats)
        results.append(dict(generator=name, image_size=image_size, images=n_images,
                            parameters=sum(p.numel() for p in gen.parameters()),
                            s_per_image=best / n_images, images_per_s=n_images / best))
        print(f"{name:<28} {image_size:>4}²  {n_images / best:>8.2f} img/s  {best / n_images:>7.3f} s/img", flush=True)
    return results
