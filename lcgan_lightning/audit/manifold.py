"""Generative precision and recall with k-NN manifolds (Kynkäänniemi et al., NeurIPS 2019).

The manifold of a feature set is the union of balls centred on its points, each with the radius
of the distance to that point's k-th nearest OTHER point of the set (Euclidean). Precision = share
of synthetic features inside the real manifold (realism); recall = share of real features inside
the synthetic manifold (coverage). Duplicated points get radius 0 once a point has k copies.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _check(features: Tensor, name: str, k: int) -> Tensor:
    if features.ndim != 2:
        raise ValueError(f"{name} features must be [N, D], got shape {tuple(features.shape)}")
    if len(features) <= k:
        raise ValueError(
            f"{name} features: need more than k={k} rows for a k-NN manifold, got {len(features)}"
        )
    return features.double()


def knn_radii(features: Tensor, k: int = 3, chunk: int = 1024) -> Tensor:
    """Distance of every row of ``features`` [N, D] to its k-th nearest other row, float64 [N]."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    x = _check(features, "manifold", k)
    out = torch.empty(len(x), dtype=torch.float64)
    for start in range(0, len(x), chunk):
        d = torch.cdist(x[start : start + chunk], x)
        # the row's own point is one of the zeros, so the k-th OTHER point is the (k+1)-th smallest
        out[start : start + chunk] = d.kthvalue(k + 1, dim=1).values
    return out


def inside(query: Tensor, support: Tensor, radii: Tensor, chunk: int = 1024) -> Tensor:
    """Bool [Nq]: whether each query row lies in some ball (support[j], radii[j])."""
    q, s = query.double(), support.double()
    out = torch.empty(len(q), dtype=torch.bool)
    for start in range(0, len(q), chunk):
        out[start : start + chunk] = (
            torch.cdist(q[start : start + chunk], s) <= radii[None, :]
        ).any(dim=1)
    return out


def precision_recall(
    real: Tensor, synthetic: Tensor, k: int = 3, chunk: int = 1024
) -> tuple[float, float]:
    """(precision, recall) of ``synthetic`` [N, D] against ``real`` [M, D] features."""
    real, synthetic = _check(real, "real", k), _check(synthetic, "synthetic", k)
    if real.shape[1] != synthetic.shape[1]:
        raise ValueError(
            f"feature sizes differ: real {real.shape[1]}, synthetic {synthetic.shape[1]}"
        )
    precision = inside(synthetic, real, knn_radii(real, k, chunk), chunk).double().mean()
    recall = inside(real, synthetic, knn_radii(synthetic, k, chunk), chunk).double().mean()
    return float(precision), float(recall)
