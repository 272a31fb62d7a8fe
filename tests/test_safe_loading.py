"""Opening files from others: checkpoints and synthetic sets load without running their code."""

from __future__ import annotations

import json
import logging
import pathlib
from typing import Any

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from lcgan_lightning.checkpoint_io import (
    UnsafeCheckpointError,
    UnsafeCheckpointWarning,
    load_checkpoint,
)
from lcgan_lightning.data import cache
from lcgan_lightning.data.slices import SliceSet
from lcgan_lightning.data.synthetic_set import (
    SyntheticSetError,
    read_synthetic_set,
    write_synthetic_set,
)
from lcgan_lightning.paths import CONF_DIR


class TouchOnUnpickle:
    """Unpickling this object creates `marker`: stands for any code a crafted file could run."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


@pytest.fixture
def crafted(tmp_path):
    """(crafted LcGAN-looking checkpoint, marker path); the marker does not exist yet."""
    marker = tmp_path / "marker"
    path = tmp_path / "shared" / "gen.ckpt"
    path.parent.mkdir()
    torch.save(
        {
            "state_dict": {"generator.w": torch.zeros(1)},
            "epoch": 0,
            "hyper_parameters": {"image_size": 32, "payload": TouchOnUnpickle(marker)},
        },
        path,
    )
    assert not marker.exists()
    return path, marker


def test_crafted_checkpoint_is_refused_without_running_it(crafted):
    path, marker = crafted
    with pytest.raises(UnsafeCheckpointError) as info:
        load_checkpoint(path)
    msg = str(info.value)
    assert str(path) in msg and "pickled Python code" in msg and "trust_checkpoint=true" in msg
    assert "pathlib" in msg  # what the unpickler refused
    assert info.value.path == path and "pathlib.Path" in info.value.refused
    assert not marker.exists()


def test_every_checkpoint_reader_refuses_it(crafted, small_vgg_file):
    from lcgan_lightning.models.fcn8s import FCN8s, load_vgg16_imagenet
    from lcgan_lightning.models.generation import checkpoint_image_source, load_generator
    from lcgan_lightning.models.segmenter import load_segmenter
    from lcgan_lightning.selection.candidates import discover_candidates, parse_candidates
    from lcgan_lightning.synthesize import synthesize
    from lcgan_lightning.training import _resolve_ckpt_path

    path, marker = crafted
    masks = np.zeros((1, 32, 32), np.uint8)
    calls = [
        lambda: load_generator(path),
        lambda: checkpoint_image_source(path)(masks, 0),
        lambda: load_segmenter(path),
        lambda: parse_candidates([str(path)]),
        lambda: _resolve_ckpt_path(str(path), path.parent),
        lambda: synthesize(
            path,
            SliceSet(
                masks.astype(np.float16), masks, np.array(["p"]), np.array(["v"]), np.array([0])
            ),
            path.parent / "syn",
            1.0,
            previews=0,
            device="cpu",
        ),
    ]
    for call in calls:
        with pytest.raises(UnsafeCheckpointError, match="trust_checkpoint=true"):
            call()
    # discovery stops on it (it is not skipped like a corrupt file)
    run = path.parent / "gan" / "frac=0.1" / "checkpoints"
    run.mkdir(parents=True)
    (run / "last.ckpt").write_bytes(path.read_bytes())
    with pytest.raises(UnsafeCheckpointError, match="last.ckpt"):
        discover_candidates(path.parent / "gan")
    # the VGG-16 file: refused with advice of its own (torchvision's file holds tensors only)
    with pytest.raises(UnsafeCheckpointError, match="download it again"):
        load_vgg16_imagenet(FCN8s(width=1.0), path)
    assert not marker.exists()


@pytest.fixture
def small_vgg_file(monkeypatch):
    from lcgan_lightning.models import fcn8s as fcn8s_module

    monkeypatch.setattr(fcn8s_module, "VGG16_CHANNELS", (4, 8, 8, 16, 16))
    monkeypatch.setattr(fcn8s_module, "FC_CHANNELS", 32)


def test_crafted_checkpoint_loads_only_when_trusted_and_warns(crafted, caplog):
    path, marker = crafted
    with caplog.at_level(logging.WARNING, logger="lcgan_lightning.checkpoint_io"):
        with pytest.warns(UnsafeCheckpointWarning, match="trust_checkpoint=true"):
            ckpt = load_checkpoint(path, trust=True)
    assert marker.exists()  # the point: trusting a file runs its code
    assert ckpt["hyper_parameters"]["image_size"] == 32
    assert any(
        str(path) in r.getMessage() and "full unpickling" in r.getMessage() for r in caplog.records
    )


def test_plain_and_broken_files(tmp_path, recwarn):
    plain = tmp_path / "plain.ckpt"
    torch.save(
        {
            "state_dict": {"w": torch.arange(3)},
            "hyper_parameters": {"lr": 1e-3, "x": [1, (2, "a")]},
        },
        plain,
    )
    for trust in (False, True):  # a plain file never warns, trusted or not
        ck = load_checkpoint(plain, trust=trust)
        assert torch.equal(ck["state_dict"]["w"], torch.arange(3)) and ck["hyper_parameters"][
            "x"
        ] == [1, (2, "a")]
    assert not [w for w in recwarn if issubclass(w.category, UnsafeCheckpointWarning)]
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.ckpt: not a readable checkpoint") as info:
        load_checkpoint(junk, trust=True)
    assert not isinstance(info.value, UnsafeCheckpointError)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(plain.read_bytes()[:200])
    with pytest.raises(ValueError, match="truncated.ckpt: not a readable checkpoint"):
        load_checkpoint(truncated)
    with pytest.raises(FileNotFoundError, match="nope.ckpt"):
        load_checkpoint(tmp_path / "nope.ckpt")


# ---- the project's own checkpoints ---------------------------------------------------------------
PLAIN = (dict, list, tuple, str, int, float, bool, type(None))


def non_plain(obj: Any, where: str = "") -> list[str]:
    """Paths of values in `obj` that are neither plain Python nor tensors."""
    if isinstance(obj, dict):
        return [
            p
            for k, v in obj.items()
            for p in non_plain(k, f"{where}<key>") + non_plain(v, f"{where}.{k}")
        ]
    if isinstance(obj, (list, tuple)):
        return [p for i, v in enumerate(obj) for p in non_plain(v, f"{where}[{i}]")]
    if isinstance(obj, torch.Tensor) or type(obj) in PLAIN:
        return []
    return [f"{where}: {type(obj).__module__}.{type(obj).__qualname__}"]


TINY = [
    "data=phantom",
    "data.image_size=32",
    "data.phantom.num_patients=6",
    "data.phantom.num_slices=4",
    "data.batch_size=2",
    "data.num_workers=0",
    "trainer=cpu",
    "logger=csv",
    "callbacks=none",
    "print_config=false",
    "+trainer.limit_train_batches=2",
    "+trainer.limit_val_batches=1",
    "+trainer.enable_progress_bar=false",
]


def _train_cfg(tmp_path, overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(
            config_name="train",
            overrides=[
                *TINY,
                f"paths.root_dir={tmp_path}",
                f"paths.output_dir={tmp_path / 'run'}",
                *overrides,
            ],
        )


def _assert_weights_only(path: pathlib.Path) -> dict:
    ck = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("hyper_parameters", "datamodule_hyper_parameters", "run_config"):
        assert key in ck, f"{path.name} has no {key}"
        assert not non_plain(ck[key]), non_plain(ck[key])
    return ck


def test_lcgan_run_checkpoints_are_weights_only_and_resume(tmp_path):
    from lcgan_lightning.training import train

    gan = ["model=lcgan", "model.ngf=8", "model.ndf=8", "model.n_panel=1", "model.save_epochs=[1]"]
    train(_train_cfg(tmp_path, [*gan, "trainer.max_epochs=1"]))
    ckpts = tmp_path / "run" / "checkpoints"
    for f in ("epoch=001.ckpt", "last.ckpt"):
        ck = _assert_weights_only(ckpts / f)
        assert (
            ck["run_config"]["model"]["save_epochs"] == [1]
            and ck["datamodule_hyper_parameters"]["image_size"] == 32
        )
    # Lightning resume (weights_only=True) and the checkpoint it then writes
    summary = train(_train_cfg(tmp_path, [*gan, "trainer.max_epochs=2", "ckpt_path=last"]))
    assert summary["epochs"] == 2
    assert _assert_weights_only(ckpts / "last.ckpt")["epoch"] == 1


def test_segmenter_run_checkpoints_are_weights_only(tmp_path):
    from lcgan_lightning.models.segmenter import load_segmenter
    from lcgan_lightning.training import train

    summary = train(
        _train_cfg(
            tmp_path,
            [
                "model=fcn8s",
                "model.width=0.125",
                "trainer.max_epochs=1",
                "model.class_weights=null",
                "model.net=null",
            ],
        )
    )
    best = pathlib.Path(summary["best_ckpt"])
    _assert_weights_only(best)
    _assert_weights_only(tmp_path / "run" / "checkpoints" / "last.ckpt")
    seg = load_segmenter(best)
    state = torch.load(best, weights_only=True)["state_dict"]
    assert all(torch.equal(v, state[k]) for k, v in seg.state_dict().items())


def test_resume_of_a_crafted_checkpoint_is_refused(crafted):
    from lcgan_lightning.training import _resolve_ckpt_path

    path, marker = crafted
    with pytest.raises(UnsafeCheckpointError):
        _resolve_ckpt_path(str(path), path.parent)
    with pytest.warns(UnsafeCheckpointWarning):
        assert _resolve_ckpt_path(str(path), path.parent, trust=True) == (str(path), False)
    assert not marker.exists()  # checked without unpickling; Lightning alone would load it


# ---- synthetic sets and caches ------------------------------------------------------------------
def _slices(n: int = 4, size: int = 8) -> SliceSet:
    rng = np.random.default_rng(0)
    masks = rng.integers(0, 6, (n, size, size)).astype(np.uint8)
    images = rng.uniform(-1, 1, (n, size, size)).astype(np.float16)
    return SliceSet(
        images,
        masks,
        np.array([f"p{i}" for i in range(n)]),
        np.array([f"p{i}_v" for i in range(n)]),
        np.arange(n),
    )


def test_synthetic_set_records_and_checks_arrays(tmp_path):
    s = _slices()
    d = write_synthetic_set(tmp_path / "syn", s.images, s.masks, s)
    manifest = json.loads((d / "manifest.json").read_text())
    assert manifest["arrays"] == {
        "images.npy": {"shape": [4, 8, 8], "dtype": "float16"},
        "masks.npy": {"shape": [4, 8, 8], "dtype": "uint8"},
    }
    assert np.array_equal(read_synthetic_set(d).masks, s.masks)
    # a replaced images.npy of another shape (masks too, so only the manifest can tell)
    np.save(d / "images.npy", np.zeros((3, 8, 8), np.float16))
    np.save(d / "masks.npy", np.zeros((3, 8, 8), np.uint8))
    with pytest.raises(
        SyntheticSetError,
        match=r"images.npy: holds float16 \[3, 8, 8\], the manifest records "
        r"float16 \[4, 8, 8\]",
    ):
        read_synthetic_set(d)
    # an older manifest without "arrays" still reads (format checks only)
    d = write_synthetic_set(tmp_path / "old", s.images, s.masks, s)
    del manifest["arrays"]
    (d / "manifest.json").write_text(json.dumps(manifest))
    assert len(read_synthetic_set(d)) == 4


def test_tampered_images_npy_is_refused(tmp_path):
    s = _slices()
    d = write_synthetic_set(tmp_path / "syn", s.images, s.masks, s)
    marker = tmp_path / "marker"
    evil = np.empty((4, 8, 8), dtype=object)
    evil[0, 0, 0] = TouchOnUnpickle(marker)
    np.save(d / "images.npy", evil, allow_pickle=True)
    with pytest.raises(SyntheticSetError, match=r"syn/images.npy: refused.*object arrays"):
        read_synthetic_set(d)
    assert not marker.exists()


def test_cache_entry_refuses_pickles_and_changed_arrays(tmp_path):
    s = _slices()
    entry = cache.write_entry(
        tmp_path / "c" / "bhsd-x",
        {"images": s.images, "masks": s.masks, "slice_index": s.slice_index.astype(np.int32)},
        {},
    )
    arrays, meta = cache.read_entry(entry)
    assert meta["arrays"]["slice_index"] == {"shape": [4], "dtype": "int32"}
    assert np.array_equal(arrays["masks"], s.masks)
    np.save(entry / "slice_index.npy", np.arange(4, dtype=np.int64))
    with pytest.raises(
        cache.CacheEntryError, match=r"slice_index.npy: holds int64 \[4\], meta.json records int32"
    ):
        cache.read_entry(entry)
    marker = tmp_path / "marker"
    evil = np.array([TouchOnUnpickle(marker)] * 4, dtype=object)
    np.save(entry / "slice_index.npy", evil, allow_pickle=True)
    with pytest.raises(cache.CacheEntryError, match=r"slice_index.npy: refused"):
        cache.read_entry(entry)
    assert not marker.exists()


def test_regenerate_names_the_changed_checkpoint(tmp_path):
    from lcgan_lightning.synthesize import regenerate_from_manifest

    ckpt = tmp_path / "g.ckpt"
    torch.save({"state_dict": {}}, ckpt)
    (tmp_path / "syn").mkdir()
    (tmp_path / "syn" / "manifest.json").write_text(
        json.dumps(
            {
                "checkpoint": str(ckpt),
                "checkpoint_sha256": "0" * 64,
                "seed": 0,
                "dropout": True,
                "source": [],
            }
        )
    )
    with pytest.raises(
        SyntheticSetError, match=rf"{ckpt}: this checkpoint changed.*sha256 [0-9a-f]{{64}}"
    ):
        regenerate_from_manifest(
            tmp_path / "syn" / "manifest.json", _slices(), load_generator=lambda p: None
        )


@pytest.mark.parametrize("app", ["train", "select", "synthesize"])
def test_trust_is_off_by_default(app):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name=app, overrides=["judge_ckpt=x"] if app == "select" else [])
    assert cfg.trust_checkpoint is False
