"""Mask bank: region, transforms, placement rules, checks, balance, diversity, scale."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lcgan_lightning.data.mask_bank import (
    GeometricVariation,
    MaskBank,
    MaskBankConfig,
    check_mask,
    class_targets,
    describe_masks,
    estimate_region,
    novel_masks,
    position_diversity,
    transplant,
)
from lcgan_lightning.data.phantom import lesion_masks

IPH, IVH, SAH, EDH, SDH = 1, 2, 3, 4, 5


@pytest.fixture(scope="module")
def masks() -> np.ndarray:
    """43 lesion masks at 96², every class present."""
    return lesion_masks(5, 12, 96, 12)


@pytest.fixture(scope="module")
def bank(masks) -> MaskBank:
    return MaskBank(masks, seed=0)


@pytest.fixture(scope="module")
def generated(bank) -> object:
    return bank.generate(120)


def all_classes_mask(size: int = 64) -> np.ndarray:
    """A blob of every class in a 64² mask (used for transform tests)."""
    m = np.zeros((size, size), dtype=np.uint8)
    m[20:28, 30:36] = IPH
    m[30:36, 28:34] = IVH
    m[10:13, 20:30] = SAH
    m[18:30, 8:12] = EDH
    m[36:54, 50:54] = SDH
    return m


def toy_bank_masks() -> np.ndarray:
    """Three 32² masks: IPH 3x3 (9 px) and 4x4 (16 px), and an EDH 2x4 at the left edge."""
    m = np.zeros((3, 32, 32), dtype=np.uint8)
    m[0, 14:17, 14:17] = IPH
    m[1, 12:16, 16:20] = IPH
    m[2, 10:14, 4:6] = EDH
    return m


# ----------------------------------------------------------------------------- region


def test_region_is_mirrored_hull_holding_every_lesion_pixel(masks):
    region = estimate_region(masks)
    lesion = masks.max(axis=0) > 0
    assert region.mask[lesion].all()
    assert np.array_equal(region.mask, region.mask[:, ::-1])
    assert region.center[1] == pytest.approx((masks.shape[2] - 1) / 2)
    # depth: 1 on the outer ring, 0 outside, growing inwards
    assert region.depth[~region.mask].max() == 0
    assert region.depth[region.mask].min() == 1


def test_region_of_two_squares_is_their_hull():
    m = np.zeros((1, 20, 20), dtype=np.uint8)
    m[0, 4:6, 2:4] = IPH  # mirror image at cols 16-17
    m[0, 12:14, 2:4] = SDH
    region = estimate_region(m)
    rows, cols = np.nonzero(region.mask)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (4, 13, 2, 17)
    assert region.mask[4:14, 2:18].all() and region.mask.sum() == 10 * 16
    # (8, 9): the nearest outside pixel is (3, 9), five rows up
    assert region.depth[8, 2] == 1 and region.depth[8, 9] == 5
    # boundary profile: from the centre (8.5, 9.5) straight right, the last inside pixel is col 17
    assert float(region.boundary_radius(0.0)) == pytest.approx(7.5, abs=0.5)


# ----------------------------------------------------------------------------- transforms


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("classes", ["all", "IVH+SDH"])
def test_geometric_keeps_class_ids(seed, classes):
    src = all_classes_mask()
    if classes == "IVH+SDH":  # touching blobs of 2 and 5 on 0: blending would write 1, 3 or 4
        src = np.zeros_like(src)
        src[20:36, 20:30] = IVH
        src[20:36, 30:40] = SDH
    geo = GeometricVariation(src.shape, 25.0, (0.8, 1.2), 0.5, 1.0, 400.0, 10.0)
    out, params = geo(src, np.random.default_rng(seed))
    assert out.dtype == np.uint8 and out.shape == src.shape
    assert set(np.unique(out)) == set(np.unique(src))
    assert not np.array_equal(out, src)
    assert set(params) == {"flip", "rotate_deg", "scale", "elastic"} and params["elastic"]
    assert -25 <= params["rotate_deg"] <= 25 and 0.8 <= params["scale"] <= 1.2


def test_geometric_flip_only_is_a_mirror_across_the_midline():
    src = all_classes_mask()
    geo = GeometricVariation(src.shape, 0.0, (1.0, 1.0), 1.0, 0.0, 1.0, 10.0)
    out, params = geo(src, np.random.default_rng(0))
    assert params["flip"] and not params["elastic"]
    assert np.array_equal(out, src[:, ::-1])


def test_transplant_keeps_ids_and_target(bank, masks):
    rng = np.random.default_rng(1)
    done = 0
    for k in range(60):
        comp = bank.stats.components[k % len(bank.stats.components)]
        target_row = int(rng.integers(len(masks)))
        target = masks[target_row]
        out, params, reason = transplant(comp, target, target_row, bank.stats, rng, 0.5, 30.0, 0.05,
                                         2.0, 2.0)
        if reason is not None:
            continue
        done += 1
        assert out.dtype == np.uint8
        assert set(np.unique(out)) <= set(np.unique(target)) | {comp.cls}
        changed = out != target
        assert (target[changed] == 0).all() and (out[changed] == comp.cls).all()
        assert changed.sum() == params["placed_area"]
        assert abs(params["placed_area"] - comp.area) <= 0.35 * comp.area + 2
    assert done >= 20


# ----------------------------------------------------------------------------- bank output


def test_same_seed_same_masks_other_seed_differs(masks, generated):
    again = MaskBank(masks, seed=0).generate(120)
    assert np.array_equal(again.masks, generated.masks)
    assert again.provenance == generated.provenance and again.rejected == generated.rejected
    other = novel_masks(masks, 120, seed=1)
    assert not np.array_equal(other.masks, generated.masks)


def test_every_new_mask_is_valid_and_traceable(bank, masks, generated):
    cfg = bank.config
    assert generated.complete and generated.masks.shape == (120, 96, 96)
    assert generated.masks.dtype == np.uint8 and generated.masks.max() <= 5
    kinds = {p["transform"] for p in generated.provenance}
    assert json.loads(json.dumps(generated.provenance)) == generated.provenance
    assert kinds == {"geometric", "transplant"}
    for new, prov in zip(generated.masks, generated.provenance, strict=True):
        assert check_mask(new, bank.stats, cfg.min_fragment_area, cfg.region_tolerance_px) == []
        rows = prov["source_rows"]
        if prov["transform"] == "geometric":
            assert set(np.unique(new)) <= set(np.unique(masks[rows[0]]))
        else:
            cls = IPH + ["IPH", "IVH", "SAH", "EDH", "SDH"].index(prov["params"]["class"])
            assert set(np.unique(new)) <= set(np.unique(masks[rows[0]])) | {cls}
            assert masks[rows[1]].tolist() != new.tolist()
    # a rejected candidate counts under each of its reasons
    assert 0 < generated.attempts - len(generated.masks) <= sum(generated.rejected.values())


def test_transplanted_lesions_follow_their_class_rules(bank, masks):
    cfg = MaskBankConfig(sources={"transplant": 1.0})
    res = MaskBank(masks, cfg, seed=3).generate(150)
    depth, vent = bank.stats.region.depth, bank.stats.ventricles
    seen = {c: 0 for c in ("EDH", "SDH", "IPH", "IVH")}
    for new, prov in zip(res.masks, res.provenance, strict=True):
        name = prov["params"]["class"]
        placed = new != masks[prov["source_rows"][0]]
        assert placed.any()
        if name in ("EDH", "SDH"):  # touches the skull-side boundary
            assert depth[placed].min() <= cfg.touch_px
        elif name == "IPH":  # parenchyma: off the boundary
            assert depth[placed].min() > cfg.touch_px
        elif name == "IVH":
            assert vent[placed].all()
        if name in seen:
            seen[name] += 1
    assert min(seen.values()) >= 5, seen


def test_balance_raises_rare_classes(masks):
    def share(ms: np.ndarray) -> np.ndarray:
        """Masks holding each class, over the count of the most frequent class."""
        present = np.stack([(ms == c).any(axis=(1, 2)) for c in range(1, 6)], axis=1).sum(axis=0)
        return present / present.max()

    edh_rows = np.flatnonzero((masks == EDH).any(axis=(1, 2)))
    rare = masks[np.setdiff1d(np.arange(len(masks)), edh_rows[2:])]  # keep only 2 EDH masks
    res = MaskBank(rare, seed=0).generate(120)
    real, new = share(rare), share(res.masks)
    assert real[EDH - 1] <= 0.25
    # balance_ratio 0.5, and 4 x the real share does not cap it
    assert new[EDH - 1] >= 0.4 and new.min() >= 0.4


def test_class_targets_by_hand():
    t = class_targets(np.array([7, 100, 10, 0, 50, 1]), balance_ratio=0.5, max_boost=4.0)
    # weights 1, max(.1,.5) capped at 4 x .1 = .4, 0, .5, max(.01,.5) capped at .04
    expected = np.array([0, 1.0, 0.4, 0.0, 0.5, 0.04]) / 1.94
    assert np.allclose(t, expected)
    assert np.allclose(class_targets(np.array([0, 9, 3, 3, 3, 1]), 1.0, 100.0)[1:], 0.2)


# ----------------------------------------------------------------------------- rejection


@pytest.fixture(scope="module")
def toy_stats():
    return describe_masks(toy_bank_masks(), min_fragment_area=4, ventricle_margin_px=1.0)


def test_toy_stats_by_hand(toy_stats):
    assert toy_stats.presence.tolist() == [3, 2, 0, 0, 1, 0]
    assert toy_stats.area_min[IPH] == 9 and toy_stats.area_max[IPH] == 16
    assert toy_stats.area_min[EDH] == toy_stats.area_max[EDH] == 8
    assert len(toy_stats.components) == 3 and not toy_stats.ventricles.any()


def test_rejection_rules_fire_on_crafted_masks(toy_stats):
    good = np.zeros((32, 32), dtype=np.uint8)
    good[13:16, 13:17] = IPH  # 12 px, inside the region
    assert check_mask(good, toy_stats, 4) == []

    island = good.copy()
    island[12, 22] = IPH  # a 1-pixel island inside the region; IPH area 13 is still in range
    assert check_mask(island, toy_stats, 4) == ["fragment"]

    big = np.zeros_like(good)
    big[11:16, 12:17] = IPH  # 25 px > 16
    assert check_mask(big, toy_stats, 4) == ["area_high:IPH"]

    small = np.zeros_like(good)
    small[14:16, 14:16] = IPH  # 4 px < 9
    assert check_mask(small, toy_stats, 4) == ["area_low:IPH"]

    outside = np.zeros_like(good)
    outside[26:29, 14:17] = IPH  # region rows 10-16 only
    assert check_mask(outside, toy_stats, 4) == ["outside_region"]

    unseen = good.copy()
    unseen[10:12, 24:26] = SAH
    assert "unseen:SAH" in check_mask(unseen, toy_stats, 4)
    assert check_mask(np.zeros_like(good), toy_stats, 4) == ["empty"]
    assert check_mask(np.full_like(good, 9), toy_stats, 4) == ["bad_values"]


def test_retry_budget_is_reported():
    cfg = MaskBankConfig(sources={"geometric": 1.0}, scale=(1.6, 1.6), elastic_p=0.0,
                         max_tries_per_mask=3)
    with pytest.warns(RuntimeWarning, match="made 0 of 4 masks"):
        res = MaskBank(toy_bank_masks(), cfg, seed=0).generate(4)
    assert not res.complete and res.masks.shape == (0, 32, 32) and res.attempts == 12
    assert sum(res.rejected.values()) == 12 and "area_high:IPH" in res.rejected


@pytest.mark.parametrize("bad, message", [
    (np.zeros((8, 8), dtype=np.uint8), "expected \\[N,H,W\\]"),
    (np.full((1, 8, 8), 7, dtype=np.uint8), "values \\[7\\] outside"),
    (np.zeros((1, 8, 8), dtype=np.float32), "integer dtype"),
    (np.zeros((2, 8, 8), dtype=np.uint8), "no lesion pixel"),
])
def test_bad_training_masks_raise(bad, message):
    with pytest.raises(ValueError, match=message):
        MaskBank(bad)


@pytest.mark.parametrize("kwargs, message", [
    ({"sources": {"cutmix": 1.0}}, "unknown \\['cutmix'\\]"),
    ({"balance_ratio": 1.5}, "balance_ratio"),
    ({"scale": (1.2, 0.8)}, "scale"),
])
def test_bad_config_raises(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MaskBankConfig(**kwargs)


def test_config_from_plain_containers():
    cfg = MaskBankConfig(sources={"transplant": 2}, scale=[0.95, 1.05])  # as YAML gives them
    assert cfg.scale == (0.95, 1.05) and cfg.sources == {"transplant": 2}


# ----------------------------------------------------------------------------- diversity


def test_position_diversity_by_hand():
    m = np.zeros((2, 32, 32), dtype=np.uint8)
    m[0, 1:3, 1:3] = IPH  # cell (0, 0)
    m[0, 1:3, 6:8] = IPH  # another component, same 4x4 cell... at grid 8 cells are 4 px: (0, 1)
    m[1, 1:3, 1:3] = EDH  # cell (0, 0), other class
    m[1, 29:31, 29:31] = IPH  # cell (7, 7)
    d = position_diversity(m, grid=8)
    assert d["IPH"] == 3 and d["EDH"] == 1 and d["total"] == 4
    assert position_diversity(m, grid=1)["total"] == 2


def test_new_masks_have_more_distinct_positions(masks, bank):
    res = bank.generate(len(masks))
    assert position_diversity(res.masks)["total"] > position_diversity(masks)["total"]


# ----------------------------------------------------------------------------- scale


@pytest.mark.slow
def test_1000_masks_at_256():
    """The full-size run completes (its wall time: `python -m lcgan_lightning.bench --mask-bank`)."""
    train = lesion_masks(1, 16, 256, 24)
    res = MaskBank(train, seed=0).generate(1000)
    assert res.complete and len(res.masks) == 1000
