"""Find the (image, label) volumes of a dataset in each supported format and say how to read their labels.

Dataset formats (config key ``data.dataset_format``):
- ``bhsd`` (also nnU-Net): ``imagesTr/*.nii[.gz]`` + ``labelsTr/`` (same case names) + ``dataset.json``.
  nnU-Net channel suffixes (``case_0000.nii.gz``) are stripped; extra channels (``_0001`` ...) are listed
  as skipped. Label values come from ``data.label_map`` if set, else from dataset.json's ``labels`` when
  their names are our classes, else BHSD's 1 EDH, 2 IPH, 3 IVH, 4 SAH, 5 SDH.
- ``ctich`` (PhysioNet CT-ICH): ``ct_scans/NNN.nii`` + ``masks/NNN.nii`` (0 / non-zero) +
  ``hemorrhage_diagnosis_raw_ct.csv``; each lesion slice takes its class from the CSV row of that slice
  (SliceNumber is 1-based along the 3rd axis; `ctich_slice_classes`).
- ``folder``: ``images/`` + ``labels/`` (same file names) with ``data.label_map`` {stored value: class name}.

Patients: a case named ``ID_<patient>_ID_<study>`` belongs to patient ``ID_<patient>`` (studies of one
patient are one patient for splitting); any other case is its own patient (the file stem; CT-ICH: the
number).
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lcgan_lightning.constants import BHSD_TO_OURS, CLASS_NAMES, CTICH_SUBTYPE_TO_OURS
from lcgan_lightning.data.validation import DataConfigError, DatasetError, defect, pair_defects

FORMATS = ("bhsd", "ctich", "folder")
CTICH_CSV = "hemorrhage_diagnosis_raw_ct.csv"
CTICH_COLUMNS = ("PatientNumber", "SliceNumber", *CTICH_SUBTYPE_TO_OURS)
_ID_PATTERN = re.compile(r"ID_(?P<patient>[^_]+)_ID_(?P<study>.+)")
_CHANNEL = re.compile(r"(?P<case>.+)_(?P<channel>\d{4})")
_ALIASES = {
    "background": 0, "bg": 0, "intraparenchymal": 1, "intraventricular": 2, "subarachnoid": 3,
    "epidural": 4, "extradural": 4, "subdural": 5,
}


@dataclass
class VolumeSource:
    """One image/label pair and how its stored label values become our class ids."""

    image: Path
    label: Path
    patient: str
    volume: str
    value_map: dict[int, int]  # stored label value -> our class id (ctich: 1 = "lesion", class per slice)
    # ctich only: 0-based slice index -> our class ids flagged in the CSV for that slice
    slice_flags: dict[int, list[int]] | None = None


@dataclass
class Discovery:
    """What a format's discovery found: volumes, other files the cache key depends on, skipped files,
    and defective cases ({"file", "defect"}: orphan images/labels, names the format cannot use)."""

    sources: list[VolumeSource]
    extra_files: list[Path] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    defects: list[dict] = field(default_factory=list)


def case_name(path: Path) -> str:
    """File name without .nii / .nii.gz."""
    name = path.name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return path.stem


def patient_of(case: str) -> str:
    """``ID_<p>_ID_<s>`` -> ``ID_<p>``; anything else is its own patient."""
    m = _ID_PATTERN.fullmatch(case)
    return f"ID_{m.group('patient')}" if m else case


def class_id(name: str | int, where: str) -> int:
    """Our class id for a class name (case-insensitive, common long names accepted) or an id."""
    if isinstance(name, int) and not isinstance(name, bool):
        if 0 <= name < len(CLASS_NAMES):
            return name
    else:
        text = str(name).strip()
        upper = {c.upper(): i for i, c in enumerate(CLASS_NAMES)}
        if text.upper() in upper:
            return upper[text.upper()]
        for alias, idx in _ALIASES.items():
            if alias in text.lower():
                return idx
    raise DatasetError(f"{where}: unknown class {name!r}; classes are {list(CLASS_NAMES)}")


def parse_label_map(label_map: Mapping, where: str) -> dict[int, int]:
    """{stored value: class name or id} -> {stored value: our class id}; 0 is background unless listed."""
    out: dict[int, int] = {}
    for key, name in dict(label_map).items():
        try:
            value = int(key)
        except (TypeError, ValueError) as exc:
            raise DatasetError(f"{where}: label_map key {key!r} is not an integer stored value") from exc
        out[value] = class_id(name, where)
    out.setdefault(0, 0)
    return out


def _nifti_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith((".nii", ".nii.gz"))
                  and not p.name.startswith("."))


def _require_dir(path: Path) -> Path:
    if not path.is_dir():
        raise DatasetError(f"{path}: folder not found (expected by the dataset format)",
                           hint="check data.root and data.dataset_format (docs/data.md lists each format's folders)")
    return path


def _pair_folders(root: Path, images_dir: str, labels_dir: str, skipped: list[dict], defects: list[dict]
                  ) -> list[tuple[str, Path, Path]]:
    images_path, labels_path = _require_dir(root / images_dir), _require_dir(root / labels_dir)
    labels = {case_name(p): p for p in _nifti_files(labels_path)}
    images: dict[str, Path] = {}
    for p in _nifti_files(images_path):
        case = case_name(p)
        m = _CHANNEL.fullmatch(case)
        if case not in labels and m and m.group("case") in labels:
            if m.group("channel") != "0000":
                skipped.append({"file": str(p), "reason": "extra nnU-Net channel (only _0000 is used)"})
                continue
            case = m.group("case")
        if case in images:
            defects.append(defect(p, f"two image files for case {case!r} ({images[case]})"))
            continue
        images[case] = p
    defects += pair_defects(images, labels, root)
    return [(case, images[case], labels[case]) for case in sorted(images) if case in labels]


def bhsd_value_map(root: Path, label_map: Mapping | None) -> dict[int, int]:
    """Stored-value map for the bhsd format (config > dataset.json names > BHSD default)."""
    if label_map:
        return parse_label_map(label_map, "data.label_map")
    meta_path = root / "dataset.json"
    if not meta_path.is_file():
        return dict(BHSD_TO_OURS)
    try:
        labels = json.loads(meta_path.read_text()).get("labels")
    except (OSError, ValueError, AttributeError) as exc:
        raise DatasetError(f"{meta_path}: unreadable or corrupt file ({exc})") from exc
    if not labels:
        return dict(BHSD_TO_OURS)
    where = f"{meta_path} (set data.label_map to override)"
    pairs = []
    for k, v in labels.items():
        # nnU-Net v1: {"0": "background"}; v2: {"background": 0}
        value, name = (k, v) if str(k).lstrip("-").isdigit() else (v, k)
        if not isinstance(value, (int, str)) or not str(value).lstrip("-").isdigit():
            raise DatasetError(f"{where}: label entry {k!r}: {v!r} is not a single integer value")
        pairs.append((int(value), class_id(name, where)))
    return dict(pairs)


def discover_bhsd(root: Path, label_map: Mapping | None = None) -> Discovery:
    """imagesTr/ + labelsTr/ + dataset.json (BHSD, nnU-Net)."""
    skipped: list[dict] = []
    defects: list[dict] = []
    value_map = bhsd_value_map(root, label_map)
    pairs = _pair_folders(root, "imagesTr", "labelsTr", skipped, defects)
    sources = [VolumeSource(img, lab, patient_of(case), case, value_map) for case, img, lab in pairs]
    extra = [root / "dataset.json"] if (root / "dataset.json").is_file() else []
    return Discovery(sources, extra, skipped, defects)


def discover_folder(root: Path, label_map: Mapping | None) -> Discovery:
    """images/ + labels/ with a label map from the config."""
    if not label_map:
        raise DatasetError(f"{root}: layout 'folder' needs data.label_map "
                           "({stored value: class name}, classes " f"{list(CLASS_NAMES)})")
    value_map = parse_label_map(label_map, "data.label_map")
    skipped: list[dict] = []
    defects: list[dict] = []
    pairs = _pair_folders(root, "images", "labels", skipped, defects)
    sources = [VolumeSource(img, lab, patient_of(case), case, value_map) for case, img, lab in pairs]
    return Discovery(sources, [], skipped, defects)


def read_ctich_csv(path: Path) -> dict[int, dict[int, list[int]]]:
    """PatientNumber -> {0-based slice: our class ids flagged in that CSV row}."""
    if not path.is_file():
        raise DatasetError(f"{path}: CT-ICH subtype CSV not found")
    out: dict[int, dict[int, list[int]]] = {}
    try:
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in CTICH_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise DatasetError(f"{path}: missing column(s) {missing}; found {reader.fieldnames}")
            for line, row in enumerate(reader, start=2):
                try:
                    patient, slice_no = int(row["PatientNumber"]), int(row["SliceNumber"])
                    flags = [cid for col, cid in CTICH_SUBTYPE_TO_OURS.items() if int(float(row[col]))]
                except (TypeError, ValueError) as exc:
                    raise DatasetError(f"{path}: line {line}: not an integer ({exc})") from exc
                if slice_no < 1:
                    raise DatasetError(f"{path}: line {line}: SliceNumber {slice_no} < 1 (1-based)")
                out.setdefault(patient, {})[slice_no - 1] = sorted(flags)
    except OSError as exc:
        raise DatasetError(f"{path}: unreadable file ({exc})") from exc
    return out


def discover_ctich(root: Path) -> Discovery:
    """ct_scans/ + masks/ + hemorrhage_diagnosis_raw_ct.csv (PhysioNet CT-ICH)."""
    skipped: list[dict] = []
    defects: list[dict] = []
    csv_path = root / CTICH_CSV
    flags = read_ctich_csv(csv_path)
    pairs = _pair_folders(root, "ct_scans", "masks", skipped, defects)
    sources = []
    for case, img, lab in pairs:
        try:
            number = int(case)
        except ValueError:
            defects.append(defect(img, "CT-ICH file names must be patient numbers (NNN.nii)"))
            continue
        if number not in flags:
            defects.append(defect(img, f"patient {number} has no rows in {csv_path}"))
            continue
        # 0 background, any non-zero value (1 or 255 in the wild) = lesion, class from the CSV
        sources.append(VolumeSource(img, lab, f"{number:03d}", case, {0: 0, 1: 1, 255: 1},
                                    slice_flags=flags[number]))
    return Discovery(sources, [csv_path], skipped, defects)


def ctich_slice_classes(src: VolumeSource, mapped: np.ndarray, multi_label_slices: str
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
        elif multi_label_slices == "binary":
            mapped[k][mapped[k] > 0] = classes[0]
            notes.append({"file": str(src.label), "reason": f"{where}: several subtype flags {names}; "
                          f"kept for binary use, lesion labelled {CLASS_NAMES[classes[0]]}"})
            continue
        else:
            reason = f"{where}: several subtype flags {names} (multi_label_slices=skip)"
        keep[k] = False
        skipped.append({"file": str(src.label), "reason": reason})
    return mapped, keep, skipped, notes


def discover(dataset_format: str, root: str | Path, label_map: Mapping | None = None) -> Discovery:
    """Volumes of a dataset in `dataset_format` under `root` (raises DatasetError for a broken one)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset root not found", hint="set data.root to the dataset folder")
    if dataset_format == "bhsd":
        return discover_bhsd(root, label_map)
    if dataset_format == "ctich":
        return discover_ctich(root)
    if dataset_format == "folder":
        return discover_folder(root, label_map)
    raise DataConfigError(f"data.dataset_format: unknown format {dataset_format!r}; known: {list(FORMATS)}")
