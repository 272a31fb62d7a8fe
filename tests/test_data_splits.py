"""Patient-level splits: disjoint, seeded, nested subsets, classes in val and test."""

import json

import pytest

from lcgan_lightning.data.splits import make_splits, save_splits, subset_size, training_patients
from lcgan_lightning.data.validation import DatasetError


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
