"""2-D slices of a CT dataset (`SliceSet`), read through the slice cache, and a torch Dataset over them."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate, get_worker_info

from lcgan_lightning.constants import CLASS_NAMES, NUM_CLASSES
from lcgan_lightning.data import cache
from lcgan_lightning.data.layouts import Discovery, VolumeSource, discover
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
class SliceSet:
    """Slices of a dataset: images float16 [N,H,W] in [-1,1], masks uint8 [N,H,W] (our class ids).

    `skipped` lists what was left out ({"file", "reason"}); `notes` lists slices kept with a caveat
    (e.g. CT-ICH slices with several subtype flags under ``multi_label_slices=binary``); `defects`
    lists the defective cases left out under ``on_defect=skip`` ({"file", "defect"}).
    """

    images: np.ndarray
    masks: np.ndarray
    patients: np.ndarray
    volumes: np.ndarray
    slice_index: np.ndarray
    skipped: list[dict] = field(default_factory=list)
    notes: list[dict] = field(default_factory=list)
    defects: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.images)
        self.patients = np.asarray(self.patients, dtype=str)
        self.volumes = np.asarray(self.volumes, dtype=str)
        self.slice_index = np.asarray(self.slice_index, dtype=np.int32)
        for name in ("masks", "patients", "volumes", "slice_index"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"SliceSet.{name} has {len(getattr(self, name))} entries, images {n}")

    @classmethod
    def from_arrays(cls, images: np.ndarray, masks: np.ndarray, patients: Sequence[str] | None = None,
                    volumes: Sequence[str] | None = None, slice_index: Sequence[int] | None = None
                    ) -> SliceSet:
        """A SliceSet from plain arrays (e.g. synthetic or augmented pairs); ids default to ''/0.."""
        n = len(images)
        return cls(np.asarray(images), np.asarray(masks),
                   np.asarray(patients if patients is not None else [""] * n, dtype=str),
                   np.asarray(volumes if volumes is not None else [""] * n, dtype=str),
                   np.asarray(slice_index if slice_index is not None else np.arange(n), dtype=np.int32))

    def with_arrays(self, images: np.ndarray, masks: np.ndarray) -> SliceSet:
        """New images/masks paired row for row with these slices' ids (augmented or synthetic copies)."""
        return SliceSet(np.asarray(images), np.asarray(masks), self.patients.copy(), self.volumes.copy(),
                        self.slice_index.copy())

    def __len__(self) -> int:
        return len(self.images)

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    def select(self, idx: np.ndarray | Sequence[int] | Sequence[bool]) -> SliceSet:
        """Subset by integer indices or a boolean mask (arrays are copied into memory)."""
        idx = np.asarray(idx)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        return SliceSet(np.asarray(self.images[idx]), np.asarray(self.masks[idx]), self.patients[idx],
                        self.volumes[idx], self.slice_index[idx], list(self.skipped), list(self.notes),
                        list(self.defects))

    def for_patients(self, ids: Iterable[str]) -> SliceSet:
        """Slices of the given patients, in dataset order."""
        return self.select(np.isin(self.patients, np.asarray(list(ids), dtype=str)))

    def patient_ids(self) -> list[str]:
        """Distinct patient ids, sorted."""
        return sorted({str(p) for p in self.patients})

    def pixel_counts(self, chunk: int = 512) -> np.ndarray:
        """int64 [N, NUM_CLASSES]: pixels of each class in each slice."""
        out = np.zeros((len(self), NUM_CLASSES), dtype=np.int64)
        for start in range(0, len(self), chunk):
            m = np.asarray(self.masks[start:start + chunk]).reshape(-1, self.masks.shape[1] * self.masks.shape[2])
            for c in range(NUM_CLASSES):
                out[start:start + chunk, c] = (m == c).sum(axis=1)
        return out

    def classes_per_patient(self) -> dict[str, set[int]]:
        """Patient -> set of lesion class ids present in any of its slices."""
        present = self.pixel_counts()[:, 1:] > 0
        out: dict[str, set[int]] = {p: set() for p in self.patient_ids()}
        for p, row in zip(self.patients, present, strict=True):
            out[str(p)].update(int(c) + 1 for c in np.flatnonzero(row))
        return out


@dataclass
class Settings:
    """Preprocessing settings (part of the cache key)."""

    layout: str = "bhsd"
    image_size: int = 256
    window: tuple[float, float] = (40.0, 80.0)
    lesion_only: bool = True
    multi_label_slices: str = "skip"
    hu_offset: str | int = "auto"

    def as_dict(self) -> dict[str, Any]:
        return {"layout": self.layout, "image_size": int(self.image_size), "window": list(self.window),
                "lesion_only": bool(self.lesion_only), "multi_label_slices": self.multi_label_slices,
                "hu_offset": self.hu_offset}


def _ctich_classes(src: VolumeSource, mapped: np.ndarray, settings: Settings
                   ) -> tuple[np.ndarray, np.ndarray, list[dict], list[dict]]:
    """Give each CT-ICH lesion slice its class from the CSV; returns masks, keep flags, skipped, notes."""
    keep = np.ones(len(mapped), dtype=bool)
    skipped: list[dict] = []
    notes: list[dict] = []
    flags = src.slice_flags or {}
    for k in np.flatnonzero(mapped.any(axis=(1, 2))):
        classes = flags.get(int(k))
        names = [CLASS_NAMES[c] for c in classes or []]
        where = f"slice {k} (SliceNumber {k + 1})"
        if classes is None:
            reason = f"{where}: lesion pixels but no row in the CT-ICH CSV"
        elif not classes:
            reason = f"{where}: lesion pixels but no subtype flag in the CT-ICH CSV"
        elif len(classes) == 1:
            mapped[k][mapped[k] > 0] = classes[0]
            continue
        elif settings.multi_label_slices == "binary":
            mapped[k][mapped[k] > 0] = classes[0]
            notes.append({"file": str(src.label), "reason": f"{where}: several subtype flags {names}; "
                          f"kept for binary use, lesion labelled {CLASS_NAMES[classes[0]]}"})
            continue
        else:
            reason = f"{where}: several subtype flags {names} (multi_label_slices=skip)"
        keep[k] = False
        skipped.append({"file": str(src.label), "reason": reason})
    return mapped, keep, skipped, notes


def read_volume_slices(src: VolumeSource, settings: Settings) -> dict[str, Any]:
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
        mapped, keep, skipped, notes = _ctich_classes(src, mapped, settings)
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


def build_slices(found: Discovery, settings: Settings, root: Path,
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
    layout: str = "bhsd",
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
    """Read a dataset's slices via the cache (build the cache entry on first use).

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
    found = discover(layout, root, label_map)
    settings = Settings(layout, int(image_size), resolve_window(window), bool(lesion_only),
                        multi_label_slices, hu_offset)
    entry = None
    if cache_dir is not None:
        files = [p for s in found.sources for p in (s.image, s.label)] + found.extra_files
        key_settings = settings.as_dict() | {"value_maps": sorted({str(sorted(s.value_map.items()))
                                                                   for s in found.sources})}
        entry = cache.entry_dir(cache_dir, layout, cache.cache_key(files, key_settings))
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
    arrays, meta = cache.read_entry(entry)
    return SliceSet(arrays["images"], arrays["masks"], sset.patients, sset.volumes, arrays["slice_index"],
                    sset.skipped, sset.notes, defects)


class SliceDataset(Dataset):
    """torch Dataset over a SliceSet yielding the sample dict of the shared interface.

    `transform(image float32 [H,W] in [-1,1], mask uint8 [H,W]) -> (image, mask)` is applied first
    (e.g. online augmentation). `onehot=False` ("lean" samples: image float16, mask uint8, no
    mask_onehot) is for loaders that batch with `collate_slices`; the models build the float32 image,
    int64 mask and one-hot on their device.
    """

    def __init__(self, slices: SliceSet, transform: Callable[[np.ndarray, np.ndarray], tuple] | None = None,
                 onehot: bool = True):
        self.slices = slices
        self.transform = transform
        self.onehot = onehot

    def __len__(self) -> int:
        return len(self.slices)

    def __getitem__(self, i: int) -> dict[str, Any]:
        s = self.slices
        image = np.array(s.images[i])  # copy out of the (read-only) memmap
        mask = np.array(s.masks[i], dtype=np.uint8)
        if self.transform is not None:
            image, mask = self.transform(image.astype(np.float32), mask)
            image, mask = np.ascontiguousarray(image), np.ascontiguousarray(mask, dtype=np.uint8)
        sample = {"patient": str(s.patients[i]), "volume": str(s.volumes[i]), "slice": int(s.slice_index[i])}
        if not self.onehot:
            return {"image": torch.from_numpy(image)[None], "mask": torch.from_numpy(mask), **sample}
        return {
            "image": torch.from_numpy(image).to(torch.float32)[None],
            "mask": torch.from_numpy(mask).to(torch.int64),
            "mask_onehot": torch.from_numpy(one_hot(mask)),
            **sample,
        }


_CLASS_IDS = np.arange(NUM_CLASSES, dtype=np.uint8)


def one_hot(masks: np.ndarray) -> np.ndarray:
    """uint8 class ids [..., H, W] -> float32 one-hot [..., NUM_CLASSES, H, W].

    numpy's compare is several times faster here than torch's broadcast compare on CPU.
    """
    masks = np.asarray(masks, dtype=np.uint8)
    return (masks[..., None, :, :] == _CLASS_IDS.reshape(-1, 1, 1)).astype(np.float32)


def batch_tensor(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An empty batch tensor; inside a DataLoader worker in shared memory (as default_collate
    allocates), so the batch is not copied again when it is sent to the main process."""
    out = torch.empty(shape, dtype=dtype)
    return out.share_memory_() if get_worker_info() is not None else out


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def collate_slices(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch SliceDataset samples (full or lean, mixed) as they are stored: image [B,1,H,W] float16
    (float32 when a sample is, e.g. online-augmented), mask uint8 [B,H,W] class ids, each integer key
    (`slice`) int64 [B], the rest as default_collate. The models turn these into float32 / int64 / the
    one-hot after the transfer to their device (`on_after_batch_transfer`): a batch of 32 at 256² is
    6 MB instead of 72 MB.

    Image, mask and integer keys are views of ONE byte buffer: a worker hands each shared-memory
    storage to the main process separately (a file descriptor each), so one storage instead of three
    makes the hand-over, the limit of a 1-worker loader, cheaper (README "Data", "Batches")."""
    b, (h, w) = len(samples), tuple(samples[0]["mask"].shape)
    dtype = torch.float16 if all(s["image"].dtype == torch.float16 for s in samples) else torch.float32
    int_keys = [k for k, v in samples[0].items()
                if k not in ("image", "mask", "mask_onehot") and _is_int(v) and all(_is_int(s[k]) for s in samples)]
    # layout: int64 keys first (8-byte aligned), then the image, then the mask
    n_int, n_img = 8 * b * len(int_keys), b * h * w * dtype.itemsize
    buf = batch_tensor((n_int + n_img + b * h * w,), torch.uint8)
    ints = buf[:n_int].view(torch.int64).view(len(int_keys), b)
    ints.copy_(torch.tensor([[s[k] for s in samples] for k in int_keys], dtype=torch.int64).view(len(int_keys), b))
    images = buf[n_int:n_int + n_img].view(dtype).view(b, 1, h, w)
    torch.stack([s["image"].to(dtype) for s in samples], out=images)
    masks = buf[n_int + n_img:].view(b, h, w)
    torch.stack([s["mask"].to(torch.uint8) for s in samples], out=masks)
    skip = {"image", "mask", "mask_onehot", *int_keys}
    rest = default_collate([{k: v for k, v in s.items() if k not in skip} for s in samples])
    return {"image": images, "mask": masks, **dict(zip(int_keys, ints, strict=True)), **rest}
