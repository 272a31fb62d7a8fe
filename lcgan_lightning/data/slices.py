"""`SliceSet`: the 2-D slices of a CT dataset (images, masks and their patient/volume/slice ids)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from lcgan_lightning.constants import NUM_CLASSES


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
