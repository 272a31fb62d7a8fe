"""The synthetic-set format: one module writes it, reads it and checks it against a fraction's slices.

    <dir>/images.npy     float16 [N, H, W], synthetic CT windowed to [-1, 1]
    <dir>/masks.npy      uint8   [N, H, W], the conditioning masks (our class ids)
    <dir>/manifest.json  {"format": "lcgan-synthetic-v1", "version": 2, "kind": "redraw"|"novel",
                          "per_mask": k | null, "n": N, "image_size": H,
                          "arrays": {"images.npy": {"shape": [N, H, W], "dtype": "float16"},
                                     "masks.npy": {"shape": [N, H, W], "dtype": "uint8"}},
                          "source": [{"patient": str, "volume": str, "slice": int, "copy": int} | null, ...],
                          ...free metadata (checkpoint + sha256, seed, fraction, dropout, ...)}
    <dir>/previews/      optional figures (not part of the format)

Two kinds of set (``kind``; version-1 manifests have no ``kind`` and are ``redraw`` sets, every
row copy 0):

* ``redraw``: row i is a synthetic partner of the training slice ``source[i]`` (patient, volume,
  slice index along the acquisition axis), the ``copy``-th image generated for its mask. Rows are
  copy-major: copy 0 of every training slice, then copy 1, ...; ``per_mask`` = k copies.
* ``novel``: rows hold NEW masks (:mod:`lcgan_lightning.data.mask_bank`) and have no source slice
  (``source[i]`` is null, allowed for this kind only). ``mask_source`` lists the training slices
  the masks were made from (the fraction's training masks, in bank order) and
  ``mask_source_sha256`` hashes those masks; ``per_mask`` = k new masks per training mask
  (n = k x len(mask_source)), or null for a set of an explicit size. ``mask_bank`` holds the
  bank's config, seed and rejection counts; ``provenance[i]`` how row i was made.

Both kinds are prefix-stable: the first k copies (redraw) or the first k x len(mask_source) rows
(novel) of a set made with K >= k equal the set made with k, so a set serves any
``data.synthetic_per_mask`` up to its own (`load_synthetic_rows`).

The arrays are read with ``allow_pickle=False`` (an object array, which would unpickle Python
objects, is refused) and checked against the shapes and dtypes the manifest records (manifests
written before ``arrays`` existed are checked against the format alone). A set is written into a
temporary folder and renamed, so a folder is either a complete set or absent. When used for
training, each copy of a redraw set must cover EXACTLY the training slices of the configured
fraction (same keys, same masks), and a novel set must have been made from exactly them;
anything else is an error naming the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lcgan_lightning.data.slices import SliceSet
from lcgan_lightning.errors import UserError

MANIFEST_VERSION = 2
KINDS = ("redraw", "novel")
NOVEL_PATIENT = "(novel)"  # patient id of novel rows in a SliceSet (they have no source slice)

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


def _write(out: Path, images: np.ndarray, masks: np.ndarray, manifest: dict[str, Any]) -> Path:
    """Arrays + manifest into a temporary folder, then renamed to ``out``."""
    if not np.isfinite(images).all():
        raise SyntheticSetError(f"{out}: synthetic images contain NaN/inf")
    manifest = {
        **manifest,
        "format": SYNTHETIC_FORMAT,
        "version": MANIFEST_VERSION,
        "n": int(len(images)),
        "image_size": int(images.shape[-1]),
        "arrays": {
            name: {"shape": list(images.shape), "dtype": dtype}
            for name, dtype in ARRAY_DTYPES.items()
        },
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


def write_synthetic_set(
    out_dir: str | Path, images: np.ndarray, masks: np.ndarray, source: SliceSet,
    copies: Sequence[int] | np.ndarray | None = None, **meta: Any
) -> Path:
    """Write a ``redraw`` synthetic set (format in the module docstring).

    ``images`` [N,H,W] in [-1,1] are stored as float16; row i belongs to ``source``'s slice i and
    is its ``copies[i]``-th image (default 0 for every row). Written into a temporary folder and
    renamed, so ``out_dir`` is either complete or absent.
    """
    out = Path(out_dir)
    images = np.asarray(images)
    masks = np.asarray(masks, dtype=np.uint8)
    if images.shape != masks.shape or images.ndim != 3 or len(images) != len(source):
        raise SyntheticSetError(
            f"{out}: images {images.shape}, masks {masks.shape} and {len(source)} source slices do not match"
        )
    copies = np.zeros(len(images), np.int64) if copies is None else np.asarray(copies, np.int64)
    if copies.shape != (len(images),) or (copies < 0).any():
        raise SyntheticSetError(f"{out}: copies must be one index >= 0 per row, got shape {copies.shape}")
    source_rows = [{"patient": p, "volume": v, "slice": s, "copy": int(c)}
                   for (p, v, s), c in zip(_keys(source), copies, strict=True)]
    per_mask = int(copies.max()) + 1 if len(copies) else 1
    return _write(out, images, masks, {**meta, "kind": "redraw", "per_mask": per_mask, "source": source_rows})


def masks_sha256(masks: np.ndarray) -> str:
    """Hex SHA-256 of a uint8 mask stack (shape included)."""
    masks = np.ascontiguousarray(masks, dtype=np.uint8)
    h = hashlib.sha256(repr(masks.shape).encode())
    h.update(masks.tobytes())
    return h.hexdigest()


def write_novel_set(
    out_dir: str | Path, images: np.ndarray, masks: np.ndarray, mask_source: SliceSet,
    per_mask: int | None, provenance: Sequence[dict[str, Any]], **meta: Any
) -> Path:
    """Write a ``novel`` synthetic set: rows hold new masks made from the training slices
    ``mask_source`` (no source slice per row); ``provenance`` has one dict per row."""
    out = Path(out_dir)
    images = np.asarray(images)
    masks = np.asarray(masks, dtype=np.uint8)
    if images.shape != masks.shape or images.ndim != 3 or len(provenance) != len(images):
        raise SyntheticSetError(
            f"{out}: images {images.shape}, masks {masks.shape} and {len(provenance)} provenance rows do not match"
        )
    return _write(out, images, masks, {
        **meta, "kind": "novel", "per_mask": None if per_mask is None else int(per_mask),
        "source": [None] * len(images),
        "mask_source": [{"patient": p, "volume": v, "slice": s} for p, v, s in _keys(mask_source)],
        "mask_source_sha256": masks_sha256(np.asarray(mask_source.masks)),
        "provenance": list(provenance),
    })


def manifest_kind(manifest: Mapping[str, Any]) -> str:
    """``redraw`` or ``novel`` (version-1 manifests: redraw)."""
    kind = manifest.get("kind", "redraw")
    if kind not in KINDS:
        raise SyntheticSetError(f"manifest kind {kind!r} is not one of {KINDS}")
    return kind


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
        novel = manifest_kind(manifest) == "novel"
        if any(r is None for r in source) and not novel:
            raise ValueError("rows without a source slice (null) are allowed in novel sets only")
        patients = [NOVEL_PATIENT if r is None else str(r["patient"]) for r in source]
        volumes = [NOVEL_PATIENT if r is None else str(r["volume"]) for r in source]
        slice_index = [i if r is None else int(r["slice"]) for i, r in enumerate(source)]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, SyntheticSetError) as e:
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


def load_synthetic_rows(synthetic_dir: str | Path, train_slices: SliceSet, per_mask: int = 1,
                        kind: str = "redraw") -> SliceSet:
    """The synthetic pairs a segmenter trains with: ``per_mask`` copies per training slice of a
    ``redraw`` set (copy-major, each copy in ``train_slices`` order), or the first
    ``per_mask`` x len(train_slices) rows of a ``novel`` set made from exactly ``train_slices``.

    A set made with K >= ``per_mask`` serves (its prefix equals the set made with ``per_mask``);
    anything else (other kind, fewer copies, other fraction or data) raises naming the file.
    """
    d = Path(synthetic_dir)
    if int(per_mask) < 1:
        raise SyntheticSetError(f"data.synthetic_per_mask={per_mask}: must be >= 1")
    per_mask = int(per_mask)
    synthetic = read_synthetic_set(d)
    manifest = read_manifest(d)
    where = str(d / "manifest.json")
    found = manifest_kind(manifest)
    if found != kind:
        hint = ("data.augment=gan|both read redraw sets (lcgan-synthesize masks=train) from "
                "data.synthetic_dir; gan_novel|both_novel read novel sets (masks=novel) from "
                "data.novel_dir")
        raise SyntheticSetError(f"{where}: a {found!r} synthetic set, this needs a {kind!r} one ({hint})")
    if kind == "novel":
        return _novel_rows(synthetic, manifest, train_slices, per_mask, where)
    copies = np.asarray([int(r.get("copy", 0)) for r in manifest["source"]], dtype=np.int64)
    have = int(copies.max()) + 1 if len(copies) else 0
    if have < per_mask:
        raise SyntheticSetError(
            f"{where}: holds {have} synthetic image(s) per training mask, data.synthetic_per_mask="
            f"{per_mask} needs {per_mask} (re-run lcgan-synthesize with data.synthetic_per_mask={per_mask})"
        )
    parts = [match_synthetic_set(synthetic.select(np.flatnonzero(copies == c)), train_slices,
                                 f"{where} (copy {c})" if have > 1 else where) for c in range(per_mask)]
    return SliceSet(np.concatenate([p.images for p in parts]), np.concatenate([p.masks for p in parts]),
                    np.concatenate([p.patients for p in parts]), np.concatenate([p.volumes for p in parts]),
                    np.concatenate([p.slice_index for p in parts]))


def _novel_rows(synthetic: SliceSet, manifest: dict[str, Any], train_slices: SliceSet, per_mask: int,
                where: str) -> SliceSet:
    try:
        src = [(str(r["patient"]), str(r["volume"]), int(r["slice"])) for r in manifest["mask_source"]]
        recorded_sha = str(manifest["mask_source_sha256"])
    except (KeyError, TypeError, ValueError) as e:
        raise SyntheticSetError(f"{where}: malformed novel-set manifest ({type(e).__name__}: {e})") from e
    train_keys = _keys(train_slices)
    index = {k: i for i, k in enumerate(train_keys)}
    src_set = set(src)
    missing = [k for k in train_keys if k not in src_set]
    extra = [k for k in src if k not in index]
    if missing or extra or len(src) != len(train_keys):
        raise SyntheticSetError(
            f"{where}: its new masks were made from {len(src)} training slices, this fraction has "
            f"{len(train_keys)}: {len(missing)} of them not among the set's sources"
            + (f" ({_show(missing)})" if missing else "") + f", {len(extra)} sources are not training slices"
            + (f" ({_show(extra)})" if extra else "") + " — was it made for another data.fraction, seed or dataset?"
        )
    order = np.array([index[k] for k in src], dtype=np.int64)
    if masks_sha256(np.asarray(train_slices.masks)[order]) != recorded_sha:
        raise SyntheticSetError(f"{where}: the training masks differ from those the new masks were made "
                                "from (mask_source_sha256) — stale set or other data.image_size?")
    recorded = manifest.get("per_mask")
    need = per_mask * len(train_keys)
    if recorded is None and per_mask != 1:
        raise SyntheticSetError(f"{where}: a novel set of an explicit size (novel.n={len(synthetic)}) is "
                                f"used whole; data.synthetic_per_mask={per_mask} needs a set made with it")
    if recorded is not None and (int(recorded) < per_mask or len(synthetic) < need):
        raise SyntheticSetError(
            f"{where}: holds {len(synthetic)} rows ({recorded} new mask(s) per training mask), "
            f"data.synthetic_per_mask={per_mask} needs {need}"
        )
    rows = synthetic if recorded is None else synthetic.select(np.arange(need))
    if synthetic.images.shape[1:] != train_slices.images.shape[1:]:
        raise SyntheticSetError(f"{where}: synthetic images are {synthetic.images.shape[1:]}, training "
                                f"slices {train_slices.images.shape[1:]}")
    images = np.asarray(rows.images)
    if not np.isfinite(images).all():
        raise SyntheticSetError(f"{where}: images.npy contains NaN/inf")
    return SliceSet(images, np.asarray(rows.masks), rows.patients, rows.volumes, rows.slice_index)


def rows_for_source(slices: SliceSet, source: Sequence[dict[str, Any]]) -> np.ndarray:
    """Indices into `slices` of a manifest's (patient, volume, slice) rows, in manifest order."""
    index = {k: i for i, k in enumerate(_keys(slices))}
    rows, missing = [], []
    for src in source:
        if src is None:
            raise SyntheticSetError("a novel set's rows have no source slice (regenerate it with its mask bank)")
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
