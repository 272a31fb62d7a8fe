"""In-head sharpness and the fcn_first selection rule: noise and blur must never be selected."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from scipy import ndimage
from test_selection import FakeGenerator, FakeJudge, _disk, make_slices

from lcgan_lightning.selection import quality, realism, rule, score

CONF = Path(__file__).resolve().parents[1] / "conf"

# ----------------------------------------------------------------------------- quality


def _phantom_heads(n: int = 4, size: int = 64, seed: int = 0) -> torch.Tensor:
    """Real-like slices [n,1,H,W]: head disk (0) on air (-1), a bright lesion, mild texture."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, size, size), np.float32)
    for i in range(n):
        head = _disk(size, size / 2, size / 2, 0.4 * size)
        img = np.where(head, 0.0, -1.0)
        img[_disk(size, *rng.uniform(0.4 * size, 0.6 * size, 2), rng.uniform(4, 8))] = 0.7
        img = ndimage.gaussian_filter(img, 0.7)
        out[i] = np.where(head, img + 0.02 * rng.standard_normal((size, size)), -1.0)
    return torch.as_tensor(np.clip(out, -1, 1)).unsqueeze(1)


def test_in_head_ratio_flags_noise_and_blur():
    real = _phantom_heads()
    g = torch.Generator().manual_seed(1)
    noisy = (real + 0.2 * torch.randn(real.shape, generator=g)).clamp(-1, 1)
    blurred = torch.as_tensor(ndimage.gaussian_filter(real.numpy(), (0, 0, 2.0, 2.0)))
    assert quality.sharpness_ratio(real.clone(), real) == pytest.approx(1.0, abs=1e-12)
    assert quality.sharpness_ratio(noisy, real) > 10  # measured 51 (whole image: 8)
    assert quality.sharpness_ratio(blurred, real) < 0.1  # measured 0.04
    # the whole-image figure rates the noisy copy sharper too, but it is diluted by the skull edge
    whole = (quality.laplacian_variance(noisy).mean() / quality.laplacian_variance(real).mean()).item()
    assert 2 < whole < quality.sharpness_ratio(noisy, real)


def test_head_region_fills_holes_drops_air_noise_and_erodes():
    size = 64
    disk = _disk(size, 32, 32, 20)
    img = np.where(disk, 0.0, -1.0)
    img[_disk(size, 32, 32, 5)] = -1.0  # a ventricle at the window floor: a hole to fill
    img[3, 3] = img[60, 5] = 0.5  # stray bright pixels in the air
    region = quality.head_region(torch.as_tensor(img[None]))
    assert region.shape == (1, 1, size, size) and region.dtype == torch.bool
    # default erosion for 64 px: 1 pixel (cross structuring element)
    assert np.array_equal(region[0, 0].numpy(), ndimage.binary_erosion(disk, iterations=1))
    assert np.array_equal(quality.head_region(img[None], erode=0)[0, 0].numpy(), disk)
    assert not quality.head_region(-torch.ones(1, 8, 8)).any()  # no head: empty region
    with pytest.raises(ValueError, match="eps"):
        quality.head_region(img[None], eps=0.0)


def test_laplacian_variance_in_region_hand_values():
    x = -torch.ones(2, 1, 5, 5)
    x[:, 0, 2, 2] = 1.0  # one bright pixel: Laplacian -4 at it, 1 at its 4 neighbours, 0 at corners
    full = torch.zeros(2, 1, 5, 5, dtype=torch.bool)
    full[:, :, 1:4, 1:4] = True  # the 3x3 interior: same as the whole-image figure
    assert quality.laplacian_variance(x, full).tolist() == pytest.approx([20 / 9] * 2)
    plus = torch.zeros_like(full)
    plus[:, 0, 2, 1:4] = plus[:, 0, 1:4, 2] = True  # -4 and four 1s: mean 0, var 20/5
    assert quality.laplacian_variance(x, plus[:, 0]).tolist() == pytest.approx([4.0, 4.0])
    one = torch.zeros_like(full)
    one[0, 0, 2, 2] = True  # image 0: one pixel, var 0; image 1: empty region -> NaN
    v = quality.laplacian_variance(x, one)
    assert v[0].item() == 0.0 and math.isnan(v[1].item())
    assert quality.nanmean(v) == 0.0 and math.isnan(quality.nanmean(v[1:]))
    with pytest.raises(ValueError, match="shape"):
        quality.laplacian_variance(x, full[:1])
    with pytest.raises(ValueError, match="boolean"):
        quality.laplacian_variance(x, full.float())


# ----------------------------------------------------------------------------- rule


def _c(fcn, sharp, ratio, fooled, epochs):
    return {"fcn_score": fcn, "sharpness": sharp, "sharpness_ratio": ratio, "fooled": fooled,
            "epochs": epochs, "checkpoint": f"e{epochs}"}


GOOD = _c(0.55, 1.0, 1.1, 0.30, 50)
NOISE = _c(0.02, 9.0, 12.0, 0.60, 10)  # sharpest on the whole image, far too sharp in the head
BLUR = _c(0.60, 0.1, 0.2, 0.40, 200)  # best FCN score, but blurred


def test_fcn_first_never_picks_noise_or_blur():
    best, reason, fig = rule.select([GOOD, NOISE, BLUR], "fcn_first")
    assert best == 0
    assert fig[0] == 0.55 and math.isnan(fig[1]) and math.isnan(fig[2])
    assert "1 of 3 pass" in reason and "epochs=10 (ratio 12)" in reason and "epochs=200 (ratio 0.2)" in reason
    assert "decided by FCN score" in reason
    # whatever the order, tolerance or realism of the bad ones
    for tol, fooled in itertools.product((0.0, 0.01, 0.5), (0.0, 1.0)):
        cands = [GOOD, {**NOISE, "fooled": fooled, "fcn_score": 0.9}, {**BLUR, "fooled": fooled}]
        for perm in itertools.permutations(range(3)):
            chosen = rule.select([cands[i] for i in perm], "fcn_first", fcn_tolerance=tol)[0]
            assert perm[chosen] == 0, (tol, fooled, perm)
    # the old default picks the noise-maker: ranks fcn (2,3,1), sharpness (2,1,3), fooled (3,1,2)
    best, _, fig = rule.select([GOOD, NOISE, BLUR], "mean_rank")
    assert best == 1 and fig == pytest.approx([7 / 3, 5 / 3, 2.0])


def test_fcn_first_gate_bounds_are_inclusive_and_configurable():
    cands = [_c(0.5, 1, 0.5, 0.1, 10), _c(0.6, 1, 2.0, 0.1, 20), _c(0.7, 1, 2.01, 0.1, 30)]
    assert rule.select(cands, "fcn_first")[0] == 1  # 2.0 passes, 2.01 does not
    assert rule.select(cands, "fcn_first", sharpness_ratio_max=3.0)[0] == 2
    # none inside [0.9, 1.5]: fallback; |ln 0.5| == |ln 2| < |ln 2.01|, the tie goes to higher FCN
    best, reason, _ = rule.select(cands, "fcn_first", sharpness_ratio_min=0.9, sharpness_ratio_max=1.5)
    assert best == 1 and "fell back" in reason
    for bad in ({"sharpness_ratio_min": 0.0}, {"sharpness_ratio_min": 1.2}, {"sharpness_ratio_max": 0.9}):
        with pytest.raises(ValueError, match="sharpness gate"):
            rule.select(cands, "fcn_first", **bad)
    with pytest.raises(ValueError, match="fcn_tolerance"):
        rule.select(cands, "fcn_first", fcn_tolerance=-0.1)


def test_fcn_first_all_fail_falls_back_to_closest_log_ratio():
    # |ln 5| = 1.61, |ln 0.3| = 1.20, |ln 3| = 1.10: 3 is closest in log terms (0.3 is, linearly)
    cands = [_c(0.9, 1, 5.0, 0.9, 10), _c(0.8, 1, 0.3, 0.9, 50), _c(0.1, 1, 3.0, 0.0, 100)]
    best, reason, fig = rule.select(cands, "fcn_first")
    assert best == 2
    assert "no candidate of 3 passes" in reason and "fell back" in reason and "|ln sharpness_ratio|" in reason
    assert all(math.isnan(f) for f in fig)
    # a flat generator (ratio 0) fails the gate and is the last resort of the fallback
    flat = _c(0.99, 0, 0.0, 1.0, 5)
    assert rule.select([flat, cands[0]], "fcn_first")[0] == 1
    assert rule.select([flat, cands[2]], "fcn_first")[0] == 1


def test_fcn_first_ties_broken_by_realism_then_sharpness_then_epochs():
    a, b = _c(0.600, 1, 1.5, 0.2, 10), _c(0.595, 1, 1.0, 0.5, 50)
    best, reason, fig = rule.select([a, b], "fcn_first")  # within 0.01: realism decides
    assert best == 1 and fig == [0.6, 0.595]
    assert "2 within 0.01 of the best FCN score 0.6" in reason and "realism" in reason
    assert rule.select([a, b], "fcn_first", fcn_tolerance=0.001)[0] == 0  # no tie: FCN decides
    b["fooled"] = 0.2  # realism tied: closer to real sharpness (|ln 1.0| < |ln 1.5|) wins
    best, reason, _ = rule.select([a, b], "fcn_first")
    assert best == 1 and "closeness to real sharpness" in reason
    b["sharpness_ratio"] = 1 / 1.5  # same |ln ratio|: fewer epochs wins
    best, reason, _ = rule.select([b, a], "fcn_first")
    assert best == 1 and "fewer epochs (10 vs 50)" in reason


def test_fcn_first_missing_figures():
    cands = [_c(0.5, 1, None, 0.1, 10), _c(0.6, 1, 30.0, 0.1, 20)]
    best, reason, _ = rule.select(cands, "fcn_first")  # no ratio for one: no gate, FCN decides
    assert best == 1 and "no sharpness gate" in reason
    cands = [_c(0.5, 1, 1.0, None, 10), _c(0.505, 1, 1.2, 0.9, 20)]
    best, reason, _ = rule.select(cands, "fcn_first")  # no realism: |ln ratio| breaks the tie
    assert best == 0 and "no realism tie-break" in reason
    with pytest.raises(ValueError, match="fcn_score missing for \\['epochs=10'\\]"):
        rule.select([_c(None, 1, 1.0, 0.1, 10)], "fcn_first")


def test_old_rules_by_name_and_config_block():
    cands = [GOOD, NOISE, BLUR]
    assert rule.select(cands, "fcn_score")[0] == 2
    # z-scores: sharpness and fooled both favour the noise-maker
    assert rule.select(cands, "weighted")[0] == 1
    assert rule.select(cands, "weighted", {"fcn_score": 1.0, "sharpness_ratio": 0.0})[0] == 2
    cfg = OmegaConf.to_container(OmegaConf.load(CONF / "select.yaml").rule)
    kwargs = rule.rule_kwargs(cfg)
    assert kwargs["rule"] == rule.DEFAULT_RULE == "fcn_first"
    assert {k: kwargs[k] for k in rule.DEFAULT_PARAMS} == rule.DEFAULT_PARAMS
    assert kwargs["weights"] == rule.DEFAULT_WEIGHTS
    assert rule.select(cands, **kwargs)[0] == 0
    with pytest.raises(ValueError, match="unknown key"):
        rule.rule_kwargs({"name": "fcn_first", "tolerance": 0.1})
    assert "fcn_first" in rule.RULE_CONVENTION and set(rule.RULES) >= {"mean_rank", "weighted", "fcn_score"}


# ----------------------------------------------------------------------------- through run_scoring


def test_run_scoring_rejects_noise_and_blur(tmp_path):
    size = 32
    eval_set = score.make_eval_set(make_slices(16, size, seed=1), make_slices(24, size, seed=2),
                                   max_images=8, seed=0)
    # real slices are FakeGenerator(blur=0.6, noise=0.03): "good" is the same process, new seeds;
    # the noise-maker and the blurred one keep FCN scores within 0.01 of it: only the gate stops them
    gens = {"good": FakeGenerator(size, blur=0.6, noise=0.03),
            "noise": FakeGenerator(size, blur=0.6, noise=0.1),
            "blur": FakeGenerator(size, blur=1.0, noise=0.0)}
    cands = [score.Candidate(0.1, e, name) for e, name in ((10, "noise"), (50, "good"), (200, "blur"))]
    cfg = realism.RealismConfig(epochs=1, per_candidate=8, holdout=0.5, batch_size=8, width=4, seed=0)
    selected = score.run_scoring(cands, eval_set, FakeJudge(), gens.__getitem__, tmp_path, seed=0,
                                 realism_cfg=cfg, rule_name="fcn_first", sheet_columns=2)
    assert selected["0.1"]["checkpoint"] == "good"
    scores = json.loads((tmp_path / "scores.json").read_text())
    rows = {r["checkpoint"]: r for r in scores["candidates"]}
    ref = scores["reference_real"]["sharpness_in_head"]
    for r in rows.values():
        assert r["sharpness_ratio"] == pytest.approx(r["sharpness_in_head"] / ref)
        assert r["sharpness_match"] == pytest.approx(-abs(math.log(r["sharpness_ratio"])))
        assert r["fcn_score"] >= rows["good"]["fcn_score"] - 0.01
    assert rows["noise"]["sharpness"] == max(r["sharpness"] for r in rows.values())
    assert rows["noise"]["sharpness_ratio"] > 2 and rows["blur"]["sharpness_ratio"] < 0.5
    assert 0.8 < rows["good"]["sharpness_ratio"] < 1.25
    assert rows["good"]["rule_figure"] == rows["good"]["fcn_score"]
    assert rows["noise"]["rule_figure"] is None and rows["blur"]["rule_figure"] is None
    assert "excluded epochs=10" in selected["0.1"]["reason"] and "epochs=200" in selected["0.1"]["reason"]
    assert "sharpness_in_head" in scores["conventions"]["sharpness"]
