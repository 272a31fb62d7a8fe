"""Patient-level splits: disjoint, seeded, nested subsets (fractions and counts), class coverage."""

import json

import numpy as np
import pytest

from lcgan_lightning.data.splits import (
    class_cover,
    count_key,
    fraction_key,
    make_splits,
    reconcile_splits,
    save_splits,
    subset_key,
    subset_label,
    subset_size,
    training_patients,
    training_subset,
)
from lcgan_lightning.data.validation import DatasetError
from lcgan_lightning.errors import ConfigError


def _patients(n):
    # class c+1 carried by patients with i % 5 == c; class 5 (SDH) is rare: only 3 carriers
    out = {f"P{i:03d}": {i % 4 + 1} for i in range(n)}
    for i in (7, 19, 31):
        out[f"P{i:03d}"] = {5}
    return out


def test_disjoint_and_complete():
    pats = _patients(40)
    s = make_splits(pats, 0.15, 0.15, seed=3)
    parts = [set(s["train"]), set(s["val"]), set(s["test"])]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert set().union(*parts) == set(pats)
    assert (len(s["train"]), len(s["val"]), len(s["test"])) == (28, 6, 6)  # round(0.15 * 40) = 6


def test_same_seed_same_split_other_seed_differs():
    pats = _patients(40)
    assert make_splits(pats, seed=1) == make_splits(pats, seed=1)
    assert make_splits(pats, seed=1) != make_splits(pats, seed=2)


def test_subsets_nested_and_at_least_one():
    s = make_splits(_patients(40), 0.15, 0.15, seed=0)
    sub = s["subsets"]
    assert list(sub) == ["0.025", "0.1", "0.25"]
    # 28 training patients: max(1, round(0.7)) = 1, round(2.8) = 3, round(7.0) = 7
    assert [len(sub[k]) for k in sub] == [1, 3, 7]
    assert set(sub["0.025"]) <= set(sub["0.1"]) <= set(sub["0.25"]) <= set(s["train"])
    assert training_patients(s, 1.0) == s["train"]
    assert training_patients(s, 0.1) == sub["0.1"]
    assert subset_size(0.001, 28) == 1
    with pytest.raises(DatasetError, match="fraction selects no patient"):
        subset_size(0.0, 28)


def test_every_class_in_val_and_test_when_possible():
    for seed in range(5):
        pats = _patients(40)  # val and test get 6 patients each: room for all 5 classes
        s = make_splits(pats, 0.15, 0.15, seed=seed)
        for part in ("train", "val", "test"):
            present = set().union(*(pats[p] for p in s[part]))
            assert present == {1, 2, 3, 4, 5}, (seed, part, present)


def test_rarest_class_served_first():
    # 15 patients: val and test hold 2 each; SDH (3 carriers) goes to train, test and val first
    for seed in range(5):
        pats = {f"P{i}": {1} for i in range(12)} | {"S1": {5}, "S2": {5}, "S3": {5}}
        s = make_splits(pats, 0.15, 0.15, seed=seed)
        for part in ("train", "val", "test"):
            assert {c for p in s[part] for c in pats[p]} == {1, 5}, (seed, part)


def test_few_carriers_train_first_then_test():
    pats = {f"P{i}": {1} for i in range(10)} | {"R1": {2}, "R2": {2}, "U": {3}}
    for seed in range(5):
        s = make_splits(pats, 0.2, 0.2, seed=seed)
        assert "U" in s["train"]  # a single carrier is trained on
        assert {"R1", "R2"} & set(s["train"]) and {"R1", "R2"} & set(s["test"])


def test_save_splits(tmp_path):
    s = make_splits(_patients(12), seed=0)
    path = save_splits(s, tmp_path / "run" / "splits.json")
    assert json.loads(path.read_text()) == s


def test_reconcile_keeps_one_split_and_adds_new_subsets():
    pats = _patients(60)
    both = make_splits(pats, subsets=(), subset_counts=(8, 40), seed=3)
    only8 = make_splits(pats, subsets=(), subset_counts=(8,), seed=3)
    assert reconcile_splits(both, only8) == both  # fewer subsets asked: the file is kept as it is
    more = reconcile_splits(only8, both)  # a new count: added, the others untouched
    assert more["subsets"] == {"n=8": both["subsets"]["n=8"], "n=40": both["subsets"]["n=40"]}
    assert more["subsets"]["n=40"][:8] == more["subsets"]["n=8"]  # still nested
    with pytest.raises(ValueError, match="train/val/test patients differ"):
        reconcile_splits(both, make_splits(pats, subsets=(), subset_counts=(8,), seed=4))
    shuffled = {**both, "train": list(reversed(both["train"]))}
    with pytest.raises(ValueError, match="training order differs"):
        reconcile_splits(shuffled, both)


def _one_rare(n=100):
    # classes 1-4 common (i % 4 + 1), class 5 carried only by P042 (which also has class 2)
    out = {f"P{i:03d}": {i % 4 + 1} for i in range(n)}
    out["P042"] = {2, 5}
    return out


def test_keys_fraction_unchanged_count_unambiguous():
    assert [fraction_key(f) for f in (0.025, 0.1, 0.25, 1)] == ["0.025", "0.1", "0.25", "1.0"]
    assert count_key(53) == "n=53" and count_key(np.int64(7)) == "n=7"
    assert subset_key(fraction=0.1) == "0.1" and subset_key(patients=53) == "n=53"
    assert [subset_label(k) for k in ("0.025", "0.1", "n=53")] == ["2.5 %", "10 %", "53 patients"]
    with pytest.raises(DatasetError, match=r"exactly one of fraction \(0.1\) or patients \(3\)"):
        subset_key(0.1, 3)


def test_counts_and_fractions_nested_one_prefix():
    s = make_splits(_patients(40), 0.15, 0.15, subsets=(0.25, 0.025), seed=4, subset_counts=[10, 3])
    sub = s["subsets"]
    # fractions (sorted) first, then counts (sorted); 28 training patients: 1 and 7 patients
    assert list(sub) == ["0.025", "0.25", "n=3", "n=10"]
    assert [len(v) for v in sub.values()] == [1, 7, 3, 10]
    for key, ids in sub.items():
        assert ids == s["train"][: len(ids)], key  # every subset is a prefix: nested
    assert training_patients(s, patients=10) == sub["n=10"]
    assert training_subset(s, patients=3) == ("n=3", sub["n=3"])
    assert training_subset(s, 0.25) == ("0.25", sub["0.25"])


def test_count_equal_to_fraction_size_gives_same_patients():
    # 3025 patients -> 454 val, 454 test, 2117 train: the paper's 2.5/10/25 % = 53/212/529 patients
    pats = {f"P{i:04d}": {i % 5 + 1} for i in range(3025)}
    s = make_splits(pats, 0.15, 0.15, seed=42, subset_counts=[53, 212, 529])
    assert len(s["train"]) == 2117
    sub = s["subsets"]
    for f, k in ((0.025, 53), (0.1, 212), (0.25, 529)):
        assert subset_size(f, 2117) == k
        assert sub[fraction_key(f)] == sub[count_key(k)] == training_patients(s, patients=k)
        assert training_patients(s, f) == sub[count_key(k)]


def test_same_seed_same_order_with_counts():
    pats = _one_rare()
    a = make_splits(pats, seed=9, subset_counts=[5, 20])
    assert a == make_splits(pats, seed=9, subset_counts=[5, 20])
    assert a["train"] != make_splits(pats, seed=10, subset_counts=[5, 20])["train"]
    assert a["train"] == make_splits(pats, seed=9)["train"]  # counts do not change the order
    parts = [set(a["train"]), set(a["val"]), set(a["test"])]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert set().union(*parts) == set(pats)


def test_every_class_in_every_subset_of_five_or_more():
    pats = _one_rare()
    for seed in range(20):
        s = make_splits(pats, 0.15, 0.15, subsets=(0.025, 0.1), seed=seed, subset_counts=[5])
        train = s["train"]
        assert "P042" in train  # a single carrier is trained on (split rule 2)
        assert train[0] == "P042"  # the rarest class comes first in the order
        wanted = {1, 2, 3, 4, 5}
        for k in range(5, len(train) + 1):  # every prefix of >= 5 patients, not only configured ones
            assert set().union(*(pats[p] for p in train[:k])) == wanted, (seed, k)
        assert [len(v) for v in s["subsets"].values()] == [2, 7, 5]  # 70 train: round(1.75), round(7)


def test_cover_is_seeded_irredundant_and_not_biased_to_multiclass():
    # class 5 rarest (A, B); class 1 next (B, C, D). B alone covers both; A is redundant once B is in.
    pats = {"A": {5}, "B": {1, 5}, "C": {1}, "D": {1}, "E": {2}, "F": {2}, "G": {2}, "H": {2}}
    seen = set()
    for seed in range(40):
        cover = class_cover(pats, np.random.default_rng(seed))
        assert cover == class_cover(pats, np.random.default_rng(seed))
        assert set().union(*(pats[p] for p in cover)) == {1, 2, 5}
        for p in cover:  # no cover patient can be dropped
            assert set().union(*(pats[q] for q in cover if q != p)) != {1, 2, 5}, cover
        seen.add(tuple(cover[:-1]))  # the last pick is the class-2 carrier
    # B wins only when drawn; A (1 class) is drawn as often for class 5, then C or D for class 1
    assert seen == {("B",), ("A", "C"), ("A", "D")}


def test_subset_of_five_too_small_for_all_classes_raises_with_numbers():
    # 8 disjoint classes: the cover needs 8 patients, so a 5-patient subset cannot hold them all
    pats = {f"P{i:02d}": {i % 8 + 1} for i in range(40)}
    with pytest.raises(DatasetError, match=r"n=5 has 5 patients but the 8 lesion classes of the 28 "
                                           r"training patients need 8"):
        make_splits(pats, 0.15, 0.15, subsets=(), seed=0, subset_counts=[5])
    s = make_splits(pats, 0.15, 0.15, subsets=(), seed=0, subset_counts=[4, 8])  # 4 < 5: no rule
    assert set().union(*(pats[p] for p in s["subsets"]["n=8"])) == set(range(1, 9))


def test_bad_counts_name_requested_and_available():
    s = make_splits(_patients(40), 0.15, 0.15, seed=0)  # 28 training patients
    with pytest.raises(DatasetError, match=r"data.subset_counts=29: requested 29 .* 28 available"):
        make_splits(_patients(40), 0.15, 0.15, seed=0, subset_counts=[3, 29])
    with pytest.raises(DatasetError, match=r"data.subset_patients=0: requested 0 .* 28 available"):
        training_patients(s, patients=0)
    with pytest.raises(DatasetError, match=r"data.subset_patients=2.5: a patient count must be an integer"):
        training_patients(s, patients=2.5)
    with pytest.raises(DatasetError, match="exactly one of fraction"):
        training_patients(s)


def test_subset_patients_list_points_to_subset_counts():
    s = make_splits(_patients(40), 0.15, 0.15, seed=0)
    msg = ("data.subset_patients=[2, 5, 8]: one patient count for one training run; "
           "a list of subset sizes is data.subset_counts=[2,5,8]")
    with pytest.raises(ConfigError) as info:
        training_patients(s, patients=[2, 5, 8])
    assert str(info.value) == msg and "data.subset_counts=[2,5,8]" in info.value.hint


@pytest.fixture(scope="module")
def bhsd_root(tmp_path_factory):
    from data_helpers import bhsd_cases, write_bhsd

    return write_bhsd(tmp_path_factory.mktemp("ds") / "bhsd", bhsd_cases(20))


def _dm(root, tmp_path, **kw):
    from lcgan_lightning.data.datamodule import CTSliceDataModule

    args = dict(root=root, image_size=32, batch_size=4, cache_dir=tmp_path / "cache",
                splits_path=tmp_path / "run" / "splits.json", seed=5) | kw
    dm = CTSliceDataModule(**args)
    dm.setup("fit")
    return dm


def test_datamodule_subset_patients_is_the_prefix(bhsd_root, tmp_path):
    # 20 patients: 3 val, 3 test, 14 train; fraction 0.25 -> round(3.5) = 4 patients
    dm = _dm(bhsd_root, tmp_path, subset_patients=4, subset_counts=[4, 9])
    written = json.loads((tmp_path / "run" / "splits.json").read_text())
    assert list(written["subsets"]) == ["0.025", "0.1", "0.25", "n=4", "n=9"]
    assert set(dm.train_slices.patients) == set(written["subsets"]["n=4"]) == set(written["train"][:4])
    assert dm.hparams["subset_patients"] == 4 and dm.hparams["subset_counts"] == [4, 9]
    by_fraction = _dm(bhsd_root, tmp_path, fraction=0.25, subset_counts=[4, 9],
                      splits_path=tmp_path / "other" / "splits.json")
    assert by_fraction.splits == dm.splits  # the count does not change the split
    assert set(by_fraction.train_slices.patients) == set(dm.train_slices.patients)


def test_datamodule_bad_subset_patients(bhsd_root, tmp_path):
    from lcgan_lightning.data.datamodule import CTSliceDataModule

    with pytest.raises(DatasetError, match=r"data.subset_patients=15: requested 15 .* 14 available"):
        _dm(bhsd_root, tmp_path, subset_patients=15)
    with pytest.raises(DatasetError, match=r"data.subset_patients=0: requested 0 .* 14 available"):
        _dm(bhsd_root, tmp_path, subset_patients=0)
    with pytest.raises(DatasetError, match=r"data.subset_counts=20: requested 20 .* 14 available"):
        _dm(bhsd_root, tmp_path, subset_counts=[20])
    with pytest.raises(DatasetError, match=r"data.subset_patients=4 and data.fraction=0.5: set one"):
        CTSliceDataModule(root=bhsd_root, subset_patients=4, fraction=0.5)
