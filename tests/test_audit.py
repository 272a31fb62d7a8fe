"""Audit of a synthetic set: copy rate, MiFID, precision/recall, mask fidelity, seed diversity."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lcgan_lightning.audit import (
    AuditConfig,
    audit_set,
    closest_pairs_figure,
    knn_radii,
    mask_fidelity,
    memorisation,
    memorisation_distance,
    mifid,
    nearest,
    precision_recall,
    seed_diversity,
)
from lcgan_lightning.bench_operations import StandInGenerator, audit_inputs, stand_in_features
from lcgan_lightning.data.phantom import simulate_patient
from lcgan_lightning.data.preprocess import window_to_unit

SIZE, SLICES = 32, 6


def phantom_slices(seed: int, patients: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Brain-windowed phantom slices [N,H,W] in [-1,1], masks, and one patient id per slice."""
    images, masks, ids = [], [], []
    for i in range(patients):
        for vol in simulate_patient(seed, i, SIZE, SLICES):
            for k in range(SLICES):
                hu, label = vol.axial(k)
                images.append(window_to_unit(hu, 40.0, 80.0))
                masks.append(label.copy())
                ids.append(f"s{seed}-{vol.patient_id}")
    return np.stack(images), np.stack(masks).astype(np.uint8), ids


@pytest.fixture(scope="module")
def train():
    return phantom_slices(0, 8)


@pytest.fixture(scope="module")
def unseen():
    return phantom_slices(1, 4)


# ------------------------------------------------------------------ memorisation
def test_nearest_skips_own_group_and_is_exact():
    ref = torch.tensor([[0.0], [0.1], [1.0], [1.3]])
    d, i = nearest(ref, ref, "l2", list("AABB"), list("AABB"))
    assert i.tolist() == [2, 2, 1, 1]
    np.testing.assert_allclose(d, [1.0, 0.9, 0.9, 1.2], atol=1e-7)
    d, i = nearest(torch.tensor([[3.0, 4.0]]), torch.tensor([[6.0, 8.0], [4.0, -3.0]]), "cosine")
    assert i.tolist() == [0] and d[0] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="another group"):
        nearest(ref, ref, "l2", list("AAAA"), list("AAAA"))


def test_memorisation_threshold_rate_and_patients_by_hand():
    real = torch.tensor([[0.0], [0.1], [1.0], [1.3]])
    # reference NN distances across patients: 1.0, 0.9, 0.9, 1.2 -> median 0.95
    out = memorisation(torch.tensor([[0.05], [3.0]]), real, list("AABB"), "l2", percentile=50.0)
    assert out["threshold"] == pytest.approx(0.95)
    assert out["copy_rate"] == 0.5 and out["n_copies"] == 1
    assert out["most_copied_patients"] == [{"patient": "A", "copies": 1}]
    assert [p["synthetic"] for p in out["closest_pairs"]] == [0, 1]
    assert out["closest_pairs"][0]["distance"] == pytest.approx(0.05)
    with pytest.raises(ValueError, match="at least 2 patients"):
        memorisation(real, real, list("AAAA"), "l2")


def test_planted_copies_are_flagged_in_both_spaces(train):
    images, masks, ids = train
    rng = np.random.default_rng(0)
    src = rng.choice(np.flatnonzero(np.asarray(ids) == ids[0]), size=6, replace=False)
    exact = images[src]
    noisy = np.clip(images[src] + rng.normal(0, 0.02, exact.shape), -1, 1).astype(np.float32)
    out = audit_set(
        np.concatenate([exact, noisy]),
        np.concatenate([masks[src]] * 2),
        images,
        ids,
        stand_in_features(),
    )
    for space in ("feature", "pixel"):
        mem = out["memorisation"][space]
        assert mem["copy_rate"] == 1.0, space
        assert mem["most_copied_patients"] == [{"patient": ids[0], "copies": 12}]
    pixel_pairs = out["memorisation"]["pixel"]["closest_pairs"]
    assert len(pixel_pairs) == 8
    assert {(p["synthetic"], p["real"]) for p in pixel_pairs[:6]} == {
        (j, int(s)) for j, s in enumerate(src)
    }
    assert all(p["distance"] == 0.0 for p in pixel_pairs[:6])


def test_unseen_patients_copy_rate_near_the_percentile(train, unseen):
    images, _, ids = train
    syn, syn_masks, _ = unseen
    out = audit_set(syn, syn_masks, images, ids, stand_in_features())
    # a set as novel as new patients is flagged about `percentile` % of the time, by construction
    assert out["memorisation"]["pixel"]["copy_rate"] <= 0.15
    assert out["memorisation"]["feature"]["copy_rate"] <= 0.2


# ------------------------------------------------------------------ precision / recall
def test_knn_radii_by_hand():
    x = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    assert knn_radii(x, k=1).tolist() == [1.0, 1.0, 2.0, 4.0]
    assert knn_radii(x, k=2).tolist() == [3.0, 2.0, 3.0, 6.0]
    with pytest.raises(ValueError, match="more than k=3"):
        knn_radii(x[:3], k=3)


def test_precision_recall_same_distribution_near_one_collapsed_recall_zero():
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(1000, 4, generator=g), torch.randn(1000, 4, generator=g)
    p, r = precision_recall(real, fake)
    assert p > 0.9 and r > 0.9
    p, r = precision_recall(real, real[:1].repeat(50, 1))
    assert p == 1.0 and r == pytest.approx(1 / 1000)  # only the repeated point itself is covered
    p, _ = precision_recall(real, fake + 20.0)
    assert p == 0.0


def test_precision_recall_phantom(train, unseen):
    f = stand_in_features()
    real = f(torch.as_tensor(train[0]).unsqueeze(1))
    held_out = f(torch.as_tensor(unseen[0]).unsqueeze(1))
    p, r = precision_recall(real, held_out)
    assert p > 0.5 and r > 0.5
    _, r = precision_recall(real, held_out[10:11].repeat(len(held_out), 1))
    assert r == 0.0


# ------------------------------------------------------------------ MiFID
def test_mifid_is_fid_over_memorisation_distance():
    g = torch.Generator().manual_seed(1)
    real = torch.rand(200, 8, generator=g) + 0.5
    honest = torch.rand(200, 8, generator=g) + 0.5
    copies = real + 1e-3 * torch.randn(real.shape, generator=g)
    res_honest, res_copies = mifid(real, honest), mifid(real, copies)
    for res in (res_honest, res_copies):
        assert np.isfinite(res["mifid"]) and res["penalty_active"]
        assert res["mifid"] == pytest.approx(res["fid"] / res["memorisation_distance"], rel=1e-6)
    # copying multiplies FID by 1/d, a penalty orders of magnitude larger than for an honest set
    pen_honest = res_honest["mifid"] / res_honest["fid"]
    assert res_copies["mifid"] / res_copies["fid"] > 1000 * pen_honest
    # with eps below the honest set's d there is no penalty: MiFID = FID
    off = mifid(real, honest, cosine_distance_eps=res_honest["memorisation_distance"] / 2)
    assert not off["penalty_active"] and off["mifid"] == pytest.approx(off["fid"], rel=1e-6)
    # torchmetrics' edge: an exact copy has FID ~ 0, and MiFID 0 (the copy rate must catch it)
    assert mifid(real, real.clone())["mifid"] == 0.0


def test_memorisation_distance_by_hand():
    real = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    syn = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    # real 0: nearest syn is itself (0); real 1: cos 45 degrees to syn 1 -> 1 - 1/sqrt(2)
    assert memorisation_distance(real, syn) == pytest.approx((1 - 2**-0.5) / 2)


# ------------------------------------------------------------------ mask fidelity, diversity
def test_mask_fidelity_per_class_by_hand():
    masks = torch.zeros(2, 4, 4, dtype=torch.long)
    masks[0, :2, :2] = 1  # IPH, 4 px
    masks[1, :2, :] = 5  # SDH, 8 px
    images = torch.zeros(2, 1, 4, 4)

    def half(_: torch.Tensor) -> torch.Tensor:
        pred = masks.clone()
        pred[0, 0, :2] = 0  # IPH: 2 of 4 px found -> Dice 2*2/(2+4)
        pred[1, 2, :] = 5  # SDH: 4 extra px -> Dice 2*8/(12+8)
        return pred

    with pytest.raises(ValueError, match="predict_masks returned shape"):
        mask_fidelity(images, masks, half, batch_size=1)
    out = mask_fidelity(images, masks, half)
    assert out["per_class_dice"]["IPH"] == pytest.approx(2 / 3)
    assert out["per_class_dice"]["SDH"] == pytest.approx(0.8)
    assert out["per_class_dice"]["IVH"] is None and out["n_images"]["IVH"] == 0
    assert out["n_images"]["IPH"] == 1 and out["n_images"]["SDH"] == 1
    blank = mask_fidelity(images, masks, lambda x: torch.zeros(len(x), 4, 4, dtype=torch.long))
    assert blank["per_class_dice"]["IPH"] == 0.0


def test_seed_diversity(train):
    masks = train[1][:5]
    assert seed_diversity(StandInGenerator(SIZE, 0.0), masks)["mean_pairwise_ssim"] == pytest.approx(
        1.0, abs=1e-6
    )
    some = seed_diversity(StandInGenerator(SIZE, 0.1), masks)["mean_pairwise_ssim"]
    more = seed_diversity(StandInGenerator(SIZE, 0.4), masks)["mean_pairwise_ssim"]
    assert more < some < 0.99
    with pytest.raises(ValueError, match="k >= 2"):
        seed_diversity(StandInGenerator(SIZE, 0.1), masks, k=1)


# ------------------------------------------------------------------ audit_set and figure
def test_audit_set_json_safe_with_all_parts(train, unseen, tmp_path):
    images, _, ids = train
    syn, syn_masks, _ = unseen
    out = audit_set(
        syn,
        syn_masks,
        images,
        ids,
        stand_in_features(),
        predict_masks=lambda x: torch.zeros(len(x), SIZE, SIZE, dtype=torch.long),
        generator=StandInGenerator(SIZE, 0.0),
        config=AuditConfig(diversity_masks=3),
    )
    json.dumps(out, allow_nan=False)
    assert (
        out["n_synthetic"] == len(syn) and out["n_real"] == len(images) and out["n_patients"] == 8
    )
    assert out["diversity"]["mean_pairwise_ssim"] == pytest.approx(1.0, abs=1e-6)
    assert len(out["diversity"]["mask_rows"]) == 3
    assert set(out["mask_fidelity"]["per_class_dice"]) == {"IPH", "IVH", "SAH", "EDH", "SDH"}
    assert {"copy_rate", "mifid", "precision", "recall", "diversity"} <= set(out["conventions"])
    png = closest_pairs_figure(
        tmp_path / "pairs.png",
        syn,
        images,
        out["memorisation"]["pixel"]["closest_pairs"],
        title="closest",
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_audit_of_a_one_patient_subset_skips_copy_rates_and_says_why(train, unseen):
    from lcgan_lightning.audit.run import audit_summary

    images, _, ids = train
    syn, syn_masks, _ = unseen
    one = np.asarray(ids) == np.asarray(ids)[0]
    out = audit_set(syn, syn_masks, images[torch.as_tensor(one)], [i for i, k in zip(ids, one, strict=True) if k],
                    stand_in_features(), config=AuditConfig(diversity_masks=3))
    json.dumps(out, allow_nan=False)
    assert out["n_patients"] == 1 and out["memorisation"] == {}
    assert "1 patient" in out["memorisation_skipped"] and ">= 2" in out["memorisation_skipped"]
    assert out["mifid"]["fid"] > 0  # the rest of the audit still runs
    summary = audit_summary(out)
    assert summary["copy_rate_feature"] is None and summary["copy_rate_pixel"] is None


def test_audit_set_rejects_bad_input(train):
    images, masks, ids = train
    f = stand_in_features()
    with pytest.raises(ValueError, match=r"synthetic: images must be in \[-1, 1\]"):
        audit_set(images * 1000, masks, images, ids, f)
    with pytest.raises(ValueError, match="real_patients"):
        audit_set(images, masks, images, ids[:-1], f)
    with pytest.raises(ValueError, match="synthetic_masks"):
        audit_set(images, masks[:-1], images, ids, f)
    with pytest.raises(ValueError, match="copy_percentile"):
        AuditConfig(copy_percentile=0.0)


@pytest.mark.slow
def test_audit_of_1000_vs_800_at_128():
    """The full-size audit runs (its wall time: `python -m lcgan_lightning.bench --audit`)."""
    out = audit_set(**audit_inputs(1000, 800, 128))
    assert out["n_synthetic"] == 1000
