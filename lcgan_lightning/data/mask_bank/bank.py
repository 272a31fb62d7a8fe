"""`MaskBank`: new lesion masks from the training masks of one fraction, class-balanced and
checked, deterministic per seed."""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import cast

import numpy as np

from lcgan_lightning.constants import CLASS_NAMES, NUM_CLASSES
from lcgan_lightning.data.mask_bank.stats import check_mask, describe_masks, validate_masks
from lcgan_lightning.data.mask_bank.transforms import GeometricVariation, transplant

SOURCES = ("geometric", "transplant")


@dataclass
class MaskBankConfig:
    """Settings of a `MaskBank` (pixel sizes are for the masks' own resolution unless noted).

    sources: weight of each way of making a mask ("geometric", "transplant").
    flip_p, rotate_deg, scale, elastic_p, elastic_alpha, elastic_sigma: geometric variation
      (elastic settings at 256², scaled with the image size).
    mirror_p, angle_jitter_deg, rho_jitter, ivh_jitter: transplant placement (ivh_jitter is a
      fraction of the image size); touch_px: how close (px) EDH/SDH must come to the boundary.
    ventricle_margin: growth of the real-IVH hull that new IVH must stay in (fraction of size).
    balance_ratio, max_boost: each lesion class gets a share of the new masks of at least
      balance_ratio x the most frequent class's, but at most max_boost x its share among the
      training masks.
    min_fragment_area: smallest lesion component (px) a new mask may hold.
    region_tolerance_px: how far (px) a lesion pixel may lie outside the estimated region.
    max_tries_per_mask: retry budget, n x this candidates in all.
    """

    sources: dict[str, float] = field(default_factory=lambda: {"geometric": 0.4, "transplant": 0.6})
    flip_p: float = 0.5
    rotate_deg: float = 15.0
    scale: tuple[float, float] = (0.9, 1.1)
    elastic_p: float = 0.5
    elastic_alpha: float = 150.0
    elastic_sigma: float = 10.0
    mirror_p: float = 0.5
    angle_jitter_deg: float = 30.0
    rho_jitter: float = 0.05
    ivh_jitter: float = 0.02
    touch_px: float = 2.0
    ventricle_margin: float = 0.03
    balance_ratio: float = 0.5
    max_boost: float = 4.0
    min_fragment_area: int = 4
    region_tolerance_px: float = 1.0
    max_tries_per_mask: int = 20

    def __post_init__(self) -> None:
        self.sources = dict(self.sources)  # plain types when built from a Hydra/OmegaConf node
        self.scale = cast(tuple[float, float], tuple(self.scale))  # checked below
        unknown = set(self.sources) - set(SOURCES)
        if unknown or not self.sources:
            raise ValueError(f"MaskBankConfig.sources: unknown {sorted(unknown)}; use {SOURCES}")
        if any(v < 0 for v in self.sources.values()) or sum(self.sources.values()) <= 0:
            raise ValueError("MaskBankConfig.sources: weights must be >= 0 and not all 0, "
                             f"got {self.sources}")
        if not 0 <= self.balance_ratio <= 1:
            raise ValueError("MaskBankConfig.balance_ratio must be in [0, 1], "
                             f"got {self.balance_ratio}")
        if self.max_boost < 1:
            raise ValueError(f"MaskBankConfig.max_boost must be >= 1, got {self.max_boost}")
        if not 0 < self.scale[0] <= self.scale[1]:
            raise ValueError("MaskBankConfig.scale must be (low, high) with 0 < low <= high, "
                             f"got {self.scale}")
        if self.min_fragment_area < 1 or self.max_tries_per_mask < 1:
            raise ValueError("MaskBankConfig.min_fragment_area and max_tries_per_mask must be >= 1")


@dataclass
class NovelMasks:
    """New masks uint8 [n,H,W]; one provenance dict per mask (``transform``, ``source_rows`` into
    the training masks, ``params``); ``rejected`` counts rejected candidates by reason (one with
    several reasons counts under each); ``attempts`` is the number of candidates drawn;
    ``complete`` is False when the retry budget ran out before n masks (``masks`` holds fewer)."""

    masks: np.ndarray
    provenance: list[dict]
    rejected: dict[str, int]
    attempts: int
    complete: bool


def class_targets(presence: np.ndarray, balance_ratio: float, max_boost: float) -> np.ndarray:
    """Target share of each class among new masks ([NUM_CLASSES], 0 for background and absent
    classes): the real share raised to ``balance_ratio`` x the largest, at most ``max_boost`` x."""
    p = np.asarray(presence, dtype=np.float64).copy()
    p[0] = 0
    if p.max() <= 0:
        raise ValueError("presence: no lesion class present")
    w = p / p.max()
    t = np.where(w > 0, np.minimum(np.maximum(w, balance_ratio), w * max_boost), 0.0)
    return t / t.sum()


class MaskBank:
    """New lesion masks made from ``train_masks`` (uint8 [N,H,W], classes 0-5).

    Each new mask comes from one of the configured sources, chosen for a "focus" class that keeps
    the new masks' class counts on the `class_targets` quota; every candidate passes `check_mask`
    (and the transplant placement rules) or is counted in ``rejected`` and retried. Mask ``row``
    depends only on (seed, row, attempt) and the rows before it.
    """

    def __init__(self, train_masks: np.ndarray, config: MaskBankConfig | None = None,
                 seed: int = 0):
        self.config = cfg = config or MaskBankConfig()
        self.masks = validate_masks(train_masks)
        size = max(self.masks.shape[1:])
        self.stats = describe_masks(self.masks, cfg.min_fragment_area, cfg.ventricle_margin * size)
        self.seed = int(seed)
        self.geometric = GeometricVariation(self.stats.shape, cfg.rotate_deg, cfg.scale, cfg.flip_p,
                                            cfg.elastic_p, cfg.elastic_alpha, cfg.elastic_sigma)
        self.by_class = {c: [x for x in self.stats.components if x.cls == c]
                         for c in range(1, NUM_CLASSES)}
        eligible = np.array([0] + [len(self.by_class[c]) for c in range(1, NUM_CLASSES)])
        self.targets = class_targets(np.where(eligible > 0, self.stats.presence, 0),
                                     cfg.balance_ratio, cfg.max_boost)
        names = [s for s in SOURCES if cfg.sources.get(s, 0) > 0]
        weights = np.array([cfg.sources[s] for s in names], dtype=np.float64)
        self.source_names, self.source_p = names, weights / weights.sum()

    def _focus(self, counts: np.ndarray, rng: np.random.Generator) -> int:
        deficit = self.targets * (counts.sum() + 1) - counts
        deficit[self.targets == 0] = -np.inf
        best = np.flatnonzero(deficit >= deficit.max() - 1e-9)
        return int(best[int(rng.integers(best.size))])

    def _candidate(self, focus: int, rng: np.random.Generator
                   ) -> tuple[np.ndarray | None, dict, str | None]:
        cfg = self.config
        mask: np.ndarray | None
        source = self.source_names[int(rng.choice(len(self.source_names), p=self.source_p))]
        if source == "geometric":
            rows = self.stats.rows_with[focus]
            row = int(rows[int(rng.integers(rows.size))])
            mask, params = self.geometric(self.masks[row], rng)
            return mask, {"transform": "geometric", "source_rows": [row], "params": params}, None
        comps = self.by_class[focus]
        comp = comps[int(rng.integers(len(comps)))]
        target_row = int(rng.integers(len(self.masks)))
        size = max(self.stats.shape)
        mask, params, reason = transplant(
            comp, self.masks[target_row], target_row, self.stats, rng, cfg.mirror_p,
            cfg.angle_jitter_deg, cfg.rho_jitter, cfg.ivh_jitter * size, cfg.touch_px)
        info = {"transform": "transplant", "source_rows": [target_row, int(comp.row)],
                "params": params}
        return mask, info, reason

    def generate(self, n: int) -> NovelMasks:
        """``n`` new masks (fewer, with a RuntimeWarning, once ``n x max_tries_per_mask``
        candidates are spent)."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        cfg = self.config
        out = np.zeros((n, *self.stats.shape), dtype=np.uint8)
        provenance: list[dict] = []
        rejected: Counter[str] = Counter()
        counts = np.zeros(NUM_CLASSES, dtype=np.float64)
        budget, attempts, row, attempt = n * cfg.max_tries_per_mask, 0, 0, 0
        while row < n and attempts < budget:
            rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(row, attempt)))
            attempts += 1
            attempt += 1
            focus = self._focus(counts, rng)
            mask, info, reason = self._candidate(focus, rng)
            if reason:
                rejected.update([reason])
                continue
            assert mask is not None  # a candidate without a rejection reason has its mask
            reasons = check_mask(mask, self.stats, cfg.min_fragment_area, cfg.region_tolerance_px)
            if reasons:
                rejected.update(reasons)
                continue
            present = np.bincount(mask.ravel(), minlength=NUM_CLASSES) > 0
            present[0] = False
            counts += present
            info.update(focus_class=CLASS_NAMES[focus], attempt=attempt - 1,
                        classes=[CLASS_NAMES[c] for c in np.flatnonzero(present)])
            out[row] = mask
            provenance.append(info)
            row, attempt = row + 1, 0
        if row < n:
            warnings.warn(f"MaskBank.generate: made {row} of {n} masks; retry budget of {budget} "
                          f"candidates spent (rejected: {dict(rejected)})", RuntimeWarning,
                          stacklevel=2)
        return NovelMasks(out[:row], provenance, dict(rejected), attempts, row == n)


def novel_masks(train_masks: np.ndarray, n: int, seed: int = 0,
                config: MaskBankConfig | None = None) -> NovelMasks:
    """``MaskBank(train_masks, config, seed).generate(n)``."""
    return MaskBank(train_masks, config, seed).generate(n)
