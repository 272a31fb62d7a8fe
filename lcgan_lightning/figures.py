"""Figures drawn from arrays: contact sheets of generators and mask | real | synthetic grids.

Pure drawing (matplotlib's object API, no pyplot state): callers pass arrays and a path.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lcgan_lightning.constants import CLASS_NAMES, NUM_CLASSES
from lcgan_lightning.visual import CLASS_COLORS, mask_to_rgb


def save_figure(fig, path: str | Path, **kwargs) -> Path:
    """Save a matplotlib Figure to `path`, creating its folder; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, **kwargs)
    return path


MASK_COLOURS = [tuple(c / 255.0) for c in CLASS_COLORS]  # bg, IPH, IVH, SAH, EDH, SDH


def contact_sheet(path: str | Path, masks: np.ndarray, real: np.ndarray, rows: Sequence[tuple[str, np.ndarray]],
                  title: str = "") -> Path:
    """PNG grid: columns = the same N masks; rows = mask (colour), real slice, then each candidate."""
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    masks, real = np.asarray(masks), np.asarray(real)
    n = len(masks)
    labels = ["mask", "real"] + [r[0] for r in rows]
    grids = [None, real] + [np.asarray(r[1]) for r in rows]
    fig = Figure(figsize=(1.3 * n + 1.6, 1.3 * len(labels) + 0.6), dpi=100)
    axes = fig.subplots(len(labels), n, squeeze=False)
    cmap = ListedColormap(MASK_COLOURS[:NUM_CLASSES])
    for i, (label, grid) in enumerate(zip(labels, grids, strict=True)):
        for j in range(n):
            ax = axes[i][j]
            if grid is None:
                ax.imshow(masks[j], cmap=cmap, vmin=0, vmax=NUM_CLASSES - 1, interpolation="nearest")
            else:
                img = grid[j, 0] if grid.ndim == 4 else grid[j]
                ax.imshow(img.astype(np.float32), cmap="gray", vmin=-1, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")
    fig.legend(handles=[Patch(color=c, label=k) for c, k in zip(MASK_COLOURS[1:], CLASS_NAMES[1:], strict=True)],
               loc="lower center", ncol=5, fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(left=0.12, right=0.99, top=0.95, bottom=0.05, wspace=0.03, hspace=0.05)
    return save_figure(fig, path)


def largest_per_class(masks: np.ndarray) -> dict[int, int]:
    """Lesion class id -> the row of `masks` [N,H,W] with the most pixels of it (classes present only)."""
    masks = np.asarray(masks)
    out = {}
    for cls in range(1, len(CLASS_NAMES)):
        areas = (masks == cls).reshape(len(masks), -1).sum(1)
        if len(areas) and areas.max() > 0:
            out[cls] = int(np.argmax(areas))
    return out


def sample_grid(path: str | Path, masks: np.ndarray, real: np.ndarray | None, synthetic: np.ndarray) -> Path | None:
    """Mask | real | synthetic, one row per lesion class present (its largest example); None if no lesion.

    masks [N,H,W] class ids; real and synthetic [N,H,W] in [-1,1] (row i of each belongs together).
    """
    from matplotlib.figure import Figure

    masks = np.asarray(masks)
    rows = [(CLASS_NAMES[cls], i) for cls, i in largest_per_class(masks).items()]
    if not rows:
        return None
    fig = Figure(figsize=(6.6, 2.2 * len(rows)))
    axes = fig.subplots(len(rows), 3, squeeze=False)
    for (name, i), ax_row in zip(rows, axes, strict=True):
        panels = [mask_to_rgb(masks[i]), None if real is None else real[i], synthetic[i]]
        for ax, img, title in zip(ax_row, panels, ("mask", "real", "synthetic"), strict=True):
            ax.axis("off")
            if img is None:
                continue
            img = np.asarray(img) if np.ndim(img) == 3 else np.asarray(img, dtype=np.float32)
            ax.imshow(img, cmap=None if img.ndim == 3 else "gray", vmin=-1, vmax=1)
            ax.set_title(f"{name}: {title}", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def novel_mask_sheet(path: str | Path, new_masks: np.ndarray, provenance: Sequence[dict], source_masks: np.ndarray,
                     images: np.ndarray, n: int = 8, title: str = "") -> Path:
    """PNG grid, one column per new mask (the first `n`, spread over transforms and classes): the
    real mask it came from (a transplant's target slice), the donor of a transplanted lesion, the
    new mask, and the CT generated for it. ``provenance[i]["source_rows"]`` index `source_masks`."""
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    new_masks, source_masks = np.asarray(new_masks), np.asarray(source_masks)
    picked, seen = [], set()
    for i, p in enumerate(provenance):  # first one of each (transform, focus class), then the rest
        key = (p.get("transform"), p.get("focus_class"))
        if key not in seen:
            seen.add(key)
            picked.append(i)
    picked = (picked + [i for i in range(len(new_masks)) if i not in picked])[: max(1, n)]
    labels = ("real mask", "donor", "new mask", "generated")
    fig = Figure(figsize=(1.3 * len(picked) + 1.2, 1.3 * len(labels) + 0.7), dpi=100)
    axes = fig.subplots(len(labels), len(picked), squeeze=False)
    cmap = ListedColormap(MASK_COLOURS[:NUM_CLASSES])
    for j, i in enumerate(picked):
        rows = list(provenance[i].get("source_rows", []))
        panels = [source_masks[rows[0]] if rows else None, source_masks[rows[1]] if len(rows) > 1 else None,
                  new_masks[i], np.asarray(images[i], dtype=np.float32)]
        for r, img in enumerate(panels):
            ax = axes[r][j]
            ax.set_xticks([])
            ax.set_yticks([])
            if img is not None:
                kind = {"cmap": cmap, "vmin": 0, "vmax": NUM_CLASSES - 1} if r < 3 else {"cmap": "gray", "vmin": -1, "vmax": 1}
                ax.imshow(img, interpolation="nearest", **kind)
            if j == 0:
                ax.set_ylabel(labels[r], fontsize=7, rotation=0, ha="right", va="center")
        axes[0][j].set_title(f"{i}: {provenance[i].get('transform', '?')}\n{provenance[i].get('focus_class', '')}",
                             fontsize=6)
    fig.legend(handles=[Patch(color=c, label=k) for c, k in zip(MASK_COLOURS[1:], CLASS_NAMES[1:], strict=True)],
               loc="lower center", ncol=5, fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(left=0.1, right=0.99, top=0.88, bottom=0.06, wspace=0.03, hspace=0.05)
    return save_figure(fig, path)
