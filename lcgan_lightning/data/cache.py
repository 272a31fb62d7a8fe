"""Preprocessed-slice cache: one .npy per array, memory-mapped on read, keyed by sources + settings.

A cache entry is a folder ``<cache_dir>/<dataset format>-<key>/`` holding ``images.npy`` (float16 [N,H,W]),
``masks.npy`` (uint8 [N,H,W]), ``slice_index.npy`` (int32 [N]) and ``meta.json`` (patients, volumes,
skipped, notes, settings, source list, and each array's shape and dtype). Arrays are read with
``allow_pickle=False`` and checked against the recorded shapes and dtypes. The key hashes every
source file's path, size and mtime and
the preprocessing settings, so editing a file or a setting makes a new entry. Entries are written into
a temporary folder and renamed into place, so a crashed or concurrent writer never leaves a half entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from lcgan_lightning.errors import UserError

CACHE_VERSION = 1
ARRAYS = ("images", "masks", "slice_index")


def cache_key(files: list[Path], settings: dict[str, Any]) -> str:
    """sha256 over (resolved path, size, mtime_ns) of every source file and the settings."""
    entries = []
    for path in sorted(Path(p).resolve() for p in files):
        st = path.stat()
        entries.append([str(path), st.st_size, st.st_mtime_ns])
    blob = json.dumps({"version": CACHE_VERSION, "files": entries, "settings": settings},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def entry_dir(cache_dir: str | Path, dataset_format: str, key: str) -> Path:
    """Folder of the cache entry for `key`."""
    return Path(cache_dir) / f"{dataset_format}-{key[:24]}"


class CacheEntryError(UserError, ValueError):
    """A cache entry whose arrays are unreadable, pickled, or differ from its meta.json."""

    hint = "delete the cache entry folder named above; the next run rebuilds it from the dataset"


def _open_array(path: Path, recorded: dict[str, Any] | None) -> np.ndarray:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as e:
        raise CacheEntryError(
            f"{path}: refused: not a plain numeric .npy array ({e}); "
            f"delete {path.parent} to rebuild it"
        ) from e
    if recorded is not None and (
        list(arr.shape) != list(recorded["shape"]) or str(arr.dtype) != recorded["dtype"]
    ):
        raise CacheEntryError(
            f"{path}: holds {arr.dtype} {list(arr.shape)}, meta.json records {recorded['dtype']} "
            f"{list(recorded['shape'])}; delete {path.parent} to rebuild it"
        )
    return arr


def read_entry(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """Arrays (memory-mapped, read-only) and meta of a complete entry, or None if there is none.

    Raises CacheEntryError (naming the file) for an array that is pickled or differs from meta.json.
    """
    meta_path = path / "meta.json"
    if not meta_path.is_file():
        return None
    meta = json.loads(meta_path.read_text())
    recorded = meta.get("arrays") or {}  # older entries record no shapes
    arrays = {name: _open_array(path / f"{name}.npy", recorded.get(name)) for name in ARRAYS}
    return arrays, meta


def write_entry(path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Path:
    """Write an entry atomically (temp folder in the same cache dir, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".tmp-{path.name}-"))
    try:
        shapes = {}
        for name in ARRAYS:
            arr = np.asarray(arrays[name])
            np.save(tmp / f"{name}.npy", arr, allow_pickle=False)
            shapes[name] = {"shape": list(arr.shape), "dtype": str(arr.dtype)}
        meta = {**meta, "arrays": shapes}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
        try:
            os.rename(tmp, path)
        except OSError:
            # another process finished the same entry first; keep theirs
            if not (path / "meta.json").is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path
