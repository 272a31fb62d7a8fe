"""nnU-Net's 2-D network planning for MONAI's DynUNet (`model=dynunet`): pure functions and a frozen plan.

From the dataset fingerprint — patch size (H, W), in-plane spacing (sy, sx) and the class pixel
frequencies — the planner applies nnU-Net's rules (``get_pool_and_conv_props`` of nnU-Net v2,
``ExperimentPlanner``):

- an axis is downsampled by 2 at the next level while its feature map is >= 2 x ``min_feature_map``
  (4: the bottleneck ends at 4-7 px) and its current spacing is < 2 x the smallest current spacing of
  the axes still large enough (nnU-Net's strict test: an axis at exactly twice the finest waits one
  level); when a single axis is left it must be >= 3 x ``min_feature_map``;
- the kernel of an axis is 1 while its spacing is >= 2 x the finest (a very coarse axis) and 3 from the
  level on where it comes within a factor 2 (it then stays 3); the bottleneck's kernel is 3 x 3;
- the first stage has stride 1; at most ``max_pool_levels`` (6) downsamplings: nnU-Net stops only at
  the minimum feature map (7 levels at 512², bottleneck 4 px); the cap keeps 512² at 6 levels
  (bottleneck 8 px) and changes nothing at 256² and below;
- filters 32 at full resolution, doubling per level, capped at ``max_filters`` (320, nnU-Net's 3-D cap;
  nnU-Net v2's 2-D planner allows 512), then multiplied by ``width`` (CPU runs) with at least 8;
- deep supervision: one output per decoder level from full resolution down to the level above the
  bottleneck (= the number of downsamplings), weighted 1, 1/2, 1/4, ... with the lowest-resolution
  output weighted 0, normalised to sum 1 (nnU-Net's ``DeepSupervisionWrapper`` weights).

The class frequencies (pixel shares of classes 0-5 in the training slices) change nothing in the
architecture, as in nnU-Net; they are recorded in the plan (plan.json, the checkpoint) to document
what the network was planned on, and classes without a single training pixel are logged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from lcgan_lightning.constants import NUM_CLASSES
from lcgan_lightning.errors import ConfigError

PLAN_FILE = "plan.json"
MIN_FEATURE_MAP = 4
MAX_POOL_LEVELS = 6
BASE_FILTERS = 32
MAX_FILTERS = 320
MIN_FILTERS = 8
PLANNER_KEYS = ("patch_size", "spacing", "min_feature_map", "max_pool_levels", "base_filters",
                "max_filters", "deep_supervision")


@dataclass(frozen=True)
class DynUNetPlan:
    """What `plan_dynunet` decided; stages run from full resolution (index 0) to the bottleneck."""

    patch_size: tuple[int, int]
    spacing: tuple[float, float]
    class_frequencies: tuple[float, ...]
    kernels: tuple[tuple[int, int], ...]
    strides: tuple[tuple[int, int], ...]
    filters: tuple[int, ...]
    deep_supervision_weights: tuple[float, ...]  # per output, full resolution first; () = off
    divisible_by: tuple[int, int]  # input sides must be multiples of these (inputs are padded)
    bottleneck: tuple[int, int]
    width: float

    @property
    def n_stages(self) -> int:
        return len(self.strides)

    def as_dict(self) -> dict[str, Any]:
        """Plain lists and numbers (plan.json, the checkpoint's hyper-parameters)."""
        return {k: _lists(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], key: str = "model.plan") -> DynUNetPlan:
        """The plan `as_dict` wrote; a missing or unknown entry raises ConfigError naming it."""
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in data]
        unknown = [k for k in data if k not in names]
        if missing or unknown:
            raise ConfigError(f"{key}: not a DynUNet plan (missing {missing}, unknown {unknown})",
                              hint="use the plan.json of a model=dynunet run, or null to plan from the data")
        d = dict(data)
        return cls(
            patch_size=_pair(d["patch_size"], int), spacing=_pair(d["spacing"], float),
            class_frequencies=tuple(float(f) for f in d["class_frequencies"]),
            kernels=tuple(_pair(k, int) for k in d["kernels"]),
            strides=tuple(_pair(s, int) for s in d["strides"]),
            filters=tuple(int(f) for f in d["filters"]),
            deep_supervision_weights=tuple(float(w) for w in d["deep_supervision_weights"]),
            divisible_by=_pair(d["divisible_by"], int), bottleneck=_pair(d["bottleneck"], int),
            width=float(d["width"]),
        )


def _lists(value: Any) -> Any:
    return [_lists(v) for v in value] if isinstance(value, (tuple, list)) else value


def _pair(value: Any, kind: type) -> tuple[Any, Any]:
    a, b = value
    return kind(a), kind(b)


def pool_and_conv_props(
    patch_size: Sequence[int], spacing: Sequence[float], min_feature_map: int = MIN_FEATURE_MAP,
    max_pool_levels: int = MAX_POOL_LEVELS,
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(kernels, strides) per stage by nnU-Net's rules (module docstring); strides[0] is (1, 1)."""
    size = [int(s) for s in patch_size]
    current = [float(s) for s in spacing]
    dims = range(len(size))
    strides: list[tuple[int, int]] = [(1, 1)]
    kernels: list[tuple[int, int]] = []
    kernel = [1, 1]
    while len(strides) - 1 < max_pool_levels:
        large = [d for d in dims if size[d] >= 2 * min_feature_map]
        if not large:
            break
        finest = min(current[d] for d in large)
        pool = [d for d in large if current[d] / finest < 2]
        if len(pool) == 1 and size[pool[0]] < 3 * min_feature_map:
            break
        for d in dims:  # 3 from the level where the axis comes within 2x of the finest spacing on
            if kernel[d] != 3 and current[d] / min(current) < 2:
                kernel[d] = 3
        kernels.append((kernel[0], kernel[1]))
        stride = [1, 1]
        for d in pool:
            stride[d] = 2
            current[d] *= 2
            size[d] = math.ceil(size[d] / 2)
        strides.append((stride[0], stride[1]))
    kernels.append((3, 3))  # the bottleneck
    return kernels, strides


def stage_filters(n_stages: int, width: float = 1.0, base: int = BASE_FILTERS, cap: int = MAX_FILTERS) -> list[int]:
    """base·2^k capped at `cap`, times `width`, at least MIN_FILTERS, for stages k = 0..n_stages-1."""
    return [max(MIN_FILTERS, round(min(base * 2**k, cap) * width)) for k in range(n_stages)]


def deep_supervision_weights(n_outputs: int) -> list[float]:
    """nnU-Net's loss weights: 1, 1/2, 1/4, ... with the last (lowest resolution) 0, summing to 1."""
    if n_outputs < 2:
        return [1.0] * n_outputs
    raw = [1.0 / 2**i for i in range(n_outputs)]
    raw[-1] = 0.0
    total = sum(raw)
    return [w / total for w in raw]


def class_frequencies(masks: np.ndarray, num_classes: int = NUM_CLASSES, chunk: int = 256) -> list[float]:
    """Pixel share of every class id 0..num_classes-1 in `masks` [N, H, W] (uint8 class ids)."""
    counts = np.zeros(num_classes, dtype=np.int64)
    for start in range(0, len(masks), chunk):
        ids = np.asarray(masks[start:start + chunk]).reshape(-1)
        counts += np.bincount(ids, minlength=num_classes)[:num_classes]
    total = max(int(counts.sum()), 1)
    return [float(c) / total for c in counts]


def plan_dynunet(
    patch_size: Sequence[int],
    spacing: Sequence[float] | None = None,
    class_freqs: Sequence[float] | None = None,
    width: float = 1.0,
    min_feature_map: int = MIN_FEATURE_MAP,
    max_pool_levels: int = MAX_POOL_LEVELS,
    base_filters: int = BASE_FILTERS,
    max_filters: int = MAX_FILTERS,
    deep_supervision: bool = True,
) -> DynUNetPlan:
    """The network nnU-Net would plan for 2-D patches of `patch_size` (H, W) at `spacing` (sy, sx;
    None = isotropic 1.0); raises ConfigError (naming model.planner) when no DynUNet fits."""
    if len(patch_size) != 2 or min(int(s) for s in patch_size) < 1:
        raise ConfigError(f"model.planner.patch_size={list(patch_size)}: needs two positive sides (H, W)")
    spacing = (1.0, 1.0) if spacing is None else tuple(float(s) for s in spacing)
    if len(spacing) != 2 or min(spacing) <= 0:
        raise ConfigError(f"model.planner.spacing={list(spacing)}: needs two positive in-plane spacings (sy, sx)",
                          hint="null means isotropic 1.0")
    if width <= 0 or min_feature_map < 1 or max_pool_levels < 2:
        raise ConfigError(f"model.width={width} / model.planner.min_feature_map={min_feature_map} / "
                          f"max_pool_levels={max_pool_levels}: need width > 0, min_feature_map >= 1, "
                          "max_pool_levels >= 2")
    kernels, strides = pool_and_conv_props(patch_size, spacing, min_feature_map, max_pool_levels)
    n_pool = len(strides) - 1
    if n_pool < 2:
        raise ConfigError(
            f"model.planner.patch_size={list(patch_size)}: DynUNet needs at least 2 downsamplings and these "
            f"patches allow {n_pool} with min_feature_map={min_feature_map}",
            hint="use larger images (data.image_size >= 4 x min_feature_map) or a smaller min_feature_map")
    divisible = tuple(int(np.prod([s[d] for s in strides])) for d in range(2))
    freqs = [0.0] * NUM_CLASSES if class_freqs is None else [float(f) for f in class_freqs]
    return DynUNetPlan(
        patch_size=_pair(patch_size, int),
        spacing=_pair(spacing, float),
        class_frequencies=tuple(freqs),
        kernels=tuple(kernels),
        strides=tuple(strides),
        filters=tuple(stage_filters(len(strides), width, base_filters, max_filters)),
        deep_supervision_weights=tuple(deep_supervision_weights(n_pool) if deep_supervision else ()),
        divisible_by=_pair(divisible, int),
        bottleneck=_pair([math.ceil(int(patch_size[d]) / divisible[d]) for d in range(2)], int),
        width=float(width),
    )


def check_planner(planner: Mapping[str, Any] | None) -> dict[str, Any]:
    """`model.planner` as keyword arguments of `plan_dynunet` (unknown keys raise, named)."""
    planner = dict(planner or {})
    unknown = sorted(set(planner) - set(PLANNER_KEYS))
    if unknown:
        raise ConfigError(f"model.planner.{unknown[0]}: unknown planner key", hint=f"valid keys: {PLANNER_KEYS}")
    return {k: v for k, v in planner.items() if v is not None}


def plan_lines(plan: DynUNetPlan) -> list[str]:
    """The plan as text lines (the start-up log; the tables of docs/models.md come from these)."""
    weights = list(plan.deep_supervision_weights) + [None] * (plan.n_stages - len(plan.deep_supervision_weights))
    size = list(plan.patch_size)
    rows = ["stage | feature map | kernel | stride | filters | deep-supervision weight"]
    for k in range(plan.n_stages):
        size = [math.ceil(size[d] / plan.strides[k][d]) for d in range(2)]
        w = "-" if weights[k] is None else f"{weights[k]:.4f}"
        rows.append(f"{k} | {size[0]}x{size[1]} | {plan.kernels[k][0]}x{plan.kernels[k][1]} | "
                    f"{plan.strides[k][0]}x{plan.strides[k][1]} | {plan.filters[k]} | {w}")
    freqs = ", ".join(f"{f:.4f}" for f in plan.class_frequencies)
    rows.append(f"patch {plan.patch_size}, spacing {plan.spacing}, width {plan.width}, "
                f"input multiple of {plan.divisible_by}, class frequencies [{freqs}]")
    return rows


__all__ = ["PLAN_FILE", "DynUNetPlan", "check_planner", "class_frequencies", "deep_supervision_weights",
           "plan_dynunet", "plan_lines", "pool_and_conv_props", "stage_filters"]
