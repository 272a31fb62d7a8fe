"""The figures of a run's report: the Fig. 7 analogue and the synthetic sets' sample grids."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from lcgan_lightning.layout import RunLayout
from lcgan_lightning.paper_numbers import PAPER
from lcgan_lightning.synthesize import SAMPLES
from lcgan_lightning.variants import row_label, variant


def fig7(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fracs = list(results["fractions"])
    x = [float(f) * 100 for f in fracs]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for ax, metric in zip(axes, ("dsc", "precision", "recall"), strict=True):
        for i, key in enumerate(k for k in ("gan", "traditional", "both") if any(results["fractions"][f].get(k)
                                                                                for f in fracs)):
            vs = [(results["fractions"][f].get(key) or {}).get("vs_original", {}).get(metric) for f in fracs]
            ys = np.array([v["diff"] if v and v["diff"] is not None else np.nan for v in vs])
            lo = np.array([v["ci"][0] if v and v["ci"][0] is not None else np.nan for v in vs])
            hi = np.array([v["ci"][1] if v and v["ci"][1] is not None else np.nan for v in vs])
            xs = [v * (1 + 0.04 * (i - 1)) for v in x]  # side by side
            ax.errorbar(xs, ys, yerr=[ys - lo, hi - ys], marker="o", capsize=3, label=row_label(variant(key), results))
        paper = [
            PAPER["fractions"][f]["both"][metric] - PAPER["fractions"][f]["original"][metric]
            if f in PAPER["fractions"]
            else np.nan
            for f in fracs
        ]
        if not np.all(np.isnan(paper)):
            ax.plot(x, paper, "k--", marker="x", label="paper, + both")
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(x, [f"{v:.3g}" for v in x])
        ax.set_xlabel("training patients (%)")
        ax.set_title(f"{metric.upper() if metric == 'dsc' else metric}: change vs original (95 % CI)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def sample_grid(layout: RunLayout, fraction: float, seed: int, path: Path) -> bool:
    """Copy the synthetic set's mask | real | synthetic grid (drawn by the synthesize stage) to `path`."""
    grid = layout.synthetic_dir(fraction, seed) / SAMPLES
    if not grid.is_file():
        return False
    shutil.copyfile(grid, path)
    return True


