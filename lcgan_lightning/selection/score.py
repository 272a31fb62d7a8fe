"""Score every candidate generator of a GAN sweep and pick one per data fraction (paper §3.2).

A candidate is one (fraction, epochs) pair with its generator checkpoint. For each candidate the
generator turns the same validation masks into images (same per-row seeds for every candidate),
and we measure

* FCN score: the judge segmenter's DSC on the generated images vs the masks they came from
  (``lcgan_lightning.metrics.compute_metrics``: per-image DSC over lesion classes, background
  ignored), overall and per class, plus detection precision/recall;
* sharpness: mean variance of the Laplacian, and the FFT mean (see ``quality``);
* realism: share of held-out generated images the real-vs-generated CNN calls real at p >= 0.1
  and p >= 0.5 (see ``realism``; one classifier per fraction, trained on all its candidates);
* optional: FID with the judge's encoder as feature network, SSIM/PSNR vs the real slice.

Outputs: ``scores.json`` (every candidate and figure, plus the conventions), ``selected.json``
(the winner per fraction) and one contact-sheet PNG per fraction.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lcgan_lightning.figures import contact_sheet
from lcgan_lightning.layout import fraction_key
from lcgan_lightning.metrics import compute_metrics, to_json_safe
from lcgan_lightning.models.generation import generate_rows, row_seed
from lcgan_lightning.selection import quality, realism, rule
from lcgan_lightning.selection.candidates import Candidate

log = logging.getLogger(__name__)

SCORES_VERSION = 1

CONVENTIONS = {
    "fcn_score": (
        "Judge segmenter's DSC on the candidate's generated images against the masks they were "
        "generated from: per image, mean Dice over lesion classes present in truth or prediction "
        "(background ignored), averaged over images. Higher is better. per_class_dsc: per class, "
        "mean Dice over images where the class is present (null if nowhere)."
    ),
    "sharpness": quality.SHARPNESS_CONVENTION,
    "fooled": (
        "Realism CNN (one per fraction, trained on real slices vs all candidates' images; label "
        "1=real). fooled_0.1 / fooled_0.5 = share of the candidate's HELD-OUT generated images with "
        "p(real) >= 0.1 / 0.5 (realism.thresholds). Higher = more realistic. 'fooled' = the share at "
        "the first threshold, 0.1 by default as in the paper: the realism criterion of the rule and selected.json."
    ),
    "sharpness_match": (
        "sharpness_in_head = mean Laplacian variance inside the head of the REAL slice of the "
        "same mask (quality.head_region). sharpness_ratio = candidate sharpness_in_head / the real "
        "slices' sharpness_in_head, same regions (1 = as sharp as real; noise pushes it above 1, "
        "blur below): the quality gate of the fcn_first rule. sharpness_match = "
        "-|ln(sharpness_ratio)|: 0 is best, higher is better. 'sharpness' stays the paper's "
        "whole-image figure, reported and used by the mean_rank / weighted rules."
    ),
    "fid": "FID with the judge's pooled encoder features (not Inception): LOWER is closer to real. null if disabled.",
    "ssim_psnr": "Mean SSIM / PSNR (dB, data range 2) vs the real slice of the same mask: higher is closer. null if disabled.",
    "rule": rule.RULE_CONVENTION,
    "generation": (
        "Every candidate generates from the same validation masks; row i uses seed "
        "row_seed(seed, i) = SeedSequence([seed, i]).generate_state(1)[0], one mask per call."
    ),
}


# --------------------------------------------------------------------------- scoring
def choose_rows(masks: np.ndarray, max_images: int | None, seed: int, lesion_only: bool = True) -> np.ndarray:
    """Indices of the evaluation slices: lesion slices (if asked), a seeded subset of at most
    `max_images`, returned in ascending order."""
    masks = np.asarray(masks)
    rows = np.flatnonzero(masks.reshape(len(masks), -1).max(1) > 0) if lesion_only else np.arange(len(masks))
    if len(rows) == 0:
        raise ValueError("no validation slice with a lesion to score generators on" if lesion_only else "no validation slice")
    if max_images and len(rows) > max_images:
        rows = np.random.default_rng(seed).choice(rows, size=int(max_images), replace=False)
    return np.sort(rows)


@torch.no_grad()
def _predict(judge: Any, images: Tensor, batch_size: int) -> Tensor:
    out = [judge.predict_masks(images[i : i + batch_size].float()) for i in range(0, len(images), batch_size)]
    return torch.cat(out)


def image_figures(images: Tensor, masks: Tensor, judge: Any, batch_size: int = 16) -> dict[str, Any]:
    """FCN score (+ per class, detection P/R) and sharpness of one set of images [N,1,H,W]."""
    pred = _predict(judge, images, batch_size)
    m = compute_metrics(pred, masks)
    return {
        "fcn_score": m["dsc"],
        "per_class_dsc": m["per_class_dsc"],
        "precision": m["precision"],
        "recall": m["recall"],
        "sharpness": float(quality.laplacian_variance(images).mean()),
        "fft_mean": float(quality.fft_mean(images).mean()),
        "n_images": int(len(images)),
    }


@dataclass
class EvalSet:
    """Validation slices used to score generators, plus a pool of real slices for the realism CNN."""

    masks: np.ndarray  # uint8 [N,H,W]
    images: np.ndarray  # [N,H,W] in [-1,1]
    rows: np.ndarray  # indices into the validation SliceSet
    source: list[dict[str, Any]]
    real_pool: np.ndarray  # [M,H,W] in [-1,1]


def make_eval_set(val_slices: Any, real_slices: Any, max_images: int | None, seed: int,
                  lesion_only: bool = True, real_pool_max: int = 512) -> EvalSet:
    """Pick the scoring slices from `val_slices` and a seeded real pool from `real_slices`."""
    rows = choose_rows(val_slices.masks, max_images, seed, lesion_only)
    src = [
        {"patient": str(val_slices.patients[r]), "volume": str(val_slices.volumes[r]), "slice": int(val_slices.slice_index[r])}
        for r in rows
    ]
    n_real = len(real_slices.masks)
    pool_rows = np.arange(n_real)
    if lesion_only:
        pool_rows = np.flatnonzero(np.asarray(real_slices.masks).reshape(n_real, -1).max(1) > 0) if n_real else pool_rows
    if len(pool_rows) > real_pool_max:
        pool_rows = np.sort(np.random.default_rng(seed + 1).choice(pool_rows, size=real_pool_max, replace=False))
    return EvalSet(
        masks=np.asarray(val_slices.masks[rows]).astype(np.uint8),
        images=np.asarray(val_slices.images[rows]).astype(np.float32),
        rows=rows,
        source=src,
        real_pool=np.asarray(real_slices.images[pool_rows]).astype(np.float32),
    )


def score_candidates(
    candidates: Sequence[Candidate],
    eval_set: EvalSet,
    judge: Any,
    load_generator: Callable[[str], Any],
    seed: int = 0,
    dropout: bool = True,
    batch_size: int = 16,
    realism_cfg: realism.RealismConfig | None = None,
    fid: bool = False,
    ssim_psnr: bool = True,
) -> tuple[list[dict[str, Any]], dict[str, Tensor], dict[str, Any]]:
    """Figures for every candidate. Returns (rows, generated images by candidate name, extras).

    extras holds the real-image reference figures and the realism classifier's training record per fraction.
    """
    masks = torch.as_tensor(eval_set.masks).long()
    real = torch.as_tensor(eval_set.images).unsqueeze(1)
    head = quality.head_region(real)  # sharpness is compared inside the REAL slice's head
    seeds = [row_seed(seed, int(r)) for r in eval_set.rows]
    rows: list[dict[str, Any]] = []
    images: dict[str, Tensor] = {}
    for cand in candidates:
        t0 = time.time()
        gen = load_generator(cand.checkpoint)
        imgs = generate_rows(gen, masks, seeds, dropout)
        figures = image_figures(imgs, masks, judge, batch_size)
        row: dict[str, Any] = {"name": cand.name, "fraction": cand.fraction, "epochs": cand.epochs,
                               "checkpoint": cand.checkpoint, **figures}
        row["sharpness_in_head"] = quality.nanmean(quality.laplacian_variance(imgs, head))
        row["ssim"], row["psnr"] = quality.ssim_psnr(imgs, real) if ssim_psnr else (None, None)
        row["fid"] = quality.judge_fid(judge, real, imgs, batch_size) if fid else None
        row["generate_and_score_s"] = round(time.time() - t0, 2)
        rows.append(row)
        images[cand.name] = imgs.half()
        log.info("scored %s: fcn=%.4f sharpness=%.5f", cand.name, row["fcn_score"], row["sharpness"])

    extras: dict[str, Any] = {"reference_real": image_figures(real, masks, judge, batch_size), "realism": {}}
    real_sharp = quality.nanmean(quality.laplacian_variance(real, head))
    extras["reference_real"]["sharpness_in_head"] = real_sharp
    for r in rows:
        # noise has a high Laplacian variance too: how close to REAL sharpness is it, in the head
        ok = real_sharp > 0 and math.isfinite(r["sharpness_in_head"])
        ratio = r["sharpness_in_head"] / real_sharp if ok else None
        r["sharpness_ratio"] = ratio
        # a flat head (ratio 0) is infinitely far from real: -inf, null in scores.json
        if ratio is None:
            r["sharpness_match"] = None
        else:
            r["sharpness_match"] = -abs(math.log(ratio)) if ratio > 0 else -math.inf
    cfg = realism_cfg or realism.RealismConfig(seed=seed)
    real_pool = torch.as_tensor(eval_set.real_pool)
    for fkey in sorted({fraction_key(r["fraction"]) for r in rows}, key=float):
        group = [r for r in rows if fraction_key(r["fraction"]) == fkey]
        try:
            _, res = realism.train_and_score(real_pool, {r["name"]: images[r["name"]].float() for r in group}, cfg)
        except ValueError as err:  # too few images: recorded, and the rule then ignores realism
            log.warning("fraction %s: realism classifier not trained: %s", fkey, err)
            extras["realism"][fkey] = {"error": str(err)}
            for r in group:
                r.update({f"fooled_{t}": None for t in cfg.thresholds}, fooled=None, mean_p_real=None)
            continue
        extras["realism"][fkey] = {k: v for k, v in res.to_dict().items() if k not in ("fooled", "mean_p_real")}
        for r in group:
            for t in cfg.thresholds:
                r[f"fooled_{t}"] = res.fooled[r["name"]][str(t)]
            r["fooled"] = r[f"fooled_{cfg.thresholds[0]}"]  # the rule's realism criterion (paper: 0.1)
            r["mean_p_real"] = res.mean_p_real[r["name"]]
    return rows, images, extras


def select_per_fraction(rows: Sequence[Mapping[str, Any]], rule_name: str = rule.DEFAULT_RULE,
                        weights: Mapping[str, float] | None = None,
                        rule_params: Mapping[str, float] | None = None,
                        ) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """Apply the selection rule within each fraction. Returns (selected.json content, rule figure per row)."""
    selected: dict[str, Any] = {}
    figures: dict[str, list[float]] = {}
    for fkey in sorted({fraction_key(r["fraction"]) for r in rows}, key=float):
        group = [r for r in rows if fraction_key(r["fraction"]) == fkey]
        best, reason, fig = rule.select(group, rule_name, weights, **dict(rule_params or {}))
        figures[fkey] = fig
        w = group[best]
        selected[fkey] = {
            "checkpoint": w["checkpoint"],
            "epochs": int(w["epochs"]),
            "fcn_score": float(w["fcn_score"]),
            "sharpness": float(w["sharpness"]),
            "sharpness_ratio": None if w.get("sharpness_ratio") is None else float(w["sharpness_ratio"]),
            "ssim": None if w.get("ssim") is None else float(w["ssim"]),
            "fooled": None if w.get("fooled") is None else float(w["fooled"]),
            "reason": reason,
        }
    return selected, figures


# --------------------------------------------------------------------------- driver
def run_scoring(
    candidates: Sequence[Candidate],
    eval_set: EvalSet,
    judge: Any,
    load_generator: Callable[[str], Any],
    out_dir: str | Path,
    sheets_dir: str | Path | None = None,
    seed: int = 0,
    dropout: bool = True,
    batch_size: int = 16,
    realism_cfg: realism.RealismConfig | None = None,
    rule_name: str = rule.DEFAULT_RULE,
    weights: Mapping[str, float] | None = None,
    rule_params: Mapping[str, float] | None = None,
    fid: bool = False,
    ssim_psnr: bool = True,
    sheet_columns: int = 8,
    skipped: Sequence[Mapping[str, str]] = (),
    settings: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Score, select, and write scores.json, selected.json and contact sheets. Returns selected."""
    if not candidates:
        raise ValueError("no candidates to score")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sheets_dir = Path(sheets_dir) if sheets_dir else out_dir
    rows, images, extras = score_candidates(
        candidates, eval_set, judge, load_generator, seed, dropout, batch_size, realism_cfg, fid, ssim_psnr
    )
    selected, figures = select_per_fraction(rows, rule_name, weights, rule_params)
    for fkey, figs in figures.items():
        group = [r for r in rows if fraction_key(r["fraction"]) == fkey]
        for r, f in zip(group, figs, strict=True):
            r["rule_figure"] = f
            r["selected"] = r["checkpoint"] == selected[fkey]["checkpoint"]

    sheets = {}
    n = min(sheet_columns, len(eval_set.masks))
    for fkey in selected:
        group = sorted([r for r in rows if fraction_key(r["fraction"]) == fkey], key=lambda r: r["epochs"])
        sheet_rows = [(f"{r['epochs']} ep" + (" *" if r["selected"] else ""), images[r["name"]][:n].float().numpy()) for r in group]
        path = contact_sheet(sheets_dir / f"contact_sheet_frac={fkey}.png", eval_set.masks[:n], eval_set.images[:n],
                             sheet_rows, title=f"fraction {fkey}: rows = epochs (* = selected)")
        sheets[fkey] = str(path)

    scores = {
        "version": SCORES_VERSION,
        "conventions": CONVENTIONS,
        "rule": {"name": rule_name, "weights": dict(weights) if weights is not None else dict(rule.DEFAULT_WEIGHTS),
                 "params": {**rule.DEFAULT_PARAMS, **dict(rule_params or {})}},
        "settings": dict(settings or {}, seed=seed, dropout=dropout, n_images=len(eval_set.masks)),
        "eval_slices": eval_set.source,
        "reference_real": extras["reference_real"],
        "realism": extras["realism"],
        "candidates": rows,
        "skipped": list(skipped),
        "selected": selected,
        "contact_sheets": sheets,
    }
    (out_dir / "scores.json").write_text(json.dumps(to_json_safe(scores), indent=2) + "\n")
    (out_dir / "selected.json").write_text(json.dumps(to_json_safe(selected), indent=2) + "\n")
    return selected
