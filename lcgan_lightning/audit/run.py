"""Audit one synthetic set folder: the stage behind `lcgan-audit` and the pipeline's audit stage.

Reads the set (format and NaN checks of :mod:`lcgan_lightning.data.synthetic_set`), the real
training slices of its fraction (the set must hold exactly their masks), the judge (encoder =
feature network, predictions = mask fidelity) and the generator named in the manifest (seed
diversity); runs :func:`audit_set` and writes ``audit.json`` into the set's folder (temp file +
rename) with the closest-pairs figures under ``previews/``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from lcgan_lightning.atomic_io import write_json_atomic
from lcgan_lightning.audit.core import AUDIT_VERSION, AuditConfig, audit_set
from lcgan_lightning.audit.figures import closest_pairs_figure
from lcgan_lightning.constants import LESION_CLASSES
from lcgan_lightning.data.slices import SliceSet
from lcgan_lightning.data.synthetic_set import (
    SyntheticSetError,
    load_synthetic_rows,
    manifest_kind,
    match_synthetic_set,
    read_manifest,
    read_synthetic_set,
    sha256_file,
)
from lcgan_lightning.layout import AUDIT

log = logging.getLogger(__name__)

FIGURES = {space: f"previews/audit_closest_{space}.png" for space in ("feature", "pixel")}


def checked_set(set_dir: str | Path, train_slices: SliceSet, lesion_only: bool = False
                ) -> tuple[SliceSet, dict[str, Any]]:
    """(the set in training-slice order, its manifest); SyntheticSetError naming file and defect.

    The set must hold exactly the training slices of its fraction (only those with a lesion when
    ``lesion_only``, as `lcgan-synthesize lesion_only=true` makes them), with the same masks and
    finite images; a redraw set with k copies per mask must hold them in every copy and is
    returned whole (k x N rows, copy-major).
    """
    d = Path(set_dir)
    synthetic = read_synthetic_set(d)  # missing files, malformed manifest, dtypes, shapes
    manifest = read_manifest(d)
    if manifest_kind(manifest) == "novel":  # new masks: no training slice of their own to match
        return synthetic, manifest
    expected = train_slices
    if lesion_only:
        expected = train_slices.select(np.asarray(train_slices.masks).reshape(len(train_slices), -1).max(1) > 0)
    k = _images_per_mask(manifest)
    if k > 1:  # k copies per mask, copy-major: every copy is audited
        return load_synthetic_rows(d, expected, k, "redraw"), manifest
    return match_synthetic_set(synthetic, expected, str(d)), manifest


def _images_per_mask(manifest: Mapping[str, Any]) -> int:
    """Synthetic images per distinct mask: k of a redraw set made with k copies (rows copy-major, so
    the first n/k rows hold each mask once); 1 for a novel set (every mask is new)."""
    return int(manifest.get("per_mask") or 1) if manifest_kind(manifest) == "redraw" else 1


def set_fraction(fraction: float | None, manifest: Mapping[str, Any], set_dir: Path) -> float:
    """The set's training subset: ``fraction`` when given, else the manifest's."""
    if fraction is not None:
        return float(fraction)
    if manifest.get("fraction") is None:
        raise SyntheticSetError(
            f"{set_dir / 'manifest.json'}: records no fraction; give the set's training subset "
            "with fraction=F"
        )
    return float(manifest["fraction"])


def _generator_ckpt(generator_ckpt: str | None, manifest: Mapping[str, Any], set_dir: Path) -> Path:
    """The generator to measure diversity with: given, else the manifest's (unchanged since)."""
    if generator_ckpt:
        path = Path(generator_ckpt)
        if not path.is_file():
            raise FileNotFoundError(f"generator_ckpt={path}: no such file")
        return path
    recorded = manifest.get("checkpoint")
    if not recorded:
        raise SyntheticSetError(
            f"{set_dir / 'manifest.json'}: names no generator checkpoint; give generator_ckpt=... "
            "or diversity=false"
        )
    path = Path(recorded)
    if not path.is_file():
        raise FileNotFoundError(
            f"{set_dir / 'manifest.json'}: its generator {path} does not exist; give "
            "generator_ckpt=... or diversity=false"
        )
    if manifest.get("checkpoint_sha256") and sha256_file(path) != manifest["checkpoint_sha256"]:
        raise SyntheticSetError(
            f"{path}: changed since the set in {set_dir} was made (sha256 differs from the "
            "manifest's); its diversity would not be this set's: give generator_ckpt=... or "
            "diversity=false"
        )
    return path


def audit_synthetic_set(
    set_dir: str | Path,
    train_slices: SliceSet,
    judge: Any,
    load_generator: Any | None = None,
    *,
    generator_ckpt: str | None = None,
    lesion_only: bool = False,
    config: AuditConfig | None = None,
    judge_ckpt: str | None = None,
    fraction: float | None = None,
) -> dict[str, Any]:
    """Audit the set in ``set_dir`` against ``train_slices`` (its fraction's); writes audit.json.

    ``judge`` has ``encoder_features`` and ``predict_masks``; ``load_generator(path)`` (None: no
    diversity) loads the generator named by ``generator_ckpt`` or the manifest.
    """
    start = time.time()
    d = Path(set_dir)
    synthetic, manifest = checked_set(d, train_slices, lesion_only)
    generator, gen_path = None, None
    if load_generator is not None:
        gen_path = _generator_ckpt(generator_ckpt, manifest, d)
        generator = load_generator(str(gen_path))
    real = np.asarray(train_slices.images, dtype=np.float32)
    k = _images_per_mask(manifest)
    result = audit_set(
        np.asarray(synthetic.images, dtype=np.float32),
        np.asarray(synthetic.masks),
        real,
        [str(p) for p in train_slices.patients],
        judge.encoder_features,
        judge.predict_masks,
        generator,
        config,
        distinct_masks=len(synthetic) // k,
    )
    sources = [f"{p}/{v}/slice {s}" for p, v, s in
               zip(synthetic.patients, synthetic.volumes, synthetic.slice_index, strict=True)]
    reals = [f"{p}/{v}/slice {s}" for p, v, s in
             zip(train_slices.patients, train_slices.volumes, train_slices.slice_index, strict=True)]
    for space, mem in result["memorisation"].items():
        for pair in mem["closest_pairs"]:  # rows of the set in training-slice order
            pair["synthetic_source"] = sources[pair["synthetic"]]
            pair["real_slice"] = reals[pair["real"]]
            pair["own_source"] = pair["synthetic_source"] == pair["real_slice"]
        if mem["closest_pairs"]:
            closest_pairs_figure(
                d / FIGURES[space], synthetic.images, real, mem["closest_pairs"],
                title=f"{d.name}: closest synthetic / real training pairs ({space} space, "
                      f"{mem['distance']} distance)")
    result["set"] = {
        "dir": str(d.resolve()),
        "manifest_sha256": sha256_file(d / "manifest.json"),
        "fraction": set_fraction(fraction, manifest, d),
        "seed": manifest.get("seed"),
        "lesion_only": bool(lesion_only),
        "images_per_mask": k,
        "generator_ckpt": str(gen_path.resolve()) if gen_path else None,
    }
    result["judge_ckpt"] = str(Path(judge_ckpt).resolve()) if judge_ckpt else None
    result["figures"] = {space: FIGURES[space] for space in result["memorisation"]}
    result["wall_s"] = round(time.time() - start, 2)
    write_json_atomic(d / AUDIT, result)
    log.info("audited %s in %.1f s: %s", d, result["wall_s"], json.dumps(audit_summary(result)))
    return result


def audit_is_current(set_dir: str | Path, judge_ckpt: str | Path | None = None) -> bool:
    """audit.json exists, was made from this manifest, by this version of the audit and (if
    given) with this judge."""
    d = Path(set_dir)
    path, manifest = d / AUDIT, d / "manifest.json"
    if not (path.is_file() and manifest.is_file()):
        return False
    try:
        audit = json.loads(path.read_text())
        made_from = audit["set"]["manifest_sha256"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return False
    if made_from != sha256_file(manifest) or audit.get("version") != AUDIT_VERSION:
        return False
    return judge_ckpt is None or audit.get("judge_ckpt") == str(Path(judge_ckpt).resolve())


def audit_summary(audit: Mapping[str, Any]) -> dict[str, Any]:
    """The headline numbers of an audit.json (the report's table, results.json's `audit`)."""
    mem = audit["memorisation"]  # {} when skipped (one training patient)
    mask = audit.get("mask_fidelity") or {}
    div = audit.get("diversity") or {}
    return {
        "n_synthetic": audit["n_synthetic"],
        "copy_rate_feature": (mem.get("feature") or {}).get("copy_rate"),
        "copy_rate_pixel": (mem.get("pixel") or {}).get("copy_rate"),
        "fid": audit["mifid"]["fid"],
        "mifid": audit["mifid"]["mifid"],
        "precision": audit["precision_recall"]["precision"],
        "recall": audit["precision_recall"]["recall"],
        "mask_fidelity": {c: (mask.get("per_class_dice") or {}).get(c) for c in LESION_CLASSES},
        "diversity_ssim": div.get("mean_pairwise_ssim"),
    }
