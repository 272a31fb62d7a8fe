"""Checks on a dataset before anything trains: every defect raises one `DatasetError` naming the file."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from lcgan_lightning.errors import ConfigError, UserError

# Affines of an image and its label must agree to this tolerance (mm / direction cosines).
AFFINE_ATOL = 1e-3


class DatasetError(UserError):
    """A dataset (or data config) the loader refuses; the message names the file and the defect.

    `defects` lists every defective case ({"file", "defect"}) when the error reports several.
    """

    hint = ("`lcgan-inspect data=<layout> data.root=<dir>` lists every defect at once; "
            "data.on_defect=skip trains on the healthy cases")

    def __init__(self, message: str, hint: str | None = None, defects: list[dict] | None = None) -> None:
        super().__init__(message, hint)
        self.defects = list(defects or [])


class DataConfigError(DatasetError, ConfigError):
    """A data config value the loader refuses (`data.<key>: …`)."""

    hint = "docs/data.md lists valid values; `lcgan-inspect` shows what a data config gives"


def _name(path: str | Path) -> str:
    return str(path)


def check_same_geometry(
    image_path: Path, label_path: Path, image_shape: tuple, label_shape: tuple,
    image_affine: np.ndarray, label_affine: np.ndarray,
) -> None:
    """Image and label must have the same voxel grid (shape and affine)."""
    if tuple(image_shape) != tuple(label_shape):
        raise DatasetError(
            f"{_name(label_path)}: shape mismatch: label {tuple(label_shape)} vs image "
            f"{tuple(image_shape)} ({_name(image_path)})"
        )
    if not np.allclose(image_affine, label_affine, atol=AFFINE_ATOL, rtol=1e-5):
        raise DatasetError(
            f"{_name(label_path)}: affine mismatch between label and image {_name(image_path)}: "
            f"label\n{np.array2string(np.asarray(label_affine), precision=4)}\nvs image\n"
            f"{np.array2string(np.asarray(image_affine), precision=4)}"
        )


def check_finite_image(image_path: Path, hu: np.ndarray) -> None:
    """An image may not contain NaN or infinite values."""
    bad = ~np.isfinite(hu)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise DatasetError(
            f"{_name(image_path)}: image contains NaN/inf values ({int(bad.sum())} voxels, first at "
            f"voxel {where})"
        )


def check_integer_labels(label_path: Path, raw: np.ndarray) -> np.ndarray:
    """Return the label volume as int64; float labels are accepted only if every value is integral."""
    if np.issubdtype(raw.dtype, np.integer) or raw.dtype == bool:
        return raw.astype(np.int64, copy=False)
    if not np.all(np.isfinite(raw)):
        raise DatasetError(f"{_name(label_path)}: non-integer labels: label volume contains NaN/inf")
    frac = raw != np.round(raw)
    if frac.any():
        examples = sorted({float(v) for v in raw[frac].ravel()[:1000]})[:5]
        raise DatasetError(
            f"{_name(label_path)}: non-integer labels: {int(frac.sum())} voxels have fractional values "
            f"(e.g. {examples}); labels must be integer class values"
        )
    return np.round(raw).astype(np.int64)


def check_label_values(label_path: Path, labels: np.ndarray, allowed: Iterable[int]) -> None:
    """Every stored label value must be one the label map knows."""
    allowed_set = {int(v) for v in allowed}
    present = {int(v) for v in np.unique(labels)}
    outside = sorted(present - allowed_set)
    if outside:
        raise DatasetError(
            f"{_name(label_path)}: label value(s) {outside} outside the label map "
            f"(allowed: {sorted(allowed_set)})"
        )


def pair_defects(images: Mapping[str, Path], labels: Mapping[str, Path], root: Path) -> list[dict]:
    """Every image needs a label and every label an image (matched by case name): one defect per orphan.

    Raises DatasetError when the folders hold no file at all (nothing to check case by case).
    """
    if not images and not labels:
        raise DatasetError(f"{_name(root)}: no image files found")
    defects = [defect(images[c], "image without label (no matching file in the labels folder)")
               for c in sorted(set(images) - set(labels))]
    defects += [defect(labels[c], "label without image (no matching file in the images folder)")
                for c in sorted(set(labels) - set(images))]
    return defects


def defect(file: str | Path, what: str) -> dict[str, str]:
    """One entry of a defect list (inspect.json "defects")."""
    return {"file": _name(file), "defect": what}


def defect_of(err: DatasetError, file: str | Path) -> dict[str, str]:
    """A DatasetError about one case as a defect entry (its message is "<file>: <defect>")."""
    text = str(err)
    head, sep, rest = text.partition(": ")
    return defect(head, rest) if sep and head.startswith(_name(Path(file).parent.parent)) else defect(file, text)


def defects_error(defects: list[dict], root: str | Path, shown: int = 3) -> DatasetError:
    """One DatasetError for every defect found: the defect itself when there is one, else a count
    and the first `shown` (all of them in `.defects`; the command line writes them to defects.json)."""
    if len(defects) == 1:
        return DatasetError(f"{defects[0]['file']}: {defects[0]['defect']}")
    listed = "; ".join(f"{d['file']}: {d['defect']}" for d in defects[:shown])
    more = f"; and {len(defects) - shown} more" if len(defects) > shown else ""
    return DatasetError(f"{_name(root)}: {len(defects)} defective cases: {listed}{more}", defects=defects)


def check_known_keys(given: Iterable[str], valid: Iterable[str], where: str) -> None:
    """Unknown config keys are an error that lists the valid ones."""
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise DataConfigError(
            f"{where}: unknown config key(s) {unknown}; valid keys: {sorted(valid)}"
        )
