"""The synthetic-set format: one module writes it, reads it and checks it against a fraction's slices.

    <dir>/images.npy     float16 [N, H, W], synthetic CT windowed to [-1, 1]
    <dir>/masks.npy      uint8   [N, H, W], the conditioning masks (our class ids)
    <dir>/manifest.json  {"format": "lcgan-synthetic-v1", "version": 1, "n": N, "image_size": H,
                          "arrays": {"images.npy": {"shape": [N, H, W], "dtype": "float16"},
                                     "masks.npy": {"shape": [N, H, W], "dtype": "uint8"}},
                          "source": [{"patient": str, "volume": str, "slice": int}, ...],
                          ...free metadata (checkpoint + sha256, seed, fraction, dropout, ...)}
    <dir>/previews/      optional figures (not part of the format)

Row i of the arrays is the synthetic partner of the training slice ``source[i]`` (patient, volume,
slice index along the acquisition axis). The arrays are read with ``allow_pickle=False`` (an object
array, which would unpickle Python objects, is refused) and checked against the shapes and dtypes
the manifest records (manifests written before ``arrays`` existed are checked against the format
alone). A set is written into a temporary folder and renamed, so
a folder is either a complete set or absent. When used for training, the set must cover EXACTLY the
training slices of the configured fraction (same keys, same masks); anything else is an error.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lcgan_lightning.data.slices import SliceSet
from lcgan_lightning.errors import UserError

MANIFEST_VERSION = 1

SYNTHETIC_FORMAT = "lcgan-synthetic-v1"
SYNTHETIC_FILES = ("images.npy", "masks.npy", "manifest.json")
ARRAY_DTYPES = {"images.npy": "float16", "masks.npy": "uint8"}


class SyntheticSetError(UserError, ValueError):
    """A synthetic set that is missing, malformed or does not match the training slices."""

    hint = ("synthesize the set again for this data.fraction, split seed and dataset "
            "(lcgan-synthesize ... overwrite=true), or point data.synthetic_dir at the set made for it")


def _keys(slices: SliceSet) -> list[tuple[str, str, int]]:
    return [
        (str(p), str(v), int(s))
        for p, v, s in zip(slices.patients, slices.volumes, slices.slice_index, strict=True)
    ]


def _show(keys: Sequence[tuple[str, str, int]], k: int = 5) -> str:
    shown = ", ".join(f"{p}/{v}/slice {s}" for p, v, s in list(keys)[:k])
    return shown + (f" ... ({len(keys)} in all)" if len(keys) > k else "")


def write_synthetic_set(
    out_dir: str | Path, images: np.ndarray, masks: np.ndarray, source: SliceSet, **meta: Any
) -> Path:
    """Write a synthetic set (format in the module docstring) for the training slices ``source``.

    ``images`` [N,H,W] in [-1,1] are stored as float16; row i belongs to ``source``'s slice i.
    Written into a temporary folder and renamed, so ``out_dir`` is either complete or absent.
    """
    out = Path(out_dir)
    images = np.asarray(images)
    masks = np.asarray(masks, dtype=np.uint8)
    if images.shape != masks.shape or images.ndim != 3 or len(images) != len(source):
        raise SyntheticSetError(
            f"{out}: images {images.shape}, masks {masks.shape} and {len(source)} source slices do not match"
        )
    if not np.isfinite(images).all():
        raise SyntheticSetError(f"{out}: synthetic images contain NaN/inf")
    manifest = {
        **meta,
        "format": SYNTHETIC_FORMAT,
        "version": MANIFEST_VERSION,
        "n": int(len(images)),
        "image_size": int(images.shape[-1]),
        "arrays": {
            name: {"shape": list(images.shape), "dtype": dtype}
            for name, dtype in ARRAY_DTYPES.items()
        },
        "source": [{"patient": p, "volume": v, "slice": s} for p, v, s in _keys(source)],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".tmp-{out.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    np.save(tmp / "images.npy", np.clip(images, -1.0, 1.0).astype(np.float16), allow_pickle=False)
    np.save(tmp / "masks.npy", masks, allow_pickle=False)
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    if out.exists():
        shutil.rmtree(out)
    os.rename(tmp, out)
    return out


def read_synthetic_set(synthetic_dir: str | Path) -> SliceSet:
    """Read a synthetic set from disk as a SliceSet (images memory-mapped); validates the format."""
    d = Path(synthetic_dir)
    if not d.is_dir():
        raise SyntheticSetError(
            f"{d}: synthetic set not found (run lcgan-synthesize, or set data.generator_ckpt)"
        )
    missing = [f for f in SYNTHETIC_FILES if not (d / f).is_file()]
    if missing:
        raise SyntheticSetError(f"{d}: incomplete synthetic set, missing {missing}")
    try:
        manifest = json.loads((d / "manifest.json").read_text())
        source = manifest["source"]
        patients = [str(r["patient"]) for r in source]
        volumes = [str(r["volume"]) for r in source]
        slice_index = [int(r["slice"]) for r in source]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise SyntheticSetError(
            f"{d / 'manifest.json'}: malformed manifest ({type(e).__name__}: {e})"
        ) from e
    images = _open_array(d / "images.npy", manifest.get("arrays"))
    masks = _open_array(d / "masks.npy", manifest.get("arrays"))
    if images.ndim != 3 or images.shape != masks.shape or len(images) != len(source):
        raise SyntheticSetError(
            f"{d}: images.npy {images.shape}, masks.npy {masks.shape} and manifest ({len(source)} rows) disagree"
        )
    if images.dtype != np.float16 or masks.dtype != np.uint8:
        raise SyntheticSetError(
            f"{d}: images.npy must be float16 and masks.npy uint8, got {images.dtype} and {masks.dtype}"
        )
    return SliceSet(
        images, masks, np.asarray(patients), np.asarray(volumes), np.asarray(slice_index)
    )


def _open_array(path: Path, recorded: Any) -> np.ndarray:
    """Memory-map one array of a set (never unpickling); check it against the manifest's record."""
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as e:
        raise SyntheticSetError(
            f"{path}: refused: not a plain numeric .npy array ({e}); object arrays hold pickled "
            "Python objects and are never loaded"
        ) from e
    if recorded is None:  # a manifest written before shapes/dtypes were recorded
        return arr
    want = recorded.get(path.name) if isinstance(recorded, dict) else None
    if not isinstance(want, dict) or "shape" not in want or "dtype" not in want:
        raise SyntheticSetError(
            f"{path.parent / 'manifest.json'}: malformed 'arrays' entry for {path.name}"
        )
    if list(arr.shape) != list(want["shape"]) or str(arr.dtype) != str(want["dtype"]):
        raise SyntheticSetError(
            f"{path}: holds {arr.dtype} {list(arr.shape)}, the manifest records {want['dtype']} "
            f"{list(want['shape'])} (file replaced or truncated?)"
        )
    return arr


def match_synthetic_set(synthetic: SliceSet, train_slices: SliceSet, where: str) -> SliceSet:
    """The synthetic set reordered like ``train_slices``; error unless it covers them exactly."""
    syn_keys, train_keys = _keys(synthetic), _keys(train_slices)
    if synthetic.images.shape[1:] != train_slices.images.shape[1:]:
        raise SyntheticSetError(
            f"{where}: synthetic images are {synthetic.images.shape[1:]}, training slices "
            f"{train_slices.images.shape[1:]} (was it made at another data.image_size?)"
        )
    row = {}
    dupes = []
    for i, k in enumerate(syn_keys):
        if k in row:
            dupes.append(k)
        row[k] = i
    if dupes:
        raise SyntheticSetError(f"{where}: manifest lists slices more than once: {_show(dupes)}")
    missing = [k for k in train_keys if k not in row]
    extra = sorted(set(row) - set(train_keys))
    if missing or extra:
        raise SyntheticSetError(
            f"{where}: synthetic set does not cover exactly the {len(train_keys)} training slices of this "
            f"fraction: {len(missing)} training slices have no synthetic image"
            + (f" ({_show(missing)})" if missing else "")
            + f", {len(extra)} synthetic rows are not training slices"
            + (f" ({_show(extra)})" if extra else "")
            + " — was it synthesised for another data.fraction, seed or dataset?"
        )
    order = np.array([row[k] for k in train_keys], dtype=np.int64)
    masks = np.asarray(synthetic.masks[order])
    differ = np.flatnonzero((masks != train_slices.masks).reshape(len(order), -1).any(axis=1))
    if differ.size:
        raise SyntheticSetError(
            f"{where}: masks.npy: {differ.size} synthetic masks differ from their training masks "
            f"({_show([train_keys[i] for i in differ])}) — stale synthetic set?"
        )
    images = np.asarray(synthetic.images[order])
    bad = np.flatnonzero(~np.isfinite(images).reshape(len(order), -1).all(axis=1))
    if bad.size:
        raise SyntheticSetError(
            f"{where}: images.npy: {bad.size} synthetic images contain NaN/inf "
            f"({_show([train_keys[i] for i in bad])})"
        )
    return train_slices.with_arrays(images, masks)


def rows_for_source(slices: SliceSet, source: Sequence[dict[str, Any]]) -> np.ndarray:
    """Indices into `slices` of a manifest's (patient, volume, slice) rows, in manifest order."""
    index = {k: i for i, k in enumerate(_keys(slices))}
    rows, missing = [], []
    for src in source:
        key = (str(src["patient"]), str(src["volume"]), int(src["slice"]))
        if key in index:
            rows.append(index[key])
        else:
            missing.append(key)
    if missing:
        raise SyntheticSetError(f"{len(missing)} manifest rows are not in the dataset, e.g. {_show(missing)}")
    return np.asarray(rows, dtype=np.int64)


def read_manifest(synthetic_dir: str | Path) -> dict[str, Any]:
    """The manifest of a synthetic set folder (SyntheticSetError when missing or malformed)."""
    path = Path(synthetic_dir) / "manifest.json"
    if not path.is_file():
        raise SyntheticSetError(f"{path}: missing (not a complete synthetic set)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise SyntheticSetError(f"{path}: malformed manifest ({e})") from e


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
