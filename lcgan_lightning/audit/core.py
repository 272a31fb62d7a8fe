"""``audit_set``: memorisation, fidelity and diversity of one synthetic set, as a JSON-safe dict.

Inputs are the synthetic images with their conditioning masks, the real TRAINING slices of the
same data fraction with their patient ids, and the judge's feature function (and optionally its
mask predictor and the generator). Nothing is loaded here: callers pass the judge and generator in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lcgan_lightning.audit.diversity import seed_diversity
from lcgan_lightning.audit.fidelity import mask_fidelity, mifid
from lcgan_lightning.audit.manifold import precision_recall
from lcgan_lightning.audit.neighbours import memorisation
from lcgan_lightning.metrics import to_json_safe

# 2: a redraw set with k > 1 images per mask is audited whole (version 1 audited its first copy)
AUDIT_VERSION = 2
RANGE_TOLERANCE = 1e-3

CONVENTIONS = {
    "memorisation.feature": (
        "Nearest real training slice of each synthetic image by cosine distance 1 - cos between "
        "judge-encoder features."
    ),
    "memorisation.pixel": (
        "Nearest real training slice by RMS L2 distance on the [-1, 1] brain window "
        "(||x - y||_2 / sqrt(H*W)); L2 for speed (one matrix product for all pairs), shifted "
        "copies are left to the feature space."
    ),
    "threshold": (
        "The percentile-th percentile (5 by default) of the distances from each real training "
        "slice to its nearest real slice of a DIFFERENT patient, per space."
    ),
    "copy_rate": (
        "Share of synthetic images whose nearest-real distance is below the threshold; a set as "
        "novel as unseen patients scores about the percentile (5 %) by construction, higher = "
        "copying."
    ),
    "most_copied_patients": (
        "Among the flagged copies, how many synthetic images have their nearest real slice in each "
        "training patient, most first."
    ),
    "closest_pairs": (
        "The synthetic images closest to a training slice (each at most once), with that slice's "
        "index, patient and distance, closest first."
    ),
    "fid": (
        "FID between judge-encoder features of the real training slices and of the synthetic "
        "set; lower = closer."
    ),
    "mifid": (
        "torchmetrics MiFID = FID / d when d < eps (else FID), d = mean over real slices of the "
        "nearest synthetic cosine distance 1 - |cos| (judge features); higher = worse; 0 when "
        "FID ~ 0."
    ),
    "precision": (
        "Share of synthetic features inside the real k-NN manifold (Kynkäänniemi 2019, k=3, "
        "Euclidean on judge features): realism, higher is better."
    ),
    "recall": (
        "Share of real training features inside the synthetic k-NN manifold: coverage of the real "
        "variety, higher is better; near 0 for a collapsed generator."
    ),
    "mask_fidelity": (
        "Per lesion class, the judge's mean Dice on the synthetic images whose conditioning mask "
        "holds that class (null if none); higher = the lesion is drawn where the mask asks."
    ),
    "diversity": (
        "Mean SSIM (data range 2) over all pairs of k images generated from one mask with "
        "different seeds, averaged over sampled masks; 1.0 = the generator ignores its noise, "
        "lower = more diverse."
    ),
}


@dataclass(frozen=True)
class AuditConfig:
    """Settings of an audit (defaults as in the conventions)."""

    copy_percentile: float = 5.0
    k_manifold: int = 3
    diversity_k: int = 4
    diversity_masks: int = 16
    cosine_distance_eps: float = 0.1
    n_closest: int = 8
    top_patients: int = 10
    batch_size: int = 64
    chunk: int = 512
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.copy_percentile < 100.0:
            raise ValueError(
                f"audit copy_percentile must be in (0, 100), got {self.copy_percentile}"
            )
        if self.k_manifold < 1 or self.diversity_k < 2 or self.diversity_masks < 1:
            raise ValueError(
                f"audit needs k_manifold >= 1, diversity_k >= 2 and diversity_masks >= 1, got "
                f"{self.k_manifold}, {self.diversity_k}, {self.diversity_masks}"
            )
        if not 0.0 < self.cosine_distance_eps <= 1.0:
            raise ValueError(
                f"audit cosine_distance_eps must be in (0, 1], got {self.cosine_distance_eps}"
            )
        if min(self.batch_size, self.chunk, self.n_closest) < 1:
            raise ValueError("audit batch_size, chunk and n_closest must be >= 1")


def as_images(images: Tensor | np.ndarray, name: str) -> Tensor:
    """[N,H,W] or [N,1,H,W] finite, in [-1,1] -> float32 [N,1,H,W]; else ValueError naming it."""
    x = (
        torch.as_tensor(np.asarray(images) if not isinstance(images, Tensor) else images)
        .float()
        .cpu()
    )
    if x.ndim == 3:
        x = x.unsqueeze(1)
    if x.ndim != 4 or x.shape[1] != 1 or len(x) == 0:
        raise ValueError(
            f"{name}: expected images [N,H,W] or [N,1,H,W] with N >= 1, got {tuple(x.shape)}"
        )
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name}: images hold NaN or inf")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1 - RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
        raise ValueError(
            f"{name}: images must be in [-1, 1] (brain window), got values in [{lo:.3g}, {hi:.3g}]"
        )
    return x


@torch.no_grad()
def extract_features(
    images: Tensor, feature_fn: Callable[[Tensor], Tensor], batch_size: int = 64
) -> Tensor:
    """Feature rows float64 [N, F] of images [N,1,H,W], ``feature_fn`` applied batch by batch."""
    out = [
        feature_fn(images[s : s + batch_size]).flatten(1).double().cpu()
        for s in range(0, len(images), batch_size)
    ]
    feats = torch.cat(out)
    if not bool(torch.isfinite(feats).all()):
        raise ValueError("feature function returned NaN or inf features")
    return feats


def audit_set(
    synthetic: Tensor | np.ndarray,
    synthetic_masks: Tensor | np.ndarray,
    real: Tensor | np.ndarray,
    real_patients: Sequence[Any],
    feature_fn: Callable[[Tensor], Tensor],
    predict_masks: Callable[[Tensor], Tensor] | None = None,
    generator: Any | None = None,
    config: AuditConfig | None = None,
    distinct_masks: int | None = None,
) -> dict[str, Any]:
    """Audit a synthetic set against the real training slices of its fraction; JSON-safe dict.

    synthetic [N,H,W] in [-1,1] with synthetic_masks [N,H,W]; real [M,H,W] in [-1,1] with one
    patient id per slice. ``feature_fn`` maps [B,1,H,W] to [B,F] (the judge's encoder_features).
    ``predict_masks`` (judge) enables mask fidelity; ``generator`` (``.generate(masks, seed,
    dropout)``) enables seed diversity on a seeded sample of the synthetic masks, drawn from the
    first ``distinct_masks`` rows (None: all), which must hold each mask once (a set with k images
    per mask: its first copy). Skipped parts are null.
    """
    cfg = config or AuditConfig()
    syn = as_images(synthetic, "synthetic")
    ref = as_images(real, "real")
    masks = torch.as_tensor(np.asarray(synthetic_masks)).long()
    if masks.shape != (len(syn), *syn.shape[-2:]):
        raise ValueError(
            f"synthetic_masks: expected shape {(len(syn), *syn.shape[-2:])}, "
            f"got {tuple(masks.shape)}"
        )
    if syn.shape[-2:] != ref.shape[-2:]:
        raise ValueError(
            f"synthetic images are {tuple(syn.shape[-2:])} but real slices {tuple(ref.shape[-2:])}"
        )
    n_masks = len(masks) if distinct_masks is None else int(distinct_masks)
    if not 0 < n_masks <= len(masks):
        raise ValueError(f"distinct_masks={distinct_masks}: must be in 1..{len(masks)}")
    if len(real_patients) != len(ref):
        raise ValueError(f"real_patients: {len(real_patients)} ids for {len(ref)} real slices")

    f_syn = extract_features(syn, feature_fn, cfg.batch_size)
    f_real = extract_features(ref, feature_fn, cfg.batch_size)
    mem_args: dict[str, Any] = dict(
        percentile=cfg.copy_percentile,
        n_closest=cfg.n_closest,
        top_patients=cfg.top_patients,
        chunk=cfg.chunk,
    )
    n_patients = len({str(p) for p in real_patients})
    result: dict[str, Any] = {
        "version": AUDIT_VERSION,
        "n_synthetic": len(syn),
        "n_real": len(ref),
        "n_patients": n_patients,
        "image_size": list(syn.shape[-2:]),
        "config": asdict(cfg),
        "memorisation": {},
        "mifid": mifid(f_real, f_syn, cfg.cosine_distance_eps),
    }
    if n_patients >= 2:
        result["memorisation"] = {
            "feature": memorisation(f_syn, f_real, real_patients, "cosine", **mem_args),
            "pixel": memorisation(syn.flatten(1), ref.flatten(1), real_patients, "l2", **mem_args),
        }
    else:  # the copy threshold is a distance between DIFFERENT patients: undefined for one
        result["memorisation_skipped"] = (
            f"the real set holds slices of {n_patients} patient; copy rates need >= 2 "
            "(their threshold is the distance between slices of different patients)"
        )
    precision, recall = precision_recall(f_real, f_syn, cfg.k_manifold, cfg.chunk)
    result["precision_recall"] = {"precision": precision, "recall": recall, "k": cfg.k_manifold}
    result["mask_fidelity"] = (
        mask_fidelity(syn, masks, predict_masks, cfg.batch_size)
        if predict_masks is not None
        else None
    )
    result["diversity"] = None
    if generator is not None:
        rng = np.random.default_rng(cfg.seed)
        rows = np.sort(
            rng.choice(n_masks, size=min(cfg.diversity_masks, n_masks), replace=False)
        )
        div = seed_diversity(generator, masks[torch.as_tensor(rows)], cfg.diversity_k, cfg.seed)
        result["diversity"] = {**div, "mask_rows": rows.tolist()}
    result["conventions"] = dict(CONVENTIONS)
    return to_json_safe(result)
