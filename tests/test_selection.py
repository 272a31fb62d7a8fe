"""Generator selection (paper §3.2): sharpness measures, realism CNN, selection rule, scoring."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter

from lcgan_lightning.data.slices import SliceSet
from lcgan_lightning.models import generation
from lcgan_lightning.selection import candidates, quality, realism, rule, score

# ----------------------------------------------------------------------------- stand-ins


def _disk(size: int, cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def _gauss_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    if sigma <= 0:
        return x
    k = int(2 * math.ceil(3 * sigma) + 1)
    t = torch.arange(k, dtype=torch.float32) - k // 2
    g = torch.exp(-(t**2) / (2 * sigma**2))
    g = (g / g.sum()).view(1, 1, 1, k)
    x = F.conv2d(F.pad(x, (k // 2, k // 2, 0, 0), mode="replicate"), g)
    return F.conv2d(F.pad(x, (0, 0, k // 2, k // 2), mode="replicate"), g.transpose(2, 3))


class FakeGenerator:
    """Head disk (0) on black (-1), lesion pixels +0.8, seeded noise, optional blur."""

    def __init__(self, image_size: int, blur: float = 0.0, noise: float = 0.05) -> None:
        self.image_size, self.blur, self.noise = image_size, blur, noise

    def generate(self, masks: torch.Tensor, seed: int, dropout: bool = True) -> torch.Tensor:
        b, h, w = masks.shape
        head = torch.as_tensor(_disk(h, h / 2, w / 2, 0.42 * h), dtype=torch.float32)
        x = (head - 1.0).expand(b, h, w).clone()
        x[masks > 0] = 0.8
        x = _gauss_blur(x.unsqueeze(1), self.blur)
        g = torch.Generator().manual_seed(int(seed))
        x = x + self.noise * torch.randn(x.shape, generator=g) * (1.0 if dropout else 0.5)
        return x.clamp(-1, 1)


class FakeJudge:
    """Calls a pixel IPH (class 1) when it is brighter than 0.4."""

    def predict_masks(self, images: torch.Tensor) -> torch.Tensor:
        return (images[:, 0] > 0.4).long()

    def encoder_features(self, images: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(images.float(), 4).flatten(1)


def make_slices(n: int = 12, size: int = 32, seed: int = 0, patients: int = 3):
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        if i % 4 != 3:  # every 4th slice has no lesion
            masks[i][_disk(size, rng.uniform(10, 22), rng.uniform(10, 22), rng.uniform(3, 6))] = 1
    real = FakeGenerator(size, blur=0.6, noise=0.03).generate(torch.as_tensor(masks).long(), seed=10_000 + seed)
    pats = np.array([f"p{i % patients}" for i in range(n)])
    return SliceSet(real[:, 0].numpy().astype(np.float16), masks, pats, np.array([f"v{p}" for p in pats]),
                     np.arange(n, dtype=np.int32))


# ----------------------------------------------------------------------------- quality


def test_sharpness_falls_monotonically_with_blur():
    rng = np.random.default_rng(0)
    base = np.clip(gaussian_filter(rng.standard_normal((48, 48)), 0.7) * 2, -1, 1)
    sigmas = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0]
    imgs = torch.tensor(np.stack([gaussian_filter(base, s, mode="wrap") if s else base for s in sigmas]),
                        dtype=torch.float32)
    lap = quality.laplacian_variance(imgs).tolist()
    fft = quality.fft_mean(imgs.unsqueeze(1)).tolist()
    assert all(a > b for a, b in zip(lap, lap[1:], strict=False)), lap
    assert all(a > b for a, b in zip(fft, fft[1:], strict=False)), fft


def test_sharpness_hand_computed_values():
    # A single bright pixel (1) on 0 in [0,1] units: Laplacian interior (3x3 of a 5x5 image) is
    # -4 at the centre, 1 at its 4 neighbours, 0 at the 4 corners -> mean 0, var = (16+4)/9.
    x = -torch.ones(1, 5, 5)
    x[0, 2, 2] = 1.0
    assert quality.laplacian_variance(x).item() == pytest.approx(20 / 9)
    # orthonormal DFT of a unit impulse has |X| = 1/sqrt(25) at every frequency
    assert quality.fft_mean(x).item() == pytest.approx(0.2)
    # a constant image has no detail
    assert quality.laplacian_variance(torch.zeros(1, 8, 8)).item() == 0.0
    assert quality.fft_mean(torch.zeros(1, 8, 8)).item() == pytest.approx(0.0, abs=1e-7)


def test_ssim_psnr_and_fid_with_judge_features():
    s = make_slices(8, 32)
    real = torch.as_tensor(s.images.astype(np.float32)).unsqueeze(1)
    ssim, psnr = quality.ssim_psnr(real, real)
    assert ssim == pytest.approx(1.0, abs=1e-5) and math.isinf(psnr)
    noisy = (real + 0.3 * torch.randn_like(real)).clamp(-1, 1)
    ssim2, psnr2 = quality.ssim_psnr(noisy, real)
    assert ssim2 < 0.9 and 5 < psnr2 < 30
    judge = FakeJudge()
    assert quality.judge_fid(judge, real, real) == pytest.approx(0.0, abs=1e-3)
    assert quality.judge_fid(judge, real, noisy) > quality.judge_fid(judge, real, real) + 1e-3


# ----------------------------------------------------------------------------- realism


def _blobs(n: int, size: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    out = np.empty((n, size, size), np.float32)
    for i in range(n):
        img = np.zeros((size, size))
        for _ in range(3):
            img += rng.uniform(0.5, 1) * _disk(size, *rng.uniform(6, size - 6, 2), rng.uniform(3, 8))
        out[i] = np.clip(gaussian_filter(img, 1.5) * 1.5 - 0.8, -1, 1)
    return torch.as_tensor(out)


def test_realism_classifier_separates_noise_from_real_looking_images():
    size = 32
    real = _blobs(48, size, 0)
    g = torch.Generator().manual_seed(1)
    fakes = {"noise_a": torch.rand(24, size, size, generator=g) * 2 - 1,
             "noise_b": torch.rand(24, size, size, generator=g) * 2 - 1}
    cfg = realism.RealismConfig(epochs=3, per_candidate=24, holdout=0.5, batch_size=12, seed=0, width=4)
    _, res = realism.train_and_score(real, fakes, cfg)
    assert res.n_per_candidate_train == 12 and res.n_per_candidate_heldout == 12
    assert res.n_real_train == 24 and not res.real_with_replacement  # balanced: 2 x 12 fakes
    assert res.n_real_heldout == 24  # half of the 48 real images
    for name in fakes:
        assert res.fooled[name]["0.5"] <= 0.05, res
        assert res.fooled[name]["0.1"] <= 0.2, res
    assert res.real_heldout_called_real["0.5"] >= 0.9, res
    # same seed, same numbers
    _, res2 = realism.train_and_score(real, fakes, cfg)
    assert res2.fooled == res.fooled and res2.train_loss == res.train_loss


def test_realism_googlenet_forward_and_config_errors():
    net = realism.build_classifier(realism.RealismConfig(arch="googlenet", width=8))
    assert net(torch.zeros(2, 1, 32, 32)).shape == (2,)
    with pytest.raises(ValueError, match="unknown realism config key"):
        realism.realism_config({"epoch": 3})
    with pytest.raises(ValueError, match="arch"):
        realism.build_classifier(realism.RealismConfig(arch="vgg"))


# ----------------------------------------------------------------------------- rule


def _cand(fcn, sharp, fooled, epochs):
    return {"fcn_score": fcn, "sharpness": sharp, "fooled": fooled, "epochs": epochs, "checkpoint": f"e{epochs}"}


def test_mean_rank_picks_best_mean_rank():
    cands = [_cand(0.5, 1.0, 0.2, 10), _cand(0.6, 3.0, 0.3, 50), _cand(0.4, 2.0, 0.9, 100)]
    # ranks (fcn, sharp, fooled): A (2,3,3)=8/3, B (1,1,2)=4/3, C (3,2,1)=2
    best, reason, fig = rule.select(cands)
    assert best == 1
    assert fig == pytest.approx([8 / 3, 4 / 3, 2.0])
    assert reason.startswith("mean_rank: best mean rank 1.333")
    # FCN score alone would pick B as well; realism alone picks C
    assert rule.select(cands, "fcn_score")[0] == 1
    assert rule.select(cands, "mean_rank", {"fooled": 1.0})[0] == 2


def test_mean_rank_tie_broken_by_fcn_then_fewer_epochs():
    # A and B both have mean rank 1.5 (fooled tied at 1.5 each): higher FCN (B) wins
    best, reason, fig = rule.select([_cand(0.5, 2.0, 0.1, 10), _cand(0.6, 1.0, 0.1, 50)])
    assert best == 1 and fig == [1.5, 1.5] and "tie" in reason
    # identical figures: fewer epochs wins whatever the order
    best, _, _ = rule.select([_cand(0.5, 2.0, 0.1, 50), _cand(0.5, 2.0, 0.1, 10)])
    assert best == 1


def test_weighted_rule_and_missing_criterion():
    cands = [_cand(0.50, 1.0, 0.2, 10), _cand(0.52, 1.1, 0.2, 50), _cand(0.40, 5.0, 0.9, 100)]
    # C dominates sharpness and realism (z ~ +1.4 each) -> weighted picks C; FCN-heavy weights pick B
    assert rule.select(cands, "weighted")[0] == 2
    assert rule.select(cands, "weighted", {"fcn_score": 10, "sharpness": 1, "fooled": 1})[0] == 1
    cands[0]["fooled"] = None
    best, reason, _ = rule.select(cands)
    assert "fooled" in reason and "ignored" in reason
    # without realism: fcn ranks (2,1,3), sharp (3,2,1) -> means 2.5, 1.5, 2 -> B
    assert best == 1
    with pytest.raises(ValueError, match="unknown"):
        rule.select(cands, "best")


# ----------------------------------------------------------------------------- scoring


def test_row_seed_is_stable_and_distinct():
    assert generation.row_seed(0, 0) == generation.row_seed(0, 0)
    assert len({generation.row_seed(s, r) for s in range(3) for r in range(50)}) == 150


def _write_fake_ckpt(path: Path, blur: float, fraction: float | None, epoch: int,
                     lr_policy: str = "constant") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ckpt = {"state_dict": {"generator.w": torch.zeros(1)}, "epoch": epoch,
            "hyper_parameters": {"blur": blur, "lr_policy": lr_policy}}
    if fraction is not None:
        ckpt["run_config"] = {"data": {"fraction": fraction}}
    torch.save(ckpt, path)


def _fake_loader(size: int):
    def load(path: str) -> FakeGenerator:
        blur = torch.load(path, weights_only=True)["hyper_parameters"]["blur"]
        return FakeGenerator(size, blur=blur)

    return load


def test_discover_candidates_layouts(tmp_path):
    gan = tmp_path / "gan"
    # one run per epoch count, only last.ckpt (Lightning's 0-based epoch counter inside)
    _write_fake_ckpt(gan / "frac=0.1/epochs=10/checkpoints/last.ckpt", 0.0, None, 9)
    _write_fake_ckpt(gan / "frac=0.1/epochs=100/checkpoints/last.ckpt", 0.0, None, 99)
    # constant-LR run: one run dir, the LcGAN's per-epoch files epoch=EEE.ckpt (EEE = epochs trained)
    for e in (10, 50):
        _write_fake_ckpt(gan / f"frac=0.25/epochs=50/checkpoints/epoch={e:03d}.ckpt", 0.0, 0.25, e - 1)
    _write_fake_ckpt(gan / "frac=0.25/epochs=50/checkpoints/last.ckpt", 0.0, 0.25, 49)
    # linear-decay run: its 10-epoch checkpoint is not a finished 10-epoch model
    for e in (10, 20):
        _write_fake_ckpt(gan / f"frac=0.5/epochs=20/checkpoints/epoch={e:03d}.ckpt", 0.0, 0.5, e - 1,
                         lr_policy="linear")
    # elsewhere, Lightning's default name (0-based index); fraction only known from the stored config
    _write_fake_ckpt(tmp_path / "other/run1/checkpoints/epoch=19-step=400.ckpt", 0.0, 0.025, 19)
    (tmp_path / "judge/checkpoints").mkdir(parents=True)
    torch.save({"state_dict": {"encoder.w": torch.zeros(1)}}, tmp_path / "judge/checkpoints/last.ckpt")

    cands, skipped = candidates.discover_candidates(tmp_path)
    assert [(c.fraction, c.epochs) for c in cands] == [
        (0.025, 20), (0.1, 10), (0.1, 100), (0.25, 10), (0.25, 50), (0.5, 20)]
    reasons = {str(Path(s["file"]).relative_to(tmp_path)): s["reason"] for s in skipped}
    assert "not a generator" in reasons["judge/checkpoints/last.ckpt"]
    assert "superseded" in reasons["gan/frac=0.25/epochs=50/checkpoints/last.ckpt"]
    assert "lr_policy=linear" in reasons["gan/frac=0.5/epochs=20/checkpoints/epoch=010.ckpt"]
    assert len(skipped) == 3
    with pytest.raises(FileNotFoundError):
        candidates.discover_candidates(tmp_path / "nope")


def test_scoring_end_to_end_schema(tmp_path):
    size = 32
    val = make_slices(16, size, seed=1)
    train = make_slices(24, size, seed=2)
    gan = tmp_path / "gan"
    blurs = {(0.1, 10): 2.5, (0.1, 50): 0.6, (0.25, 10): 1.2, (0.25, 50): 3.0}
    for (f, e), b in blurs.items():
        _write_fake_ckpt(gan / f"frac={f}/epochs={e}/checkpoints/last.ckpt", b, None, e - 1)
    cands, skipped = candidates.discover_candidates(gan)
    eval_set = score.make_eval_set(val, train, max_images=10, seed=0)
    assert len(eval_set.masks) == 10 and all(m.max() > 0 for m in eval_set.masks)
    cfg = realism.RealismConfig(epochs=1, per_candidate=10, holdout=0.5, batch_size=8, width=4, seed=0)
    selected = score.run_scoring(cands, eval_set, FakeJudge(), _fake_loader(size), tmp_path / "out",
                                 sheets_dir=tmp_path / "sheets", seed=0, realism_cfg=cfg, fid=True,
                                 sheet_columns=4, skipped=skipped)
    scores = json.loads((tmp_path / "out/scores.json").read_text())
    assert json.loads((tmp_path / "out/selected.json").read_text()) == selected == scores["selected"]
    assert set(selected) == {"0.1", "0.25"}
    for s in selected.values():
        assert set(s) == {"checkpoint", "epochs", "fcn_score", "sharpness", "sharpness_ratio", "ssim", "fooled", "reason"}
    assert set(scores["conventions"]) >= {"fcn_score", "sharpness", "fooled", "rule"}
    assert "HIGHER IS SHARPER" in scores["conventions"]["sharpness"]
    rows = {(r["fraction"], r["epochs"]): r for r in scores["candidates"]}
    assert len(rows) == 4
    for r in rows.values():
        assert r["fooled"] == r["fooled_0.1"]
        for k in ("fcn_score", "sharpness", "fft_mean", "fooled_0.1", "fooled_0.5", "ssim", "psnr", "fid",
                  "per_class_dsc", "rule_figure", "selected", "checkpoint"):
            assert k in r, k
        assert 0 <= r["fcn_score"] <= 1 and 0 <= r["fooled_0.1"] <= 1
        ratio = r["sharpness_in_head"] / scores["reference_real"]["sharpness_in_head"]
        assert r["sharpness_ratio"] == pytest.approx(ratio)
        assert r["sharpness_match"] == pytest.approx(-abs(math.log(ratio)))
        assert set(r["per_class_dsc"]) == {"IPH", "IVH", "SAH", "EDH", "SDH"}
        assert r["per_class_dsc"]["IVH"] is None  # class absent everywhere -> null
    # less blur -> sharper and (with this judge) a better FCN score
    assert rows[(0.1, 50)]["sharpness"] > rows[(0.1, 10)]["sharpness"]
    assert rows[(0.1, 50)]["fcn_score"] > rows[(0.1, 10)]["fcn_score"]
    assert rows[(0.25, 10)]["sharpness"] > rows[(0.25, 50)]["sharpness"]
    assert sum(r["selected"] for r in rows.values()) == 2
    assert Path(scores["contact_sheets"]["0.1"]).is_file()
    assert Path(scores["contact_sheets"]["0.1"]).parent == tmp_path / "sheets"
    # deterministic: a second run gives the same figures
    score.run_scoring(cands, eval_set, FakeJudge(), _fake_loader(size), tmp_path / "out2", seed=0,
                      realism_cfg=cfg, fid=False, sheet_columns=2)
    again = json.loads((tmp_path / "out2/scores.json").read_text())
    for a, b in zip(scores["candidates"], again["candidates"], strict=True):
        assert (a["fcn_score"], a["sharpness"], a["fooled_0.1"]) == (b["fcn_score"], b["sharpness"], b["fooled_0.1"])
