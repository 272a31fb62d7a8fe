"""Memorisation: the nearest real training slice of every synthetic image, and when it is too close.

Two spaces:

* ``feature``: cosine distance ``1 - cos(f_syn, f_real)`` between judge-encoder features.
* ``pixel``: RMS L2 distance ``||x_syn - x_real||_2 / sqrt(H*W)`` on the [-1, 1] brain window.
  L2 rather than 1 - SSIM because all N x M pairs are one matrix product (``torch.cdist``), about
  three orders of magnitude cheaper than N x M filtered SSIM maps, and a pixel copy (exact or
  lightly noised) is a near-zero L2 event. L2 misses a shifted or flipped copy; the pooled
  feature space is largely shift-tolerant and covers that case.

Reference: each real slice's nearest real slice of a DIFFERENT patient (slices of one patient are
neighbours by anatomy, not by copying). A synthetic image is a copy when its nearest-neighbour
distance is below the ``percentile``-th percentile (5 by default) of those reference distances, so
a set as novel as unseen patients scores about ``percentile`` % by construction.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

METRICS = ("cosine", "l2")


def _distances(query: Tensor, ref: Tensor, metric: str) -> Tensor:
    """Pairwise distances [len(query), len(ref)] (matmul-based: fine for argmin, not near 0)."""
    if metric == "cosine":
        q = torch.nn.functional.normalize(query, dim=1)
        r = torch.nn.functional.normalize(ref, dim=1)
        return 1.0 - q @ r.T
    if metric == "l2":
        return torch.cdist(query, ref) / math.sqrt(query.shape[1])
    raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")


def _exact(query: Tensor, ref: Tensor, metric: str) -> Tensor:
    """Row-wise distance of matched pairs query[i] <-> ref[i], in float64 (no cancellation)."""
    q, r = query.double(), ref.double()
    if metric == "cosine":
        qn, rn = torch.nn.functional.normalize(q, dim=1), torch.nn.functional.normalize(r, dim=1)
        return (1.0 - (qn * rn).sum(dim=1)).clamp_min(0.0)
    return (q - r).pow(2).mean(dim=1).sqrt()


def nearest(
    query: Tensor,
    ref: Tensor,
    metric: str,
    query_groups: Sequence[Any] | np.ndarray | None = None,
    ref_groups: Sequence[Any] | np.ndarray | None = None,
    chunk: int = 512,
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest ``ref`` row of every ``query`` row: (distance float64 [Nq], index int64 [Nq]).

    query, ref: [N, D] vectors. With groups (e.g. patient ids), a ref row of the query row's own
    group is not eligible. Searched in chunks of ``chunk`` query rows; the returned distances are
    recomputed exactly in float64 for the chosen pairs.
    """
    if query.ndim != 2 or ref.ndim != 2 or query.shape[1] != ref.shape[1]:
        raise ValueError(
            f"nearest: expected [N, D] and [M, D], got {tuple(query.shape)} and {tuple(ref.shape)}"
        )
    if len(ref) == 0:
        raise ValueError("nearest: the reference set is empty")
    if (query_groups is None) != (ref_groups is None):
        raise ValueError("nearest: give both query_groups and ref_groups, or neither")
    if query_groups is not None:
        _, codes = np.unique(
            np.concatenate(
                [np.asarray(query_groups, dtype=str), np.asarray(ref_groups, dtype=str)]
            ),
            return_inverse=True,
        )
        q_code = torch.as_tensor(codes[: len(query)])
        r_code = torch.as_tensor(codes[len(query) :])
    query, ref = query.float(), ref.float()
    index = torch.empty(len(query), dtype=torch.long)
    for start in range(0, len(query), chunk):
        d = _distances(query[start : start + chunk], ref, metric)
        if query_groups is not None:
            same = q_code[start : start + chunk, None] == r_code[None, :]
            if bool(same.all(dim=1).any()):
                raise ValueError(
                    "nearest: a query row has no reference row of another group (one patient only?)"
                )
            d = d.masked_fill(same, math.inf)
        index[start : start + chunk] = d.argmin(dim=1)
    dist = _exact(query, ref[index], metric)
    return dist.numpy(), index.numpy()


def memorisation(
    synthetic: Tensor,
    real: Tensor,
    real_patients: Sequence[Any],
    metric: str,
    percentile: float = 5.0,
    n_closest: int = 8,
    top_patients: int = 10,
    chunk: int = 512,
) -> dict[str, Any]:
    """Copy rate of ``synthetic`` [N, D] against the real training rows ``real`` [M, D].

    Returns the threshold, copy rate, the most-copied training patients (among the flagged copies)
    and the ``n_closest`` closest synthetic/real pairs (each synthetic image at most once).
    """
    patients = np.asarray([str(p) for p in real_patients])
    if len(patients) != len(real):
        raise ValueError(f"memorisation: {len(real)} real rows but {len(patients)} patient ids")
    if len(np.unique(patients)) < 2:
        raise ValueError(
            "memorisation: the real set needs slices of at least 2 patients for its reference"
        )
    if not 0.0 < percentile < 100.0:
        raise ValueError(f"memorisation: percentile must be in (0, 100), got {percentile}")
    ref_d, _ = nearest(real, real, metric, patients, patients, chunk)
    threshold = float(np.percentile(ref_d, percentile))
    syn_d, syn_i = nearest(synthetic, real, metric, chunk=chunk)
    copies = syn_d < threshold
    counts = Counter(patients[syn_i[copies]].tolist())
    order = np.argsort(syn_d, kind="stable")[:n_closest]
    return {
        "space": "feature" if metric == "cosine" else "pixel",
        "distance": metric,
        "percentile": float(percentile),
        "threshold": threshold,
        "copy_rate": float(copies.mean()) if len(copies) else math.nan,
        "n_copies": int(copies.sum()),
        "synthetic_nn_median": float(np.median(syn_d)),
        "reference_nn_median": float(np.median(ref_d)),
        "most_copied_patients": [
            {"patient": p, "copies": c} for p, c in counts.most_common(top_patients)
        ],
        "closest_pairs": [
            {
                "synthetic": int(i),
                "real": int(syn_i[i]),
                "patient": str(patients[syn_i[i]]),
                "distance": float(syn_d[i]),
            }
            for i in order
        ],
    }
