"""Slice cache: second read touches no NIfTI, memory-mapped, keyed by sources and settings."""

import json
import os

import nibabel
import numpy as np
import pytest
from data_helpers import bhsd_cases, write_bhsd

from lcgan_lightning.data.dataset import SliceDataset
from lcgan_lightning.data.loading import load_slices


@pytest.fixture
def root(tmp_path):
    return write_bhsd(tmp_path / "ds", bhsd_cases(4))


def _no_nifti(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("nibabel.load called on a cache hit")

    monkeypatch.setattr(nibabel, "load", boom)


def test_second_read_uses_cache(root, tmp_path, monkeypatch):
    cache_dir = tmp_path / "cache"
    first = load_slices(root, "bhsd", 32, cache_dir=cache_dir)
    entries = [p for p in cache_dir.iterdir()]
    assert len(entries) == 1 and entries[0].name.startswith("bhsd-")
    assert sorted(p.name for p in entries[0].iterdir()) == ["images.npy", "masks.npy", "meta.json", "slice_index.npy"]
    meta = json.loads((entries[0] / "meta.json").read_text())
    assert meta["settings"]["image_size"] == 32 and len(meta["patients"]) == len(first)

    _no_nifti(monkeypatch)
    second = load_slices(root, "bhsd", 32, cache_dir=cache_dir)
    assert isinstance(second.images, np.memmap) and isinstance(second.masks, np.memmap)
    np.testing.assert_array_equal(second.images, first.images)
    np.testing.assert_array_equal(second.masks, first.masks)
    assert second.patients.tolist() == first.patients.tolist()
    assert second.slice_index.tolist() == first.slice_index.tolist()
    sample = SliceDataset(second)[0]
    assert sample["image"].shape == (1, 32, 32)


def test_key_changes_with_settings_and_files(root, tmp_path, monkeypatch):
    cache_dir = tmp_path / "cache"
    load_slices(root, "bhsd", 32, cache_dir=cache_dir)
    load_slices(root, "bhsd", 16, cache_dir=cache_dir)
    load_slices(root, "bhsd", 32, window="subdural", cache_dir=cache_dir)
    assert len(list(cache_dir.iterdir())) == 3
    label = next((root / "labelsTr").iterdir())
    st = label.stat()
    os.utime(label, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    calls = []
    real = nibabel.load
    monkeypatch.setattr(nibabel, "load", lambda *a, **k: calls.append(a) or real(*a, **k))
    load_slices(root, "bhsd", 32, cache_dir=cache_dir)
    assert calls  # a modified file is read again
    assert len(list(cache_dir.iterdir())) == 4
    assert not [p for p in cache_dir.iterdir() if p.name.startswith(".tmp")]
