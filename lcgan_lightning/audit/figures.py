"""Figure of the closest synthetic/real pairs (matplotlib Figure API, no pyplot state)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lcgan_lightning.figures import save_figure


def _grey(images: Any, i: int) -> np.ndarray:
    img = np.asarray(
        images[i].detach().cpu() if hasattr(images, "detach") else images[i], dtype=np.float32
    )
    return img[0] if img.ndim == 3 else img


def closest_pairs_figure(
    path: str | Path,
    synthetic: Any,
    real: Any,
    pairs: Sequence[Mapping[str, Any]],
    title: str = "",
) -> Path:
    """PNG: one column per pair, synthetic image on top and its nearest real slice below.

    ``pairs`` are the ``closest_pairs`` of an audit (keys synthetic, real, patient, distance);
    images are [N,H,W] or [N,1,H,W] in [-1,1].
    """
    from matplotlib.figure import Figure

    if not pairs:
        raise ValueError("closest_pairs_figure: no pairs to draw")
    n = len(pairs)
    fig = Figure(figsize=(1.4 * n + 0.8, 3.3), dpi=100)
    axes = fig.subplots(2, n, squeeze=False)
    for j, pair in enumerate(pairs):
        for row, (images, key) in enumerate(((synthetic, "synthetic"), (real, "real"))):
            ax = axes[row][j]
            ax.imshow(_grey(images, int(pair[key])), cmap="gray", vmin=-1, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0][j].set_title(f"syn {pair['synthetic']}\nd={pair['distance']:.3g}", fontsize=7)
        axes[1][j].set_xlabel(f"real {pair['real']}\n{pair['patient']}", fontsize=7)
    axes[0][0].set_ylabel("synthetic", fontsize=8)
    axes[1][0].set_ylabel("nearest real", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(left=0.06, right=0.99, top=0.8, bottom=0.12, wspace=0.05, hspace=0.05)
    return save_figure(fig, path)
