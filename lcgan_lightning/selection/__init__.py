"""Choosing generators (paper §3.2): FCN score, sharpness, realism classifier, selection rule."""

from lcgan_lightning.selection.quality import fft_mean, judge_fid, laplacian_variance, ssim_psnr
from lcgan_lightning.selection.realism import RealismConfig, train_and_score
from lcgan_lightning.selection.rule import select
from lcgan_lightning.selection.score import (
    Candidate,
    discover_candidates,
    fraction_key,
    generate_rows,
    row_seed,
    run_scoring,
)

__all__ = [
    "Candidate",
    "RealismConfig",
    "discover_candidates",
    "fft_mean",
    "fraction_key",
    "generate_rows",
    "judge_fid",
    "laplacian_variance",
    "row_seed",
    "run_scoring",
    "select",
    "ssim_psnr",
    "train_and_score",
]
