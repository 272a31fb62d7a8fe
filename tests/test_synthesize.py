"""Synthesis of augmentation sets: file format, manifest, batch independence, bit-exact regeneration."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lcgan_lightning.data.slices import SliceSet
from lcgan_lightning.data.synthetic_set import sha256_file
from lcgan_lightning.models.generation import generate_set
from lcgan_lightning.synthesize import regenerate_from_manifest, synthesize


class NoisyGenerator:
    """Mask-dependent image plus seeded noise; noise differs with `dropout` like pix2pix's."""

    image_size = 16

    def generate(self, masks: torch.Tensor, seed: int, dropout: bool = True) -> torch.Tensor:
        g = torch.Generator().manual_seed(int(seed))
        noise = torch.randn((masks.shape[0], 1, *masks.shape[1:]), generator=g)
        x = masks.unsqueeze(1).float() * 0.3 - 0.5 + (0.2 if dropout else 0.05) * noise
        return x.clamp(-1, 1)


def _loader(path: str) -> NoisyGenerator:
    assert torch.load(path, weights_only=True)["kind"] == "generator"
    return NoisyGenerator()


def _slices(n: int = 10) -> SliceSet:
    rng = np.random.default_rng(0)
    masks = rng.integers(0, 6, size=(n, 16, 16)).astype(np.uint8)
    pats = np.array([f"p{i % 5}" for i in range(n)])
    return SliceSet(np.zeros((n, 16, 16), np.float16), masks, pats, np.array([f"{p}_s0" for p in pats]),
                     np.arange(n, dtype=np.int32) // 5)


@pytest.fixture
def ckpt(tmp_path):
    path = tmp_path / "gen.ckpt"
    torch.save({"kind": "generator"}, path)
    return path


def test_synthesize_writes_the_augment_set_and_regenerates_bit_for_bit(tmp_path, ckpt):
    data = _slices()
    train = data.for_patients(["p0", "p1", "p3"])  # 6 rows
    manifest = synthesize(ckpt, train, tmp_path / "syn", fraction=0.1, seed=7, dropout=True, previews=3,
                          load_generator=_loader)
    images = np.load(tmp_path / "syn/images.npy")
    masks = np.load(tmp_path / "syn/masks.npy")
    assert images.dtype == np.float16 and images.shape == (6, 16, 16)
    assert masks.dtype == np.uint8 and np.array_equal(masks, train.masks)
    assert images.min() >= -1 and images.max() <= 1
    on_disk = json.loads((tmp_path / "syn/manifest.json").read_text())
    assert on_disk == manifest
    assert manifest["checkpoint_sha256"] == sha256_file(ckpt)
    assert (manifest["fraction"], manifest["seed"], manifest["dropout"], manifest["image_size"]) == (0.1, 7, True, 16)
    assert manifest["source"][:2] == [{"patient": "p0", "volume": "p0_s0", "slice": 0, "copy": 0},
                                      {"patient": "p1", "volume": "p1_s0", "slice": 0, "copy": 0}]
    assert (manifest["version"], manifest["kind"], manifest["per_mask"]) == (2, "redraw", 1)
    # k=1 is today's set bit for bit: row i seeded by SeedSequence([seed, i])
    assert np.array_equal(images, generate_set(NoisyGenerator(), train.masks, seed=7))
    for key in ("created", "package_version", "checkpoint"):
        assert manifest[key]
    assert (tmp_path / "syn/previews/preview.png").is_file()

    # regenerate from the FULL dataset: rows are found by (patient, volume, slice)
    again, again_masks = regenerate_from_manifest(tmp_path / "syn/manifest.json", data, load_generator=_loader)
    assert np.array_equal(again, images) and np.array_equal(again_masks, masks)

    # a changed checkpoint is refused
    torch.save({"kind": "generator", "x": 1}, ckpt)
    with pytest.raises(ValueError, match="sha256"):
        regenerate_from_manifest(tmp_path / "syn/manifest.json", data, load_generator=_loader)


def test_generation_is_batch_independent_and_seeded():
    masks = _slices().masks
    a = generate_set(NoisyGenerator(), masks, seed=3, chunk=256)
    b = generate_set(NoisyGenerator(), masks, seed=3, chunk=3)
    c = generate_set(NoisyGenerator(), masks[4:], seed=3)
    assert np.array_equal(a, b)
    assert not np.array_equal(a[4:], c)  # row seeds follow the row index in the set
    assert not np.array_equal(a, generate_set(NoisyGenerator(), masks, seed=4))
    assert not np.array_equal(a, generate_set(NoisyGenerator(), masks, seed=3, dropout=False))


def test_synthesize_errors(tmp_path, ckpt):
    slices = _slices()
    with pytest.raises(FileNotFoundError, match="nope.ckpt"):
        synthesize(tmp_path / "nope.ckpt", slices, tmp_path / "o", 0.1, load_generator=_loader)
    with pytest.raises(ValueError, match="nothing to synthesize"):
        synthesize(ckpt, slices.for_patients([]), tmp_path / "o", 0.1, load_generator=_loader)


def test_k_copies_per_mask_are_distinct_prefix_stable_and_regenerate(tmp_path, ckpt):
    data = _slices()
    train = data.for_patients(["p0", "p1", "p3"])  # 6 rows
    one = synthesize(ckpt, train, tmp_path / "k1", 0.1, seed=7, previews=0, load_generator=_loader)
    four = synthesize(ckpt, train, tmp_path / "k4", 0.1, seed=7, previews=0, load_generator=_loader, per_mask=4)
    img1, img4 = np.load(tmp_path / "k1/images.npy"), np.load(tmp_path / "k4/images.npy")
    masks4 = np.load(tmp_path / "k4/masks.npy")
    assert img4.shape == (24, 16, 16) and four["n"] == 24 and four["per_mask"] == 4 and one["per_mask"] == 1
    assert [r["copy"] for r in four["source"]] == [c for c in range(4) for _ in range(6)]
    assert four["source"][6] == {**one["source"][0], "copy": 1}
    assert np.array_equal(img4[:6], img1)  # copy 0 = the k=1 set
    assert np.array_equal(masks4, np.concatenate([train.masks] * 4))
    blocks = img4.reshape(4, 6, -1)
    assert all(not np.array_equal(blocks[a], blocks[b]) for a in range(4) for b in range(a + 1, 4))
    again, again_masks = regenerate_from_manifest(tmp_path / "k4/manifest.json", data, load_generator=_loader)
    assert np.array_equal(again, img4) and np.array_equal(again_masks, masks4)
    with pytest.raises(ValueError, match="synthetic_per_mask=0"):
        synthesize(ckpt, train, tmp_path / "k0", 0.1, load_generator=_loader, per_mask=0)
