"""Using a trained generator (LcGAN, SPADE or diffusion): reload it from a checkpoint and generate
images, seeded per row.

`load_generator` reads the checkpoint's `generator_kind` (absent in older LcGAN checkpoints: "lcgan")
and rebuilds that family's generator; every family keeps the interface of `mask_generator.MaskGenerator`.

Row i of any generated set uses seed `row_seed(seed, i)` and is generated alone (one mask per
`generate` call), so a set does not depend on batching and is reproduced bit for bit by the same
checkpoint, masks, seed, torch build and device type.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lcgan_lightning.checkpoint_io import load_checkpoint
from lcgan_lightning.errors import CheckpointNotFoundError, CheckpointReadError
from lcgan_lightning.models.generator import (
    UNetGenerator,
    condition_channels,
    encode_condition,
    sample_images,
)
from lcgan_lightning.models.generator_module import GENERATOR_KIND_KEY
from lcgan_lightning.models.mask_generator import MaskGenerator

GENERATOR_KINDS = ("lcgan", "spade", "diffusion")
# generate_set shows a progress bar (on a terminal) from this many rows
PROGRESS_MIN_ROWS = 64


def resolve_device(device: str | None) -> str:
    """"auto" -> "cuda" when a GPU is visible, else "cpu"; anything else is returned as is."""
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(device)



def row_seed(seed: int, row: int, copy: int = 0) -> int:
    """Seed of one generated image: independent of batch size and of the other rows.

    ``copy`` c > 0 is the c-th further image of the same mask (``data.synthetic_per_mask``):
    SeedSequence([seed, row, c]); copy 0 keeps the original SeedSequence([seed, row]).
    """
    key = [int(seed), int(row)] + ([int(copy)] if copy else [])
    return int(np.random.SeedSequence(key).generate_state(1)[0])


@torch.no_grad()
def generate_rows(generator: Any, masks: Tensor | np.ndarray, seeds: Sequence[int], dropout: bool = True,
                  on_row: Callable[[], None] | None = None) -> Tensor:
    """One image per mask, each with its own seed (one mask per `generate` call; `on_row` after each).

    masks: [N,H,W] class ids; returns float32 [N,1,H,W] in [-1,1].
    """
    masks = torch.as_tensor(np.asarray(masks)).long()
    if len(seeds) != len(masks):
        raise ValueError(f"generate_rows: {len(masks)} masks but {len(seeds)} seeds")
    size = int(getattr(generator, "image_size", masks.shape[-1]))
    if tuple(masks.shape[-2:]) != (size, size):
        raise ValueError(
            f"generator makes {size}x{size} images but the masks are {tuple(masks.shape[-2:])}: "
            "set data.image_size to the generator's image size"
        )
    out = []
    for i, s in enumerate(seeds):
        out.append(generator.generate(masks[i : i + 1], seed=int(s), dropout=dropout).float().cpu())
        if on_row is not None:
            on_row()
    return torch.cat(out) if out else torch.empty(0, 1, size, size)


def show_progress(n_rows: int, progress: bool | None) -> bool:
    """Whether `generate_set` draws a progress bar: `progress` when given; by default for sets of
    PROGRESS_MIN_ROWS rows or more, when stderr is a terminal and LCGAN_NO_PROGRESS is not set."""
    if progress is not None:
        return bool(progress)
    return (n_rows >= PROGRESS_MIN_ROWS and sys.stderr.isatty()
            and os.environ.get("LCGAN_NO_PROGRESS", "") in ("", "0"))


def generate_set(generator: Any, masks: np.ndarray, seed: int, dropout: bool = True, chunk: int = 256,
                 copy: int = 0, progress: bool | None = None) -> np.ndarray:
    """float16 [N,H,W] synthetic images for masks [N,H,W], row i seeded by row_seed(seed, i, copy).

    `progress`: a progress bar on stderr (rich; None = `show_progress`'s default: large sets on a terminal).
    """
    masks = np.asarray(masks)
    out = np.empty(masks.shape, dtype=np.float16)
    with ExitStack() as stack:
        on_row = None
        if show_progress(len(masks), progress):
            from rich.console import Console
            from rich.progress import Progress

            bar = stack.enter_context(Progress(console=Console(stderr=True), transient=True))
            task = bar.add_task(f"generating ({getattr(generator, 'kind', 'generator')})", total=len(masks))
            on_row = lambda: bar.advance(task)  # noqa: E731
        for start in range(0, len(masks), chunk):
            stop = min(start + chunk, len(masks))
            seeds = [row_seed(seed, i, copy) for i in range(start, stop)]
            imgs = generate_rows(generator, masks[start:stop].astype(np.int64), seeds, dropout, on_row)
            out[start:stop] = imgs[:, 0].clamp(-1, 1).numpy().astype(np.float16)
    return out


class MaskToCT(MaskGenerator):
    """A trained LcGAN generator: lesion masks -> synthetic CT slices."""

    kind = "lcgan"

    def __init__(self, generator: UNetGenerator, condition: str, image_size: int,
                 norm_stats: str = "sample", hparams: dict | None = None):
        super().__init__(generator, image_size, hparams)
        self.condition = condition
        self.norm_stats = norm_stats

    def generate(self, masks: torch.Tensor, seed: int, dropout: bool = True) -> torch.Tensor:
        """masks LongTensor [B,H,W] (class ids) -> FloatTensor [B,1,H,W] in [-1,1].

        dropout=True is the paper's/pix2pix's stochastic mode (dropout active at test time); normalisation
        uses per-image statistics (`norm_stats="sample"`, pix2pix at batch size 1) unless set to "running".
        Same masks and seed -> same images.
        """
        cond = encode_condition(self.onehot(masks), self.condition)
        return sample_images(self.generator, cond, seed=seed, dropout=dropout, norm_stats=self.norm_stats)


def generator_weights(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """The `generator.*` entries of a module's state dict, without the prefix."""
    return {k[len("generator."):]: v for k, v in state_dict.items() if k.startswith("generator.")}


def _lcgan(hp: dict[str, Any], state: dict[str, Tensor], norm_stats: str | None) -> MaskToCT:
    gen = UNetGenerator(condition_channels(hp["condition"]), 1, image_size=hp["image_size"], ngf=hp["ngf"],
                        norm=hp["norm"], dropout=hp["dropout"])
    gen.load_state_dict(state)
    return MaskToCT(gen, hp["condition"], hp["image_size"],
                    norm_stats=norm_stats or hp.get("sample_norm_stats", "sample"), hparams=hp)


def _build(kind: str, hp: dict[str, Any], state: dict[str, Tensor], norm_stats: str | None) -> MaskGenerator:
    if kind == "spade":
        from lcgan_lightning.models.spade_gan import SpadeSampler

        return SpadeSampler.from_checkpoint(hp, state)
    if kind == "diffusion":
        from lcgan_lightning.models.diffusion_gen import DiffusionSampler

        return DiffusionSampler.from_checkpoint(hp, state)
    return _lcgan(hp, state, norm_stats)


def checkpoint_kind(ckpt: dict[str, Any]) -> str:
    """The generator family of a checkpoint dict ("lcgan" when it does not say)."""
    hp = ckpt.get("hyper_parameters") or {}
    return str(ckpt.get(GENERATOR_KIND_KEY) or hp.get(GENERATOR_KIND_KEY) or "lcgan")


def load_generator(ckpt_path: str | Path, map_location: Any = "cpu", norm_stats: str | None = None,
                   trust: bool = False) -> MaskGenerator:
    """Rebuild the generator of a generator checkpoint (LcGAN, SPADE or diffusion; candidate or
    `last.ckpt`) from the file alone (hparams + weights), in eval mode on `map_location`.

    The file is read by `load_checkpoint` (tensors and plain data only unless `trust`). `norm_stats`
    is the LcGAN's (ignored by the other kinds).
    """
    path = Path(ckpt_path)
    if not path.is_file():
        raise CheckpointNotFoundError(f"{path}: generator checkpoint not found")
    ckpt = load_checkpoint(path, map_location=map_location, trust=trust)
    hp = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if not hp or "image_size" not in hp or "state_dict" not in ckpt:
        raise CheckpointReadError(f"{path}: not a generator checkpoint (missing hyper_parameters/state_dict)")
    kind = checkpoint_kind(ckpt)
    if kind not in GENERATOR_KINDS:
        raise CheckpointReadError(f"{path}: unknown generator_kind {kind!r} (this version knows {GENERATOR_KINDS})",
                                  hint="the checkpoint was written by another version of lcgan_lightning")
    gen = _build(kind, dict(hp), generator_weights(ckpt["state_dict"]), norm_stats)
    gen.to(map_location if not isinstance(map_location, dict) else "cpu")
    gen.eval()
    return gen


def checkpoint_image_source(ckpt_path: str | Path, device: str | torch.device | None = None,
                            trust: bool = False):
    """A `(masks, seed, copy=0) -> float16 images` function generating from a generator checkpoint, as
    `generate_set` does (row i seeded by row_seed(seed, i, copy), dropout on); for
    `data.generator_ckpt`.

    The generator is loaded on first use, on the current CUDA device when there is one; `trust`
    is `load_generator`'s (the `trust_checkpoint` setting).
    """

    def generate(masks: np.ndarray, seed: int, copy: int = 0) -> np.ndarray:
        dev = device or (f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu")
        gen = load_generator(ckpt_path, map_location=dev, trust=trust)
        if masks.shape[-1] != gen.image_size or masks.shape[-2] != gen.image_size:
            raise ValueError(
                f"{ckpt_path}: generator makes {gen.image_size}² images, training masks are "
                f"{masks.shape[-2]}×{masks.shape[-1]} (data.image_size must match the GAN's)"
            )
        return generate_set(gen, np.asarray(masks), int(seed), dropout=True, copy=int(copy))

    return generate
