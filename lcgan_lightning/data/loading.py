"""Read a dataset's slices: each volume checked and preprocessed, the whole set through the slice cache."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lcgan_lightning.data import cache
from lcgan_lightning.data.formats import Discovery, VolumeSource, ctich_slice_classes, discover
from lcgan_lightning.data.preprocess import (
    acquisition_axis,
    image_to_hu,
    load_nifti,
    read_labels,
    resize_images,
    resize_masks,
    resolve_window,
    to_slices,
    window_to_unit,
)
from lcgan_lightning.data.slices import SliceSet
from lcgan_lightning.data.validation import (
    DataConfigError,
    DatasetError,
    check_integer_labels,
    check_label_values,
    check_same_geometry,
    defect_of,
    defects_error,
)

MULTI_LABEL_MODES = ("skip", "binary")
ON_DEFECT = ("error", "skip")


@dataclass
class PreprocessSettings:
    """Preprocessing settings (part of the cache key)."""

    dataset_format: str = "bhsd"
    image_size: int = 256
    window: tuple[float, float] = (40.0, 80.0)
    lesion_only: bool = True
    multi_label_slices: str = "skip"
    hu_offset: str | int = "auto"

    def as_dict(self) -> dict[str, Any]:
        # "layout": the key existing cache entries were hashed with (renaming it would rebuild every cache)
        return {"layout": self.dataset_format, "image_size": int(self.image_size), "window": list(self.window),
                "lesion_only": bool(self.lesion_only), "multi_label_slices": self.multi_label_slices,
                "hu_offset": self.hu_offset}


def read_volume_slices(src: VolumeSource, settings: PreprocessSettings) -> dict[str, Any]:
    """Read, check and preprocess one image/label pair into its kept slices."""
    img, lab = load_nifti(src.image), load_nifti(src.label)
    check_same_geometry(src.image, src.label, img.shape[:3], lab.shape[:3], img.affine, lab.affine)
    hu = image_to_hu(src.image, img, settings.hu_offset)
    labels = check_integer_labels(src.label, read_labels(src.label, lab))
    check_label_values(src.label, labels, src.value_map)
    axis = acquisition_axis(img.affine)
    if src.slice_flags is not None and axis != 2:
        raise DatasetError(f"{src.image}: CT-ICH CSV slice numbers need slices along the 3rd axis, "
                           f"but the largest spacing is along axis {axis}")
    lut = np.zeros(max(src.value_map) + 1, dtype=np.uint8)
    for value, cid in src.value_map.items():
        lut[value] = cid
    mapped = lut[to_slices(labels, img.affine, axis)]
    del labels
    skipped: list[dict] = []
    notes: list[dict] = []
    keep = np.ones(len(mapped), dtype=bool)
    if src.slice_flags is not None:
        mapped, keep, skipped, notes = ctich_slice_classes(src, mapped, settings.multi_label_slices)
    lesion = mapped.any(axis=(1, 2))
    if settings.lesion_only:
        keep &= lesion
    idx = np.flatnonzero(keep)
    hu_slices = to_slices(hu, img.affine, axis)[idx]
    level, width = settings.window
    images = resize_images(window_to_unit(hu_slices, level, width), settings.image_size)
    masks = resize_masks(mapped[idx], settings.image_size)
    # a lesion can vanish when shrinking (nearest); never let that pass silently
    lost = lesion[idx] & ~masks.any(axis=(1, 2))
    for j in np.flatnonzero(lost):
        k = int(idx[j])
        text = (f"slice {k}: lesion of {int((mapped[k] > 0).sum())} px vanished when resizing to "
                f"{settings.image_size} px")
        (skipped if settings.lesion_only else notes).append({"file": str(src.label), "reason": text})
    if settings.lesion_only and lost.any():
        idx, images, masks = idx[~lost], images[~lost], masks[~lost]
    return {"images": images.astype(np.float16), "masks": masks, "slice_index": idx.astype(np.int32),
            "skipped": skipped, "notes": notes, "total_slices": len(mapped)}


def build_slices(found: Discovery, settings: PreprocessSettings, root: Path,
                 progress: Callable[[int, int, str], None] | None = None) -> tuple[SliceSet, dict]:
    """Read every volume of a discovered dataset (no cache); a defective volume is listed in the
    stats' "defects" ({"file", "defect"}) and left out, and the others are read."""
    parts: list[dict[str, Any]] = []
    patients: list[str] = []
    volumes: list[str] = []
    skipped, notes, defects = list(found.skipped), [], []
    total = 0
    for i, src in enumerate(found.sources):
        if progress:
            progress(i, len(found.sources), src.volume)
        try:
            part = read_volume_slices(src, settings)
        except DatasetError as err:
            defects.append(defect_of(err, src.image))
            continue
        parts.append(part)
        patients += [src.patient] * len(part["images"])
        volumes += [src.volume] * len(part["images"])
        skipped += part["skipped"]
        notes += part["notes"]
        total += part["total_slices"]
    n = sum(len(p["images"]) for p in parts)
    if n == 0 and (defects or found.defects):
        raise defects_error(found.defects + defects, root)
    if n == 0:
        raise DatasetError(
            f"{root}: no usable slice in the whole dataset ({len(found.sources)} volumes, {total} slices, "
            f"lesion_only={settings.lesion_only}, {len(skipped)} skipped)"
        )
    images = np.concatenate([p["images"] for p in parts])
    masks = np.concatenate([p["masks"] for p in parts])
    slice_index = np.concatenate([p["slice_index"] for p in parts])
    sset = SliceSet(images, masks, np.asarray(patients, dtype=str), np.asarray(volumes, dtype=str),
                    slice_index, skipped, notes)
    return sset, {"volumes_read": len(found.sources), "total_slices": total, "defects": defects}


def load_slices(
    root: str | Path,
    dataset_format: str = "bhsd",
    image_size: int = 256,
    window: str | Sequence[float] | Mapping[str, float] = "brain",
    lesion_only: bool = True,
    cache_dir: str | Path | None = None,
    label_map: Mapping | None = None,
    multi_label_slices: str = "skip",
    hu_offset: str | int = "auto",
    progress: Callable[[int, int, str], None] | None = None,
    on_defect: str = "error",
) -> SliceSet:
    """Read a dataset's slices in `dataset_format` (data.dataset_format) via the cache (build the cache entry on
    first use).

    Every case is checked. Defective cases (see validation.py) raise one DatasetError listing them
    all (``on_defect="error"``), or are left out and listed in the SliceSet's `defects` ("skip").
    The cache entry holds the healthy cases and the read defects, whatever `on_defect`.
    """
    if on_defect not in ON_DEFECT:
        raise DataConfigError(f"data.on_defect: {on_defect!r} is not one of {ON_DEFECT}")
    if multi_label_slices not in MULTI_LABEL_MODES:
        raise DataConfigError(f"data.multi_label_slices: {multi_label_slices!r} is not one of {MULTI_LABEL_MODES}")
    if int(image_size) < 8:
        raise DataConfigError(f"data.image_size: {image_size} is too small (>= 8)")
    root = Path(root)
    found = discover(dataset_format, root, label_map)
    settings = PreprocessSettings(dataset_format, int(image_size), resolve_window(window), bool(lesion_only),
                                  multi_label_slices, hu_offset)
    entry = None
    if cache_dir is not None:
        files = [p for s in found.sources for p in (s.image, s.label)] + found.extra_files
        key_settings = settings.as_dict() | {"value_maps": sorted({str(sorted(s.value_map.items()))
                                                                   for s in found.sources})}
        entry = cache.entry_dir(cache_dir, dataset_format, cache.cache_key(files, key_settings))
        hit = cache.read_entry(entry)
        if hit is not None:
            arrays, meta = hit
            defects = found.defects + meta.get("defects", [])
            if defects and on_defect == "error":
                raise defects_error(defects, root)
            return SliceSet(arrays["images"], arrays["masks"], np.asarray(meta["patients"], dtype=str),
                            np.asarray(meta["volumes"], dtype=str), arrays["slice_index"],
                            meta["skipped"], meta["notes"], defects)
    sset, stats = build_slices(found, settings, root, progress)
    defects = found.defects + stats["defects"]
    sset.defects = defects
    if entry is None:
        if defects and on_defect == "error":
            raise defects_error(defects, root)
        return sset
    meta = {"patients": sset.patients.tolist(), "volumes": sset.volumes.tolist(), "skipped": sset.skipped,
            "notes": sset.notes, "settings": settings.as_dict(), "root": str(root.resolve()), **stats}
    cache.write_entry(entry, {"images": sset.images, "masks": sset.masks,
                              "slice_index": sset.slice_index}, meta)
    if defects and on_defect == "error":
        raise defects_error(defects, root)
    written = cache.read_entry(entry)
    assert written is not None  # the complete entry just written
    arrays, meta = written
    return SliceSet(arrays["images"], arrays["masks"], sset.patients, sset.volumes, arrays["slice_index"],
                    sset.skipped, sset.notes, defects)
