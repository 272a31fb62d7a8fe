"""From a NIfTI file to model-ready 2-D slices: HU, windowing, slicing, orientation, resizing.

HU rules (`image_to_hu`):
- the header carries scaling (scl_slope/scl_inter not 1/0): HU = slope * stored + inter (nibabel applies it);
- unsigned integer storage without scaling (real BHSD uint16): HU = stored - 1024;
- signed integer storage without scaling: HU = stored, unless the volume has no negative value at all,
  which a head CT (air at -1000 HU around the head) cannot have in HU: then it is offset storage and
  HU = stored - 1024 (`hu_offset="auto"`; pass an integer to force an offset);
- float storage: HU = stored.

Slices are cut along the acquisition axis (the one with the largest voxel spacing; the 3rd axis when
spacing is isotropic) and never resampled through it. In-plane they are shown in radiological
convention whatever the file's orientation: anterior (or superior) at the top, patient's right on
the image's left. Non-square slices are padded to a square with air, then resized to `image_size`:
images bilinear with antialiasing (area-like when shrinking), masks nearest ("nearest-exact").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import cast

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F
from nibabel.arrayproxy import ArrayProxy

from lcgan_lightning.constants import UINT16_HU_OFFSET, WINDOWS
from lcgan_lightning.data.validation import DataConfigError, DatasetError, check_finite_image

AIR = -1.0  # windowed value of air (and of padding) in [-1, 1]


def load_nifti(path: Path) -> nib.Nifti1Image:
    """nibabel.load with a DatasetError naming the file for unreadable or non-3-D files."""
    try:
        img = cast(nib.Nifti1Image, nib.load(str(path)))  # .nii/.nii.gz: a Nifti1Image (or its subclass Nifti2Image)
        shape = img.shape
    except Exception as exc:  # nibabel raises many types for corrupt/truncated files
        raise DatasetError(f"{path}: unreadable or corrupt file ({type(exc).__name__}: {exc})") from exc
    if len(shape) < 3 or any(s != 1 for s in shape[3:]):
        raise DatasetError(f"{path}: expected a 3-D volume, got shape {tuple(shape)}")
    return img


def _read(path: Path, img: nib.Nifti1Image, scaled: bool) -> np.ndarray:
    try:
        data = np.asarray(img.dataobj) if scaled else np.asarray(cast(ArrayProxy, img.dataobj).get_unscaled())
    except Exception as exc:
        raise DatasetError(f"{path}: unreadable or corrupt file ({type(exc).__name__}: {exc})") from exc
    return data.reshape(data.shape[:3])


def has_scaling(img: nib.Nifti1Image) -> bool:
    """True when the header's scl_slope/scl_inter change stored values (nibabel treats NaN/0 as none)."""
    slope = getattr(img.dataobj, "slope", 1.0)
    inter = getattr(img.dataobj, "inter", 0.0)
    slope = 1.0 if slope is None or not np.isfinite(slope) or slope == 0 else float(slope)
    inter = 0.0 if inter is None or not np.isfinite(inter) else float(inter)
    return slope != 1.0 or inter != 0.0


def image_to_hu(path: Path, img: nib.Nifti1Image, hu_offset: str | int = "auto") -> np.ndarray:
    """Return the volume in HU as float32 (see module docstring for the rules)."""
    dtype = img.get_data_dtype()
    if has_scaling(img):
        hu = _read(path, img, scaled=True).astype(np.float32)
    else:
        raw = _read(path, img, scaled=False)
        if hu_offset != "auto":
            hu = raw.astype(np.float32) - float(hu_offset)
        elif np.issubdtype(dtype, np.unsignedinteger):
            hu = raw.astype(np.float32) - UINT16_HU_OFFSET
        elif np.issubdtype(dtype, np.signedinteger) and raw.size and raw.min() >= 0:
            hu = raw.astype(np.float32) - UINT16_HU_OFFSET
        else:
            hu = raw.astype(np.float32)
    check_finite_image(path, hu)
    return hu


def read_labels(path: Path, img: nib.Nifti1Image) -> np.ndarray:
    """Label volume as stored (scaling applied if the header has any), 3-D."""
    return _read(path, img, scaled=has_scaling(img))


def resolve_window(window: str | Sequence[float] | Mapping[str, float]) -> tuple[float, float]:
    """(level, width) from a name in constants.WINDOWS, a [level, width] pair or {level:, width:}."""
    if isinstance(window, str):
        if window not in WINDOWS:
            raise DataConfigError(f"data.window: unknown window {window!r}; known: {sorted(WINDOWS)} "
                               "or [level, width]")
        return WINDOWS[window]
    if isinstance(window, Mapping):
        level, width = float(window["level"]), float(window["width"])
    else:
        level, width = (float(v) for v in window)
    if width <= 0:
        raise DataConfigError(f"data.window: width must be > 0, got {width}")
    return level, width


def window_to_unit(hu: np.ndarray, level: float, width: float) -> np.ndarray:
    """Clip HU to [level - width/2, level + width/2] and map linearly to [-1, 1] (float32)."""
    low = level - width / 2.0
    out = (np.asarray(hu, dtype=np.float32) - np.float32(low)) * np.float32(2.0 / width) - 1.0
    return np.clip(out, -1.0, 1.0, out=out)


def voxel_spacing(affine: np.ndarray) -> np.ndarray:
    """Voxel size along each array axis, from the affine's column norms."""
    return np.sqrt((np.asarray(affine, dtype=np.float64)[:3, :3] ** 2).sum(axis=0))


def acquisition_axis(affine: np.ndarray) -> int:
    """Array axis with the largest voxel spacing; axis 2 when the spacing is (nearly) isotropic."""
    zooms = voxel_spacing(affine)
    if zooms.max() - zooms.min() <= 1e-3 * zooms.max():
        return 2
    return int(np.argmax(zooms))


def to_slices(volume: np.ndarray, affine: np.ndarray, axis: int) -> np.ndarray:
    """[S, H, W] slices along `axis` (file order), oriented anterior/superior-up, patient right on the left."""
    ornt = nib.io_orientation(affine)
    in_plane = [a for a in range(3) if a != axis]
    arr = np.moveaxis(volume, axis, 0)
    a, b = in_plane
    # Rows follow the in-plane axis that points to the higher world axis (A for axial, S otherwise).
    if ornt[a, 0] < ornt[b, 0]:
        arr, row, col = arr.transpose(0, 2, 1), b, a
    else:
        row, col = a, b
    # Index must increase towards the negative world direction on both axes (top = anterior/superior,
    # left = patient right).
    if ornt[row, 1] > 0:
        arr = arr[:, ::-1, :]
    if ornt[col, 1] > 0:
        arr = arr[:, :, ::-1]
    return np.ascontiguousarray(arr)


def pad_to_square(arr: np.ndarray, fill: float) -> np.ndarray:
    """Centre-pad [S, H, W] to [S, M, M] with `fill`."""
    _, h, w = arr.shape
    m = max(h, w)
    if h == w:
        return arr
    top, left = (m - h) // 2, (m - w) // 2
    return np.pad(arr, ((0, 0), (top, m - h - top), (left, m - w - left)), constant_values=fill)


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """[S, H, W] float in [-1, 1] -> [S, size, size] float32 (padded square, bilinear + antialias)."""
    sq = pad_to_square(np.asarray(images, dtype=np.float32), AIR)
    if sq.shape[1] == size:
        return sq
    t = torch.from_numpy(np.ascontiguousarray(sq))[:, None]
    out = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out[:, 0].clamp_(-1.0, 1.0).numpy()


def resize_masks(masks: np.ndarray, size: int) -> np.ndarray:
    """[S, H, W] integer class ids -> [S, size, size] uint8 (padded square, nearest)."""
    sq = pad_to_square(np.asarray(masks, dtype=np.uint8), 0)
    if sq.shape[1] == size:
        return sq
    t = torch.from_numpy(np.ascontiguousarray(sq))[:, None].float()
    out = F.interpolate(t, size=(size, size), mode="nearest-exact")
    return out[:, 0].to(torch.uint8).numpy()
